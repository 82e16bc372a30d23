// The object store end to end: a real halo-gcs and halo-node daemons (build/bin), and client
// processes (objstore_tool, linked with libhalo) that put and get on chosen nodes, are killed,
// and report what they saw.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/objstore/api/loopback_store_cluster.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kStoreBytes = LoopbackStoreCluster::kStoreBytes;

using ObjectStoreCluster = LoopbackStoreCluster;

TEST_F(ObjectStoreCluster, ValuesOfEverySizeAndTypeRoundTripOnOneNode) {
  start(1);
  std::string line = on(0).run({"roundtrip", "0", "1", "64", "4096", "16383", "16384", "65536",
                                "1048576", "16777216", "67108864"},
                               "ROUNDTRIP");
  EXPECT_EQ(line, "ROUNDTRIP OK");
}

TEST_F(ObjectStoreCluster, WithArenasOffSmallPutsTravelInsideTheirRequest) {
  start(1, {"--small-object-arena-bytes=0"});
  std::string line = on(0).run({"roundtrip", "0", "1", "64", "16384", "16385"}, "ROUNDTRIP");
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

TEST_F(ObjectStoreCluster, ProcessKilledWithSigkillReleasesItsReferences) {
  start(2);
  auto empty0 = on(0).usage(), empty1 = on(1).usage();
  StoreClient::Put p = on(0).put(3 << 20, 8);
  auto reader = on(1).start({"get", p.ref, p.sum, "30000", "hold"}, /*pipe_stdin=*/true);
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE(reader->wait_for_line("OK ", 30s).ok()) << reader->output_text();
  (void)p.holder->kill();
  (void)reader->kill();
  EXPECT_TRUE(wait_for([&] { return on(0).usage() == empty0 && on(1).usage() == empty1; }, 20s))
      << "node 0 used " << on(0).usage().first << ", node 1 used " << on(1).usage().first;
}

TEST_F(ObjectStoreCluster, WaitSaysWhichObjectsAreReadyAtTheirOwnersOrLost) {
  start(3);
  StoreClient::Put here = on(0).put(1000, 1);
  StoreClient::Put elsewhere = on(1).put(2 << 20, 2);
  StoreClient::Put doomed = on(2).put(1000, 3);
  EXPECT_EQ(on(0).run({"wait", "2", "10000", here.ref, elsewhere.ref}, "READY "), "READY 1 1");
  (void)nodes_[2]->kill();
  // A lost object counts as ready: a get of it raises at once instead of waiting.
  EXPECT_EQ(on(0).run({"wait", "3", "20000", here.ref, elsewhere.ref, doomed.ref}, "READY "),
            "READY 1 1 1");
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

TEST_F(ObjectStoreCluster, FullStoreSpillsOlderObjectsAndRestoresThemIntactOnGet) {
  start(1, {"--spill-dir=" + dir_.path() + "/spill"});
  // Five objects of a quarter of the store, all referenced: the last ones fit only after
  // older ones went to the spill folder.
  std::vector<StoreClient::Put> puts;
  for (uint64_t i = 0; i < 5; ++i) puts.push_back(on(0).put(kStoreBytes / 4, 100 + i));
  const std::string stats = on(0).run({"stats"}, "STATS ");
  EXPECT_EQ(stats.find("spilled=0"), std::string::npos) << "nothing was spilled: " << stats;
  for (const auto& p : puts) {
    EXPECT_EQ(on(0).run({"get", p.ref, p.sum, "30000"}, "OK "),
              "OK " + std::to_string(kStoreBytes / 4));
  }
}

TEST_F(ObjectStoreCluster, CopiesNobodyReadsAreEvictedForNewOnesAndFetchedAgainWhenNeeded) {
  // Node 1's store holds two of the three objects put on node 0. A client on node 1 reads them
  // one after the other, keeping its references but not its views: the third copy fits only
  // once the first is evicted, and the first is fetched again for the second read.
  constexpr uint64_t kObject = kStoreBytes * 3 / 10;
  start(2, {}, {kStoreBytes, kObject * 5 / 2});
  std::vector<StoreClient::Put> puts;
  std::vector<std::string> args = {"read-all"};
  for (uint64_t i = 0; i < 3; ++i) {
    puts.push_back(on(0).put(kObject, 50 + i));
    args.push_back(puts.back().ref);
    args.push_back(puts.back().sum);
  }
  const std::string line = on(1).run(args, "READ-ALL ");
  EXPECT_EQ(line.rfind("READ-ALL OK", 0), 0u) << line;
  EXPECT_EQ(line.find("evictions=0"), std::string::npos) << "nothing was evicted: " << line;
}

TEST_F(ObjectStoreCluster, PutIntoAFullStoreWaitsForRoomAndSucceedsWhenSomeIsFreed) {
  start(1);
  StoreClient::Put first = on(0).put(kStoreBytes * 3 / 5, 1);
  auto waiting = on(0).start({"put", std::to_string(kStoreBytes * 3 / 5), "2"},
                             /*pipe_stdin=*/true);
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  EXPECT_TRUE(wait_for([&] { return on(0).stat("waiting") == 1; }, 30s))
      << "the node never held the second put back\n"
      << waiting->output_text();
  EXPECT_EQ(waiting->output_text().find("REF "), std::string::npos) << "it cannot fit yet";
  first.release();
  auto stored = waiting->wait_for_line("REF ", 30s);
  EXPECT_TRUE(stored.ok()) << stored.status() << "\n" << waiting->output_text();
}

TEST_F(ObjectStoreCluster, SmallPutsFillTheStoreToAClearErrorAndTheirRoomComesBack) {
  start(1);
  auto empty = on(0).usage();
  std::string line = on(0).run({"fill-small", "64"}, "FILLED ");
  // 64 bytes and the value's header take 128 bytes of store: nearly all of it is usable.
  std::istringstream in(line.substr(7));
  size_t filled = 0;
  in >> filled;
  EXPECT_GT(filled, kStoreBytes / 128 * 9 / 10) << line;
  EXPECT_NE(line.find("--object-store-memory"), std::string::npos) << line;
  EXPECT_TRUE(wait_for([&] { return on(0).usage() == empty; }, 20s))
      << "used " << on(0).usage().first << ", empty " << empty.first;

  // A process killed right after small puts leaves neither objects nor its arena behind.
  StoreClient::Put p = on(0).put(100, 3);
  EXPECT_GT(on(0).usage().first, empty.first);
  (void)p.holder->kill();
  EXPECT_TRUE(wait_for([&] { return on(0).usage() == empty; }, 20s))
      << "used " << on(0).usage().first << ", empty " << empty.first;
}

TEST_F(ObjectStoreCluster, EqualPutsFindTheirRoomCreatedAheadAndItComesBackWhenTheyStop) {
  start(1);
  auto empty = on(0).usage();
  const uint64_t ahead_before = on(0).stat("ahead");
  // 40 puts of 1 MiB, each read back intact, then one of 3 MiB: the rooms created ahead for
  // 1 MiB puts are given back at once, the one for 3 MiB after the client's puts pause; the
  // client is still connected.
  auto streamer = on(0).start({"stream", "1048576", "40", "3145728"}, /*pipe_stdin=*/true);
  ASSERT_TRUE(streamer.ok()) << streamer.status();
  auto streamed = streamer->wait_for_line("STREAMED ", 60s);
  ASSERT_TRUE(streamed.ok()) << streamed.status() << "\n" << streamer->output_text();
  EXPECT_GT(on(0).stat("ahead"), ahead_before + 30) << "the puts did not use room created ahead";
  EXPECT_TRUE(wait_for([&] { return on(0).usage() == empty; }, 20s))
      << "used " << on(0).usage().first << ", empty " << empty.first;

  // Killed while it streams, with rooms created ahead: they come back too.
  auto killed = on(0).start({"stream", "1048576", "1000000000", "1"}, /*pipe_stdin=*/true);
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_TRUE(killed->wait_for_line("STREAMING", 60s).ok()) << killed->output_text();
  EXPECT_GT(on(0).usage().first, empty.first);
  (void)killed->kill();
  EXPECT_TRUE(wait_for([&] { return on(0).usage() == empty; }, 20s))
      << "used " << on(0).usage().first << ", empty " << empty.first;
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
  auto c =
      ChildProcess::spawn({StoreClient::program(), "roundtrip", "0", "100", "1048576"}, options);
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
