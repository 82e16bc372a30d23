// The GCS's address as users type it. halo-gcs prints and writes a full transport address
// ("ucx://10.0.0.1:6379", "ofi+tcp://10.0.0.1:6379"); people type HOST:PORT. This completes the
// latter with the scheme of the transport the client is configured with.
//
//   gcs_transport_address("10.0.0.1:6379", config)    // "ucx://10.0.0.1:6379" (transport=ucx)
//   gcs_transport_address("ucx://10.0.0.1:6379", c)   // unchanged
#pragma once

#include <string>

#include "halo/base/status.h"
#include "halo/transport/transport_config.h"

namespace halo::gcs {

// `address` unchanged when it has a scheme ("...://"); else HOST:PORT (HOST may be a [v6]
// literal) prefixed with "ucx://" or "ofi+<ofi_provider>://" after config.transport.
// INVALID_ARGUMENT for an empty address, a missing or non-numeric port, or an unknown transport.
StatusOr<std::string> gcs_transport_address(const std::string& address,
                                            const transport::TransportConfig& config);

}  // namespace halo::gcs
