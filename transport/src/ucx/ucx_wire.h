// What halo's UCX backend puts on the wire around the caller's bytes.
//
// Every halo message is one UCX active message with id kUcpAmId. Its UCX header starts with a
// WireHeader naming the receiving endpoint (by the token the receiver chose during set-up) and
// halo's 16-bit message id; the caller's header follows. Backend-internal messages (ids at or
// above kFirstBackendAm) carry put/get over active messages; their fixed headers are below.
// Integers are in host byte order: halo peers run on one architecture family (x86-64, aarch64),
// all little-endian.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "transport_base.h"

namespace halo::transport::internal::ucx {

static_assert(std::endian::native == std::endian::little,
              "halo's UCX wire format assumes a little-endian host");

// The single UCX active-message id halo uses; halo's own ids travel in the WireHeader.
inline constexpr unsigned kUcpAmId = 0;

struct WireHeader {
  uint64_t token;  // Chosen by the receiver during connection set-up; names its endpoint.
  uint16_t am_id;  // halo's message id.
  uint16_t flags;
};
inline constexpr size_t kWireHeaderBytes = 12;

// The caller's header did not fit UCX's header limit: the payload starts with a uint32 header
// length, then the header, then the caller's payload.
inline constexpr uint16_t kFlagHeaderInPayload = 1;
inline constexpr uint16_t kKnownFlags = kFlagHeaderInPayload;

// Put and get over active messages, for transports where UCX's one-sided operations are
// emulated and slow (TCP). The target validates every address against its own registered
// regions before it writes or reads a byte.
enum BackendAm : uint16_t {
  kAmPut = kFirstBackendAm,  // PutHeader; payload = the bytes, landed at `addr` by the target.
  kAmFlushRequest,           // FlushRequest: answer once every put with seq <= `seq` has landed.
  kAmFlushReply,             // FlushReply, then the error text when `code` is not OK.
  kAmGetRequest,             // GetRequest: reply with `length` bytes read at `addr`.
  kAmGetReply,               // GetReply, then the error text; payload = the bytes when OK.
};

struct PutHeader {
  uint64_t seq;           // Per endpoint, from 1, in issue order.
  uint64_t addr;          // Target address in the target's address space.
  uint64_t region_token;  // From the target's packed remote key.
};
struct FlushRequest {
  uint64_t seq;  // The last put sequence number the flush covers.
};
struct FlushReply {
  uint64_t seq;
  uint64_t code;  // halo StatusCode of the first failed put (0 = all landed).
};
struct GetRequest {
  uint64_t request_id;
  uint64_t addr;
  uint64_t region_token;
  uint64_t length;
};
struct GetReply {
  uint64_t request_id;
  uint64_t code;  // halo StatusCode; 0 = the payload holds the bytes.
};

// Fixed-size records are copied in and out with memcpy (the wire offers no alignment).
// The records above are all uint64_t fields: no padding.
template <typename T>
void append_record(std::vector<std::byte>& out, const T& record) {
  const auto* bytes = reinterpret_cast<const std::byte*>(&record);
  out.insert(out.end(), bytes, bytes + sizeof(T));
}

template <typename T>
bool read_record(std::span<const std::byte> in, T& record) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(&record, in.data(), sizeof(T));
  return true;
}

inline void append_wire_header(std::vector<std::byte>& out, const WireHeader& header) {
  append_record(out, header.token);
  append_record(out, header.am_id);
  append_record(out, header.flags);
}

inline bool read_wire_header(std::span<const std::byte> in, WireHeader& header) {
  if (in.size() < kWireHeaderBytes) return false;
  std::memcpy(&header.token, in.data(), 8);
  std::memcpy(&header.am_id, in.data() + 8, 2);
  std::memcpy(&header.flags, in.data() + 10, 2);
  return true;
}

// RemoteRegion::rkey as this backend packs it: a magic number, the region's random token (the
// capability active-message puts and gets must present), then UCX's packed remote key.
inline constexpr uint32_t kRkeyMagic = 0x31585548;  // "HUX1"
inline constexpr size_t kRkeyPrefixBytes = 12;

}  // namespace halo::transport::internal::ucx
