// Encoding and decoding of RPC frame headers (see rpc_frame.h), RpcMethod's text form and the
// bulk descriptor conversions.
#include "rpc/rpc_frame.h"

#include <climits>

namespace halo::transport {

std::string RpcMethod::to_string() const {
  return by_id() ? str_cat("#", id_) : str_cat("\"", name_, "\"");
}

proto::RemoteRegionProto to_proto(const RemoteRegion& region) {
  proto::RemoteRegionProto out;
  out.set_addr(region.addr);
  out.set_length(region.length);
  out.set_rkey(region.rkey);
  return out;
}

RemoteRegion from_proto(const proto::RemoteRegionProto& region) {
  return RemoteRegion{region.addr(), region.length(), region.rkey()};
}

namespace internal {

StatusOr<std::shared_ptr<const std::string>> serialize_failed(const std::string& type_name) {
  return invalid_argument_error(
      str_cat("cannot serialize a ", type_name, " (a required field is missing?)"));
}

HeaderBytes::HeaderBytes(const proto::RpcHeader& header) {
  size_ = header.ByteSizeLong();
  if (size_ <= inline_.size()) {
    header.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(inline_.data()));
  } else {
    header.SerializeToString(&heap_);
    size_ = heap_.size();
  }
}

std::span<const std::byte> HeaderBytes::span() const {
  if (!heap_.empty()) return as_bytes(heap_);
  return std::span<const std::byte>(inline_.data(), size_);
}

std::optional<proto::RpcHeader> decode_header(std::span<const std::byte> bytes) {
  proto::RpcHeader header;
  if (!parse_message(header, bytes) || header.request_id() == 0) return std::nullopt;
  return header;
}

void set_method(proto::RpcHeader& header, const RpcMethod& method) {
  if (method.by_id()) {
    header.set_method_id(method.id());
  } else {
    header.set_method_name(method.name());
  }
}

RpcMethod method_of(const proto::RpcHeader& header) {
  switch (header.method_case()) {
    case proto::RpcHeader::kMethodId:
      return RpcMethod(header.method_id());
    case proto::RpcHeader::kMethodName:
      // An empty name is no name: make it the invalid method #0.
      if (header.method_name().empty()) return RpcMethod(0u);
      return RpcMethod(header.method_name());
    case proto::RpcHeader::METHOD_NOT_SET:
      break;
  }
  return RpcMethod(0u);
}

Status status_of(const proto::RpcHeader& header) {
  const int32_t code = header.status_code();
  if (code == 0) return Status();
  if (code < 0 || code > static_cast<int32_t>(StatusCode::kUnauthenticated)) {
    return Status(StatusCode::kUnknown,
                  str_cat("status code ", code, " from peer: ", header.status_message()));
  }
  return Status(static_cast<StatusCode>(code), header.status_message());
}

void set_status(proto::RpcHeader& header, const Status& status) {
  header.set_status_code(static_cast<int32_t>(status.code()));
  if (!status.ok()) header.set_status_message(std::string(status.message()));
}

}  // namespace internal
}  // namespace halo::transport
