// The RPC wire format (transport/proto/rpc.proto): encoding and decoding of frame headers and
// of statuses, shared by the client and the server halves.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "transport/proto/rpc.pb.h"

namespace halo::transport::internal {

// A serialized RpcHeader. Headers are small and the transport copies them while sending, so
// they are encoded on the stack; only an unusually long one (a long method name or status
// message) goes to the heap.
class HeaderBytes {
 public:
  explicit HeaderBytes(const proto::RpcHeader& header);
  HeaderBytes(const HeaderBytes&) = delete;
  HeaderBytes& operator=(const HeaderBytes&) = delete;

  std::span<const std::byte> span() const;

 private:
  std::array<std::byte, 128> inline_{};
  std::string heap_;
  size_t size_ = 0;
};

// Parses a frame header. Empty when the bytes are not an RpcHeader or carry no request id:
// such a frame cannot be answered and is dropped.
std::optional<proto::RpcHeader> decode_header(std::span<const std::byte> bytes);

void set_method(proto::RpcHeader& header, const RpcMethod& method);
// The method a request names, or an invalid RpcMethod when it names none.
RpcMethod method_of(const proto::RpcHeader& header);

// A response header's status. Codes this node does not know become UNKNOWN.
Status status_of(const proto::RpcHeader& header);
void set_status(proto::RpcHeader& header, const Status& status);

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

}  // namespace halo::transport::internal
