// The object store size tests give every halo-node they start unless they need another: small,
// because a test machine runs many node daemons at once and each one pre-faults (and tries to
// lock) its whole store, which by default is 30% of the machine's memory.
#pragma once

#include <cstdint>

namespace halo::test {

inline constexpr uint64_t kTestStoreBytes = 32ull << 20;

}  // namespace halo::test
