// UCX status codes as halo Status values.
#pragma once

#include <ucs/type/status.h>

#include <string_view>

#include "halo/base/status.h"

namespace halo::transport::internal::ucx {

// "<what>: <UCX's text>", with the code a caller can act on: CANCELLED for operations cut off
// by a local close, RESOURCE_EXHAUSTED for memory and resource limits, INVALID_ARGUMENT for
// refused parameters, OUT_OF_RANGE for a target the peer refused, UNAVAILABLE for everything
// that means the peer cannot be reached.
inline Status from_ucs(ucs_status_t status, std::string_view what) {
  if (status == UCS_OK) return Status();
  std::string message = str_cat(what, ": ", ucs_status_string(status));
  switch (status) {
    case UCS_ERR_CANCELED:
      return cancelled_error(std::move(message));
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
    case UCS_ERR_OUT_OF_RANGE:
      return resource_exhausted_error(std::move(message));
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_UNSUPPORTED:
      return invalid_argument_error(std::move(message));
    case UCS_ERR_INVALID_ADDR:
    case UCS_ERR_MESSAGE_TRUNCATED:
      return out_of_range_error(std::move(message));
    default:
      return unavailable_error(std::move(message));
  }
}

}  // namespace halo::transport::internal::ucx
