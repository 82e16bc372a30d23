// The few POSIX file operations the GCS's storage is built from, as halo::Status values whose
// messages name the file: an owned file descriptor, whole writes and reads, and the fsync of a
// directory that makes a create, rename or unlink in it durable.
//
//   HALO_ASSIGN_OR_RETURN(File file, File::open(path, O_WRONLY | O_CREAT | O_EXCL, 0600));
//   HALO_RETURN_IF_ERROR(file.write_all(bytes));
//   HALO_RETURN_IF_ERROR(file.sync());          // fsync: data and metadata.
//   HALO_RETURN_IF_ERROR(sync_dir(dir));        // the new name itself.
//
// Errors come from errno_error (code chosen from errno) with the operation and path in the
// message. Not thread-safe: one File is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "halo/base/status.h"

namespace halo::gcs {

class File {
 public:
  // open(2) with O_CLOEXEC added. `mode` matters only when the file is created.
  static StatusOr<File> open(const std::string& path, int flags, mode_t mode = 0600);

  File() = default;
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();  // Closes the descriptor; a close error is ignored (nothing is acknowledged by it).

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  // write(2) until every byte is written, retrying short writes and EINTR.
  Status write_all(std::string_view bytes);
  // Reads the whole file from offset 0 into a string.
  StatusOr<std::string> read_all();
  Status sync();      // fsync(2).
  Status datasync();  // fdatasync(2): the data and the size, not the timestamps.
  Status truncate(uint64_t size);
  StatusOr<uint64_t> size() const;

 private:
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

// fsync(2) of a directory: makes the entries created, renamed or removed in it durable.
Status sync_dir(const std::string& dir);

// rename(2), then sync_dir of the directory: `from` and `to` must be in `dir`.
Status rename_durably(const std::string& dir, const std::string& from, const std::string& to);

// "<dir>/<name>".
std::string join_path(std::string_view dir, std::string_view name);

}  // namespace halo::gcs
