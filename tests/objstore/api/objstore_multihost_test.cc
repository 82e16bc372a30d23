// The object store across test hosts (tests/support/test_hosts.h): halo-gcs in host 0, one
// halo-node in each of hosts 1-3, clients (objstore_tool) next to their node, everything over
// TCP between the hosts. Objects put in one host are read intact in the others; the node
// holding the only copy killed makes a get in another host fail with ObjectLostError promptly.
// Labels "objstore;multihost".
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/gcs/cluster/cluster_dir.h"
#include "tests/gcs/cluster/gcs_server_process.h"
#include "tests/gcs/cluster/node_daemon.h"
#include "tests/objstore/api/store_client.h"
#include "tests/support/test_hosts.h"

namespace halo::gcs::testing {
namespace {

using namespace std::chrono_literals;
using test::StoreClient;
using test::TestHosts;

constexpr int kGcsHost = 0;
constexpr int kNodes = 3;  // In hosts 1..3.
constexpr uint64_t kStoreBytes = 160ull << 20;

class ObjectStoreHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    HALO_SKIP_UNLESS_TEST_HOSTS_USABLE();
    auto dir = ClusterDir::create("objstore-hosts");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    auto hosts = TestHosts::create(1 + kNodes);
    ASSERT_TRUE(hosts.ok()) << hosts.status();
    hosts_ = *std::move(hosts);

    GcsServerProcess::Options gcs_options;
    gcs_options.where = Placement{hosts_.get(), kGcsHost};
    gcs_options.data_dir = dir_->file("gcs");
    gcs_options.secret_file = dir_->secret_path();
    auto gcs = GcsServerProcess::start(gcs_options);
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = *std::move(gcs);
    for (int i = 1; i <= kNodes; ++i) {
      NodeDaemon::Options options;
      options.where = Placement{hosts_.get(), i};
      options.gcs_address = gcs_->address();
      options.secret_file = dir_->secret_path();
      options.state_file = dir_->file(str_cat("node", i, ".json"));
      options.name = str_cat("node", i);
      options.extra_flags = {"--object-store-memory=" + std::to_string(kStoreBytes)};
      auto node = NodeDaemon::start(options);
      ASSERT_TRUE(node.ok()) << node.status();
      auto state = (*node)->state();
      ASSERT_TRUE(state.ok()) << state.status();
      addresses_.push_back(state->address);
      nodes_.push_back(*std::move(node));
    }
  }

  void TearDown() override {
    nodes_.clear();
    gcs_.reset();
    hosts_.reset();
    dir_.reset();
  }

  // A client of the node in host `host` (1..3), in that host.
  StoreClient on(int host) const {
    Placement where{hosts_.get(), host};
    return StoreClient(
        [where](std::vector<std::string> argv, test::ChildOptions options) {
          return where.spawn(std::move(argv), std::move(options));
        },
        {"HALO_ADDRESS=" + gcs_->address(), "HALO_SECRET_FILE=" + dir_->secret_path(),
         "HALO_NODE_ADDRESS=" + addresses_[host - 1], "HALO_UCX_TLS=tcp,self",
         "HALO_NET_INTERFACE=" + std::string(TestHosts::kInterface)},
        str_cat("client@host", host));
  }

  std::unique_ptr<ClusterDir> dir_;
  std::unique_ptr<TestHosts> hosts_;
  std::unique_ptr<GcsServerProcess> gcs_;
  std::vector<std::unique_ptr<NodeDaemon>> nodes_;
  std::vector<std::string> addresses_;
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
  (void)nodes_[1]->process().kill();
  const auto started = std::chrono::steady_clock::now();
  const std::string line = on(3).run({"get", p.ref, p.sum, "120000"}, "LOST ");
  EXPECT_EQ(line.rfind("LOST ", 0), 0u) << line;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s)
      << "a get must fail well before its timeout";
}

}  // namespace
}  // namespace halo::gcs::testing
