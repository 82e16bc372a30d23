// Fixed-width little-endian integers and zlib's crc32, as the GCS's files store them
// (docs/gcs-storage.md): byte by byte, so the format does not depend on the host's byte order.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace halo::gcs {

inline void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Precondition: at least 4 (8) bytes at `p`.
inline uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

inline uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// zlib's crc32 (the IEEE polynomial) of `bytes`. Payloads are below 4 GiB (protobuf limits
// messages to 2 GiB), so one call covers them.
inline uint32_t checksum(std::string_view bytes) {
  return static_cast<uint32_t>(::crc32(::crc32(0L, Z_NULL, 0),
                                       reinterpret_cast<const Bytef*>(bytes.data()),
                                       static_cast<uInt>(bytes.size())));
}

}  // namespace halo::gcs
