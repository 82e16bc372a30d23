// The write-ahead log while the GCS runs: the queue appends go into, the writer thread that
// turns each batch of queued records into one write(2) and one fdatasync(2), the callbacks
// that acknowledge them, and the segment files (rotation, removal after a snapshot).
//
//   WalWriter writer(options, std::move(last_segment), recovered_last_index, segments);
//   uint64_t index = writer.append(mutation, [](Status s) { /* durable, or the I/O error */ });
//   HALO_RETURN_IF_ERROR(writer.wait_durable(index));   // e.g. before a snapshot at `index`
//   HALO_RETURN_IF_ERROR(writer.rotate());               // the next records in a new segment
//   HALO_RETURN_IF_ERROR(writer.remove_segments_through(snapshot_index));
//
// FsyncPolicy::kAlways: while the writer thread writes and syncs one batch, appends queue up;
// it then takes everything queued as the next batch, at once, and acknowledges its records
// once written and fdatasync'ed, so N appenders waiting for their acknowledgement share one
// sync per round.
// FsyncPolicy::kGroup: append writes its record itself, with one write(2) on the caller's
// thread (the file is then complete, so a killed GCS loses nothing), and acknowledges it at
// once, on that thread: no hand-off to the writer thread and back. The writer thread only
// syncs, at most group_commit_delay_us after the first record written since the last sync —
// sooner when wait_durable, a rotation or the destructor needs it (what redis's appendfsync
// everysec does, with a bound of microseconds instead of a second). Its fdatasync runs on a
// duplicate of the descriptor without the segment lock, so appends go on while it syncs.
//
// Errors: a failed write, sync or segment rotation breaks the writer for good: `done` of every
// record the failed write carried and of every later append gets the error (with kGroup, a
// failed sync can only be logged for records already acknowledged), and wait_durable,
// rotate and remove_segments_through return it. Records of a batch that was synced are
// acknowledged OK even if the rotation after it fails.
//
// Threads: append, last_index, durable_index and wait_durable from any thread; rotate and
// remove_segments_through from one thread at a time (DurableLog's snapshot lock). `done` runs
// in index order, on the writer thread (kAlways) or inside append on the caller's thread
// (kGroup), and must not block nor call wait_durable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gcs/proto/gcs_storage.pb.h"
#include "gcs/storage/durable_log.h"
#include "gcs/storage/wal_segment.h"
#include "halo/base/status.h"

namespace halo::gcs {

class WalWriter {
 public:
  // Takes over `segment`, the last segment, open for appending after record `last_index`.
  // `segments` lists every segment file of the directory (first index -> path), `segment`'s
  // included; the writer adds the ones it creates and removes the ones it deletes.
  WalWriter(const DurableLogOptions& options, SegmentWriter segment, uint64_t last_index,
            std::map<uint64_t, std::string> segments);
  // Writes and syncs what is queued (their `done` run), then stops the writer thread.
  ~WalWriter();
  WalWriter(const WalWriter&) = delete;
  WalWriter& operator=(const WalWriter&) = delete;

  // Queues `mutation` as record last_index() + 1 and returns that index.
  uint64_t append(const proto::Mutation& mutation, std::function<void(Status)> done);

  uint64_t last_index() const { return last_index_.load(std::memory_order_acquire); }
  uint64_t durable_index() const { return durable_index_.load(std::memory_order_acquire); }

  // Blocks until every record through `index` (<= last_index()) is durable, cutting a group
  // commit's wait short. Returns the error that broke the writer, if one did.
  Status wait_durable(uint64_t index);

  // Starts a new segment after the last record written, so that later records go there. Does
  // nothing when the current segment holds no record yet.
  Status rotate();

  // Deletes every segment all of whose records have an index <= `index`, oldest first; never
  // the current segment.
  Status remove_segments_through(uint64_t index);

  // OK, or the error that broke the writer.
  Status status() const;

  // First index -> path of every segment file, for tests and diagnostics.
  std::map<uint64_t, std::string> segments() const;

 private:
  struct Queued {
    uint64_t index;
    std::function<void(Status)> done;
  };

  void run();
  // kGroup: writes the record on the caller's thread and acknowledges it there.
  uint64_t append_written(proto::WalRecord& record, std::function<void(Status)> done);
  // Writes one batch whose last record is `last`, syncs it if `sync_now`, and rotates after it
  // when the segment is full. Called on the writer thread without mu_.
  Status write_batch(const std::string& frames, uint64_t last, bool sync_now);
  Status write_batch_locked(const std::string& frames, uint64_t last, bool sync_now);
  // Syncs the records written so far (durable_index_ catches up with written_index_), without
  // holding segment_mu_ during the fdatasync.
  Status sync();
  // durable_index_ = max(durable_index_, index).
  void advance_durable(uint64_t index);
  Status sync_locked();  // Requires segment_mu_.
  // Syncs, then starts segment written_index_ + 1. Requires segment_mu_.
  Status rotate_locked();
  // The error a failed write or sync of records first..last reports.
  Status failed_io(const Status& s, uint64_t first, uint64_t last, bool acknowledged);
  void set_broken(const Status& error);

  const DurableLogOptions options_;

  // The queue. Appenders fill it; the writer thread swaps it out as a batch.
  mutable std::mutex mu_;
  std::condition_variable wake_writer_;
  std::condition_variable durable_changed_;
  std::string queued_frames_;
  std::vector<Queued> queued_;
  uint64_t flush_through_ = 0;  // wait_durable wants records through here synced now.
  // Group commit: the last record written (and acknowledged), and when it must be synced.
  uint64_t written_through_ = 0;
  std::chrono::steady_clock::time_point sync_due_;
  bool stopping_ = false;
  Status broken_;  // Set once, by the first failed write, sync or rotation.
  std::atomic<uint64_t> last_index_;
  std::atomic<uint64_t> durable_index_;

  // The segment files. Taken by the writer thread around each batch's I/O and by rotate() and
  // remove_segments_through(); never held while waiting for mu_'s waiters. Order: segment_mu_
  // before mu_.
  mutable std::mutex segment_mu_;
  SegmentWriter segment_;
  uint64_t written_index_;  // Last record written into the segment files.
  std::map<uint64_t, std::string> segments_;

  std::thread thread_;  // Last: started once everything above is set up.
};

}  // namespace halo::gcs
