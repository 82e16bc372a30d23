// The GCS's durable storage in its data directory: a write-ahead log of Mutations in segment
// files plus periodic snapshots, and the recovery that rebuilds the tables from them.
// The on-disk format is in docs/gcs-storage.md.
//
//   auto opened = DurableLog::open({.dir = "/var/halo/gcs"});
//   if (!opened.ok()) return opened.status();         // Names the bad file and why.
//   GcsTables tables = GcsTables::from(opened->recovered);  // Snapshot + replayed records.
//   DurableLog& log = *opened->log;
//
//   // Under the tables' lock, in the order mutations are applied:
//   uint64_t index = log.append(mutation, [reply](Status s) { reply(s); });  // Durable: reply.
//
//   // Now and then, with a copy of the tables taken under that lock at log.last_index():
//   log.write_snapshot(std::move(snapshot));
//
// Durability: `done` of append runs after the record is written to its segment file (so a
// killed GCS never loses an acknowledged record) and, with fsync policy "always",
// fdatasync'ed — batched with whatever else was queued at that moment, never waiting for
// more. With "group" the fdatasync follows at most group_commit_delay_us after the first record
// written since the last one (records written meanwhile share it): a machine crash or power
// loss may lose the acknowledged records of that window, as with redis's appendfsync everysec
// (whose window is a second). A failed write fails `done` of every record it carried and of
// every later append (the log is then broken: the GCS must stop); a failed sync is reported
// the same way for records not yet acknowledged and logged for those that were.
//
// Recovery (open): the newest snapshot that reads back valid (magic, length, checksum, parse,
// format version) is loaded; if it is not valid the previous one is tried (the log keeps the
// records since the older of the two newest snapshots, so falling back loses nothing); then
// every record after the snapshot's index is replayed from the segments, checking that
// indexes run on without gaps. A torn final record (a record cut short or failing its
// checksum with no valid record after it in the last segment) is cut from the file and
// reported in `notes`. Anything else — a corrupt record with valid ones after it, a gap, a
// missing segment, no valid snapshot when snapshots exist and the log no longer starts at
// index 1 — fails open with DATA_LOSS naming the file, the offset and what to do; the GCS never
// starts silently empty or with acknowledged writes missing.
//
// Threads: append and last_index may be called from any thread (calls are ordered by the
// caller's lock); `done` callbacks run on the log's writer thread ("always") or inside append
// on the caller's thread ("group", which writes the record itself: wal_writer.h), and must
// not block;
// write_snapshot blocks the caller while the file is written (not the appenders).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gcs/proto/gcs_storage.pb.h"
#include "halo/base/status.h"

namespace halo::gcs {

enum class FsyncPolicy {
  kAlways,  // fdatasync before any acknowledgement (batched, never delayed).
  kGroup,   // Acknowledge once written; fdatasync at most group_commit_delay_us later.
};

struct DurableLogOptions {
  std::string dir;  // Created (mode 0700) if missing.
  FsyncPolicy fsync_policy = FsyncPolicy::kAlways;
  int64_t group_commit_delay_us = 2000;
  // A new segment file is started when the current one passes this size, and at each snapshot.
  uint64_t segment_bytes = 64ull << 20;
  // Snapshots kept (at least 2: the newest and the one to fall back to).
  int snapshots_kept = 2;
};

// What open() found on disk.
struct RecoveredState {
  proto::GcsSnapshot snapshot;            // Empty (last_index 0) if there was none.
  std::string snapshot_file;              // Empty if none.
  std::vector<proto::WalRecord> records;  // After snapshot.last_index(), in order.
  std::vector<std::string> notes;         // What recovery did: torn tail cut, fallbacks.
};

class DurableLog {
 public:
  struct Opened {
    std::unique_ptr<DurableLog> log;
    RecoveredState recovered;
  };
  // Locks the directory (an exclusive flock on <dir>/LOCK, held until the log is destroyed;
  // a second opener, in this process or another, fails with FAILED_PRECONDITION naming the
  // holder's pid), recovers (see above; every note is also logged as a warning) and starts
  // the writer thread. Errors: INVALID_ARGUMENT for bad options, DATA_LOSS or
  // FAILED_PRECONDITION from recovery, I/O errors naming the file.
  static StatusOr<Opened> open(const DurableLogOptions& options);

  // Stops the writer thread after syncing what is queued (their `done` run).
  ~DurableLog();
  DurableLog(const DurableLog&) = delete;
  DurableLog& operator=(const DurableLog&) = delete;

  // Queues `mutation` as the record at last_index() + 1 and returns that index. `done` runs
  // once, on the writer thread, with OK when the record is durable under the policy, or with
  // the I/O error (DATA_LOSS / INTERNAL) that stopped it.
  uint64_t append(const proto::Mutation& mutation, std::function<void(Status)> done);

  // Index of the last record appended (queued), and of the last one known durable.
  uint64_t last_index() const;
  uint64_t durable_index() const;

  // Writes `snapshot` (its last_index must be <= last_index()) as a new snapshot file — temp
  // file, fsync, rename, fsync of the directory — then starts a new segment and deletes
  // segments and snapshots no longer needed. Blocks until done. Records through the
  // snapshot's index are made durable first (a group commit's delay is cut short), so a
  // snapshot is never ahead of its log. format_version 0 is written as 1. Errors:
  // INVALID_ARGUMENT if the index is ahead of the log or behind the newest snapshot; the
  // error that broke the log; I/O errors naming the file (one writing the snapshot leaves the
  // log usable, one starting the new segment breaks it).
  Status write_snapshot(const proto::GcsSnapshot& snapshot);

  // The index of the newest snapshot on disk (0 if none).
  uint64_t snapshot_index() const;

  const DurableLogOptions& options() const;

 private:
  class Impl;
  explicit DurableLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace halo::gcs
