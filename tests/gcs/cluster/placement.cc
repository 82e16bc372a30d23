#include "tests/gcs/cluster/placement.h"

#include <utility>

namespace halo::gcs::testing {

std::string Placement::address() const {
  return hosts != nullptr ? hosts->address(host) : std::string("127.0.0.1");
}

std::string Placement::describe() const {
  if (hosts == nullptr) return "loopback";
  return str_cat("host ", host, " (", hosts->address(host), ")");
}

std::vector<std::string> Placement::transport_flags() const {
  const std::string interface = hosts != nullptr ? test::TestHosts::kInterface : "lo";
  return {"--transport=ucx", "--ucx_tls=tcp,self", "--net_interface=" + interface};
}

StatusOr<test::ChildProcess> Placement::spawn(std::vector<std::string> argv,
                                              test::ChildOptions options) const {
  if (hosts != nullptr) return hosts->spawn_in_host(host, std::move(argv), std::move(options));
  return test::ChildProcess::spawn(std::move(argv), std::move(options));
}

}  // namespace halo::gcs::testing
