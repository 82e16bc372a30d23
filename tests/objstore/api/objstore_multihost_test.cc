// The object store across test hosts (tests/support/test_hosts.h): halo-gcs in host 0, one
// halo-node in each of hosts 1-3, clients (objstore_tool) next to their node, everything over
// TCP between the hosts. Objects put in one host are read intact in the others; the node
// holding the only copy killed makes a get in another host fail with ObjectLostError promptly.
// Labels "objstore;multihost".
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/objstore/api/store_hosts_cluster.h"

namespace halo::gcs::testing {
namespace {

using namespace std::chrono_literals;
using test::StoreClient;

class ObjectStoreHosts : public StoreHostsCluster {
 protected:
  void SetUp() override { start(4, {1, 2, 3}); }
};

TEST_F(ObjectStoreHosts, ObjectsPutInOneHostAreReadIntactInTheOtherTwo) {
  for (uint64_t size : {0ull, 1000ull, 100000ull, 8ull << 20, 64ull << 20}) {
    StoreClient::Put p = on(1).put(size, size + 5);
    for (int reader : {2, 3}) {
      EXPECT_EQ(on(reader).run({"get", p.ref, p.sum, "60000"}, "OK "), "OK " + std::to_string(size))
          << size << " bytes, read in host " << reader;
    }
  }
}

TEST_F(ObjectStoreHosts, ConcurrentReadersInTwoHostsGetTheSameObjectIntact) {
  StoreClient::Put p = on(3).put(32 << 20, 9);
  std::vector<test::ChildProcess> readers;
  for (int reader : {1, 2, 1, 2}) {
    auto c = on(reader).start({"get", p.ref, p.sum, "60000"});
    ASSERT_TRUE(c.ok()) << c.status();
    readers.push_back(std::move(*c));
  }
  for (auto& r : readers) {
    auto line = r.wait_for_line("OK ", 60s);
    EXPECT_TRUE(line.ok()) << line.status() << "\n" << r.output_text();
  }
}

TEST_F(ObjectStoreHosts, NodeHoldingTheOnlyCopyKilledMakesGetsElsewhereFailPromptly) {
  StoreClient::Put p = on(2).put(1 << 20, 4);
  (void)nodes_[2]->process().kill();
  const auto started = std::chrono::steady_clock::now();
  const std::string line = on(3).run({"get", p.ref, p.sum, "120000"}, "LOST ");
  EXPECT_EQ(line.rfind("LOST ", 0), 0u) << line;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s)
      << "a get must fail well before its timeout";
}

}  // namespace
}  // namespace halo::gcs::testing
