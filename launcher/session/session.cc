#include "launcher/session/session.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

namespace halo::launcher {
namespace {

Status make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0) return Status();
  if (errno != EEXIST) return errno_error(errno, str_cat("cannot create the folder ", path));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return failed_precondition_error(str_cat(path, " exists and is not a folder"));
  }
  return Status();
}

std::string absolute(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return str_cat(cwd, "/", path);
}

}  // namespace

std::string temp_dir() {
  const char* env = std::getenv("HALO_TEMP_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("/tmp/halo");
}

StatusOr<Session> Session::create(const std::string& requested) {
  if (requested.empty()) return create_new(temp_dir(), Latest::kPoint);
  const std::string root = temp_dir();
  HALO_RETURN_IF_ERROR(make_dir(root));
  const std::string dir = absolute(requested);
  HALO_RETURN_IF_ERROR(make_dir(dir));
  return finish_create(root, dir, Latest::kPoint);
}

StatusOr<Session> Session::create_new(const std::string& root, Latest latest) {
  HALO_RETURN_IF_ERROR(make_dir(root));
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char stamp[64];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d_%H-%M-%S", &tm);
  const std::string base = str_cat(absolute(root), "/session_", stamp, "_", ::getpid());
  std::string dir = base;
  for (int n = 2; ::mkdir(dir.c_str(), 0700) != 0; ++n) {
    if (errno != EEXIST) return errno_error(errno, str_cat("cannot create the folder ", dir));
    dir = str_cat(base, "_", n);
  }
  return finish_create(root, dir, latest);
}

StatusOr<Session> Session::finish_create(const std::string& root, const std::string& dir,
                                         Latest latest_link) {
  HALO_RETURN_IF_ERROR(make_dir(dir + "/logs"));
  HALO_RETURN_IF_ERROR(make_dir(dir + "/pids"));
  if (latest_link == Latest::kLeave) return Session(dir);
  // A new link renamed over the old one: readers never find session_latest missing.
  const std::string latest = root + "/session_latest";
  const std::string tmp = str_cat(latest, ".tmp.", ::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(dir.c_str(), tmp.c_str()) != 0 || ::rename(tmp.c_str(), latest.c_str()) != 0) {
    return errno_error(errno, str_cat("cannot point ", latest, " at ", dir));
  }
  return Session(dir);
}

StatusOr<Session> Session::open(const std::string& requested) {
  std::string dir = absolute(requested);
  if (dir.empty()) {
    const std::string latest = temp_dir() + "/session_latest";
    char target[4096];
    const ssize_t n = ::readlink(latest.c_str(), target, sizeof(target) - 1);
    if (n < 0) {
      return not_found_error(str_cat("no halo cluster was started on this machine (no ", latest,
                                     "); start one with `halo start --head`, or pass "
                                     "--session-dir / --address"));
    }
    dir.assign(target, static_cast<size_t>(n));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return not_found_error(str_cat("the session folder ", dir,
                                   " does not exist; start a cluster with `halo start --head`"));
  }
  return Session(dir);
}

std::string Session::next_node_name() const {
  for (int n = 1;; ++n) {
    const std::string name = str_cat("node-", n);
    if (::access(pid_file(name).c_str(), F_OK) != 0) return name;
  }
}

std::vector<std::string> Session::daemons() const {
  std::vector<std::string> nodes;
  bool gcs = false;
  if (DIR* d = ::opendir((dir_ + "/pids").c_str())) {
    while (dirent* entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name.size() < 5 || name.substr(name.size() - 4) != ".pid") continue;
      name.resize(name.size() - 4);
      if (name == "gcs") {
        gcs = true;
      } else {
        nodes.push_back(name);
      }
    }
    ::closedir(d);
  }
  std::sort(nodes.begin(), nodes.end());
  if (gcs) nodes.push_back("gcs");
  return nodes;
}

StatusOr<std::string> Session::gcs_address() const {
  std::ifstream in(gcs_address_file());
  std::string address;
  if (!in || !std::getline(in, address) || address.empty()) {
    return not_found_error(str_cat("no GCS address in ", gcs_address_file(),
                                   " (the GCS of this session has not served yet); pass "
                                   "--address HOST:PORT"));
  }
  while (!address.empty() && (address.back() == ' ' || address.back() == '\r')) address.pop_back();
  return address;
}

Status write_new_secret_file(const std::string& path) {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return internal_error("OpenSSL's RAND_bytes failed to make a cluster secret");
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return write_secret_file(path, hex);
}

Status write_secret_file(const std::string& path, const std::string& secret) {
  if (secret.empty()) return invalid_argument_error("an empty cluster secret");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, str_cat("cannot create the cluster secret file ", path));
  const bool written =
      ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  const int err = errno;
  ::fsync(fd);
  ::close(fd);
  if (!written) return errno_error(err, str_cat("cannot write the cluster secret file ", path));
  return Status();
}

}  // namespace halo::launcher
