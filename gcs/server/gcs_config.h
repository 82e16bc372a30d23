// Configuration of the GCS server (halo-gcs): where it listens, where it keeps its files, how
// it checks nodes. Every knob is documented here, once, next to its default; see
// halo/base/config.h for how defaults, a file, HALO_* environment variables and flags combine,
// and docs/gcs.md for the reasoning behind the defaults.
//
//   GcsConfig gcs;
//   transport::TransportConfig transport;
//   halo::ConfigLoader loader;
//   loader.add(gcs);
//   loader.add(transport);
//   auto rest = loader.load({.env = environ, .args = {argv + 1, argv + argc}});
//   HALO_RETURN_IF_ERROR(gcs.validate());
#pragma once

#include <cstdint>
#include <string>

#include "halo/base/status.h"

namespace halo::gcs {

struct GcsConfig {
  // Interface address the GCS listens on and publishes to nodes. Set it to the address of the
  // cluster's interface on a multi-node cluster; 127.0.0.1 serves only this machine.
  std::string host = "127.0.0.1";
  // Port to listen on; 0 picks a free one (read it from address_file or stdout). Ray's GCS uses
  // 6379; halo takes the next port so that a Redis on the head node does not collide.
  uint16_t port = 6380;
  // Folder holding the write-ahead log and snapshots (docs/gcs-storage.md). Required: a GCS
  // without files would lose the cluster's state at its first crash.
  std::string data_dir = "";
  // The cluster secret: a file with at least 16 bytes, owner-only (mode 0600). Required.
  std::string secret_file = "";
  // When set, the GCS writes its transport address and a newline to this file (atomically,
  // mode 0600) once it serves, for launchers and scripts that start it with port 0.
  std::string address_file = "";

  // "always": every acknowledged write was fdatasync'ed (concurrent writes share a sync).
  // "group": syncs at most group_commit_delay_us after a write is queued; more throughput,
  // and a machine crash (not a GCS crash) may lose that window of acknowledged writes.
  std::string fsync_policy = "always";
  int64_t group_commit_delay_us = 2000;
  // A snapshot is taken after this many records since the last one, or after
  // snapshot_interval_s when any record was written since; restart replays at most about this
  // many records, so recovery stays well under a second.
  uint64_t snapshot_every_records = 100000;
  int64_t snapshot_interval_s = 300;
  // A new log segment file is started when the current one passes this size.
  uint64_t wal_segment_bytes = 64ull << 20;

  // Health checks (Ray's names). A node is checked every period over its own connection; a
  // check not answered within the timeout fails; the first failure makes it SUSPECTED, and
  // `threshold` consecutive failures DEAD. Death is thus declared within
  // period × threshold + timeout (3.5 s by default, against Ray's 30 s or more): HPC fabrics
  // answer in microseconds, so half a second of silence already means trouble, and three
  // checks ride out a node's short stall (a swapped-out daemon, a busy core) without a false
  // death.
  int64_t health_check_initial_delay_ms = 2000;  // After registration or GCS restart.
  int64_t health_check_period_ms = 1000;
  int64_t health_check_timeout_ms = 500;
  int32_t health_check_failure_threshold = 3;
  // A DEAD node's row turns REMOVED after this long; until then `halo status` shows it.
  int64_t dead_node_remove_after_ms = 300000;

  // Node changes kept in memory for subscribers; one further behind gets a resync.
  uint64_t node_feed_history = 10000;
  // Longest a poll is held open with no change (a poll's own max_wait_ms is capped to it).
  int64_t poll_max_wait_ms = 30000;
  // Largest internal-KV value and key; a larger one is refused with INVALID_ARGUMENT. The KV
  // holds metadata (addresses, small configs), every value passes through the log, and 1 MiB
  // keeps one write from stalling the others.
  uint64_t kv_max_value_bytes = 1ull << 20;
  uint64_t kv_max_key_bytes = 4096;

  template <typename V>
  void visit(V& v) {
    v("host", host, "address the GCS listens on and publishes");
    v("port", port, "port to listen on; 0 = any free port");
    v("data_dir", data_dir, "folder of the write-ahead log and snapshots (required)");
    v("secret_file", secret_file, "cluster secret file, mode 0600 (required)");
    v("address_file", address_file, "file the GCS writes its address to once it serves");
    v("fsync_policy", fsync_policy, "always or group");
    v("group_commit_delay_us", group_commit_delay_us, "group policy: longest delay of a sync");
    v("snapshot_every_records", snapshot_every_records, "records between snapshots");
    v("snapshot_interval_s", snapshot_interval_s, "seconds between snapshots (if written)");
    v("wal_segment_bytes", wal_segment_bytes, "size at which a new log segment starts");
    v("health_check_initial_delay_ms", health_check_initial_delay_ms,
      "delay before a node's first health check counts");
    v("health_check_period_ms", health_check_period_ms, "time between a node's health checks");
    v("health_check_timeout_ms", health_check_timeout_ms, "time a health check may take");
    v("health_check_failure_threshold", health_check_failure_threshold,
      "consecutive failed checks that make a node DEAD");
    v("dead_node_remove_after_ms", dead_node_remove_after_ms, "time a DEAD node stays listed");
    v("node_feed_history", node_feed_history, "node changes kept for subscribers");
    v("poll_max_wait_ms", poll_max_wait_ms, "longest a subscription poll is held open");
    v("kv_max_value_bytes", kv_max_value_bytes, "largest internal-KV value");
    v("kv_max_key_bytes", kv_max_key_bytes, "largest internal-KV key");
  }

  // The lease a node holds: it renews within it or fences itself. Shorter than the time the
  // GCS needs to declare it dead, so a node has always fenced itself before it is declared
  // DEAD and its work is given to others.
  int64_t lease_ms() const {
    return health_check_period_ms * int64_t{health_check_failure_threshold};
  }

  // INVALID_ARGUMENT naming the first knob whose value makes no sense. (secret_file is the
  // program's business: GcsServer takes the secret itself.)
  Status validate() const;
};

}  // namespace halo::gcs
