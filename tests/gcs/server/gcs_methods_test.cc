// The gcs.* methods against an in-process GcsServer over UCX on TCP loopback, called with raw
// halo RPC from a peer with its own Transport: node registration and the state machine, lease
// renewal, drain, the job, actor, HA-directory and KV tables, and the refusal of malformed
// requests without any change.
#include <gtest/gtest.h>

#include "tests/gcs/server/gcs_test_env.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {
namespace {

class GcsMethods : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test_config(dir_.path());
    // Health checks would turn nodes of these tests SUSPECTED on their own; they have their
    // own tests (health_check_test.cc).
    config_.health_check_initial_delay_ms = 600000;
    server_ = start_server(config_);
    ASSERT_NE(server_, nullptr);
    peer_ = RpcPeer::connect(server_->address());
    ASSERT_NE(peer_, nullptr);
  }

  template <typename Req, typename Resp>
  StatusOr<Resp> call(const std::string& method, const Req& request) {
    return peer_->call<Req, Resp>(method, request);
  }

  TempDir dir_;
  GcsConfig config_;
  std::unique_ptr<GcsServer> server_;
  std::unique_ptr<RpcPeer> peer_;
};

TEST_F(GcsMethods, RegistrationGivesGrowingIncarnationsAndTheLease) {
  FakeNode node(server_->address());
  ASSERT_TRUE(node.connected());
  auto first = node.register_node();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->incarnation(), 1u);
  EXPECT_EQ(first->lease_ms(), config_.health_check_period_ms * 3);
  EXPECT_EQ(first->cluster_id().size(), 16u);
  auto second = node.register_node();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->incarnation(), 2u);
  auto row = node_row(*peer_, node.id());
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->incarnation(), 2u);
  EXPECT_EQ(row->state(), proto::ALIVE);
  EXPECT_EQ(row->resources().at("CPU"), 8);
  EXPECT_EQ(row->labels().at("failure_domain"), "rack1");
  EXPECT_EQ(row->pid(), 4242u);
  EXPECT_GT(row->registered_at_ms(), 0);
}

TEST_F(GcsMethods, RenewLeaseRefusesAStaleIncarnation) {
  FakeNode node(server_->address());
  ASSERT_TRUE(node.register_node().ok());
  auto renewed = node.renew_lease();
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->state(), proto::ALIVE);
  EXPECT_EQ(renewed->lease_ms(), config_.lease_ms());

  proto::RenewLeaseRequest stale;
  stale.set_node_id(node.id().binary());
  stale.set_incarnation(node.incarnation());
  ASSERT_TRUE(node.register_node().ok());  // A newer incarnation now speaks for the node.
  auto refused =
      call<proto::RenewLeaseRequest, proto::RenewLeaseResponse>("gcs.renew_lease", stale);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("re-register"), std::string_view::npos)
      << refused.status();

  proto::RenewLeaseRequest unknown;
  unknown.set_node_id(NodeId::random().binary());
  unknown.set_incarnation(1);
  EXPECT_EQ((call<proto::RenewLeaseRequest, proto::RenewLeaseResponse>("gcs.renew_lease", unknown)
                 .status()
                 .code()),
            StatusCode::kFailedPrecondition);
}

TEST_F(GcsMethods, DrainThenUnregisterEndsRemovedAndHiddenFromGetNodes) {
  FakeNode node(server_->address());
  ASSERT_TRUE(node.register_node().ok());
  proto::DrainNodeRequest drain;
  drain.set_node_id_prefix(node.id().to_hex().substr(0, 8));
  drain.set_reason("maintenance");
  auto drained = call<proto::DrainNodeRequest, proto::DrainNodeResponse>("gcs.drain_node", drain);
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->node().state(), proto::DRAINING);
  EXPECT_EQ(drained->node().state_reason(), "maintenance");
  // The lease renewal tells the node to leave.
  auto renewed = node.renew_lease();
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->state(), proto::DRAINING);

  proto::UnregisterNodeRequest leave;
  leave.set_node_id(node.id().binary());
  leave.set_incarnation(node.incarnation());
  auto left = call<proto::UnregisterNodeRequest, proto::UnregisterNodeResponse>(
      "gcs.unregister_node", leave);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(node_state(*peer_, node.id()), proto::REMOVED);
  auto visible = call<proto::GetNodesRequest, proto::GetNodesResponse>("gcs.get_nodes", {});
  ASSERT_TRUE(visible.ok());
  EXPECT_EQ(visible->nodes_size(), 0);
  // A REMOVED node's lease is refused: it must register again, as a new incarnation.
  EXPECT_EQ(node.renew_lease().status().code(), StatusCode::kFailedPrecondition);
  auto again = node.register_node();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->incarnation(), 2u);
}

TEST_F(GcsMethods, DrainByAmbiguousOrUnknownPrefixIsRefused) {
  proto::DrainNodeRequest drain;
  drain.set_node_id_prefix("ffff");
  EXPECT_EQ((call<proto::DrainNodeRequest, proto::DrainNodeResponse>("gcs.drain_node", drain)
                 .status()
                 .code()),
            StatusCode::kNotFound);
  FakeNode a(server_->address(), *NodeId::from_hex("aaaa0000000000000000000000000001"));
  FakeNode b(server_->address(), *NodeId::from_hex("aaaa0000000000000000000000000002"));
  ASSERT_TRUE(a.register_node().ok());
  ASSERT_TRUE(b.register_node().ok());
  drain.set_node_id_prefix("aaaa");
  auto ambiguous = call<proto::DrainNodeRequest, proto::DrainNodeResponse>("gcs.drain_node", drain);
  EXPECT_EQ(ambiguous.status().code(), StatusCode::kInvalidArgument) << ambiguous.status();
  EXPECT_EQ(node_state(*peer_, a.id()), proto::ALIVE);
  EXPECT_EQ(node_state(*peer_, b.id()), proto::ALIVE);
}

TEST_F(GcsMethods, KvRoundTrip) {
  proto::KvPutRequest put;
  put.set_namespace_("session");
  put.set_key("addr/1");
  put.set_value(std::string("\0binary\xff", 8));
  auto added = call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_TRUE(added->added());
  // Without overwrite an existing key is refused and kept.
  put.set_value("other");
  EXPECT_EQ((call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put).status().code()),
            StatusCode::kAlreadyExists);
  proto::KvGetRequest get;
  get.set_namespace_("session");
  get.set_key("addr/1");
  auto got = call<proto::KvGetRequest, proto::KvGetResponse>("gcs.kv_get", get);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->value(), std::string("\0binary\xff", 8));
  put.set_overwrite(true);
  auto replaced = call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put);
  ASSERT_TRUE(replaced.ok());
  EXPECT_FALSE(replaced->added());
  put.set_key("addr/2");
  ASSERT_TRUE((call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put).ok()));
  put.set_key("zzz");
  ASSERT_TRUE((call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put).ok()));
  proto::KvKeysRequest keys;
  keys.set_namespace_("session");
  keys.set_prefix("addr/");
  auto listed = call<proto::KvKeysRequest, proto::KvKeysResponse>("gcs.kv_keys", keys);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->keys_size(), 2);
  EXPECT_EQ(listed->keys(0), "addr/1");
  EXPECT_EQ(listed->keys(1), "addr/2");
  proto::KvDelRequest del;
  del.set_namespace_("session");
  del.set_key("addr/1");
  auto deleted = call<proto::KvDelRequest, proto::KvDelResponse>("gcs.kv_del", del);
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->deleted());
  auto again = call<proto::KvDelRequest, proto::KvDelResponse>("gcs.kv_del", del);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->deleted());
  EXPECT_EQ((call<proto::KvGetRequest, proto::KvGetResponse>("gcs.kv_get", get).status().code()),
            StatusCode::kNotFound);
}

TEST_F(GcsMethods, JobsActorsAndHaDirectoryRoundTrip) {
  proto::AddJobRequest add;
  add.mutable_job()->set_entrypoint("python train.py");
  auto job1 = call<proto::AddJobRequest, proto::AddJobResponse>("gcs.add_job", add);
  auto job2 = call<proto::AddJobRequest, proto::AddJobResponse>("gcs.add_job", add);
  ASSERT_TRUE(job1.ok() && job2.ok());
  EXPECT_EQ(job1->job_id(), 1u);
  EXPECT_EQ(job2->job_id(), 2u);
  proto::FinishJobRequest finish;
  finish.set_job_id(1);
  finish.set_failed(true);
  ASSERT_TRUE(
      (call<proto::FinishJobRequest, proto::FinishJobResponse>("gcs.finish_job", finish).ok()));
  finish.set_job_id(77);
  EXPECT_EQ((call<proto::FinishJobRequest, proto::FinishJobResponse>("gcs.finish_job", finish)
                 .status()
                 .code()),
            StatusCode::kNotFound);
  auto jobs = call<proto::GetJobsRequest, proto::GetJobsResponse>("gcs.get_jobs", {});
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->jobs_size(), 2);
  EXPECT_EQ(jobs->jobs(0).state(), proto::JOB_FAILED);
  EXPECT_GT(jobs->jobs(0).finished_at_ms(), 0);
  EXPECT_EQ(jobs->jobs(1).state(), proto::JOB_RUNNING);
  EXPECT_EQ(jobs->jobs(1).entrypoint(), "python train.py");

  const ActorId actor_id = ActorId::random();
  proto::PutActorRequest put_actor;
  put_actor.mutable_actor()->set_actor_id(actor_id.binary());
  put_actor.mutable_actor()->set_name("trainer");
  put_actor.mutable_actor()->set_state(proto::ACTOR_ALIVE);
  ASSERT_TRUE(
      (call<proto::PutActorRequest, proto::PutActorResponse>("gcs.put_actor", put_actor).ok()));
  auto actors = call<proto::GetActorsRequest, proto::GetActorsResponse>("gcs.get_actors", {});
  ASSERT_TRUE(actors.ok());
  ASSERT_EQ(actors->actors_size(), 1);
  EXPECT_EQ(actors->actors(0).name(), "trainer");
  proto::RemoveActorRequest remove_actor;
  remove_actor.set_actor_id(actor_id.binary());
  ASSERT_TRUE(
      (call<proto::RemoveActorRequest, proto::RemoveActorResponse>("gcs.remove_actor", remove_actor)
           .ok()));
  actors = call<proto::GetActorsRequest, proto::GetActorsResponse>("gcs.get_actors", {});
  ASSERT_TRUE(actors.ok());
  EXPECT_EQ(actors->actors_size(), 0);

  const ObjectId object_id = ObjectId::random();
  proto::PutHaObjectRequest put_object;
  proto::HaObjectInfo* object = put_object.mutable_object();
  object->set_object_id(object_id.binary());
  object->set_size(1 << 20);
  object->set_owner_node_id(NodeId::random().binary());
  object->add_holders(NodeId::random().binary());
  object->add_holders(NodeId::random().binary());
  object->set_copies_wanted(2);
  ASSERT_TRUE(
      (call<proto::PutHaObjectRequest, proto::PutHaObjectResponse>("gcs.put_ha_object", put_object)
           .ok()));
  proto::GetHaObjectRequest get_object;
  get_object.set_object_id(object_id.binary());
  auto got =
      call<proto::GetHaObjectRequest, proto::GetHaObjectResponse>("gcs.get_ha_object", get_object);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->object().SerializeAsString(), object->SerializeAsString());
  proto::RemoveHaObjectRequest remove_object;
  remove_object.set_object_id(object_id.binary());
  ASSERT_TRUE((call<proto::RemoveHaObjectRequest, proto::RemoveHaObjectResponse>(
                   "gcs.remove_ha_object", remove_object)
                   .ok()));
  EXPECT_EQ(
      (call<proto::GetHaObjectRequest, proto::GetHaObjectResponse>("gcs.get_ha_object", get_object)
           .status()
           .code()),
      StatusCode::kNotFound);
}

// Each malformed request is refused with INVALID_ARGUMENT and leaves the log where it was.
TEST_F(GcsMethods, MalformedRequestsAreInvalidArgumentsAndChangeNothing) {
  const uint64_t before = server_->last_index();
  auto expect_invalid = [&]<typename T>(const StatusOr<T>& result, const char* what) {
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument)
        << what << ": " << result.status();
  };
  proto::RegisterNodeRequest no_node;
  expect_invalid(
      call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>("gcs.register_node", no_node),
      "register without node");
  proto::RegisterNodeRequest short_id;
  short_id.mutable_node()->set_node_id("short");
  short_id.mutable_node()->set_address("ucx://127.0.0.1:1");
  expect_invalid(
      call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>("gcs.register_node", short_id),
      "register with a 5-byte id");
  proto::RegisterNodeRequest no_address;
  no_address.mutable_node()->set_node_id(NodeId::random().binary());
  expect_invalid(call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>("gcs.register_node",
                                                                               no_address),
                 "register without address");
  proto::RenewLeaseRequest renew;
  renew.set_node_id(std::string(17, 'x'));
  expect_invalid(
      call<proto::RenewLeaseRequest, proto::RenewLeaseResponse>("gcs.renew_lease", renew),
      "renew with a 17-byte id");
  proto::KvPutRequest huge;
  huge.set_namespace_("ns");
  huge.set_key("k");
  huge.set_value(std::string(config_.kv_max_value_bytes + 1, 'v'));
  expect_invalid(call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", huge),
                 "oversized KV value");
  proto::KvPutRequest empty_key;
  expect_invalid(call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", empty_key),
                 "empty KV key");
  proto::PutActorRequest bad_actor;
  bad_actor.mutable_actor()->set_actor_id(ActorId::random().binary());
  bad_actor.mutable_actor()->set_state(static_cast<proto::ActorState>(1234));
  expect_invalid(call<proto::PutActorRequest, proto::PutActorResponse>("gcs.put_actor", bad_actor),
                 "unknown actor state");
  proto::PutHaObjectRequest no_object;
  expect_invalid(
      call<proto::PutHaObjectRequest, proto::PutHaObjectResponse>("gcs.put_ha_object", no_object),
      "put_ha_object without object");
  proto::AddJobRequest bad_job;
  bad_job.mutable_job()->set_state(static_cast<proto::JobState>(-5));
  expect_invalid(call<proto::AddJobRequest, proto::AddJobResponse>("gcs.add_job", bad_job),
                 "unknown job state");
  proto::PollRequest bad_channel;
  bad_channel.set_channel(static_cast<proto::Channel>(9));
  expect_invalid(call<proto::PollRequest, proto::PollResponse>("gcs.poll", bad_channel),
                 "unknown channel");
  proto::GetHaObjectRequest bad_get;
  bad_get.set_object_id("x");
  expect_invalid(
      call<proto::GetHaObjectRequest, proto::GetHaObjectResponse>("gcs.get_ha_object", bad_get),
      "get_ha_object with a 1-byte id");
  EXPECT_EQ(server_->last_index(), before) << "a refused request reached the log";
  // And the GCS still serves.
  auto status = call<proto::GcsStatusRequest, proto::GcsStatusResponse>("gcs.status", {});
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->last_index(), before);
  EXPECT_EQ(status->fsync_policy(), "always");
}

}  // namespace
}  // namespace halo::gcs::testing
