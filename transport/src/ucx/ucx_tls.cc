#include "ucx/ucx_tls.h"

#include <algorithm>
#include <filesystem>
#include <initializer_list>
#include <sstream>
#include <string_view>
#include <system_error>
#include <vector>

namespace halo::transport::internal::ucx {
namespace {

constexpr const char* kDefaultTls = "^mm";

// A UCX_TLS value: a list of transport names and aliases, or "^" and a list of those left out.
class TlsList {
 public:
  explicit TlsList(std::string_view tls) {
    excludes_ = tls.starts_with('^');
    if (excludes_) tls.remove_prefix(1);
    std::istringstream stream{std::string(tls)};
    for (std::string name; std::getline(stream, name, ',');) {
      if (!name.empty()) names_.push_back(name);
    }
  }

  // Whether a transport of the family some name in `family` stands for may be used: named
  // (or "all", or an empty list) in an inclusive list, not named in an exclusive one.
  bool admits(std::initializer_list<std::string_view> family) const {
    bool named = false;
    for (const std::string& name : names_) {
      for (std::string_view member : family) named = named || name.starts_with(member);
    }
    if (excludes_) return !named;
    return named || names_.empty() ||
           std::find(names_.begin(), names_.end(), "all") != names_.end();
  }

 private:
  bool excludes_ = false;
  std::vector<std::string> names_;
};

}  // namespace

TlsChoice choose_tls(const std::string& configured, const char* env_ucx_tls, bool has_infiniband) {
  TlsChoice choice;
  std::string effective;
  if (!configured.empty()) {
    choice.tls = configured;
    effective = configured;
  } else if (env_ucx_tls != nullptr) {
    effective = env_ucx_tls;  // Already read by ucp_config_read.
  } else {
    choice.tls = kDefaultTls;
    effective = kDefaultTls;
  }
  const TlsList list(effective);
  // "sm" and "shm" name every shared-memory transport, "mm" the FIFO ones.
  choice.may_use_shared_memory_fifo = list.admits({"posix", "sysv", "xpmem", "mm", "sm", "shm"});
  const bool tcp = list.admits({"tcp"});
  const bool infiniband = has_infiniband && list.admits({"rc", "dc", "ud", "ib"});
  choice.may_carry_data_over_tcp = tcp && !infiniband;
  return choice;
}

bool host_has_infiniband() {
  std::error_code error;
  return std::filesystem::exists("/sys/class/infiniband", error) &&
         !std::filesystem::is_empty("/sys/class/infiniband", error);
}

}  // namespace halo::transport::internal::ucx
