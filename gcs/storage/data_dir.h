// The GCS data directory as a whole: created owner-only, held by one process at a time through
// an exclusive lock on its LOCK file, and listed into the files recovery reads.
//
//   HALO_ASSIGN_OR_RETURN(DataDirLock lock, DataDirLock::acquire(dir));  // Until destroyed.
//   HALO_ASSIGN_OR_RETURN(DataDirListing files, list_data_dir(dir));
//
// Two GCS processes appending to one log would interleave records and corrupt it, so the
// second one is refused. The lock is flock(2) on `<dir>/LOCK`: the kernel drops it when the
// holder dies, even by SIGKILL, so a crashed GCS never leaves a stale lock behind.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gcs/storage/posix_file.h"
#include "halo/base/status.h"

namespace halo::gcs {

inline constexpr char kLockFileName[] = "LOCK";
// Suffix given to a snapshot that failed its checks when recovery fell back past it: kept for
// the operator to inspect, ignored by halo.
inline constexpr char kCorruptSuffix[] = ".corrupt";

class DataDirLock {
 public:
  // Creates `dir` (mode 0700; missing parents with the default mode) if needed, takes an
  // exclusive flock on `<dir>/LOCK` (created 0600) and writes this process's pid into it.
  // Errors: FAILED_PRECONDITION naming the holder's pid when another process (or another
  // DataDirLock of this process) holds it; errors creating or opening the directory.
  static StatusOr<DataDirLock> acquire(const std::string& dir);

  DataDirLock(DataDirLock&&) noexcept = default;
  DataDirLock& operator=(DataDirLock&&) noexcept = default;
  ~DataDirLock() = default;  // Closing the file releases the lock.

 private:
  explicit DataDirLock(File file) : file_(std::move(file)) {}
  File file_;
};

// The files of a data directory, by kind.
struct DataDirListing {
  std::map<uint64_t, std::string> segments;   // First index -> path of wal-*.log.
  std::map<uint64_t, std::string> snapshots;  // Last index -> path of snapshot-*.pb.
  std::vector<std::string> temp_files;        // Segment or snapshot *.tmp: left by a crash.
  std::vector<std::string> other_files;       // Anything but the above, LOCK and *.corrupt.
};

StatusOr<DataDirListing> list_data_dir(const std::string& dir);

}  // namespace halo::gcs
