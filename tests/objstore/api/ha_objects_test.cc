// HA objects end to end (docs/objstore.md, "HA objects"): real halo-gcs and halo-node daemons
// on loopback, clients (objstore_tool) that put with {.ha = true} and read on other nodes while
// nodes and the creator are killed with SIGKILL.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/objstore/api/loopback_store_cluster.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

class HaObjects : public LoopbackStoreCluster {
 protected:
  // A client on `node` that holds a reference to each of `refs` (without reading them) until
  // it is destroyed. An HA object, like any other, lives while a reference to it does; a
  // creator whose node died holds none any more, so tests that read after killing the
  // creator's node keep one elsewhere, as a job's consumers would.
  std::unique_ptr<ChildProcess> keep(int node, const std::vector<std::string>& refs) {
    std::vector<std::string> args = {"hold"};
    args.insert(args.end(), refs.begin(), refs.end());
    auto keeper = on(node).start(std::move(args), /*pipe_stdin=*/true);
    EXPECT_TRUE(keeper.ok()) << keeper.status();
    if (!keeper.ok()) return nullptr;
    auto holding = keeper->wait_for_line("HOLDING ", std::chrono::seconds(60));
    EXPECT_TRUE(holding.ok()) << holding.status() << "\n" << keeper->output_text();
    return std::make_unique<ChildProcess>(std::move(*keeper));
  }
};

// Sizes that take each path: an arena object, one sent inline, one moved by RMA in chunks.
const std::vector<uint64_t> kSizes = {100, 20000, 5ull << 20};

TEST_F(HaObjects, SurviveTheDeathOfTheirCreatorsNode) {
  start(3);
  std::vector<StoreClient::Put> puts;
  for (uint64_t size : kSizes) puts.push_back(on(0).put(size, size + 3, /*ha_copies=*/0));
  auto keeper = keep(1, {puts[0].ref, puts[1].ref, puts[2].ref});
  (void)nodes_[0]->kill();
  // With two copies one of nodes 1 and 2 holds the other; the other node fetches from it.
  for (size_t i = 0; i < kSizes.size(); ++i) {
    for (int reader : {1, 2}) {
      EXPECT_EQ(on(reader).run({"get", puts[i].ref, puts[i].sum, "30000"}, "OK "),
                "OK " + std::to_string(kSizes[i]))
          << kSizes[i] << " bytes read on node " << reader;
    }
  }
}

TEST_F(HaObjects, OutliveTheirCreatorProcessAndItsNodeWhileReferenced) {
  start(3);
  StoreClient::Put p = on(0).put(3 << 20, 11, /*ha_copies=*/2);
  // A reader on node 2 keeps a reference; then the creator and its node die.
  auto keeper = on(2).start({"get", p.ref, p.sum, "30000", "hold"}, /*pipe_stdin=*/true);
  ASSERT_TRUE(keeper.ok()) << keeper.status();
  ASSERT_TRUE(keeper->wait_for_line("OK ", std::chrono::seconds(60)).ok()) << keeper->output_text();
  (void)p.holder->kill();
  (void)nodes_[0]->kill();
  for (int reader : {1, 2}) {
    EXPECT_EQ(on(reader).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 3145728")
        << "read on node " << reader;
  }
}

TEST_F(HaObjects, DroppingTheLastReferenceFreesEveryCopyAndTheDirectoryEntry) {
  start(3);
  std::vector<uint64_t> empty;
  for (int node = 0; node < 3; ++node) empty.push_back(on(node).usage().first);
  StoreClient::Put p = on(0).put(4 << 20, 6, /*ha_copies=*/3);
  for (int node = 0; node < 3; ++node) {
    EXPECT_GE(on(node).usage().first, empty[node] + (4 << 20)) << "no copy on node " << node;
  }
  p.release();  // The creator exits: the last reference goes.
  for (int node = 0; node < 3; ++node) {
    EXPECT_TRUE(
        wait_for([&] { return on(node).usage().first == empty[node]; }, std::chrono::seconds(20)))
        << "node " << node << " still uses " << on(node).usage().first << " bytes";
  }
  // Gone for good: its owner has nothing and the directory names no other holder.
  const std::string line = on(1).run({"get", p.ref, p.sum, "10000"}, "LOST ");
  EXPECT_EQ(line.rfind("LOST ", 0), 0u) << line;
}

// Node 0 creates the object and dies; node 1 or 2 (the surviving holder) restores the second
// copy and counts the references from then on: the reader's on node 2 keeps the object, and
// when it goes, every copy and the directory entry go too.
TEST_F(HaObjects, AnObjectWhoseCreatorsNodeDiedIsFreedWithTheLastReferenceElsewhere) {
  start(4);
  constexpr uint64_t kSize = 4 << 20;
  std::vector<uint64_t> empty;
  for (int node = 0; node < 4; ++node) empty.push_back(on(node).usage().first);
  StoreClient::Put p = on(0).put(kSize, 31, /*ha_copies=*/2);
  auto keeper = on(2).start({"get", p.ref, p.sum, "30000", "hold"}, /*pipe_stdin=*/true);
  ASSERT_TRUE(keeper.ok()) << keeper.status();
  ASSERT_TRUE(keeper->wait_for_line("OK ", std::chrono::seconds(60)).ok()) << keeper->output_text();
  (void)nodes_[0]->kill();
  (void)p.holder->kill();
  auto copies = [&] {
    int n = 0;
    for (int node = 1; node < 4; ++node) n += on(node).usage().first >= empty[node] + kSize;
    return n;
  };
  // Back to two copies among nodes 1-3 (node 2 may hold a third, its reader's secondary one).
  ASSERT_TRUE(wait_for([&] { return copies() >= 2; }, std::chrono::seconds(30)));
  EXPECT_EQ(on(3).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK " + std::to_string(kSize));
  keeper->close_stdin();  // The last reference anywhere.
  for (int node = 1; node < 4; ++node) {
    EXPECT_TRUE(
        wait_for([&] { return on(node).usage().first == empty[node]; }, std::chrono::seconds(20)))
        << "node " << node << " still uses " << on(node).usage().first - empty[node] << " bytes";
  }
  // Gone for good: a get is lost, or (on the node that owned it last) refused at once.
  auto reader = on(1).start({"get", p.ref, p.sum, "10000"});
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE(reader->wait(std::chrono::seconds(30)).ok());
  const std::string out = reader->output_text();
  EXPECT_TRUE(out.find("LOST ") != std::string::npos || out.find("was freed") != std::string::npos)
      << out;
}

TEST_F(HaObjects, WithThreeCopiesSurviveTwoNodeDeaths) {
  start(3);
  StoreClient::Put p = on(0).put(2 << 20, 5, /*ha_copies=*/3);
  auto keeper = keep(2, {p.ref});
  (void)nodes_[0]->kill();
  (void)nodes_[1]->kill();
  EXPECT_EQ(on(2).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 2097152");
}

TEST_F(HaObjects, ALostCopyIsRestoredSoASecondNodeDeathLosesNothing) {
  start(4);
  constexpr uint64_t kSize = 4 << 20;
  std::vector<uint64_t> empty;
  for (int node = 0; node < 4; ++node) empty.push_back(on(node).usage().first);
  StoreClient::Put p = on(0).put(kSize, 12, /*ha_copies=*/2);
  auto holds_copy = [&](int node) { return on(node).usage().first >= empty[node] + kSize; };
  int replica = -1;
  for (int node = 1; node < 4 && replica < 0; ++node) {
    if (holds_copy(node)) replica = node;
  }
  ASSERT_GE(replica, 1) << "no node took the second copy";
  auto keeper = keep(replica == 1 ? 2 : 1, {p.ref});
  (void)nodes_[replica]->kill();
  // Once the GCS declares it DEAD, node 0 (the first surviving holder) copies the object to
  // one of the other two.
  int restored = -1;
  ASSERT_TRUE(wait_for(
      [&] {
        for (int node = 1; node < 4; ++node) {
          if (node != replica && holds_copy(node)) restored = node;
        }
        return restored > 0;
      },
      std::chrono::seconds(30)))
      << "the lost copy was not restored";
  (void)nodes_[0]->kill();  // The creator's node: now only the restored copy is left.
  for (int node = 1; node < 4; ++node) {
    if (node == replica) continue;
    EXPECT_EQ(on(node).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK " + std::to_string(kSize))
        << "read on node " << node;
  }
}

TEST_F(HaObjects, PutAskingMoreCopiesThanNodesFailsRatherThanKeepFewer) {
  start(2);
  const std::string line = on(0).run({"put", "4096", "1", "ha", "3"}, "PUTFAIL ");
  EXPECT_NE(line.find("got 2 of 3 primary copies"), std::string::npos) << line;
}

TEST_F(HaObjects, ANodeThatDiedIsPassedOverAndNeverCountedAsACopy) {
  start(4);
  (void)nodes_[3]->kill();  // Still ALIVE in the GCS for a while: asked, and refused.
  const uint64_t empty1 = on(1).usage().first;
  const std::string refused = on(0).run({"put", "4096", "1", "ha", "4"}, "PUTFAIL ");
  EXPECT_NE(refused.find("got 3 of 4 primary copies"), std::string::npos) << refused;
  EXPECT_TRUE(wait_for([&] { return on(1).usage().first == empty1; }, std::chrono::seconds(20)))
      << "the failed put's copy stays on node 1";
  StoreClient::Put p = on(0).put(1 << 20, 8, /*ha_copies=*/3);
  ASSERT_FALSE(p.ref.empty());
  auto keeper = keep(1, {p.ref});
  (void)nodes_[0]->kill();
  // Nodes 1 and 2 hold the other two copies: each reads its own.
  for (int reader : {1, 2}) {
    EXPECT_EQ(on(reader).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 1048576")
        << "read on node " << reader;
  }
}

// Node 1 is the only other failure domain, so a put on node 0 asks it first; it hangs
// (SIGSTOP) before the put. Once the GCS declares it DEAD the put gives up on it and takes its
// copy on node 2 or 3 instead: it neither fails nor waits for its own timeout. When node 1
// comes back under a new incarnation, it frees the copy it may have taken meanwhile.
// A connection attempt to the hung node would give up only after this; the put must not wait
// for it.
const std::string kSlowConnect = "--peer-connect-timeout-ms=60000";

TEST_F(HaObjects, AReplicaThatHangsDuringAPutIsReplacedOnceDeclaredDead) {
  start(4, {kSlowConnect}, {}, {"a", "b", "a", "a"});
  constexpr uint64_t kSize = 4 << 20;
  std::vector<uint64_t> empty;
  for (int node = 0; node < 4; ++node) empty.push_back(on(node).usage().first);
  ASSERT_TRUE(nodes_[1]->stop().ok());
  const auto started = std::chrono::steady_clock::now();
  StoreClient::Put p = on(0).put(kSize, 21, /*ha_copies=*/2);
  ASSERT_FALSE(p.ref.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  auto holds_copy = [&](int node) { return on(node).usage().first >= empty[node] + kSize; };
  EXPECT_TRUE(holds_copy(2) != holds_copy(3)) << "the second copy is on exactly one of 2 and 3";

  ASSERT_TRUE(nodes_[1]->resume().ok());
  ASSERT_TRUE(wait_for_node_state(dir_.path() + "/node1.json", "alive", std::chrono::seconds(30),
                                  [](const node::NodeStateRecord& r) { return r.incarnation >= 2; })
                  .ok())
      << "node 1 did not register again";
  EXPECT_TRUE(wait_for([&] { return on(1).usage().first == empty[1]; }, std::chrono::seconds(20)))
      << "node 1 keeps " << on(1).usage().first - empty[1] << " bytes after it came back";

  auto keeper = keep(3, {p.ref});
  (void)nodes_[0]->kill();
  for (int reader : {1, 2, 3}) {
    EXPECT_EQ(on(reader).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK " + std::to_string(kSize))
        << "read on node " << reader;
  }
}

// With no other node to turn to, the same put fails (once node 1 is declared DEAD) and never
// reports a copy it does not have.
TEST_F(HaObjects, APutWhoseOnlyReplicaHangsFailsOnceItIsDeclaredDead) {
  start(2, {kSlowConnect});
  ASSERT_TRUE(nodes_[1]->stop().ok());
  const auto started = std::chrono::steady_clock::now();
  const std::string line = on(0).run({"put", std::to_string(4 << 20), "3", "ha", "2"}, "PUTFAIL ");
  EXPECT_NE(line.find("got 1 of 2 primary copies"), std::string::npos) << line;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  (void)nodes_[1]->resume();
}

TEST_F(HaObjects, PutWithCopiesOutOfRangeIsRefusedClearly) {
  start(1);
  const std::string line = on(0).run({"put", "4096", "1", "ha", "17"}, "PUTFAIL ");
  EXPECT_NE(line.find("from 1 to 16"), std::string::npos) << line;
}

TEST_F(HaObjects, OneCopyIsTheCreatorsOwnAndNeedsNoOtherNode) {
  start(1);
  StoreClient::Put p = on(0).put(1 << 20, 2, /*ha_copies=*/1);
  EXPECT_EQ(on(0).run({"get", p.ref, p.sum, "30000"}, "OK "), "OK 1048576");
}

}  // namespace
}  // namespace halo::test
