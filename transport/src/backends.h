// Factories of the two backends, for Transport::create (transport.cc).
#pragma once

#include <memory>
#include <string>

#include "halo/transport/transport.h"

namespace halo::transport::internal {

StatusOr<std::unique_ptr<Transport>> create_ucx_transport(const TransportConfig& config,
                                                          std::string cluster_secret);
StatusOr<std::unique_ptr<Transport>> create_ofi_transport(const TransportConfig& config,
                                                          std::string cluster_secret);

}  // namespace halo::transport::internal
