// The object store end to end: a real halo-gcs and halo-node daemons (build/bin), and client
// processes (objstore_tool, linked with libhalo) that put and get on chosen nodes, are killed,
// and report what they saw.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/gcs/node/local_cluster.h"
#include "tests/objstore/api/store_client.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kStoreBytes = 96ull << 20;

class ObjectStoreCluster : public ::testing::Test {
 protected:
  // A GCS and `n` nodes on 127.0.0.1, each with a store of kStoreBytes (unless `store_flag`).
  void start(int n, std::vector<std::string> node_flags = {}) {
    auto gcs = GcsChild::start(dir_.path(), fast_health_checks());
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = std::move(*gcs);
    for (int i = 0; i < n; ++i) {
      const std::string state = dir_.path() + "/node" + std::to_string(i) + ".json";
      std::vector<std::string> flags = node_flags;
      flags.push_back("--object-store-memory=" + std::to_string(kStoreBytes));
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

TEST_F(ObjectStoreCluster, ValuesOfEverySizeAndTypeRoundTripOnOneNode) {
  start(1);
  std::string line = on(0).run({"roundtrip", "0", "1", "64", "4096", "16383", "16384", "65536",
                                "1048576", "16777216", "67108864"},
                               "ROUNDTRIP");
  EXPECT_EQ(line, "ROUNDTRIP OK");
}

TEST_F(ObjectStoreCluster, ObjectsPutOnOneNodeAreReadIntactOnTheOthers) {
  start(3);
  for (uint64_t size : {0ull, 100ull, 20000ull, 5ull << 20, 40ull << 20}) {
    StoreClient::Put p = on(0).put(size, size + 1);
    for (int reader : {1, 2}) {
      EXPECT_EQ(on(reader).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK " + std::to_string(size))
          << size << " bytes on node " << reader;
    }
  }
}

TEST_F(ObjectStoreCluster, ConcurrentReadersOfOneRemoteObjectAllGetItIntact) {
  start(2);
  StoreClient::Put p = on(0).put(24 << 20, 5);
  std::vector<ChildProcess> readers;
  for (int i = 0; i < 4; ++i) {
    auto c = on(1).start({"get", p.ref, p.sum, "30000"});
    ASSERT_TRUE(c.ok()) << c.status();
    readers.push_back(std::move(*c));
  }
  for (auto& r : readers) {
    auto line = r.wait_for_line("OK ", 60s);
    EXPECT_TRUE(line.ok()) << line.status() << "\n" << r.output_text();
  }
}

TEST_F(ObjectStoreCluster, CreatorKilledBeforeSealingGivesItsSpaceBack) {
  start(1);
  auto before = on(0).usage();
  auto creator = on(0).start({"hang-create", std::to_string(8 << 20)});
  ASSERT_TRUE(creator.ok()) << creator.status();
  ASSERT_TRUE(creator->wait_for_line("CREATED", 30s).ok()) << creator->output_text();
  EXPECT_GT(on(0).usage().first, before.first + (8 << 20) - 1) << "the space is reserved";
  (void)creator->kill();
  EXPECT_TRUE(wait_for([&] { return on(0).usage().first == before.first; }, 20s))
      << "used bytes stay at " << on(0).usage().first;
}

TEST_F(ObjectStoreCluster, GetOfAnObjectWhoseOnlyNodeDiedRaisesObjectLostPromptly) {
  start(2);
  StoreClient::Put p = on(1).put(1 << 20, 7);
  (void)nodes_[1]->kill();
  const auto started = std::chrono::steady_clock::now();
  std::string line = on(0).run({"get", p.ref, p.sum, "60000"}, "LOST ");
  EXPECT_EQ(line.rfind("LOST ", 0), 0u) << line;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s) << "it must not wait for the timeout";
}

TEST_F(ObjectStoreCluster, DroppingEveryReferenceOnEveryNodeEmptiesEveryStore) {
  start(2);
  auto empty0 = on(0).usage(), empty1 = on(1).usage();
  StoreClient::Put p = on(0).put(4 << 20, 3);
  // A reader on node 1 that reads, then exits: the copy there goes with its reference.
  auto reader = on(1).start({"get", p.ref, p.sum, "30000"});
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(reader->wait_for_line("OK ", 30s).ok()) << reader->output_text();
  p.release();
  EXPECT_TRUE(wait_for([&] { return on(0).usage() == empty0 && on(1).usage() == empty1; }, 20s))
      << "node 0 used " << on(0).usage().first << " (empty " << empty0.first << "), node 1 used "
      << on(1).usage().first << " (empty " << empty1.first << ")";
}

TEST_F(ObjectStoreCluster, ReferenceHeldOnAnotherNodeKeepsTheObjectAliveAfterItsCreatorDropsIt) {
  start(3);
  StoreClient::Put p = on(0).put(2 << 20, 11);
  auto borrower = on(1).start({"get", p.ref, p.sum, "30000", "hold"}, /*pipe_stdin=*/true);
  ASSERT_TRUE(borrower.ok()) << borrower.status();
  ASSERT_TRUE(borrower->wait_for_line("OK ", 30s).ok()) << borrower->output_text();
  p.release();
  ASSERT_TRUE(p.holder->wait(30s).ok());
  // Node 2 reads it from its owner, node 0, which keeps it for node 1's reference.
  EXPECT_EQ(on(2).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK " + std::to_string(2 << 20));
  borrower->close_stdin();
  EXPECT_TRUE(wait_for([&] { return on(0).usage().second == 0; }, 20s))
      << "node 0 still references " << on(0).usage().second << " objects";
}

TEST_F(ObjectStoreCluster, PutLargerThanTheStoreFailsAtOnceWithAClearError) {
  start(1);
  std::string line = on(0).run({"too-big", std::to_string(kStoreBytes + 1)}, "FULL ", 30s);
  EXPECT_NE(line.find("object-store-memory"), std::string::npos) << line;
}

TEST_F(ObjectStoreCluster, EmbeddedClusterStartsRoundTripsAndLeavesNothingBehind) {
  ChildOptions options;
  options.env = {"HALO_ADDRESS=", "HALO_NUM_NODES=2", "HALO_TEMP_DIR=" + dir_.path(),
                 "HALO_OBJECT_STORE_MEMORY=" + std::to_string(kStoreBytes)};
  options.echo_label = "embedded";
  auto c = ChildProcess::spawn({HALO_OBJSTORE_TOOL, "roundtrip", "0", "100", "1048576"}, options);
  ASSERT_TRUE(c.ok()) << c.status();
  auto line = c->wait_for_line("ROUNDTRIP", 90s);
  ASSERT_TRUE(line.ok()) << line.status() << "\n" << c->output_text();
  EXPECT_EQ(*line, "ROUNDTRIP OK");
  auto exit = c->wait(60s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->to_string();
}

}  // namespace
}  // namespace halo::test
