#include "tests/gcs/cluster/cluster_dir.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>

namespace halo::gcs::testing {

namespace {

std::string random_printable_secret() {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::random_device device;
  std::string secret(32, '\0');
  for (char& c : secret) c = kAlphabet[device() % (sizeof(kAlphabet) - 1)];
  return secret;
}

}  // namespace

StatusOr<std::unique_ptr<ClusterDir>> ClusterDir::create(std::string_view tag) {
  std::string path =
      (std::filesystem::temp_directory_path() / str_cat("halo-", tag, "-XXXXXX")).string();
  if (::mkdtemp(path.data()) == nullptr) {
    return errno_error(errno, str_cat("making the test cluster's directory ", path));
  }
  std::string secret_path = path + "/cluster.secret";
  std::string secret = random_printable_secret();
  const int fd = ::open(secret_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, str_cat("creating ", secret_path));
  const bool written =
      ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  ::close(fd);
  if (!written) return internal_error(str_cat("writing the secret to ", secret_path));
  return std::unique_ptr<ClusterDir>(
      new ClusterDir(std::move(path), std::move(secret_path), std::move(secret)));
}

ClusterDir::~ClusterDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string ClusterDir::file(std::string_view name) const { return str_cat(path_, "/", name); }

}  // namespace halo::gcs::testing
