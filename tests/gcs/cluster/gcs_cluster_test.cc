// The GCS and its node daemons across test hosts (tests/support/test_hosts.h): halo-gcs and a
// subscriber (gcs_watch) in host 0, one halo-node in each of hosts 1-3, all over TCP between
// the hosts. Each test does one thing to one node — SIGKILL, SIGSTOP/SIGCONT, its link taken
// down — and checks what the GCS published (through the subscriber) and what the node did
// (through its state file), with short health-check settings so that deaths come quickly.
// Labels "gcs;multihost".
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tests/gcs/cluster/cluster_dir.h"
#include "tests/gcs/cluster/gcs_server_process.h"
#include "tests/gcs/cluster/node_daemon.h"
#include "tests/gcs/cluster/node_watcher.h"
#include "tests/support/test_hosts.h"

namespace halo::gcs::testing {
namespace {

using namespace std::chrono_literals;
using test::PartitionMode;
using test::TestHosts;

constexpr int kGcsHost = 0;
constexpr int kNodes = 3;  // In hosts 1..3.
// Short checks, so that deaths come quickly. The initial delay (the grace a node gets after it
// registers) is shorter than the set-up of the other nodes, so every node is past it when a
// test begins and a death is timed from the kill alone.
constexpr HealthChecks kHealth{
    .initial_delay_ms = 100, .period_ms = 200, .timeout_ms = 200, .failure_threshold = 3};
// Allowed on top of period × threshold + timeout for a death to reach the subscriber: the
// GCS's timer and the subscriber's long poll, on a two-core machine shared with other tests.
constexpr auto kDeathMargin = 400ms;
// Limit of a step that takes a few health-check rounds (a death, a fence, a rejoin).
constexpr auto kStepLimit = 20s;

int64_t steady_us(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

class GcsCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    HALO_SKIP_UNLESS_TEST_HOSTS_USABLE();
    auto dir = ClusterDir::create("gcs-cluster");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    auto hosts = TestHosts::create(1 + kNodes);
    ASSERT_TRUE(hosts.ok()) << hosts.status();
    hosts_ = *std::move(hosts);

    GcsServerProcess::Options gcs_options;
    gcs_options.where = Placement{hosts_.get(), kGcsHost};
    gcs_options.data_dir = dir_->file("gcs");
    gcs_options.secret_file = dir_->secret_path();
    gcs_options.health = kHealth;
    auto gcs = GcsServerProcess::start(gcs_options);
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = *std::move(gcs);
    auto watcher =
        NodeWatcher::start(Placement{hosts_.get(), kGcsHost}, gcs_->address(), dir_->secret_path());
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    watcher_ = *std::move(watcher);

    for (int i = 1; i <= kNodes; ++i) {
      NodeDaemon::Options options;
      options.where = Placement{hosts_.get(), i};
      options.gcs_address = gcs_->address();
      options.secret_file = dir_->secret_path();
      options.state_file = dir_->file(str_cat("node", i, ".json"));
      options.name = str_cat("node", i);
      auto node = NodeDaemon::start(options);
      ASSERT_TRUE(node.ok()) << node.status();
      auto state = (*node)->state();
      ASSERT_TRUE(state.ok()) << state.status();
      joined_.push_back(*state);
      nodes_.push_back(*std::move(node));
    }
    // Every node is ALIVE as the subscriber hears it, under the incarnation it holds.
    for (const NodeStateFile& node : joined_) {
      auto alive = watcher_->wait_for(is(node.node_id, node.incarnation, "ALIVE"), kStepLimit,
                                      "ALIVE for " + node.node_id);
      ASSERT_TRUE(alive.ok()) << alive.status();
    }
  }

  // Processes before the hosts (which would kill them anyway), the files last.
  void TearDown() override {
    watcher_.reset();
    nodes_.clear();
    gcs_.reset();
    hosts_.reset();
    dir_.reset();
  }

  static std::function<bool(const NodeEvent&)> is(std::string node_id, uint64_t incarnation,
                                                  std::string state) {
    return [=](const NodeEvent& e) {
      return e.node_id == node_id && e.incarnation == incarnation && e.state == state;
    };
  }

  // Expects that the subscriber heard nothing but ALIVE for the nodes other than `index`.
  void expect_others_stayed_alive(int index) {
    for (int i = 0; i < kNodes; ++i) {
      if (i == index) continue;
      for (const NodeEvent& e : watcher_->events()) {
        if (e.node_id != joined_[i].node_id) continue;
        EXPECT_EQ(e.state, "ALIVE")
            << nodes_[i]->name() << " was not touched, yet: " << e.to_string() << "\n"
            << watcher_->transcript();
        EXPECT_EQ(e.incarnation, joined_[i].incarnation) << e.to_string();
      }
    }
  }

  std::unique_ptr<ClusterDir> dir_;
  std::unique_ptr<TestHosts> hosts_;
  std::unique_ptr<GcsServerProcess> gcs_;
  std::unique_ptr<NodeWatcher> watcher_;
  std::vector<std::unique_ptr<NodeDaemon>> nodes_;  // nodes_[i] runs in host i + 1.
  std::vector<NodeStateFile> joined_;               // Their state files once they joined.
};

TEST_F(GcsCluster, KilledNodeIsDeadWithinPeriodTimesThresholdPlusTimeoutAndSubscribersHearIt) {
  constexpr int kVictim = 0;
  const NodeStateFile& victim = joined_[kVictim];

  const auto killed_at = std::chrono::steady_clock::now();
  auto killed = nodes_[kVictim]->process().kill();
  ASSERT_TRUE(killed.ok()) << killed.status();
  auto dead = watcher_->wait_for(is(victim.node_id, victim.incarnation, "DEAD"), kStepLimit,
                                 "DEAD for the killed node");
  ASSERT_TRUE(dead.ok()) << dead.status();

  const auto detection = std::chrono::microseconds(dead->mono_us - steady_us(killed_at));
  std::cout << "death published to the subscriber "
            << std::chrono::duration<double, std::milli>(detection).count()
            << " ms after SIGKILL (bound " << kHealth.death_bound().count() << " ms + "
            << kDeathMargin.count() << " ms margin); reason: " << dead->reason << "\n";
  EXPECT_GT(detection.count(), 0) << "DEAD was published before the kill: " << dead->to_string();
  EXPECT_LE(detection, kHealth.death_bound() + kDeathMargin) << watcher_->transcript();
  EXPECT_FALSE(dead->resync) << "the death should arrive as a change, not in a resync";
  expect_others_stayed_alive(kVictim);
}

TEST_F(GcsCluster, StoppedNodeGoesSuspectedThenDeadAndRejoinsUnderNewIncarnationOnSigcont) {
  constexpr int kVictim = 1;
  const NodeStateFile& victim = joined_[kVictim];
  NodeDaemon& node = *nodes_[kVictim];
  const pid_t pid = node.process().pid();

  ASSERT_TRUE(node.process().stop().ok());
  auto suspected = watcher_->wait_for(is(victim.node_id, victim.incarnation, "SUSPECTED"),
                                      kStepLimit, "SUSPECTED for the stopped node");
  ASSERT_TRUE(suspected.ok()) << suspected.status();
  auto dead = watcher_->wait_for(is(victim.node_id, victim.incarnation, "DEAD"), kStepLimit,
                                 "DEAD for the stopped node");
  ASSERT_TRUE(dead.ok()) << dead.status();
  EXPECT_LT(suspected->seq, dead->seq) << "SUSPECTED must come before DEAD";

  ASSERT_TRUE(node.process().resume().ok());
  auto rejoined = node.wait_for_state(
      [&](const NodeStateFile& s) {
        return s.incarnation > victim.incarnation && s.state == "alive" && s.gcs_connected;
      },
      kStepLimit, "alive under a new incarnation");
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(rejoined->node_id, victim.node_id) << "a node rejoins under its own id";
  EXPECT_EQ(node.process().pid(), pid);
  EXPECT_TRUE(node.process().running()) << "the node daemon must survive being declared dead";
  auto alive = watcher_->wait_for(is(victim.node_id, rejoined->incarnation, "ALIVE"), kStepLimit,
                                  "ALIVE for the new incarnation");
  ASSERT_TRUE(alive.ok()) << alive.status();

  // Once DEAD, the old incarnation never comes back.
  for (const NodeEvent& e : watcher_->events()) {
    if (e.node_id == victim.node_id && e.incarnation == victim.incarnation && e.seq > dead->seq) {
      EXPECT_NE(e.state, "ALIVE") << "the dead incarnation resumed: " << e.to_string();
      EXPECT_NE(e.state, "SUSPECTED") << "the dead incarnation resumed: " << e.to_string();
    }
  }
  expect_others_stayed_alive(kVictim);
}

TEST_F(GcsCluster, NodeWhoseLinkIsDownFencesItselfAndRejoinsUnderNewIncarnationAfterHeal) {
  constexpr int kVictim = 2;
  const int host = kVictim + 1;
  const NodeStateFile& victim = joined_[kVictim];
  NodeDaemon& node = *nodes_[kVictim];

  const auto cut_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(hosts_->partition(host, PartitionMode::kLinkDown).ok());
  auto fenced = node.wait_for_state(
      [&](const NodeStateFile& s) {
        return s.incarnation == victim.incarnation && s.state == "fenced";
      },
      kStepLimit, "fenced");
  const auto fenced_seen_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(fenced.ok()) << fenced.status();
  auto dead = watcher_->wait_for(is(victim.node_id, victim.incarnation, "DEAD"), kStepLimit,
                                 "DEAD for the node cut off");
  ASSERT_TRUE(dead.ok()) << dead.status();
  std::cout << "link down: node fenced (seen in its state file) after "
            << std::chrono::duration<double, std::milli>(fenced_seen_at - cut_at).count()
            << " ms, GCS published DEAD after " << (dead->mono_us - steady_us(cut_at)) / 1000.0
            << " ms\n";
  EXPECT_TRUE(node.process().running()) << "a node cut off fences itself; it does not exit";
  // No split brain: the node stopped taking work before the GCS declared it dead (and could
  // give its work to others). Both times are the same machine's wall clock.
  EXPECT_LE(fenced->updated_at_ms, dead->changed_at_ms)
      << "the GCS declared the node DEAD before it had fenced itself; state file: " << fenced->text
      << "; DEAD: " << dead->to_string();

  ASSERT_TRUE(hosts_->heal(host).ok());
  auto rejoined = node.wait_for_state(
      [&](const NodeStateFile& s) {
        return s.incarnation > victim.incarnation && s.state == "alive" && s.gcs_connected;
      },
      kStepLimit, "alive under a new incarnation after the link came back");
  ASSERT_TRUE(rejoined.ok()) << rejoined.status();
  EXPECT_EQ(rejoined->node_id, victim.node_id) << "a node rejoins under its own id";
  auto alive = watcher_->wait_for(is(victim.node_id, rejoined->incarnation, "ALIVE"), kStepLimit,
                                  "ALIVE for the new incarnation");
  ASSERT_TRUE(alive.ok()) << alive.status();
  expect_others_stayed_alive(kVictim);
}

}  // namespace
}  // namespace halo::gcs::testing
