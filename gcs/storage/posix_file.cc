#include "gcs/storage/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace halo::gcs {

StatusOr<File> File::open(const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error(errno, str_cat("open ", path));
  return File(fd, path);
}

File::File(File&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

Status File::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, str_cat("write to ", path_));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status();
}

StatusOr<std::string> File::read_all() {
  HALO_ASSIGN_OR_RETURN(uint64_t total, size());
  std::string out(total, '\0');
  uint64_t done = 0;
  while (done < total) {
    ssize_t n = ::pread(fd_, out.data() + done, total - done, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, str_cat("read ", path_));
    }
    if (n == 0) break;  // Shrunk while reading: keep what was there.
    done += static_cast<uint64_t>(n);
  }
  out.resize(done);
  return out;
}

Status File::sync() {
  if (::fsync(fd_) != 0) return errno_error(errno, str_cat("fsync ", path_));
  return Status();
}

Status File::datasync() {
  if (::fdatasync(fd_) != 0) return errno_error(errno, str_cat("fdatasync ", path_));
  return Status();
}

Status File::truncate(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return errno_error(errno, str_cat("truncate ", path_, " to ", size, " bytes"));
  }
  return Status();
}

StatusOr<uint64_t> File::size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return errno_error(errno, str_cat("stat ", path_));
  return static_cast<uint64_t>(st.st_size);
}

Status sync_dir(const std::string& dir) {
  HALO_ASSIGN_OR_RETURN(File d, File::open(dir, O_RDONLY | O_DIRECTORY));
  return d.sync();
}

Status rename_durably(const std::string& dir, const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return errno_error(errno, str_cat("rename ", from, " to ", to));
  }
  return sync_dir(dir);
}

std::string join_path(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (!out.empty() && out.back() != '/') out += '/';
  out += name;
  return out;
}

}  // namespace halo::gcs
