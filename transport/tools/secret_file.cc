#include "secret_file.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace halo::transport::tools {

StatusOr<std::string> read_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error(errno, str_cat("secret file ", path));
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return permission_denied_error(
        str_cat("secret file ", path, " is readable by group or others; chmod 600 it"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  if (!in.good() && !in.eof()) return errno_error(errno, str_cat("reading secret file ", path));
  std::string secret = contents.str();
  if (secret.size() < 16) {
    return invalid_argument_error(
        str_cat("secret file ", path, " holds ", secret.size(), " bytes; at least 16 are needed"));
  }
  return secret;
}

std::string random_secret() {
  std::string secret(32, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()), static_cast<int>(secret.size()));
  return secret;
}

}  // namespace halo::transport::tools
