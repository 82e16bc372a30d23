#include "launcher/mpi/host_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "halo/base/ipv4_interfaces.h"

namespace halo::launcher {
namespace {

// The IPv4 addresses `name` resolves to.
std::vector<std::string> resolve(const std::string& name) {
  std::vector<std::string> out;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* result = nullptr;
  if (::getaddrinfo(name.c_str(), nullptr, &hints, &result) != 0) return out;
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(result, &::freeaddrinfo);
  for (addrinfo* r = result; r != nullptr; r = r->ai_next) {
    char text[INET_ADDRSTRLEN];
    const auto* in = reinterpret_cast<const sockaddr_in*>(r->ai_addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) out.push_back(text);
  }
  return out;
}

}  // namespace

StatusOr<std::string> this_host_address(const std::string& configured) {
  // This machine's IPv4 interfaces that are up, in the kernel's order.
  std::vector<Ipv4Interface> own = ipv4_interfaces();
  std::erase_if(own, [](const Ipv4Interface& i) { return !i.up; });
  const auto is_own = [&](const std::string& address) {
    for (const Ipv4Interface& i : own) {
      if (i.address == address) return true;
    }
    return false;
  };
  if (!configured.empty()) {
    const std::vector<std::string> addresses = resolve(configured);
    if (addresses.empty()) {
      return invalid_argument_error(
          str_cat("HALO_HOST '", configured, "' does not resolve to an IPv4 address"));
    }
    for (const std::string& a : addresses) {
      if (is_own(a)) return a;
    }
    return invalid_argument_error(str_cat("HALO_HOST '", configured, "' (", addresses.front(),
                                          ") is not an address of this machine"));
  }
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0) {
    for (const std::string& a : resolve(name)) {
      if (is_own(a) && a.rfind("127.", 0) != 0) return a;
    }
  }
  for (const Ipv4Interface& i : own) {
    if (!i.loopback) return i.address;
  }
  return std::string("127.0.0.1");
}

}  // namespace halo::launcher
