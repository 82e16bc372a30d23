#include "halo/transport/transport.h"

#include "backends.h"

namespace halo::transport {

StatusOr<std::unique_ptr<Transport>> Transport::create(const TransportConfig& config,
                                                       std::string cluster_secret) {
  if (cluster_secret.size() < 16) {
    return invalid_argument_error(
        "the cluster secret must be at least 16 bytes; use the session's secret file");
  }
  if (config.transport == "ucx") return internal::create_ucx_transport(config, cluster_secret);
  if (config.transport == "ofi") return internal::create_ofi_transport(config, cluster_secret);
  return invalid_argument_error(str_cat("unknown transport '", config.transport,
                                        "' (HALO_TRANSPORT / --transport): use ucx or ofi"));
}

StatusOr<EndpointPtr> Transport::connect(const std::string& address,
                                         std::chrono::milliseconds timeout) {
  std::promise<StatusOr<EndpointPtr>> promise;
  auto result = promise.get_future();
  connect(address, timeout,
          [&promise](StatusOr<EndpointPtr> ep) { promise.set_value(std::move(ep)); });
  return result.get();
}

}  // namespace halo::transport
