#include "gcs/storage/durable_log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <utility>

#include "gcs/storage/data_dir.h"
#include "gcs/storage/posix_file.h"
#include "gcs/storage/recovery.h"
#include "gcs/storage/snapshot_file.h"
#include "gcs/storage/wal_segment.h"
#include "gcs/storage/wal_writer.h"
#include "halo/base/logging.h"

namespace halo::gcs {

class DurableLog::Impl {
 public:
  Impl(const DurableLogOptions& options, DataDirLock lock, std::unique_ptr<WalWriter> writer,
       std::map<uint64_t, std::string> snapshots)
      : options_(options),
        lock_(std::move(lock)),
        writer_(std::move(writer)),
        snapshots_(std::move(snapshots)),
        snapshot_index_(snapshots_.empty() ? 0 : snapshots_.rbegin()->first) {}

  ~Impl() {
    writer_.reset();  // Drains the queue while the directory is still locked.
  }

  const DurableLogOptions& options() const { return options_; }
  WalWriter& writer() { return *writer_; }
  const WalWriter& writer() const { return *writer_; }
  uint64_t snapshot_index() const { return snapshot_index_.load(std::memory_order_acquire); }

  Status write_snapshot(const proto::GcsSnapshot& snapshot) {
    const uint64_t index = snapshot.last_index();
    if (index > writer_->last_index()) {
      return invalid_argument_error(str_cat("snapshot at index ", index,
                                            " is ahead of the log, which ends at index ",
                                            writer_->last_index()));
    }
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    // A broken log stops snapshots too: a snapshot ahead of what the log acknowledged would
    // make unacknowledged writes look durable.
    HALO_RETURN_IF_ERROR(writer_->status());
    if (index < snapshot_index()) {
      return invalid_argument_error(str_cat("snapshot at index ", index,
                                            " is older than the newest one on disk, at index ",
                                            snapshot_index()));
    }
    // The snapshot may hold the effect of records still queued; once it is on disk those
    // records must be too, or a crash would leave a snapshot ahead of its log.
    HALO_RETURN_IF_ERROR(writer_->wait_durable(index));

    const proto::GcsSnapshot* to_write = &snapshot;
    proto::GcsSnapshot versioned;
    if (snapshot.format_version() == 0) {  // The caller left the version unset.
      versioned = snapshot;
      versioned.set_format_version(kSnapshotFormatVersion);
      to_write = &versioned;
    } else if (snapshot.format_version() != kSnapshotFormatVersion) {
      return invalid_argument_error(str_cat("snapshot format_version ", snapshot.format_version(),
                                            " is not ", kSnapshotFormatVersion));
    }
    StatusOr<std::string> path = write_snapshot_file(options_.dir, *to_write);
    if (!path.ok()) {
      return path.status().with_context(
          str_cat("writing the GCS snapshot at index ", index, " into ", options_.dir));
    }
    snapshots_[index] = *path;
    snapshot_index_.store(index, std::memory_order_release);

    HALO_RETURN_IF_ERROR(writer_->rotate());
    return apply_retention();
  }

 private:
  // Keeps the newest snapshots_kept snapshots, and the segments holding every record after
  // the oldest of them: falling back to it then loses nothing. With fewer snapshots than that,
  // the fallback is the log from index 1, so no segment goes.
  Status apply_retention() {
    const size_t kept = static_cast<size_t>(options_.snapshots_kept);
    bool removed = false;
    while (snapshots_.size() > kept) {
      auto oldest = snapshots_.begin();
      if (::unlink(oldest->second.c_str()) != 0 && errno != ENOENT) {
        return errno_error(errno, str_cat("remove old snapshot ", oldest->second));
      }
      snapshots_.erase(oldest);
      removed = true;
    }
    if (removed) HALO_RETURN_IF_ERROR(sync_dir(options_.dir));
    if (snapshots_.size() < kept) return Status();
    return writer_->remove_segments_through(snapshots_.begin()->first);
  }

  const DurableLogOptions options_;
  DataDirLock lock_;
  std::unique_ptr<WalWriter> writer_;
  std::mutex snapshot_mu_;                     // One write_snapshot at a time.
  std::map<uint64_t, std::string> snapshots_;  // Last index -> path, under snapshot_mu_.
  std::atomic<uint64_t> snapshot_index_;
};

StatusOr<DurableLog::Opened> DurableLog::open(const DurableLogOptions& options) {
  if (options.dir.empty()) {
    return invalid_argument_error("the GCS data directory is not set (DurableLogOptions.dir)");
  }
  if (options.snapshots_kept < 2) {
    return invalid_argument_error(str_cat("snapshots_kept is ", options.snapshots_kept,
                                          "; it must be at least 2 so that a corrupt newest "
                                          "snapshot can fall back to the one before it"));
  }
  if (options.group_commit_delay_us < 0) {
    return invalid_argument_error(
        str_cat("group_commit_delay_us is ", options.group_commit_delay_us, "; it must be >= 0"));
  }
  if (options.segment_bytes == 0) {
    return invalid_argument_error("segment_bytes must be > 0");
  }

  HALO_ASSIGN_OR_RETURN(DataDirLock lock, DataDirLock::acquire(options.dir));
  HALO_ASSIGN_OR_RETURN(DataDirListing files, list_data_dir(options.dir));
  auto recovered = recover(options.dir, files);
  if (!recovered.ok()) {
    log::error("GCS recovery from {} failed: {}", options.dir, recovered.status());
    return recovered.status();
  }
  for (const std::string& note : recovered->state.notes) {
    log::warn("GCS recovery from {}: {}", options.dir, note);
  }

  std::map<uint64_t, std::string> segments = recovered->segments;
  StatusOr<SegmentWriter> segment =
      recovered->append_segment ? SegmentWriter::open_existing(recovered->append_segment->second,
                                                               recovered->append_segment->first)
                                : SegmentWriter::create(options.dir, recovered->last_index + 1);
  if (!segment.ok()) {
    return segment.status().with_context(str_cat("opening the write-ahead log in ", options.dir));
  }

  auto writer = std::make_unique<WalWriter>(options, std::move(*segment), recovered->last_index,
                                            std::move(segments));
  auto impl = std::make_unique<Impl>(options, std::move(lock), std::move(writer),
                                     std::move(recovered->snapshots));
  Opened opened;
  opened.log = std::unique_ptr<DurableLog>(new DurableLog(std::move(impl)));
  opened.recovered = std::move(recovered->state);
  return opened;
}

DurableLog::DurableLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DurableLog::~DurableLog() = default;

uint64_t DurableLog::append(const proto::Mutation& mutation, std::function<void(Status)> done) {
  return impl_->writer().append(mutation, std::move(done));
}

uint64_t DurableLog::last_index() const { return impl_->writer().last_index(); }

uint64_t DurableLog::durable_index() const { return impl_->writer().durable_index(); }

Status DurableLog::write_snapshot(const proto::GcsSnapshot& snapshot) {
  return impl_->write_snapshot(snapshot);
}

uint64_t DurableLog::snapshot_index() const { return impl_->snapshot_index(); }

const DurableLogOptions& DurableLog::options() const { return impl_->options(); }

}  // namespace halo::gcs
