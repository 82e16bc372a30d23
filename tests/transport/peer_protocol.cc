#include "peer_protocol.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace halo::transport::testing {
namespace {

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t pattern_word(uint64_t seed, uint64_t block) {
  return mix64(seed * 0x9e3779b97f4a7c15ULL + block + 1);
}

uint64_t load_word(const std::byte* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

}  // namespace

void fill_pattern(std::span<std::byte> out, uint64_t seed, uint64_t base_offset) {
  size_t i = 0;
  uint64_t offset = base_offset;
  // Head: up to the next 8-byte boundary of the absolute offset.
  while (i < out.size() && offset % 8 != 0) {
    const uint64_t w = pattern_word(seed, offset / 8);
    const size_t in_block = offset % 8;
    const size_t n = std::min<size_t>(8 - in_block, out.size() - i);
    std::memcpy(out.data() + i, reinterpret_cast<const char*>(&w) + in_block, n);
    i += n;
    offset += n;
  }
  for (; out.size() - i >= 8; i += 8, offset += 8) {
    const uint64_t w = pattern_word(seed, offset / 8);
    std::memcpy(out.data() + i, &w, 8);
  }
  if (i < out.size()) {
    const uint64_t w = pattern_word(seed, offset / 8);
    std::memcpy(out.data() + i, &w, out.size() - i);
  }
}

size_t find_pattern_mismatch(std::span<const std::byte> bytes, uint64_t seed,
                             uint64_t base_offset) {
  constexpr size_t kChunk = 64 * 1024;
  std::vector<std::byte> expected(std::min(kChunk, bytes.size()));
  for (size_t done = 0; done < bytes.size(); done += kChunk) {
    const size_t n = std::min(kChunk, bytes.size() - done);
    fill_pattern(std::span(expected).first(n), seed, base_offset + done);
    if (std::memcmp(expected.data(), bytes.data() + done, n) == 0) continue;
    for (size_t j = 0; j < n; ++j) {
      if (expected[j] != bytes[done + j]) return done + j;
    }
  }
  return bytes.size();
}

uint64_t checksum(std::span<const std::byte> bytes) {
  // Four independent lanes keep the multiplier busy; each lane sees every fourth word, and
  // the lane index and length are folded in so that moving data between lanes shows.
  constexpr uint64_t kMul = 0xff51afd7ed558ccdULL;
  std::array<uint64_t, 4> lane = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL,
                                  0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL};
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left >= 32) {
    for (size_t k = 0; k < 4; ++k) {
      lane[k] = (lane[k] ^ load_word(p + 8 * k)) * kMul;
      lane[k] ^= lane[k] >> 29;
    }
    p += 32;
    left -= 32;
  }
  uint64_t h = mix64(bytes.size());
  for (size_t k = 0; k < 4; ++k) h = mix64(h ^ lane[k]) + k;
  while (left >= 8) {
    h = mix64(h ^ load_word(p));
    p += 8;
    left -= 8;
  }
  if (left > 0) {
    uint64_t tail = 0;
    std::memcpy(&tail, p, left);
    h = mix64(h ^ tail ^ (static_cast<uint64_t>(left) << 56));
  }
  return h;
}

std::string encode_region(const RemoteRegion& region) {
  std::string out = to_bytes(region.addr) + to_bytes(region.length);
  out += to_bytes(static_cast<uint64_t>(region.rkey.size()));
  out += region.rkey;
  return out;
}

StatusOr<RemoteRegion> decode_region(std::span<const std::byte> bytes) {
  if (bytes.size() < 3 * sizeof(uint64_t)) {
    return invalid_argument_error(
        str_cat("peer protocol: region descriptor of ", bytes.size(), " bytes is truncated"));
  }
  RemoteRegion region;
  region.addr = load_word(bytes.data());
  region.length = load_word(bytes.data() + 8);
  const uint64_t rkey_size = load_word(bytes.data() + 16);
  if (rkey_size != bytes.size() - 24) {
    return invalid_argument_error(str_cat("peer protocol: region descriptor announces a ",
                                          rkey_size, "-byte key but carries ", bytes.size() - 24));
  }
  region.rkey.assign(reinterpret_cast<const char*>(bytes.data() + 24), rkey_size);
  return region;
}

StatusOr<uint64_t> token_of(std::span<const std::byte> header) {
  if (header.size() < kTokenBytes) {
    return invalid_argument_error(
        str_cat("peer protocol: header of ", header.size(), " bytes has no token"));
  }
  return load_word(header.data());
}

}  // namespace halo::transport::testing
