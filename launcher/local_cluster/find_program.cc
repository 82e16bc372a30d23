// find_program (local_cluster.h): where halo's programs are, from an application, a test or
// libhalo.so, in a build tree or installed.
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "launcher/local_cluster/local_cluster.h"

namespace halo::launcher {
namespace {

// The folder of the file (program or shared library) that holds this code.
std::string own_binary_dir() {
  std::string file;
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&own_binary_dir), &info) != 0 && info.dli_fname != nullptr) {
    file = info.dli_fname;
  }
  // The main program may be named as it was typed (no folder): ask the kernel instead.
  if (file.find('/') == std::string::npos) file = "/proc/self/exe";
  char real[PATH_MAX];
  if (::realpath(file.c_str(), real) == nullptr) return "";
  const std::string path = real;
  return path.substr(0, path.rfind('/'));
}

bool executable(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::string join(const std::vector<std::string>& dirs) {
  std::string out;
  for (const auto& d : dirs) out += (out.empty() ? "" : ", ") + d;
  return out;
}

}  // namespace

StatusOr<std::string> find_program(const std::string& name, const std::string& bin_dir) {
  std::vector<std::string> dirs;
  const auto add = [&](const std::string& dir) {
    if (!dir.empty() && std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) {
      dirs.push_back(dir);
    }
  };
  std::string why;
  const char* env = std::getenv("HALO_BIN_DIR");
  if (!bin_dir.empty()) {
    add(bin_dir);
    why = " (the bin_dir given)";
  } else if (env != nullptr && *env != '\0') {
    add(env);
    why = " ($HALO_BIN_DIR)";
  } else {
    if (const std::string own = own_binary_dir(); !own.empty()) {
      add(std::filesystem::path(own + "/../bin").lexically_normal().string());
      add(own);
    }
#ifdef HALO_BUILD_BIN_DIR
    add(HALO_BUILD_BIN_DIR);
#endif
    const char* path = std::getenv("PATH");
    for (std::string rest = path != nullptr ? path : ""; !rest.empty();) {
      const size_t colon = rest.find(':');
      add(rest.substr(0, colon));
      rest = colon == std::string::npos ? "" : rest.substr(colon + 1);
    }
  }
  for (const auto& dir : dirs) {
    const std::string candidate = dir + "/" + name;
    if (executable(candidate)) return candidate;
  }
  return not_found_error(str_cat(
      "cannot find halo's program ", name, ": it is not in ", join(dirs), why,
      "; set HALO_BIN_DIR to the folder that holds halo-gcs and halo-node (build/bin, or the "
      "bin folder of the installation)"));
}

}  // namespace halo::launcher
