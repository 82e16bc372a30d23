// A test cluster on loopback for object store tests: a real halo-gcs and halo-node daemons
// (build/bin) with stores of kStoreBytes, and StoreClients (objstore_tool) on any node.
//
//   class MyTest : public LoopbackStoreCluster {};
//   TEST_F(MyTest, Something) {
//     start(2);
//     StoreClient::Put p = on(0).put(1 << 20, 7);
//     EXPECT_EQ(on(1).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 1048576");
//   }
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/gcs/node/local_cluster.h"
#include "tests/objstore/api/store_client.h"

namespace halo::test {

class LoopbackStoreCluster : public ::testing::Test {
 public:
  static constexpr uint64_t kStoreBytes = 96ull << 20;

 protected:
  // A GCS and `n` nodes on 127.0.0.1, each with a store of kStoreBytes unless `store_bytes`
  // says otherwise for it, and the failure_domain label `failure_domains` gives it, if any.
  void start(int n, std::vector<std::string> node_flags = {},
             std::vector<uint64_t> store_bytes = {},
             std::vector<std::string> failure_domains = {}) {
    using namespace std::chrono_literals;
    auto gcs = GcsChild::start(dir_.path(), fast_health_checks());
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = std::move(*gcs);
    for (int i = 0; i < n; ++i) {
      const std::string state = dir_.path() + "/node" + std::to_string(i) + ".json";
      std::vector<std::string> flags = node_flags;
      const uint64_t bytes =
          i < static_cast<int>(store_bytes.size()) ? store_bytes[i] : kStoreBytes;
      flags.push_back("--object-store-memory=" + std::to_string(bytes));
      if (i < static_cast<int>(failure_domains.size())) {
        flags.push_back("--labels=failure_domain=" + failure_domains[i]);
      }
      auto node = spawn_node(gcs_->address(), gcs_->secret_file(), state, flags,
                             "node" + std::to_string(i));
      ASSERT_TRUE(node.ok()) << node.status();
      nodes_.push_back(std::make_unique<ChildProcess>(std::move(*node)));
      auto alive = wait_for_node_state(state, "alive", 30s);
      ASSERT_TRUE(alive.ok()) << alive.status();
      addresses_.push_back(alive->address);
    }
  }

  // A client of node `i`.
  StoreClient on(int i) const {
    return StoreClient(
        [](std::vector<std::string> argv, ChildOptions options) {
          return ChildProcess::spawn(std::move(argv), std::move(options));
        },
        {"HALO_ADDRESS=" + gcs_->address(), "HALO_SECRET_FILE=" + gcs_->secret_file(),
         "HALO_NODE_ADDRESS=" + addresses_[i]},
        "client@node" + std::to_string(i));
  }

  TempDir dir_;
  std::unique_ptr<GcsChild> gcs_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_;
  std::vector<std::string> addresses_;
};

}  // namespace halo::test
