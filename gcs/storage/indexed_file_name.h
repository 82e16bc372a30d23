// Names of the data directory's files that carry a log index: PREFIX, the index as 20 decimal
// digits (so that names sort by index), SUFFIX — "wal-00000000000000000001.log",
// "snapshot-00000000000000012345.pb".
#pragma once

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace halo::gcs {

inline constexpr size_t kIndexDigits = 20;

inline std::string indexed_file_name(std::string_view prefix, uint64_t index,
                                     std::string_view suffix) {
  char digits[kIndexDigits + 1];
  std::snprintf(digits, sizeof(digits), "%020" PRIu64, index);
  return std::string(prefix) + digits + std::string(suffix);
}

// The index in `name`, or nullopt if `name` is not PREFIX + 20 digits + SUFFIX (or the digits
// overflow 64 bits).
inline std::optional<uint64_t> parse_indexed_file_name(std::string_view name,
                                                       std::string_view prefix,
                                                       std::string_view suffix) {
  if (name.size() != prefix.size() + kIndexDigits + suffix.size()) return std::nullopt;
  if (!name.starts_with(prefix) || !name.ends_with(suffix)) return std::nullopt;
  uint64_t index = 0;
  for (char c : name.substr(prefix.size(), kIndexDigits)) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (index > (UINT64_MAX - digit) / 10) return std::nullopt;
    index = index * 10 + digit;
  }
  return index;
}

}  // namespace halo::gcs
