// halo-node against a real halo-gcs, both child processes on 127.0.0.1: registration with
// hwloc resources and flags, death and rejoin under a new incarnation after SIGSTOP, fencing
// while the GCS is down and reconnection to the restarted GCS without a node restart, a
// refused secret file, giving up on an unreachable GCS, and leaving on SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <vector>

#include "gcs/client/cluster_secret.h"
#include "launcher/node/node_daemon.h"
#include "launcher/node/node_resources.h"
#include "tests/gcs/node/local_cluster.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;
using gcs::proto::NodeInfo;

// Generous bounds for steps that take milliseconds on an idle machine.
constexpr auto kStep = 30s;

class NodeDaemonTest : public ::testing::Test {
 protected:
  std::string state_file(const std::string& name = "node") const {
    return dir_.path() + "/" + name + ".json";
  }
  TempDir dir_;
};

TEST_F(NodeDaemonTest, RegistersWithHwlocResourcesAndTheGivenLabelsAndResources) {
  auto gcs = GcsChild::start(dir_.path(), fast_health_checks());
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  auto node = spawn_node((*gcs)->address(), (*gcs)->secret_file(), state_file(),
                         {"--resources=GPU=2,license=1", "--labels=failure_domain=rack1"});
  ASSERT_TRUE(node.ok()) << node.status();
  auto state = wait_for_node_state(state_file(), "alive", kStep);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->incarnation, 1u);
  EXPECT_TRUE(state->gcs_connected);
  EXPECT_EQ(state->pid, node->pid());

  auto row = (*gcs)->node(state->node_id);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->state(), gcs::proto::ALIVE);
  EXPECT_EQ(row->incarnation(), 1u);
  EXPECT_EQ(row->address(), state->address);
  EXPECT_EQ(row->pid(), static_cast<uint32_t>(node->pid()));
  auto detected = node::node_resources({});
  ASSERT_TRUE(detected.ok()) << detected.status();
  EXPECT_EQ(row->resources().at("CPU"), detected->resources.at("CPU"));
  EXPECT_EQ(row->resources().at("memory"), detected->resources.at("memory"));
  EXPECT_EQ(row->resources().at("GPU"), 2);
  EXPECT_EQ(row->resources().at("license"), 1);
  EXPECT_EQ(row->labels().at("failure_domain"), "rack1");
}

TEST_F(NodeDaemonTest, StoppedNodeIsDeclaredDeadAndRejoinsUnderANewIncarnation) {
  auto gcs = GcsChild::start(dir_.path(), fast_health_checks(300));
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  auto node = spawn_node((*gcs)->address(), (*gcs)->secret_file(), state_file());
  ASSERT_TRUE(node.ok()) << node.status();
  auto first = wait_for_node_state(state_file(), "alive", kStep);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->incarnation, 1u);

  ASSERT_TRUE(node->stop().ok());
  StatusOr<NodeInfo> row = not_found_error("not read");
  EXPECT_TRUE(wait_for(
      [&] {
        row = (*gcs)->node(first->node_id);
        return row.ok() && row->incarnation() == 1 && row->state() == gcs::proto::DEAD;
      },
      kStep))
      << "the GCS never declared the stopped node dead: "
      << (row.ok() ? row->DebugString() : row.status().to_string()) << "\nGCS output:\n"
      << (*gcs)->process().output_text();
  ASSERT_TRUE(node->resume().ok());

  // A new incarnation, never the old one. Usually 2; on a loaded machine the GCS may find the
  // resumed node slow once more and declare it dead again, and then it rejoins as 3.
  auto second = wait_for_node_state(state_file(), "alive", kStep,
                                    [](const auto& r) { return r.incarnation >= 2; });
  ASSERT_TRUE(second.ok()) << second.status() << "\nnode output:\n" << node->output_text();
  EXPECT_EQ(second->node_id, first->node_id) << "same process, same node id";
  EXPECT_GE(second->incarnation, 2u);
  EXPECT_TRUE(wait_for(
      [&] {
        row = (*gcs)->node(first->node_id);
        return row.ok() && row->incarnation() >= 2 && row->state() == gcs::proto::ALIVE;
      },
      kStep))
      << (row.ok() ? row->DebugString() : row.status().to_string()) << "\nnode output:\n"
      << node->output_text();
  EXPECT_TRUE(node->running()) << node->output_text();
}

TEST_F(NodeDaemonTest, FencesWhileTheGcsIsDownAndRejoinsTheRestartedGcsWithoutARestart) {
  // The default initial delay (2 s) after the GCS's recovery gives the node time to reconnect
  // before health checks count, as in production.
  auto gcs = GcsChild::start(dir_.path(), fast_health_checks(2000), free_port());
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  auto node = spawn_node((*gcs)->address(), (*gcs)->secret_file(), state_file(),
                         {"--gcs-rpc-server-reconnect-timeout-s=30"});
  ASSERT_TRUE(node.ok()) << node.status();
  auto before = wait_for_node_state(state_file(), "alive", kStep);
  ASSERT_TRUE(before.ok()) << before.status();

  ASSERT_TRUE((*gcs)->kill().ok());
  // Lease = period x threshold = 600 ms without a renewal: the node fences itself.
  auto fenced = wait_for_node_state(state_file(), "fenced", 10s);
  ASSERT_TRUE(fenced.ok()) << fenced.status();
  EXPECT_FALSE(fenced->gcs_connected);
  EXPECT_EQ(fenced->incarnation, before->incarnation);

  ASSERT_TRUE((*gcs)->restart().ok());
  auto after = wait_for_node_state(state_file(), "alive", kStep);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->node_id, before->node_id);
  EXPECT_EQ(after->incarnation, before->incarnation) << "the GCS never declared it dead";
  EXPECT_EQ(after->pid, node->pid());
  EXPECT_TRUE(node->running()) << "the node must not restart";
  auto row = (*gcs)->node(before->node_id);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->incarnation(), before->incarnation);
  EXPECT_EQ(row->state(), gcs::proto::ALIVE);
  // And it stays so once health checks count again (over its new connection).
  EXPECT_FALSE(wait_for(
      [&] {
        auto r = (*gcs)->node(before->node_id);
        return !r.ok() || r->state() != gcs::proto::ALIVE ||
               r->incarnation() != before->incarnation;
      },
      3s))
      << "the node left ALIVE after the GCS restart";
}

TEST_F(NodeDaemonTest, RefusesAGroupReadableSecretFile) {
  const std::string secret = dir_.path() + "/open_secret";
  write_secret(secret);
  ASSERT_EQ(::chmod(secret.c_str(), 0640), 0);
  ChildOptions options;
  options.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
  auto node = ChildProcess::spawn({program("halo-node"), "--gcs-address=127.0.0.1:1",
                                   "--secret-file=" + secret, "--state-file=" + state_file()},
                                  options);
  ASSERT_TRUE(node.ok()) << node.status();
  auto ended = node->wait(kStep);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->code, 1) << ended->to_string();
  ASSERT_TRUE(node->wait_for_output_end(kStep).ok());
  const std::string output = node->output_text();
  EXPECT_NE(output.find("chmod 600 " + secret), std::string::npos) << output;
}

TEST_F(NodeDaemonTest, ExitsWithAClearErrorWhenNoGcsIsReachableForTheReconnectTimeout) {
  const std::string secret = dir_.path() + "/secret";
  write_secret(secret);
  const uint16_t port = free_port();
  ChildOptions options;
  options.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
  const auto start = std::chrono::steady_clock::now();
  auto node = ChildProcess::spawn(
      {program("halo-node"), str_cat("--gcs-address=127.0.0.1:", port), "--secret-file=" + secret,
       "--state-file=" + state_file(), "--gcs-rpc-server-reconnect-timeout-s=1"},
      options);
  ASSERT_TRUE(node.ok()) << node.status();
  auto ended = node->wait(kStep);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(ended->code, 1) << ended->to_string();
  ASSERT_TRUE(node->wait_for_output_end(kStep).ok());
  const std::string output = node->output_text();
  EXPECT_NE(output.find(str_cat("could not reach the GCS at ucx://127.0.0.1:", port)),
            std::string::npos)
      << output;
  auto state = node::read_node_state_file(state_file());
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->state, "stopped");
}

TEST_F(NodeDaemonTest, SigtermUnregistersAndExitsZero) {
  auto gcs = GcsChild::start(dir_.path(), fast_health_checks());
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  auto node = spawn_node((*gcs)->address(), (*gcs)->secret_file(), state_file());
  ASSERT_TRUE(node.ok()) << node.status();
  auto state = wait_for_node_state(state_file(), "alive", kStep);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE(node->signal(SIGTERM).ok());
  auto ended = node->wait(kStep);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_TRUE(ended->success()) << ended->to_string();
  auto row = (*gcs)->node(state->node_id, /*include_removed=*/true);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->state(), gcs::proto::REMOVED) << row->DebugString();
  auto last = node::read_node_state_file(state_file());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->state, "stopped");
}

// The daemon in the test process, to call what the object store will: fenced() and
// admit_ha_copy(), exact to the clock while the GCS is gone.
TEST_F(NodeDaemonTest, AdmissionCheckRefusesHaCopiesWhileFencedAndAdmitsAgainAfterRenewal) {
  auto gcs = GcsChild::start(dir_.path(), fast_health_checks(2000), free_port());
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  node::NodeConfig config;
  config.gcs_address = (*gcs)->address();
  config.secret_file = (*gcs)->secret_file();
  config.state_file = state_file();
  objstore::StoreConfig store;
  store.object_store_memory = 16 << 20;
  auto daemon = node::NodeDaemon::start(config, store, transport::TransportConfig());
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  EXPECT_FALSE((*daemon)->admit_ha_copy().ok()) << "not registered yet";
  ASSERT_TRUE(wait_for([&] { return !(*daemon)->fenced(); }, kStep));
  EXPECT_TRUE((*daemon)->admit_ha_copy().ok());
  const uint64_t incarnation = (*daemon)->incarnation();

  ASSERT_TRUE((*gcs)->kill().ok());
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for([&] { return (*daemon)->fenced(); }, 10s));
  // Lease 600 ms from the last renewal sent, which was at most a period (200 ms) before.
  EXPECT_GE(std::chrono::steady_clock::now() - killed, 350ms) << "fenced before the lease ended";
  Status refused = (*daemon)->admit_ha_copy();
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find((*daemon)->node_id().to_hex()), std::string_view::npos)
      << refused;

  ASSERT_TRUE((*gcs)->restart().ok());
  ASSERT_TRUE(wait_for([&] { return !(*daemon)->fenced(); }, kStep));
  EXPECT_TRUE((*daemon)->admit_ha_copy().ok());
  EXPECT_EQ((*daemon)->incarnation(), incarnation);
  (*daemon)->request_stop();
  EXPECT_TRUE((*daemon)->wait().ok());
}

// The GCS client's node subscription against the real GCS: it hears a node join and die, in
// order, and keeps up across a GCS restart (by a resync or with no gap).
TEST_F(NodeDaemonTest, SubscriberHearsJoinAndDeathInOrderAndKeepsUpAcrossAGcsRestart) {
  auto gcs = GcsChild::start(dir_.path(), fast_health_checks(300), free_port());
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  gcs::GcsClientOptions options;
  options.address = (*gcs)->address();
  options.cluster_secret = gcs::read_secret_file((*gcs)->secret_file()).value();
  options.reconnect_timeout = 20s;
  auto client = gcs::GcsClient::create(options);
  ASSERT_TRUE(client.ok()) << client.status();

  std::mutex mu;
  std::map<std::string, NodeInfo> table;
  std::vector<std::string> seen;  // "ALIVE", "SUSPECTED", ... of the node, in order heard.
  int resyncs = 0;
  uint64_t last_seq = 0;
  bool in_order = true;
  auto subscription = (*client)->subscribe_nodes([&](const gcs::proto::PollResponse& r) {
    std::lock_guard lock(mu);
    if (r.resync()) {
      ++resyncs;
      table.clear();
    }
    for (const auto& change : r.node_changes()) {
      if (!r.resync() && change.seq() <= last_seq) in_order = false;
      if (!r.resync()) last_seq = change.seq();
      table[hex(change.node().node_id())] = change.node();
      seen.push_back(gcs::proto::NodeState_Name(change.node().state()));
    }
    last_seq = std::max(last_seq, r.last_seq());
  });
  auto state_of = [&](const std::string& id) {
    std::lock_guard lock(mu);
    auto it = table.find(id);
    return it == table.end() ? std::string() : gcs::proto::NodeState_Name(it->second.state());
  };

  auto node = spawn_node((*gcs)->address(), (*gcs)->secret_file(), state_file());
  ASSERT_TRUE(node.ok()) << node.status();
  auto alive = wait_for_node_state(state_file(), "alive", kStep);
  ASSERT_TRUE(alive.ok()) << alive.status();
  ASSERT_TRUE(wait_for([&] { return state_of(alive->node_id) == "ALIVE"; }, kStep));
  ASSERT_TRUE(node->kill().ok());
  ASSERT_TRUE(wait_for([&] { return state_of(alive->node_id) == "DEAD"; }, kStep))
      << "the subscriber never heard the death; it has " << state_of(alive->node_id);
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(in_order) << "changes arrived out of order";
    EXPECT_EQ(seen.back(), "DEAD");
    EXPECT_EQ(resyncs, 1);
  }

  // After a restart the GCS either resyncs the subscriber or continues without a gap; either
  // way the subscriber keeps hearing changes, in order, and its table matches the GCS's.
  ASSERT_TRUE((*gcs)->restart().ok());
  auto second =
      spawn_node((*gcs)->address(), (*gcs)->secret_file(), state_file("second"), {}, "node2");
  ASSERT_TRUE(second.ok()) << second.status();
  auto second_alive = wait_for_node_state(state_file("second"), "alive", kStep);
  ASSERT_TRUE(second_alive.ok()) << second_alive.status();
  EXPECT_TRUE(wait_for([&] { return state_of(second_alive->node_id) == "ALIVE"; }, kStep))
      << "the subscription stopped hearing changes after the GCS restart";
  EXPECT_EQ(state_of(alive->node_id), "DEAD");
  auto rows = (*gcs)->nodes(/*include_removed=*/true);
  ASSERT_TRUE(rows.ok()) << rows.status();
  subscription.reset();  // No more callbacks: the table can be read without the lock.
  EXPECT_TRUE(in_order) << "changes arrived out of order or repeated";
  for (const auto& row : *rows) {
    EXPECT_EQ(gcs::proto::NodeState_Name(table[hex(row.node_id())].state()),
              gcs::proto::NodeState_Name(row.state()))
        << hex(row.node_id());
  }
}

}  // namespace
}  // namespace halo::test
