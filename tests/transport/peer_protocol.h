// The wire protocol between the transport tests and their peer (halo_transport_peer, or a
// PeerService in the test process), and the byte patterns and checksums both sides use to
// check that data landed where it should.
//
// Every request carries a caller-chosen 64-bit token as the first 8 bytes of its header; the
// reply carries it back so that many requests can be in flight at once.
//
//   kEchoAm       header: token + anything, payload: anything
//                 -> kEchoReplyAm with the same header and payload.
//   kDescribeAm   header: token
//                 -> kDescribeReplyAm, header: token + encode_region(peer's region).
//   kChecksumAm   header: ChecksumRequest
//                 -> kChecksumReplyAm, header: ChecksumReply (checksum of the region range).
//   kFillAm       header: FillRequest
//                 -> kFillReplyAm, header: FillReply (the range now holds the seed's pattern).
//
// All integers are little-endian, as the hosts that run these tests are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "halo/base/status.h"
#include "halo/transport/transport.h"

namespace halo::transport::testing {

inline constexpr uint16_t kEchoAm = 0x5001;
inline constexpr uint16_t kEchoReplyAm = 0x5002;
inline constexpr uint16_t kDescribeAm = 0x5003;
inline constexpr uint16_t kDescribeReplyAm = 0x5004;
inline constexpr uint16_t kChecksumAm = 0x5005;
inline constexpr uint16_t kChecksumReplyAm = 0x5006;
inline constexpr uint16_t kFillAm = 0x5007;
inline constexpr uint16_t kFillReplyAm = 0x5008;

inline constexpr size_t kTokenBytes = sizeof(uint64_t);

struct ChecksumRequest {
  uint64_t token;
  uint64_t offset;
  uint64_t length;
};

struct ChecksumReply {
  uint64_t token;
  uint32_t status_code;  // A halo::StatusCode: OK, or OUT_OF_RANGE for a bad range.
  uint32_t reserved;
  uint64_t checksum;
};

struct FillRequest {
  uint64_t token;
  uint64_t offset;
  uint64_t length;
  uint64_t seed;
};

struct FillReply {
  uint64_t token;
  uint32_t status_code;
  uint32_t reserved;
};

// The region a peer serves is filled with the pattern of this seed unless told otherwise.
inline constexpr uint64_t kDefaultPatternSeed = 1;

// Writes into `out` the pattern of `seed` as it lies at absolute offsets
// [base_offset, base_offset + out.size()). Each 8-byte block depends on the seed and its
// position, so data landing at a wrong offset or from another seed is detected.
void fill_pattern(std::span<std::byte> out, uint64_t seed, uint64_t base_offset);

// Index of the first byte of `bytes` that differs from the pattern, or bytes.size().
size_t find_pattern_mismatch(std::span<const std::byte> bytes, uint64_t seed, uint64_t base_offset);

// A position-sensitive 64-bit checksum (not cryptographic): swapped, shifted or changed bytes
// change it.
uint64_t checksum(std::span<const std::byte> bytes);

// Encodes a RemoteRegion (addr, length, rkey) as bytes, and back.
std::string encode_region(const RemoteRegion& region);
StatusOr<RemoteRegion> decode_region(std::span<const std::byte> bytes);

// Fixed-layout headers to bytes and back. from_bytes fails on a size mismatch.
template <typename T>
std::string to_bytes(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof(T));
}
template <typename T>
StatusOr<T> from_bytes(std::span<const std::byte> bytes) {
  if (bytes.size() != sizeof(T)) {
    return invalid_argument_error(str_cat("peer protocol: expected a ", sizeof(T),
                                          "-byte header, got ", bytes.size(), " bytes"));
  }
  T value;
  std::memcpy(&value, bytes.data(), sizeof(T));
  return value;
}

// The token at the start of a request or reply header, if the header is long enough.
StatusOr<uint64_t> token_of(std::span<const std::byte> header);

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace halo::transport::testing
