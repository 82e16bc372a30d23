#include "gcs/storage/data_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string_view>

#include "gcs/storage/snapshot_file.h"
#include "gcs/storage/wal_segment.h"
#include "halo/base/logging.h"

namespace halo::gcs {
namespace {

Status ensure_dir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return failed_precondition_error(
          str_cat("GCS data directory ", dir, " exists but is not a directory"));
    }
    if ((st.st_mode & 077) != 0) {
      log::warn("GCS data directory {} is readable by other users (mode {:o}); chmod 700 it", dir,
                st.st_mode & 0777);
    }
    return Status();
  }
  std::filesystem::path path = std::filesystem::path(dir).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "a/b/" names "a/b".
  std::filesystem::path parent = path.parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return errno_error(ec.value(),
                         str_cat("create the parent folders of GCS data directory ", dir));
    }
  }
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error(errno, str_cat("create GCS data directory ", dir));
  }
  // The new directory's entry in its parent must survive a crash too.
  return sync_dir(parent.empty() ? std::string(".") : parent.string());
}

}  // namespace

StatusOr<DataDirLock> DataDirLock::acquire(const std::string& dir) {
  HALO_RETURN_IF_ERROR(ensure_dir(dir));
  const std::string path = join_path(dir, kLockFileName);
  HALO_ASSIGN_OR_RETURN(File file, File::open(path, O_RDWR | O_CREAT, 0600));
  if (::flock(file.fd(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) return errno_error(err, str_cat("lock ", path));
    std::string holder = "unknown";
    if (auto text = file.read_all(); text.ok() && !text->empty()) {
      holder = *text;
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    }
    return failed_precondition_error(str_cat(
        "GCS data directory ", dir, " is in use by another GCS (pid ", holder, " holds ", path,
        "); stop that process first, or give this GCS another data "
        "directory"));
  }
  HALO_RETURN_IF_ERROR(file.truncate(0));
  std::string pid = str_cat(static_cast<long long>(::getpid()), "\n");
  if (::pwrite(file.fd(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return errno_error(errno, str_cat("write the pid into ", path));
  }
  return DataDirLock(std::move(file));
}

StatusOr<DataDirListing> list_data_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno_error(errno, str_cat("list GCS data directory ", dir));
  DataDirListing out;
  errno = 0;
  while (struct dirent* entry = ::readdir(d)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == ".." || name == kLockFileName) continue;
    std::string path = join_path(dir, name);
    if (auto index = parse_segment_file_name(name)) {
      out.segments.emplace(*index, std::move(path));
    } else if (auto last = parse_snapshot_file_name(name)) {
      out.snapshots.emplace(*last, std::move(path));
    } else if (name.ends_with(".tmp") &&
               (parse_segment_file_name(name.substr(0, name.size() - 4)) ||
                parse_snapshot_file_name(name.substr(0, name.size() - 4)))) {
      out.temp_files.push_back(std::move(path));
    } else if (!name.ends_with(kCorruptSuffix)) {
      out.other_files.push_back(std::move(path));
    }
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return errno_error(err, str_cat("list GCS data directory ", dir));
  return out;
}

}  // namespace halo::gcs
