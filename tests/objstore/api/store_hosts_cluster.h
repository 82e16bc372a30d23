// A cluster across test hosts for object store tests (tests/support/test_hosts.h): halo-gcs in
// host 0, one halo-node in each host the test names, clients (objstore_tool) next to their
// node, everything over TCP between the hosts.
//
//   class MyTest : public StoreHostsCluster {};
//   TEST_F(MyTest, Something) {
//     start(/*hosts=*/4, /*node_hosts=*/{1, 2, 3});
//     StoreClient::Put p = on(1).put(1 << 20, 7);
//     EXPECT_EQ(on(2).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 1048576");
//   }
//
// Skips the test where test hosts cannot be made (no CAP_NET_ADMIN).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "tests/gcs/cluster/cluster_dir.h"
#include "tests/gcs/cluster/gcs_server_process.h"
#include "tests/gcs/cluster/node_daemon.h"
#include "tests/objstore/api/store_client.h"
#include "tests/support/test_hosts.h"

namespace halo::gcs::testing {

class StoreHostsCluster : public ::testing::Test {
 public:
  static constexpr uint64_t kStoreBytes = 160ull << 20;

 protected:
  // `hosts` test hosts; the GCS in host 0 and a node in each of `node_hosts`.
  void start(int hosts, const std::vector<int>& node_hosts) {
    HALO_SKIP_UNLESS_TEST_HOSTS_USABLE();
    auto dir = ClusterDir::create("objstore-hosts");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    auto made = test::TestHosts::create(hosts);
    ASSERT_TRUE(made.ok()) << made.status();
    hosts_ = *std::move(made);

    GcsServerProcess::Options gcs_options;
    gcs_options.where = Placement{hosts_.get(), 0};
    gcs_options.data_dir = dir_->file("gcs");
    gcs_options.secret_file = dir_->secret_path();
    auto gcs = GcsServerProcess::start(gcs_options);
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = *std::move(gcs);
    for (int host : node_hosts) {
      NodeDaemon::Options options;
      options.where = Placement{hosts_.get(), host};
      options.gcs_address = gcs_->address();
      options.secret_file = dir_->secret_path();
      options.state_file = dir_->file(str_cat("node", host, ".json"));
      options.name = str_cat("node", host);
      options.extra_flags = {"--object-store-memory=" + std::to_string(kStoreBytes)};
      auto node = NodeDaemon::start(options);
      ASSERT_TRUE(node.ok()) << node.status();
      auto state = (*node)->state();
      ASSERT_TRUE(state.ok()) << state.status();
      addresses_[host] = state->address;
      nodes_[host] = *std::move(node);
    }
  }

  void TearDown() override {
    nodes_.clear();
    gcs_.reset();
    hosts_.reset();
    dir_.reset();
  }

  // The environment of a program in host `host` that talks to the cluster: the GCS, the
  // secret, TCP on the host's interface, and the node of that host when it has one.
  std::vector<std::string> env_in(int host) const {
    std::vector<std::string> env = {
        "HALO_ADDRESS=" + gcs_->address(), "HALO_SECRET_FILE=" + dir_->secret_path(),
        "HALO_UCX_TLS=tcp,self", "HALO_NET_INTERFACE=" + std::string(test::TestHosts::kInterface)};
    if (auto it = addresses_.find(host); it != addresses_.end()) {
      env.push_back("HALO_NODE_ADDRESS=" + it->second);
    }
    return env;
  }

  // A client of the node in host `host`, in that host.
  test::StoreClient on(int host) const {
    Placement where{hosts_.get(), host};
    return test::StoreClient(
        [where](std::vector<std::string> argv, test::ChildOptions options) {
          return where.spawn(std::move(argv), std::move(options));
        },
        env_in(host), str_cat("client@host", host));
  }

  std::unique_ptr<ClusterDir> dir_;
  std::unique_ptr<test::TestHosts> hosts_;
  std::unique_ptr<GcsServerProcess> gcs_;
  std::map<int, std::unique_ptr<NodeDaemon>> nodes_;  // By host.
  std::map<int, std::string> addresses_;              // Of the nodes, by host.
};

}  // namespace halo::gcs::testing
