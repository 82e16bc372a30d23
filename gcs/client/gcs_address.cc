#include "gcs/client/gcs_address.h"

#include <cctype>

namespace halo::gcs {

StatusOr<std::string> gcs_transport_address(const std::string& address,
                                            const transport::TransportConfig& config) {
  if (address.empty()) {
    return invalid_argument_error(
        "no GCS address given: pass HOST:PORT or the address halo-gcs printed");
  }
  if (address.find("://") != std::string::npos) return address;
  const size_t colon = address.rfind(':');
  const std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
  bool numeric = !port.empty() && port.size() <= 5;
  for (char c : port) numeric = numeric && std::isdigit(static_cast<unsigned char>(c)) != 0;
  if (colon == 0 || !numeric || std::stoul(port) > 65535) {
    return invalid_argument_error(str_cat("GCS address '", address,
                                          "' is not HOST:PORT (e.g. 10.0.0.1:6379) nor a "
                                          "transport address (ucx://HOST:PORT)"));
  }
  if (config.transport == "ucx") return str_cat("ucx://", address);
  if (config.transport == "ofi") return str_cat("ofi+", config.ofi_provider, "://", address);
  return invalid_argument_error(str_cat("unknown transport '", config.transport,
                                        "' (expected ucx or ofi): cannot complete the GCS "
                                        "address ",
                                        address));
}

}  // namespace halo::gcs
