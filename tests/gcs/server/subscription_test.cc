// The NODES channel ("gcs.poll"): a first poll resyncs, later ones get every change in log
// order, a held poll is answered as soon as a change is durable, and after a GCS restart a
// subscriber either continues with no gap or is told to resync — never silently misses one.
#include <gtest/gtest.h>

#include <future>

#include "tests/gcs/server/gcs_test_env.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {
namespace {

using Clock = std::chrono::steady_clock;

class Subscriptions : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test_config(dir_.path());
    config_.health_check_initial_delay_ms = 600000;  // No health verdicts in these tests.
    restart();
  }
  void restart() {
    peer_.reset();
    server_.reset();
    server_ = start_server(config_);
    ASSERT_NE(server_, nullptr);
    peer_ = RpcPeer::connect(server_->address());
    ASSERT_NE(peer_, nullptr);
  }
  StatusOr<proto::PollResponse> poll(uint64_t after, const std::string& cluster,
                                     int64_t max_wait_ms = 0) {
    proto::PollRequest request;
    request.set_channel(proto::NODES);
    request.set_after(after);
    request.set_cluster_id(cluster);
    request.set_max_wait_ms(max_wait_ms);
    return peer_->call<proto::PollRequest, proto::PollResponse>("gcs.poll", request);
  }
  uint64_t register_node(const NodeId& id) {
    proto::RegisterNodeRequest request;
    request.mutable_node()->set_node_id(id.binary());
    request.mutable_node()->set_address("ucx://127.0.0.1:9");
    auto reply = peer_->call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>(
        "gcs.register_node", request);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->incarnation() : 0;
  }

  TempDir dir_;
  GcsConfig config_;
  std::unique_ptr<GcsServer> server_;
  std::unique_ptr<RpcPeer> peer_;
};

TEST_F(Subscriptions, FirstPollResyncsThenChangesArriveInLogOrder) {
  std::vector<NodeId> ids = {NodeId::random(), NodeId::random(), NodeId::random()};
  for (const auto& id : ids) register_node(id);
  auto first = poll(0, "");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->resync());
  EXPECT_EQ(first->node_changes_size(), 3);
  EXPECT_EQ(first->cluster_id().size(), 16u);
  const uint64_t start = first->last_seq();

  register_node(ids[0]);  // Incarnation 2.
  proto::DrainNodeRequest drain;
  drain.set_node_id(ids[1].binary());
  ASSERT_TRUE(
      (peer_->call<proto::DrainNodeRequest, proto::DrainNodeResponse>("gcs.drain_node", drain)
           .ok()));
  // A KV write between them is in the log but not on this channel.
  proto::KvPutRequest put;
  put.set_key("k");
  ASSERT_TRUE((peer_->call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put).ok()));
  register_node(ids[2]);

  auto next = poll(start, first->cluster_id());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(next->resync());
  ASSERT_EQ(next->node_changes_size(), 3);
  EXPECT_EQ(next->node_changes(0).node().node_id(), ids[0].binary());
  EXPECT_EQ(next->node_changes(0).node().incarnation(), 2u);
  EXPECT_EQ(next->node_changes(1).node().state(), proto::DRAINING);
  EXPECT_EQ(next->node_changes(2).node().node_id(), ids[2].binary());
  uint64_t previous = start;
  for (const auto& change : next->node_changes()) {
    EXPECT_GT(change.seq(), previous) << "changes must come in log order";
    previous = change.seq();
  }
  EXPECT_EQ(next->last_seq(), server_->last_index());
  EXPECT_EQ(next->node_changes(2).seq(), next->node_changes(1).seq() + 2)
      << "sequence numbers are log indexes (the KV write sits between)";
}

TEST_F(Subscriptions, HeldPollIsAnsweredWhenAChangeArrives) {
  auto first = poll(0, "");
  ASSERT_TRUE(first.ok());
  auto held = std::async(std::launch::async, [&] {
    // A peer of its own: the main one registers the node meanwhile.
    auto other = RpcPeer::connect(server_->address());
    proto::PollRequest request;
    request.set_channel(proto::NODES);
    request.set_after(first->last_seq());
    request.set_cluster_id(first->cluster_id());
    request.set_max_wait_ms(10000);
    auto response = other->call<proto::PollRequest, proto::PollResponse>("gcs.poll", request, 20s);
    return std::make_pair(response, Clock::now());
  });
  ASSERT_TRUE(test::wait_for([&] { return server_->waiting_polls() == 1; }, 5s));
  const NodeId id = NodeId::random();
  register_node(id);
  const auto registered = Clock::now();
  auto [response, answered] = held.get();
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->node_changes_size(), 1);
  EXPECT_EQ(response->node_changes(0).node().node_id(), id.binary());
  EXPECT_LT(answered - registered, 2s) << "the held poll waited for its time-out";
}

TEST_F(Subscriptions, EmptyPollReturnsAfterItsWait) {
  auto first = poll(0, "");
  ASSERT_TRUE(first.ok());
  const auto t0 = Clock::now();
  auto empty = poll(first->last_seq(), first->cluster_id(), 300);
  const auto took = Clock::now() - t0;
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_FALSE(empty->resync());
  EXPECT_EQ(empty->node_changes_size(), 0);
  EXPECT_EQ(empty->last_seq(), first->last_seq());
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
}

TEST_F(Subscriptions, AfterARestartASubscriberContinuesWithNoGapOrResyncs) {
  const NodeId a = NodeId::random();
  register_node(a);
  auto first = poll(0, "");
  ASSERT_TRUE(first.ok());
  const std::string cluster = first->cluster_id();
  const uint64_t seen = first->last_seq();
  restart();
  // Nothing changed since `seen`: the subscriber continues where it was.
  auto same = poll(seen, cluster);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(same->resync());
  EXPECT_EQ(same->cluster_id(), cluster) << "the cluster id survives a restart";
  const NodeId b = NodeId::random();
  register_node(b);
  auto next = poll(seen, cluster);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->resync());
  ASSERT_EQ(next->node_changes_size(), 1);
  EXPECT_EQ(next->node_changes(0).node().node_id(), b.binary());
  EXPECT_GT(next->node_changes(0).seq(), seen) << "sequence numbers keep growing";

  // A subscriber behind the new process's history (it lost its memory) is told to resync.
  restart();
  auto behind = poll(seen, cluster);
  ASSERT_TRUE(behind.ok());
  EXPECT_TRUE(behind->resync());
  EXPECT_EQ(behind->node_changes_size(), 2);
  // So is one ahead of the log (it saw what the GCS no longer has) and one of another cluster.
  auto ahead = poll(server_->last_index() + 100, cluster);
  ASSERT_TRUE(ahead.ok());
  EXPECT_TRUE(ahead->resync());
  auto foreign = poll(server_->last_index(), std::string(16, 'z'));
  ASSERT_TRUE(foreign.ok());
  EXPECT_TRUE(foreign->resync());
}

TEST_F(Subscriptions, SubscriberBehindTheTrimmedHistoryResyncs) {
  config_.node_feed_history = 2;
  restart();
  auto first = poll(0, "");
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 4; ++i) register_node(NodeId::random());
  auto behind = poll(first->last_seq(), first->cluster_id());
  ASSERT_TRUE(behind.ok());
  EXPECT_TRUE(behind->resync());
  EXPECT_EQ(behind->node_changes_size(), 4);
}

}  // namespace
}  // namespace halo::gcs::testing
