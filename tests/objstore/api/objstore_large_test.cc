// The object store with the largest objects the issue names (1 GiB): intact through a put and
// a local get, and through a get on another node. Labels "objstore;slow": it moves several GiB
// through memory and wants about 5 GiB of it.
#include <gtest/gtest.h>

#include <string>

#include "tests/objstore/api/loopback_store_cluster.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

using LargeObjects = LoopbackStoreCluster;

TEST_F(LargeObjects, OneGibibyteObjectIsIntactLocallyAndOnAnotherNode) {
  constexpr uint64_t kGiB = 1ull << 30;
  const uint64_t store = kGiB + (64ull << 20);
  start(2, {}, {store, store});
  StoreClient::Put p = on(0).put(kGiB, 42);
  for (int reader : {0, 1}) {
    EXPECT_EQ(on(reader).run({"get", p.ref, p.sum, "300000"}, "OK ", 300s),
              "OK " + std::to_string(kGiB))
        << "read on node " << reader;
  }
}

}  // namespace
}  // namespace halo::test
