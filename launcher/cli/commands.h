// The `halo` command line's subcommands (docs/cli.md). Each takes its options as a struct
// (filled by halo_main.cc from the flags), prints what it did to stdout, and returns the error
// to print otherwise: no cluster running, a secret file unreadable or too open, a GCS that
// cannot be reached (with the address tried), a daemon that died while starting (with the
// end of its log).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::launcher::cli {

// What every command that talks to the GCS needs; empty fields come from the session.
struct ClusterOptions {
  std::string session_dir;  // Empty: the latest session (<temp dir>/session_latest).
  std::string address;      // GCS address (HOST:PORT or transport address); empty: session's.
  std::string secret_file;  // Empty: the session's cluster_secret.
  std::string transport = "ucx";
  double timeout_s = 10;  // How long to try to reach the GCS / to wait for daemons.
};

struct StartOptions {
  ClusterOptions cluster;
  bool head = false;               // Start a GCS (and a node); else join cluster.address.
  std::string host = "127.0.0.1";  // Address the daemons listen on (and register).
  uint16_t port = 6380;            // The GCS's port (head); halo-gcs's default.
  uint16_t node_port = 0;          // The node's port; 0 picks a free one.
  std::string data_dir;            // The GCS's data directory; empty: <session>/gcs_data.
  std::string resources;           // Passed to halo-node --resources.
  std::string labels;              // Passed to halo-node --labels.
  int32_t num_cpus = -1;
  int64_t memory_bytes = -1;
  std::vector<std::string> gcs_flags;  // Extra flags for halo-gcs ("--health-check-period-ms=200").
  std::vector<std::string> node_flags;  // Extra flags for halo-node.
};
Status run_start(const StartOptions& options);

struct StopOptions {
  std::string session_dir;
  double grace_s = 10;  // SIGTERM, then SIGKILL after this.
};
Status run_stop(const StopOptions& options);

struct StatusOptions {
  ClusterOptions cluster;
  bool json = false;
  bool all = false;      // Include REMOVED nodes.
  bool verbose = false;  // Also each node's machine topology (hwloc) and progress thread PU.
};
Status run_status(const StatusOptions& options);

struct DrainOptions {
  ClusterOptions cluster;
  std::string node;  // Node id in hex, or a unique prefix of it.
  std::string reason = "halo drain";
  bool wait = false;  // Wait until the node has left (REMOVED).
};
Status run_drain(const DrainOptions& options);

}  // namespace halo::launcher::cli
