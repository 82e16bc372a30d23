// The keys and values of the GCS restart test's write load (gcs_kv_writer) and what the test
// checks them against: each key's value is derived from the key, so a reader knows what any
// acknowledged key must hold without being told.
//
//   kv_key("k", 2, 17)        == "k-2-000000000017"
//   kv_value_for("k-2-000000000017")  // "value of k-2-000000000017 #<16 hex digits>"
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace halo::gcs::testing {

// The namespace the writer puts into.
inline constexpr char kKvNamespace[] = "restart-test";

inline std::string kv_key(std::string_view prefix, int writer, uint64_t n) {
  char suffix[48];
  std::snprintf(suffix, sizeof(suffix), "-%d-%012llu", writer, static_cast<unsigned long long>(n));
  return std::string(prefix) + suffix;
}

// The key, so that a value stored under the wrong key shows, and a 64-bit FNV-1a hash of it, so
// that a truncated or altered value shows.
inline std::string kv_value_for(std::string_view key) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : key) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  char tail[24];
  std::snprintf(tail, sizeof(tail), " #%016llx", static_cast<unsigned long long>(hash));
  return "value of " + std::string(key) + tail;
}

}  // namespace halo::gcs::testing
