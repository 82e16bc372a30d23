// The GCS killed with SIGKILL at random points under a write load, again and again, on
// loopback: halo-gcs, three halo-node daemons and a writer (gcs_kv_writer) as real processes.
// After every restart, every write the GCS had acknowledged is there with its value, and the
// node daemons — never restarted — are connected again under the incarnation they had (or,
// had the GCS declared one dead meanwhile, under a new one). Restarts alternate between the
// fsync policies "group" and "always" on the same data directory. Label "gcs".
//
// HALO_TEST_SEED=N replays the kill points of an earlier run (the seed is printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gcs/client/gcs_client.h"
#include "gcs/proto/gcs.pb.h"
#include "tests/gcs/cluster/cluster_dir.h"
#include "tests/gcs/cluster/gcs_server_process.h"
#include "tests/gcs/cluster/kv_pattern.h"
#include "tests/gcs/cluster/node_daemon.h"
#include "tests/gcs/cluster/placement.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kKills = 20;
constexpr int kNodes = 3;
// Health checks slow enough that a node reconnecting to a restarted GCS (client backoff up
// to 1 s) is normally not declared dead, and fast enough that one that never reconnects is
// declared dead within the wait at the end.
constexpr HealthChecks kHealth{
    .initial_delay_ms = 2000, .period_ms = 300, .timeout_ms = 300, .failure_threshold = 3};
// Kill points: this long after the writer's next acknowledgement (uniformly at random).
constexpr auto kMaxKillDelay = 300ms;
// Values read back after each restart: those of the last keys acknowledged before the kill.
constexpr size_t kRecentValuesChecked = 64;
constexpr auto kCallTimeout = 30s;
constexpr auto kStepLimit = 30s;

std::string gcs_kv_writer_program() { return HALO_GCS_KV_WRITER_PROGRAM; }

// The writer's acknowledgements, in the order read.
class AckLog {
 public:
  // Takes every line the writer has printed so far.
  void drain(test::ChildProcess& writer) {
    while (true) {
      auto line = writer.read_line(std::chrono::steady_clock::duration::zero());
      if (!line.ok()) return;
      if (line->rfind("ACK ", 0) == 0) {
        keys_.push_back(line->substr(4));
      } else if (line->rfind("FAIL ", 0) == 0) {
        failures_.push_back(*line);
      }
    }
  }
  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  std::vector<std::string> keys_;
  std::vector<std::string> failures_;
};

// Node rows heard by a subscription: which incarnations were declared DEAD.
class DeathLog {
 public:
  void record(const proto::PollResponse& response) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& change : response.node_changes()) {
      if (change.node().state() == proto::DEAD) {
        dead_.insert(change.node().node_id() + "/" + std::to_string(change.node().incarnation()));
      }
    }
  }
  bool was_dead(const std::string& node_id_bytes, uint64_t incarnation) const {
    std::lock_guard<std::mutex> lock(mu_);
    return dead_.count(node_id_bytes + "/" + std::to_string(incarnation)) > 0;
  }

 private:
  mutable std::mutex mu_;
  std::set<std::string> dead_;
};

std::string hex_of(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const char c : bytes) {
    hex += kDigits[static_cast<unsigned char>(c) >> 4];
    hex += kDigits[static_cast<unsigned char>(c) & 0xf];
  }
  return hex;
}

uint64_t test_seed() {
  if (const char* text = std::getenv("HALO_TEST_SEED")) return std::strtoull(text, nullptr, 10);
  return std::random_device()();
}

class GcsRestart : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = ClusterDir::create("gcs-restart");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    GcsServerProcess::Options gcs_options;
    gcs_options.data_dir = dir_->file("gcs");
    gcs_options.secret_file = dir_->secret_path();
    gcs_options.health = kHealth;
    auto gcs = GcsServerProcess::start(gcs_options);
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    gcs_ = *std::move(gcs);

    for (int i = 1; i <= kNodes; ++i) {
      NodeDaemon::Options options;
      options.gcs_address = gcs_->address();
      options.secret_file = dir_->secret_path();
      options.state_file = dir_->file(str_cat("node", i, ".json"));
      options.name = str_cat("node", i);
      auto node = NodeDaemon::start(options);
      ASSERT_TRUE(node.ok()) << node.status();
      auto state = (*node)->state();
      ASSERT_TRUE(state.ok()) << state.status();
      joined_.push_back(*state);
      pids_.push_back((*node)->process().pid());
      nodes_.push_back(*std::move(node));
    }

    GcsClientOptions client_options;
    client_options.address = gcs_->address();
    client_options.cluster_secret = dir_->secret();
    client_options.transport.ucx_tls = "tcp,self";
    client_options.transport.net_interface = "lo";
    client_options.call_timeout = kCallTimeout;
    auto client = GcsClient::create(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    ASSERT_TRUE(client_->connect().ok());
    subscription_ = client_->subscribe_nodes(
        [this](const proto::PollResponse& response) { deaths_.record(response); });

    std::vector<std::string> argv = {gcs_kv_writer_program(), "--gcs_address=" + gcs_->address(),
                                     "--secret_file=" + dir_->secret_path(), "--writers=4"};
    for (auto& flag : Placement{}.transport_flags()) argv.push_back(std::move(flag));
    auto writer = test::ChildProcess::spawn(std::move(argv));
    ASSERT_TRUE(writer.ok()) << writer.status();
    writer_ = std::make_unique<test::ChildProcess>(*std::move(writer));
  }

  void TearDown() override {
    writer_.reset();
    subscription_.reset();
    client_.reset();
    nodes_.clear();
    gcs_.reset();
    dir_.reset();
  }

  // Waits until the writer has had at least one more put acknowledged.
  void wait_for_progress() {
    const size_t before = acks_.keys().size();
    const bool progressed = test::wait_for(
        [&] {
          acks_.drain(*writer_);
          return acks_.keys().size() > before;
        },
        kStepLimit);
    ASSERT_TRUE(progressed) << "the writer had no put acknowledged for " << kStepLimit.count()
                            << " s; its last lines:\n"
                            << writer_->output_text();
  }

  // Every key acknowledged so far is listed by the GCS.
  void expect_every_acknowledged_key_listed(int kill) {
    proto::KvKeysRequest request;
    request.set_namespace_(kKvNamespace);
    auto reply = client_->call<proto::KvKeysRequest, proto::KvKeysResponse>("gcs.kv_keys", request);
    ASSERT_TRUE(reply.ok()) << "listing the keys after kill " << kill << ": " << reply.status();
    const std::set<std::string> listed(reply->keys().begin(), reply->keys().end());
    std::vector<std::string> missing;
    for (const std::string& key : acks_.keys()) {
      if (listed.count(key) == 0) missing.push_back(key);
    }
    ASSERT_TRUE(missing.empty()) << missing.size() << " of " << acks_.keys().size()
                                 << " acknowledged keys are gone after kill " << kill << ", e.g. "
                                 << missing.front();
  }

  // The values of acks_.keys()[from, to) are those written, read with `threads` callers.
  void expect_values(size_t from, size_t to, int threads, const std::string& when) {
    std::atomic<size_t> next{from};
    std::mutex mu;
    std::vector<std::string> wrong;
    auto check = [&] {
      for (size_t i = next++; i < to; i = next++) {
        const std::string& key = acks_.keys()[i];
        proto::KvGetRequest request;
        request.set_namespace_(kKvNamespace);
        request.set_key(key);
        auto reply =
            client_->call<proto::KvGetRequest, proto::KvGetResponse>("gcs.kv_get", request);
        std::string problem;
        if (!reply.ok()) {
          problem = key + ": " + reply.status().to_string();
        } else if (reply->value() != kv_value_for(key)) {
          problem = key + " holds \"" + reply->value() + "\"";
        }
        if (!problem.empty()) {
          std::lock_guard<std::mutex> lock(mu);
          wrong.push_back(std::move(problem));
        }
      }
    };
    std::vector<std::thread> callers;
    for (int t = 0; t < threads; ++t) callers.emplace_back(check);
    for (auto& caller : callers) caller.join();
    ASSERT_TRUE(wrong.empty()) << wrong.size() << " of " << (to - from)
                               << " acknowledged keys read back wrong " << when << ", e.g. "
                               << wrong.front();
  }

  std::unique_ptr<ClusterDir> dir_;
  std::unique_ptr<GcsServerProcess> gcs_;
  std::vector<std::unique_ptr<NodeDaemon>> nodes_;
  std::vector<NodeStateFile> joined_;
  std::vector<pid_t> pids_;
  std::unique_ptr<GcsClient> client_;
  DeathLog deaths_;
  std::unique_ptr<NodeSubscription> subscription_;
  std::unique_ptr<test::ChildProcess> writer_;
  AckLog acks_;
};

TEST_F(GcsRestart, AcknowledgedWritesSurviveTwentyKill9sAndNodesReconnectWithoutRestart) {
  const uint64_t seed = test_seed();
  std::cout << "kill points from seed " << seed << " (HALO_TEST_SEED=" << seed
            << " replays them)\n";
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> delay_us(0, kMaxKillDelay.count() * 1000);

  std::vector<double> restart_ms;
  std::chrono::steady_clock::time_point last_serving;
  for (int kill = 1; kill <= kKills; ++kill) {
    ASSERT_NO_FATAL_FAILURE(wait_for_progress());
    // The random kill point itself: a chosen instant under the load, not a wait for an event.
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    auto killed = gcs_->kill();
    ASSERT_TRUE(killed.ok()) << killed.status();
    acks_.drain(*writer_);
    // Keys acknowledged before the kill (all of them are: the writer prints after the reply).
    const size_t acked_at_kill = acks_.keys().size();

    const std::string policy = kill % 2 == 1 ? "group" : "always";
    const Status restarted = gcs_->restart(policy);
    ASSERT_TRUE(restarted.ok()) << "kill " << kill << ": " << restarted;
    last_serving = std::chrono::steady_clock::now();
    restart_ms.push_back(
        std::chrono::duration<double, std::milli>(gcs_->last_start_time()).count());

    acks_.drain(*writer_);
    ASSERT_NO_FATAL_FAILURE(expect_every_acknowledged_key_listed(kill));
    const size_t recent = std::min(acked_at_kill, kRecentValuesChecked);
    ASSERT_NO_FATAL_FAILURE(
        expect_values(acked_at_kill - recent, acked_at_kill, 1, str_cat("after kill ", kill)));
    // The node daemons live on: the same processes, the same node ids.
    for (int i = 0; i < kNodes; ++i) {
      ASSERT_TRUE(nodes_[i]->process().running())
          << nodes_[i]->name() << " ended after kill " << kill << " of the GCS";
      auto state = nodes_[i]->state();
      ASSERT_TRUE(state.ok()) << state.status();
      ASSERT_EQ(state->pid, pids_[i]) << nodes_[i]->name() << ": " << state->text;
      ASSERT_EQ(state->node_id, joined_[i].node_id) << nodes_[i]->name() << ": " << state->text;
    }
  }

  // Load after the last restart too, then the writer stops and every value is read back.
  ASSERT_NO_FATAL_FAILURE(wait_for_progress());
  ASSERT_TRUE(writer_->kill().ok());
  acks_.drain(*writer_);
  ASSERT_NO_FATAL_FAILURE(expect_values(0, acks_.keys().size(), 8, "at the end"));

  // The restarted GCS checks the nodes' health over their own connections, so nodes that did
  // not reconnect would be DEAD once the first checks have had time to fail. What is proven is
  // an absence, so the time must pass: the initial delay, the death bound and a margin.
  std::this_thread::sleep_until(last_serving + std::chrono::milliseconds(kHealth.initial_delay_ms) +
                                kHealth.death_bound() + 1s);
  auto nodes = client_->call<proto::GetNodesRequest, proto::GetNodesResponse>(
      "gcs.get_nodes", proto::GetNodesRequest());
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  int rejoined_after_death = 0;
  for (int i = 0; i < kNodes; ++i) {
    const NodeStateFile& joined = joined_[i];
    const proto::NodeInfo* row = nullptr;
    for (const auto& node : nodes->nodes()) {
      if (hex_of(node.node_id()) == joined.node_id &&
          (row == nullptr || node.incarnation() > row->incarnation())) {
        row = &node;
      }
    }
    ASSERT_NE(row, nullptr) << nodes_[i]->name() << " (" << joined.node_id
                            << ") is not in the GCS's node table";
    EXPECT_EQ(row->state(), proto::ALIVE)
        << nodes_[i]->name()
        << " did not reconnect to the restarted GCS: " << row->ShortDebugString();
    if (row->incarnation() != joined.incarnation) {
      ++rejoined_after_death;
      EXPECT_TRUE(deaths_.was_dead(row->node_id(), joined.incarnation))
          << nodes_[i]->name() << " changed incarnation " << joined.incarnation << " -> "
          << row->incarnation() << " without being declared DEAD";
    }
    auto state = nodes_[i]->wait_for_state(
        [&](const NodeStateFile& s) {
          return s.state == "alive" && s.gcs_connected && s.incarnation == row->incarnation();
        },
        kStepLimit, str_cat("alive and connected under incarnation ", row->incarnation()));
    ASSERT_TRUE(state.ok()) << state.status();
    EXPECT_EQ(state->pid, pids_[i]) << "node daemons are never restarted here: " << state->text;
    EXPECT_TRUE(nodes_[i]->process().running());
  }

  std::sort(restart_ms.begin(), restart_ms.end());
  std::cout << kKills << " kills: " << acks_.keys().size() << " puts acknowledged, "
            << acks_.failures().size() << " failed"
            << (acks_.failures().empty() ? "" : " (first: " + acks_.failures().front() + ")")
            << "; spawn-to-serving median " << restart_ms[restart_ms.size() / 2] << " ms, max "
            << restart_ms.back()
            << " ms; nodes re-registered after a death: " << rejoined_after_death << "\n";
}

}  // namespace
}  // namespace halo::gcs::testing
