// Byte counts as people read them in logs and error messages.
//
//   format_bytes(1536)         == "1.5 KiB"
//   format_bytes(1ull << 30)   == "1.0 GiB"
//   format_bytes(100)          == "100 B"
#pragma once

#include <cstdint>
#include <string>

namespace halo::objstore {

// Binary units (KiB, MiB, GiB, TiB) with one decimal; plain bytes below 1 KiB.
std::string format_bytes(uint64_t bytes);

}  // namespace halo::objstore
