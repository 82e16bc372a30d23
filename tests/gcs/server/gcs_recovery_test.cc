// What the GCS acknowledged survives: an in-process restart on the same data directory (with
// and without a snapshot in between), and halo-gcs killed with SIGKILL under a write load.
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "tests/gcs/server/gcs_test_env.h"
#include "tests/support/child_process.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {
namespace {

StatusOr<proto::KvPutResponse> kv_put(RpcPeer& peer, const std::string& key,
                                      const std::string& value) {
  proto::KvPutRequest put;
  put.set_namespace_("recovery");
  put.set_key(key);
  put.set_value(value);
  put.set_overwrite(true);
  return peer.call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put);
}

StatusOr<std::string> kv_get(RpcPeer& peer, const std::string& key) {
  proto::KvGetRequest get;
  get.set_namespace_("recovery");
  get.set_key(key);
  auto got = peer.call<proto::KvGetRequest, proto::KvGetResponse>("gcs.kv_get", get);
  if (!got.ok()) return got.status();
  return got->value();
}

class GcsRecovery : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test_config(dir_.path());
    config_.health_check_initial_delay_ms = 600000;
  }
  TempDir dir_;
  GcsConfig config_;
};

TEST_F(GcsRecovery, AcknowledgedWritesSurviveAnInProcessRestart) {
  std::string cluster;
  const NodeId node_id = NodeId::random();
  {
    auto server = start_server(config_);
    ASSERT_NE(server, nullptr);
    EXPECT_TRUE(server->recovery().new_cluster);
    cluster = server->cluster_id_hex();
    auto peer = RpcPeer::connect(server->address());
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(kv_put(*peer, "key" + std::to_string(i), "value" + std::to_string(i)).ok());
    }
    proto::AddJobRequest job;
    job.mutable_job()->set_entrypoint("job one");
    ASSERT_TRUE((peer->call<proto::AddJobRequest, proto::AddJobResponse>("gcs.add_job", job).ok()));
    FakeNode node(server->address(), node_id);
    ASSERT_TRUE(node.register_node().ok());
    EXPECT_EQ(node.incarnation(), 1u);
  }
  auto server = start_server(config_);
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(server->recovery().new_cluster);
  EXPECT_EQ(server->cluster_id_hex(), cluster) << "a restart must keep the cluster's identity";
  EXPECT_EQ(server->recovery().last_index, 1u + 200u + 1u + 1u);
  auto peer = RpcPeer::connect(server->address());
  for (int i = 0; i < 200; ++i) {
    auto value = kv_get(*peer, "key" + std::to_string(i));
    ASSERT_TRUE(value.ok()) << "key" << i << ": " << value.status();
    EXPECT_EQ(*value, "value" + std::to_string(i));
  }
  auto jobs = peer->call<proto::GetJobsRequest, proto::GetJobsResponse>("gcs.get_jobs", {});
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->jobs_size(), 1);
  EXPECT_EQ(jobs->jobs(0).entrypoint(), "job one");
  // Incarnations grow across restarts too, and job ids go on from where they were.
  FakeNode node(server->address(), node_id);
  auto again = node.register_node();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->incarnation(), 2u);
  auto job2 = peer->call<proto::AddJobRequest, proto::AddJobResponse>("gcs.add_job",
                                                                      proto::AddJobRequest());
  EXPECT_EQ(job2.status().code(), StatusCode::kInvalidArgument);  // No job given.
  proto::AddJobRequest second;
  second.mutable_job();
  job2 = peer->call<proto::AddJobRequest, proto::AddJobResponse>("gcs.add_job", second);
  ASSERT_TRUE(job2.ok());
  EXPECT_EQ(job2->job_id(), 2u);
}

TEST_F(GcsRecovery, SnapshotPlusLaterRecordsRecoverEverything) {
  {
    auto server = start_server(config_);
    ASSERT_NE(server, nullptr);
    auto peer = RpcPeer::connect(server->address());
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(kv_put(*peer, "a" + std::to_string(i), "x").ok());
    Status snap = server->take_snapshot();
    ASSERT_TRUE(snap.ok()) << snap;
    EXPECT_EQ(server->snapshot_index(), server->last_index());
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(kv_put(*peer, "b" + std::to_string(i), "y").ok());
  }
  auto server = start_server(config_);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->recovery().snapshot_index, 51u);
  EXPECT_EQ(server->recovery().replayed, 50u);
  auto peer = RpcPeer::connect(server->address());
  for (const char* prefix : {"a", "b"}) {
    proto::KvKeysRequest keys;
    keys.set_namespace_("recovery");
    keys.set_prefix(prefix);
    auto listed = peer->call<proto::KvKeysRequest, proto::KvKeysResponse>("gcs.kv_keys", keys);
    ASSERT_TRUE(listed.ok());
    EXPECT_EQ(listed->keys_size(), 50) << prefix;
  }
}

// Two GCS processes appending to one log would corrupt it: the second is refused, and the
// first keeps serving.
TEST_F(GcsRecovery, SecondGcsOnTheSameDataDirectoryIsRefused) {
  auto first = start_server(config_);
  ASSERT_NE(first, nullptr);
  auto second = GcsServer::start(config_, test_transport(), transport::RpcConfig(), kSecret);
  ASSERT_FALSE(second.ok()) << "two GCS servers run on one data directory";
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status();
  EXPECT_NE(second.status().message().find(config_.data_dir), std::string_view::npos)
      << second.status();
  auto peer = RpcPeer::connect(first->address());
  ASSERT_NE(peer, nullptr);
  EXPECT_TRUE(kv_put(*peer, "k", "v").ok());
}

TEST_F(GcsRecovery, SnapshotsAreTakenEveryNRecords) {
  config_.snapshot_every_records = 20;
  auto server = start_server(config_);
  ASSERT_NE(server, nullptr);
  auto peer = RpcPeer::connect(server->address());
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(kv_put(*peer, std::to_string(i), "v").ok());
  ASSERT_TRUE(test::wait_for([&] { return server->snapshot_index() >= 20; }, 5s))
      << "no snapshot after 30 records with snapshot_every_records = 20";
}

// The benchmark's restart case: the state of 10,000 nodes and 100,000 KV entries, half in a
// snapshot and half in the log, is back and serving well within a second.
TEST_F(GcsRecovery, TenThousandNodesAndHundredThousandKvEntriesRecoverWithinASecond) {
  config_.fsync_policy = "group";  // Only to fill the tables quickly.
  constexpr int kNodes = 10000, kEntries = 100000;
  {
    auto server = start_server(config_);
    ASSERT_NE(server, nullptr);
    auto peer = RpcPeer::connect(server->address());
    ASSERT_NE(peer, nullptr);
    std::atomic<int> done{0}, failed{0};
    int issued = 0;
    auto count = [&](Status s) { ++(s.ok() ? done : failed); };
    auto fill = [&](int from, int to) {
      for (int i = from; i < to; ++i) {
        if (i < kNodes) {
          proto::RegisterNodeRequest node;
          node.mutable_node()->set_node_id(NodeId::random().binary());
          node.mutable_node()->set_address(str_cat("ucx://10.0.", i / 250, ".", i % 250, ":7000"));
          (*node.mutable_node()->mutable_resources())["CPU"] = 64;
          peer->rpc().client().call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>(
              peer->endpoint(), "gcs.register_node", node, 60s,
              [&](StatusOr<proto::RegisterNodeResponse> r) { count(r.status()); });
        }
        proto::KvPutRequest put;
        put.set_namespace_("bench");
        put.set_key(str_cat("key-", i));
        put.set_value(std::string(64, 'v'));
        peer->rpc().client().call<proto::KvPutRequest, proto::KvPutResponse>(
            peer->endpoint(), "gcs.kv_put", put, 60s,
            [&](StatusOr<proto::KvPutResponse> r) { count(r.status()); });
        issued += i < kNodes ? 2 : 1;
        // A bounded number in flight, so the test does not queue 110,000 calls at once.
        ASSERT_TRUE(test::wait_for([&] { return issued - done - failed <= 2000; }, 60s));
      }
    };
    fill(0, kEntries / 2);
    ASSERT_TRUE(test::wait_for([&] { return done + failed == kNodes + kEntries / 2; }, 120s));
    ASSERT_TRUE(server->take_snapshot().ok());
    fill(kEntries / 2, kEntries);
    ASSERT_TRUE(test::wait_for([&] { return done + failed == kNodes + kEntries; }, 120s));
    ASSERT_EQ(failed.load(), 0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto server = start_server(config_);
  ASSERT_NE(server, nullptr);
  auto peer = RpcPeer::connect(server->address());
  ASSERT_NE(peer, nullptr);
  auto status = peer->call<proto::GcsStatusRequest, proto::GcsStatusResponse>("gcs.status", {});
  const auto serving = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->kv_entries(), static_cast<uint64_t>(kEntries));
  auto nodes = peer->call<proto::GetNodesRequest, proto::GetNodesResponse>("gcs.get_nodes", {});
  ASSERT_TRUE(nodes.ok());
  EXPECT_EQ(nodes->nodes_size(), kNodes);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(serving).count();
  RecordProperty("restart_to_serving_ms", static_cast<int>(ms));
  RecordProperty("recovery_ms", static_cast<int>(server->recovery().millis));
  std::cout << "restart with " << kNodes << " nodes and " << kEntries << " KV entries: recovery "
            << server->recovery().millis << " ms, serving after " << ms << " ms\n";
  EXPECT_LT(serving, 1s);
}

// halo-gcs as a child process, killed with SIGKILL while 4 writers keep it busy: every write it
// acknowledged is there after it restarts on the same directory. Three rounds.
TEST_F(GcsRecovery, AcknowledgedWritesSurviveKill9OfHaloGcs) {
  const std::string secret_file = dir_.file("secret");
  {
    std::ofstream(secret_file) << kSecret;
    std::filesystem::permissions(
        secret_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  const std::vector<std::string> argv = {HALO_GCS_PATH,
                                         "--data-dir=" + config_.data_dir,
                                         "--secret-file=" + secret_file,
                                         "--port=0",
                                         "--ucx-tls=tcp,self",
                                         "--log-level=warn",
                                         "--health-check-initial-delay-ms=600000"};
  std::map<std::string, std::string> acknowledged;
  std::mutex mu;
  for (int round = 0; round < 3; ++round) {
    auto gcs = test::ChildProcess::spawn(argv);
    ASSERT_TRUE(gcs.ok()) << gcs.status();
    auto line = gcs->wait_for_line("halo-gcs listening on ", 20s);
    ASSERT_TRUE(line.ok()) << line.status() << "\n" << gcs->output_text();
    const std::string address =
        line->substr(std::string("halo-gcs listening on ").size(), line->find(' ', 22) - 22);
    // Everything acknowledged in earlier rounds is there.
    {
      auto peer = RpcPeer::connect(address);
      ASSERT_NE(peer, nullptr);
      for (const auto& [key, value] : acknowledged) {
        auto got = kv_get(*peer, key);
        ASSERT_TRUE(got.ok()) << "round " << round << ": acknowledged key " << key
                              << " is gone: " << got.status();
        EXPECT_EQ(*got, value);
      }
    }
    std::atomic<bool> stop{false};
    std::atomic<int> acked{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 4; ++w) {
      writers.emplace_back([&, w] {
        auto peer = RpcPeer::connect(address);
        if (peer == nullptr) return;
        for (int i = 0; !stop; ++i) {
          const std::string key = str_cat("r", round, "w", w, "i", i);
          const std::string value = str_cat("value-", i);
          if (!kv_put(*peer, key, value).ok()) break;  // The GCS is gone.
          std::lock_guard lock(mu);
          acknowledged[key] = value;
          ++acked;
        }
      });
    }
    ASSERT_TRUE(test::wait_for([&] { return acked.load() >= 100 * (round + 1); }, 20s));
    auto killed = gcs->kill();
    ASSERT_TRUE(killed.ok());
    EXPECT_EQ(killed->signal, SIGKILL);
    stop = true;
    for (auto& t : writers) t.join();
  }
  auto gcs = test::ChildProcess::spawn(argv);
  ASSERT_TRUE(gcs.ok());
  auto line = gcs->wait_for_line("halo-gcs listening on ", 20s);
  ASSERT_TRUE(line.ok()) << line.status();
  const std::string address = line->substr(22, line->find(' ', 22) - 22);
  auto peer = RpcPeer::connect(address);
  ASSERT_NE(peer, nullptr);
  for (const auto& [key, value] : acknowledged) {
    auto got = kv_get(*peer, key);
    ASSERT_TRUE(got.ok()) << "acknowledged key " << key << " is gone: " << got.status();
    EXPECT_EQ(*got, value);
  }
  EXPECT_GE(acknowledged.size(), 300u);
}

}  // namespace
}  // namespace halo::gcs::testing
