#include "gcs/client/cluster_secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace halo::gcs {

StatusOr<std::string> read_secret_file(const std::string& path) {
  if (path.empty()) {
    return invalid_argument_error(
        "no cluster secret file given: pass --secret-file (halo start --head writes one into "
        "its session directory)");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, str_cat("cannot open the cluster secret file ", path));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return errno_error(err, str_cat("cannot stat the cluster secret file ", path));
  }
  // Checked on the open descriptor, so a file swapped after the check cannot slip through.
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    ::close(fd);
    return permission_denied_error(
        str_cat("the cluster secret file ", path, " has mode ", (st.st_mode & 0777) >> 6,
                (st.st_mode & 070) >> 3, st.st_mode & 07,
                ": group or others may access it; run `chmod 600 ", path, "`"));
  }
  std::string secret;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return errno_error(err, str_cat("cannot read the cluster secret file ", path));
    }
    if (n == 0) break;
    secret.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  if (secret.size() < 16) {
    return invalid_argument_error(str_cat("the cluster secret file ", path, " holds ",
                                          secret.size(), " bytes; a secret needs at least 16"));
  }
  return secret;
}

}  // namespace halo::gcs
