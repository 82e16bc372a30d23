#include "gcs/storage/wal_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>

#include "halo/base/logging.h"

namespace halo::gcs {
namespace {}  // namespace

WalWriter::WalWriter(const DurableLogOptions& options, SegmentWriter segment, uint64_t last_index,
                     std::map<uint64_t, std::string> segments)
    : options_(options),
      last_index_(last_index),
      durable_index_(last_index),
      segment_(std::move(segment)),
      written_index_(last_index),
      segments_(std::move(segments)) {
  segments_[segment_.first_index()] = segment_.path();
  thread_ = std::thread([this] { run(); });
}

WalWriter::~WalWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_writer_.notify_all();
  thread_.join();
}

uint64_t WalWriter::append(const proto::Mutation& mutation, std::function<void(Status)> done) {
  proto::WalRecord record;
  *record.mutable_mutation() = mutation;
  if (options_.fsync_policy == FsyncPolicy::kGroup) return append_written(record, std::move(done));
  std::unique_lock<std::mutex> lock(mu_);
  // The index is taken and the frame queued under one lock, so that queue order is index order
  // even if callers race (they should not: the tables' lock orders them).
  const uint64_t index = last_index_.load(std::memory_order_relaxed) + 1;
  record.set_index(index);
  append_frame(queued_frames_, record.SerializeAsString());
  queued_.push_back({index, std::move(done)});
  last_index_.store(index, std::memory_order_release);
  lock.unlock();
  wake_writer_.notify_one();
  return index;
}

uint64_t WalWriter::append_written(proto::WalRecord& record, std::function<void(Status)> done) {
  std::unique_lock<std::mutex> segment_lock(segment_mu_);
  uint64_t index = 0;
  Status result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    index = last_index_.load(std::memory_order_relaxed) + 1;
    last_index_.store(index, std::memory_order_release);
    result = broken_;
  }
  record.set_index(index);
  if (result.ok()) {
    std::string frame;
    append_frame(frame, record.SerializeAsString());
    result = write_batch_locked(frame, index, /*sync_now=*/false);
    if (!result.ok()) set_broken(result);
  } else {
    result = Status(result.code(),
                    str_cat("WAL record ", index,
                            " was not written: the log broke earlier: ", result.message()));
  }
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (result.ok()) {
      // The first record since the last sync starts the group's clock.
      if (written_through_ <= durable_index()) {
        sync_due_ = std::chrono::steady_clock::now() +
                    std::chrono::microseconds(options_.group_commit_delay_us);
        wake = true;
      }
      written_through_ = std::max(written_through_, index);
    }
  }
  segment_lock.unlock();
  if (wake) wake_writer_.notify_one();
  if (done) done(result);
  return index;
}

Status WalWriter::wait_durable(uint64_t index) {
  std::unique_lock<std::mutex> lock(mu_);
  if (index > flush_through_) {
    flush_through_ = index;
    wake_writer_.notify_one();
  }
  durable_changed_.wait(lock, [&] { return durable_index() >= index || !broken_.ok(); });
  return durable_index() >= index ? Status() : broken_;
}

void WalWriter::run() {
  using Clock = std::chrono::steady_clock;
  const bool group = options_.fsync_policy == FsyncPolicy::kGroup;
  const auto delay = std::chrono::microseconds(options_.group_commit_delay_us);
  std::string frames;
  std::vector<Queued> batch;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Group commit: records written and acknowledged but not yet synced wait for sync_due_, or
    // for a snapshot (wait_durable) or the destructor.
    const auto unsynced = [&] { return broken_.ok() && written_through_ > durable_index(); };
    const auto sync_wanted = [&] {
      return unsynced() &&
             (stopping_ || flush_through_ > durable_index() || Clock::now() >= sync_due_);
    };
    if (unsynced()) {
      wake_writer_.wait_until(lock, sync_due_, [&] { return !queued_.empty() || sync_wanted(); });
    } else {
      // kGroup appends write their records themselves and wake this thread for the sync.
      wake_writer_.wait(lock, [&] { return !queued_.empty() || stopping_ || unsynced(); });
    }

    if (!queued_.empty()) {
      frames.clear();
      batch.clear();
      frames.swap(queued_frames_);
      batch.swap(queued_);
      Status result = broken_;
      lock.unlock();
      const uint64_t first = batch.front().index;
      const uint64_t last = batch.back().index;
      if (result.ok()) {
        result = write_batch(frames, last, /*sync=*/!group);
        if (!result.ok()) set_broken(result);
      } else {
        result = Status(result.code(),
                        str_cat("WAL records ", first, "..", last,
                                " were not written: the log broke earlier: ", result.message()));
      }
      lock.lock();
      if (group && result.ok()) {
        if (written_through_ <= durable_index()) sync_due_ = Clock::now() + delay;
        written_through_ = std::max(written_through_, last);
      }
      durable_changed_.notify_all();
      lock.unlock();
      for (Queued& q : batch) {
        if (q.done) q.done(result);
      }
      lock.lock();
      continue;
    }
    if (sync_wanted()) {
      lock.unlock();
      Status s = sync();
      if (!s.ok()) set_broken(s);
      lock.lock();
      durable_changed_.notify_all();
      continue;
    }
    if (stopping_ && !unsynced()) return;  // Everything queued is written and synced.
  }
}

Status WalWriter::failed_io(const Status& s, uint64_t first, uint64_t last, bool acknowledged) {
  log::error("GCS write-ahead log failed; no later write is acknowledged: {}", s);
  return Status(s.code() == StatusCode::kInternal ? StatusCode::kDataLoss : s.code(),
                str_cat("WAL records ", first, "..", last, " in ", segment_.path(),
                        acknowledged ? " were acknowledged (group commit) but " : " ",
                        "may not be on disk (", s.message(),
                        "); the GCS must stop: check the disk (space, dmesg), then restart "
                        "it: recovery keeps every record that is on disk"));
}

Status WalWriter::write_batch(const std::string& frames, uint64_t last, bool sync_now) {
  std::lock_guard<std::mutex> lock(segment_mu_);
  return write_batch_locked(frames, last, sync_now);
}

Status WalWriter::write_batch_locked(const std::string& frames, uint64_t last, bool sync_now) {
  const uint64_t first = written_index_ + 1;
  if (Status s = segment_.append(frames); !s.ok()) return failed_io(s, first, last, false);
  written_index_ = last;
  if (sync_now) {
    if (Status s = sync_locked(); !s.ok()) return s;
  }
  if (segment_.bytes() >= options_.segment_bytes) {
    // The records above are durable whatever happens here (rotation syncs the segment first);
    // a failed rotation only stops later writes, since their segment is in doubt.
    if (Status s = rotate_locked(); !s.ok()) set_broken(s);
  }
  return Status();
}

Status WalWriter::sync() {
  uint64_t through = 0;
  int fd = -1;
  std::string path;
  {
    std::lock_guard<std::mutex> lock(segment_mu_);
    through = written_index_;
    if (through <= durable_index()) return Status();
    // A duplicate stays valid if a rotation closes the segment meanwhile (the rotation syncs
    // the segment itself first).
    fd = ::dup(segment_.fd());
    path = segment_.path();
    if (fd < 0) return errno_error(errno, str_cat("dup of WAL segment ", path, " to sync it"));
  }
  const int rc = ::fdatasync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return failed_io(errno_error(err, str_cat("fdatasync ", path)), durable_index() + 1, through,
                     options_.fsync_policy == FsyncPolicy::kGroup);
  }
  advance_durable(through);
  return Status();
}

void WalWriter::advance_durable(uint64_t index) {
  uint64_t current = durable_index_.load(std::memory_order_acquire);
  while (current < index &&
         !durable_index_.compare_exchange_weak(current, index, std::memory_order_acq_rel)) {
  }
}

Status WalWriter::sync_locked() {
  const uint64_t through = written_index_;
  if (through <= durable_index()) return Status();
  if (Status s = segment_.sync(); !s.ok()) {
    return failed_io(s, durable_index() + 1, through, options_.fsync_policy == FsyncPolicy::kGroup);
  }
  advance_durable(through);
  return Status();
}

Status WalWriter::rotate() {
  std::lock_guard<std::mutex> lock(segment_mu_);
  HALO_RETURN_IF_ERROR(status());
  if (segment_.first_index() == written_index_ + 1) return Status();  // Holds no record yet.
  Status s = rotate_locked();
  if (!s.ok()) set_broken(s);
  return s;
}

Status WalWriter::rotate_locked() {
  // Records written but not yet synced (group commit) must be on disk before later syncs only
  // reach the next segment.
  HALO_RETURN_IF_ERROR(sync_locked());
  auto next = SegmentWriter::create(options_.dir, written_index_ + 1);
  if (!next.ok()) {
    log::error("GCS write-ahead log cannot start a new segment: {}", next.status());
    return next.status().with_context(
        str_cat("starting WAL segment ", written_index_ + 1, " in ", options_.dir));
  }
  segment_ = std::move(*next);
  segments_[segment_.first_index()] = segment_.path();
  return Status();
}

Status WalWriter::remove_segments_through(uint64_t index) {
  std::lock_guard<std::mutex> lock(segment_mu_);
  bool removed = false;
  while (segments_.size() > 1) {
    auto oldest = segments_.begin();
    const uint64_t next_first = std::next(oldest)->first;
    // The oldest segment holds records oldest->first .. next_first - 1.
    if (next_first - 1 > index) break;
    if (::unlink(oldest->second.c_str()) != 0 && errno != ENOENT) {
      return errno_error(errno,
                         str_cat("remove WAL segment ", oldest->second,
                                 " (no longer needed after the snapshot at index ", index, ")"));
    }
    segments_.erase(oldest);
    removed = true;
  }
  return removed ? sync_dir(options_.dir) : Status();
}

std::map<uint64_t, std::string> WalWriter::segments() const {
  std::lock_guard<std::mutex> lock(segment_mu_);
  return segments_;
}

void WalWriter::set_broken(const Status& error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (broken_.ok()) broken_ = error;
}

Status WalWriter::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return broken_;
}

}  // namespace halo::gcs
