// What the object store tests share: a private temporary folder, bytes that follow from a
// seed (so any copy read back can be checked), and their checksum.
#pragma once

#include <stdlib.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>
#include "tests/support/temp_dir.h"

namespace halo::objstore::test {

using halo::test::TempDir;

// Writes `size` bytes that depend on `seed` and on their position at `out`.
inline void fill_pattern(std::byte* out, uint64_t size, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (uint64_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x);
  }
}

inline std::vector<std::byte> pattern(uint64_t size, uint64_t seed) {
  std::vector<std::byte> bytes(size);
  fill_pattern(bytes.data(), size, seed);
  return bytes;
}

// zlib's crc32 of `size` bytes at `data`.
inline uint32_t checksum(const std::byte* data, uint64_t size) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min<uint64_t>(size - done, 1u << 30);
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(data + done), static_cast<uInt>(n));
    done += n;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace halo::objstore::test
