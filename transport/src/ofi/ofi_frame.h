// The wire format of the libfabric backend. An FI_EP_RDM endpoint has no connections, so
// every message carries a frame header that names the connection it belongs to on both sides:
//
//   [FrameHeader 48 B][extra: extra_len B][AM header: header_len B][payload: payload_len B]
//
// `dst_conn` is the receiver's key for the connection (0 only in a Hello, whose `extra` is the
// sender's raw fabric address so the receiver can insert it into its address vector);
// `src_conn` is the sender's key, which the receiver checks on every frame. Keys are random
// 64-bit values, never reused within a process. `seq` numbers the frames of one connection
// and direction from 1: providers complete receives out of order (rxm finishes a large
// message after a later small one), so the receiver restores the sender's order. A rendezvous
// frame carries no payload: its
// `extra` describes where the receiver reads it from, and the receiver answers with a
// rendezvous-done frame once it has the bytes.
//
// Fields are in the hosts' (little-endian) byte order: halo clusters are homogeneous.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace halo::transport::internal::ofi {

static_assert(std::endian::native == std::endian::little,
              "the libfabric backend's frames assume little-endian hosts");

inline constexpr uint32_t kFrameMagic = 0x49464f48;  // "HOFI" in memory.
inline constexpr uint8_t kFrameVersion = 1;
// Longest raw fabric address a Hello may carry (shm names are at most 256 bytes).
inline constexpr uint32_t kMaxAddressBytes = 256;

enum class FrameKind : uint8_t {
  kEager = 1,           // Header and payload inline.
  kHello = 2,           // Eager, plus the sender's raw address in `extra`; dst_conn = 0.
  kRendezvous = 3,      // Header inline; payload described by a RendezvousDescriptor.
  kRendezvousDone = 4,  // Receiver -> sender: the payload was read (or could not be).
};

struct FrameHeader {
  uint32_t magic;
  uint8_t version;
  uint8_t kind;
  uint16_t am_id;
  uint32_t extra_len;
  uint32_t header_len;
  uint64_t dst_conn;
  uint64_t src_conn;
  uint64_t payload_len;
  uint64_t seq;
};
static_assert(sizeof(FrameHeader) == 48);

// Where a rendezvous payload lies in the sender's memory.
struct RendezvousDescriptor {
  uint64_t request_id;  // Echoed in the RendezvousDone frame.
  uint64_t addr;        // Target address of fi_read (virtual or offset, per the rkey mode).
  uint64_t key;         // The sender's memory key for the payload.
  uint64_t reserved;
};
static_assert(sizeof(RendezvousDescriptor) == 32);

struct RendezvousDone {
  uint64_t request_id;
  uint32_t ok;  // 1 when the receiver has the payload.
  uint32_t reserved;
};
static_assert(sizeof(RendezvousDone) == 16);

enum class FrameError {
  kNone,
  kTooShort,    // Fewer bytes than a frame header.
  kBadMagic,    // Not a halo frame (or another version).
  kBadKind,     // Unknown frame kind.
  kBadLengths,  // Declared lengths disagree with what arrived or with the kind.
};

struct ParsedFrame {
  FrameError error = FrameError::kNone;
  FrameHeader header{};
  std::span<const std::byte> extra;
  std::span<const std::byte> am_header;
  std::span<const std::byte> payload;  // Empty for rendezvous frames (payload_len is remote).
};

// Checks that `bytes` (one received message) is a complete, self-consistent frame and splits
// it. Never reads outside `bytes`; limits of the configuration are the caller's to check.
inline ParsedFrame parse_frame(std::span<const std::byte> bytes) {
  ParsedFrame out;
  if (bytes.size() < sizeof(FrameHeader)) {
    out.error = FrameError::kTooShort;
    return out;
  }
  FrameHeader& h = out.header;
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (h.magic != kFrameMagic || h.version != kFrameVersion) {
    out.error = FrameError::kBadMagic;
    return out;
  }
  const uint64_t body = bytes.size() - sizeof(FrameHeader);
  const uint64_t extra = h.extra_len;
  const uint64_t header = h.header_len;
  // extra and header are 32-bit, so their sum cannot overflow 64 bits.
  if (extra + header > body) {
    out.error = FrameError::kBadLengths;
    return out;
  }
  const uint64_t rest = body - extra - header;
  switch (static_cast<FrameKind>(h.kind)) {
    case FrameKind::kEager:
      if (extra != 0 || h.payload_len != rest) out.error = FrameError::kBadLengths;
      break;
    case FrameKind::kHello:
      if (extra == 0 || extra > kMaxAddressBytes || h.payload_len != rest || h.dst_conn != 0) {
        out.error = FrameError::kBadLengths;
      }
      break;
    case FrameKind::kRendezvous:
      if (extra != sizeof(RendezvousDescriptor) || rest != 0) out.error = FrameError::kBadLengths;
      break;
    case FrameKind::kRendezvousDone:
      if (extra != sizeof(RendezvousDone) || header != 0 || rest != 0 || h.payload_len != 0) {
        out.error = FrameError::kBadLengths;
      }
      break;
    default:
      out.error = FrameError::kBadKind;
      return out;
  }
  if (out.error != FrameError::kNone) return out;
  const std::byte* p = bytes.data() + sizeof(FrameHeader);
  out.extra = {p, static_cast<size_t>(extra)};
  out.am_header = {p + extra, static_cast<size_t>(header)};
  if (rest != 0) out.payload = {p + extra + header, static_cast<size_t>(rest)};
  return out;
}

inline FrameHeader make_frame_header(FrameKind kind, uint16_t am_id, uint64_t dst_conn,
                                     uint64_t src_conn, uint32_t extra_len, uint32_t header_len,
                                     uint64_t payload_len, uint64_t seq) {
  FrameHeader h{};
  h.magic = kFrameMagic;
  h.version = kFrameVersion;
  h.kind = static_cast<uint8_t>(kind);
  h.am_id = am_id;
  h.extra_len = extra_len;
  h.header_len = header_len;
  h.dst_conn = dst_conn;
  h.src_conn = src_conn;
  h.payload_len = payload_len;
  h.seq = seq;
  return h;
}

}  // namespace halo::transport::internal::ofi
