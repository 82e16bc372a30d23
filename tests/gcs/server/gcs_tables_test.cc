// GcsTables alone: what check() refuses, what apply() does, and that a snapshot plus the
// records after it rebuild the same tables (the property recovery rests on).
#include "gcs/server/gcs_tables.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "gcs/storage/durable_log.h"

namespace halo::gcs {
namespace {

proto::Mutation node_put(const NodeId& id, uint64_t incarnation) {
  proto::Mutation m;
  m.set_at_ms(1000);
  proto::NodeInfo* n = m.mutable_node_put();
  n->set_node_id(id.binary());
  n->set_incarnation(incarnation);
  n->set_address("ucx://10.0.0.1:7000");
  n->set_state(proto::ALIVE);
  (*n->mutable_resources())["CPU"] = 4;
  return m;
}

proto::Mutation state_change(const NodeId& id, uint64_t incarnation, proto::NodeState state) {
  proto::Mutation m;
  m.set_at_ms(2000);
  proto::NodeStateChange* c = m.mutable_node_state();
  c->set_node_id(id.binary());
  c->set_incarnation(incarnation);
  c->set_state(state);
  c->set_reason("test");
  return m;
}

proto::Mutation kv_put(const std::string& ns, const std::string& key, const std::string& value) {
  proto::Mutation m;
  m.set_at_ms(3000);
  m.mutable_kv_put()->set_namespace_(ns);
  m.mutable_kv_put()->set_key(key);
  m.mutable_kv_put()->set_value(value);
  return m;
}

// Checks and applies as the service does; fails the test if check refuses.
void commit(GcsTables& t, const proto::Mutation& m) {
  Status s = t.check(m);
  ASSERT_TRUE(s.ok()) << s << " for " << m.ShortDebugString();
  t.apply(m, t.last_index() + 1);
}

proto::Mutation cluster_created() {
  proto::Mutation m;
  m.set_cluster_created(std::string(16, '\x07'));
  return m;
}

TEST(GcsTables, NodeStateMachineRefusesTransitionsOutsideIt) {
  GcsTables t;
  commit(t, cluster_created());
  const NodeId id = NodeId::random();
  commit(t, node_put(id, 1));
  commit(t, state_change(id, 1, proto::SUSPECTED));
  commit(t, state_change(id, 1, proto::ALIVE));
  commit(t, state_change(id, 1, proto::DEAD));
  // DEAD is final for an incarnation: only REMOVED may follow.
  EXPECT_EQ(t.check(state_change(id, 1, proto::ALIVE)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.check(state_change(id, 1, proto::DRAINING)).code(), StatusCode::kFailedPrecondition);
  commit(t, state_change(id, 1, proto::REMOVED));
  EXPECT_EQ(t.check(state_change(id, 1, proto::ALIVE)).code(), StatusCode::kFailedPrecondition);
  // A change naming an older incarnation is refused once the node re-registered.
  commit(t, node_put(id, t.next_incarnation(id)));
  EXPECT_EQ(t.node(id)->incarnation(), 2u);
  EXPECT_EQ(t.check(state_change(id, 1, proto::DEAD)).code(), StatusCode::kFailedPrecondition);
  // Draining ends only in REMOVED.
  commit(t, state_change(id, 2, proto::DRAINING));
  EXPECT_EQ(t.check(state_change(id, 2, proto::ALIVE)).code(), StatusCode::kFailedPrecondition);
  commit(t, state_change(id, 2, proto::REMOVED));
}

TEST(GcsTables, RemovedRowsStaySoIncarnationsOnlyGrow) {
  GcsTables t;
  commit(t, cluster_created());
  const NodeId id = NodeId::random();
  commit(t, node_put(id, 1));
  commit(t, state_change(id, 1, proto::REMOVED));
  EXPECT_TRUE(t.nodes(false).empty());
  ASSERT_EQ(t.nodes(true).size(), 1u);
  EXPECT_EQ(t.next_incarnation(id), 2u);
  // Registering with an incarnation that is not newer is refused.
  EXPECT_EQ(t.check(node_put(id, 1)).code(), StatusCode::kFailedPrecondition);
}

TEST(GcsTables, MalformedMutationsAreInvalidArguments) {
  GcsTables t;
  commit(t, cluster_created());
  proto::Mutation short_id = node_put(NodeId::random(), 1);
  short_id.mutable_node_put()->set_node_id("abc");
  EXPECT_EQ(t.check(short_id).code(), StatusCode::kInvalidArgument);
  proto::Mutation no_address = node_put(NodeId::random(), 1);
  no_address.mutable_node_put()->clear_address();
  EXPECT_EQ(t.check(no_address).code(), StatusCode::kInvalidArgument);
  proto::Mutation bad_state = node_put(NodeId::random(), 1);
  bad_state.mutable_node_put()->set_state(static_cast<proto::NodeState>(99));
  EXPECT_EQ(t.check(bad_state).code(), StatusCode::kInvalidArgument);
  proto::Mutation nan_resource = node_put(NodeId::random(), 1);
  (*nan_resource.mutable_node_put()->mutable_resources())["GPU"] = std::nan("");
  EXPECT_EQ(t.check(nan_resource).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.check(kv_put("ns", "", "v")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.check(kv_put("ns", "k", std::string(t.limits().kv_max_value_bytes + 1, 'x'))).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(t.check(proto::Mutation()).code(), StatusCode::kInvalidArgument);
  proto::Mutation actor;
  actor.mutable_actor_put()->set_actor_id(std::string(15, 'a'));
  EXPECT_EQ(t.check(actor).code(), StatusCode::kInvalidArgument);
  proto::Mutation object;
  object.mutable_ha_object_put()->set_object_id(std::string(16, 'o'));
  object.mutable_ha_object_put()->set_owner_node_id(std::string(16, 'n'));
  object.mutable_ha_object_put()->add_holders("short");
  EXPECT_EQ(t.check(object).code(), StatusCode::kInvalidArgument);
  proto::Mutation job;
  job.mutable_job_put()->set_job_id(3);
  job.mutable_job_put()->set_state(static_cast<proto::JobState>(42));
  EXPECT_EQ(t.check(job).code(), StatusCode::kInvalidArgument);
  // A second cluster_created would change the cluster's identity.
  EXPECT_EQ(t.check(cluster_created()).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.last_index(), 1u) << "a refused mutation must not have been applied";
}

proto::Mutation ha_put(const ObjectId& id, uint64_t size, const std::vector<NodeId>& holders,
                       uint32_t copies_wanted) {
  proto::Mutation m;
  m.set_at_ms(4000);
  proto::HaObjectInfo* o = m.mutable_ha_object_put();
  o->set_object_id(id.binary());
  o->set_size(size);
  o->set_owner_node_id(holders.front().binary());
  for (const NodeId& h : holders) o->add_holders(h.binary());
  o->set_copies_wanted(copies_wanted);
  return m;
}

TEST(GcsTables, HaHealthCountsObjectsShortOfCopiesAndLostOnesFromTheNodeTable) {
  GcsTables t;
  commit(t, cluster_created());
  const NodeId a = NodeId::random(), b = NodeId::random(), c = NodeId::random();
  for (const NodeId& n : {a, b, c}) commit(t, node_put(n, 1));
  commit(t, ha_put(ObjectId::random(), 100, {a, b}, 2));
  commit(t, ha_put(ObjectId::random(), 1000, {b, c}, 2));
  commit(t, ha_put(ObjectId::random(), 10, {a, b, c}, 3));
  GcsTables::HaHealth h = t.ha_health();
  EXPECT_EQ(h.objects, 3u);
  EXPECT_EQ(h.bytes, 1110u);
  EXPECT_EQ(h.short_objects, 0u);
  EXPECT_EQ(h.lost_objects, 0u);

  // b dies: every object is one copy short. SUSPECTED still counts as a holder.
  commit(t, state_change(c, 1, proto::SUSPECTED));
  EXPECT_EQ(t.ha_health().short_objects, 0u);
  commit(t, state_change(b, 1, proto::DEAD));
  h = t.ha_health();
  EXPECT_EQ(h.short_objects, 3u);
  EXPECT_EQ(h.short_bytes, 1110u);
  EXPECT_EQ(h.lost_objects, 0u);

  // c goes too: the object held by b and c only is lost, the others are still short.
  commit(t, state_change(c, 1, proto::DEAD));
  h = t.ha_health();
  EXPECT_EQ(h.lost_objects, 1u);
  EXPECT_EQ(h.short_objects, 2u);
  EXPECT_EQ(h.short_bytes, 110u);

  // A holder missing from the node table does not count either.
  commit(t, ha_put(ObjectId::random(), 5, {NodeId::random()}, 1));
  EXPECT_EQ(t.ha_health().lost_objects, 2u);
}

TEST(GcsTables, KvKeysScansOneNamespaceByPrefix) {
  GcsTables t;
  commit(t, cluster_created());
  for (const char* key : {"a/1", "a/2", "b/1"}) commit(t, kv_put("ns", key, "v"));
  commit(t, kv_put("other", "a/3", "v"));
  EXPECT_EQ(t.kv_keys("ns", "a/"), (std::vector<std::string>{"a/1", "a/2"}));
  EXPECT_EQ(t.kv_keys("ns", ""), (std::vector<std::string>{"a/1", "a/2", "b/1"}));
  proto::Mutation del;
  del.mutable_kv_remove()->set_namespace_("ns");
  del.mutable_kv_remove()->set_key("a/1");
  commit(t, del);
  EXPECT_EQ(t.kv_get("ns", "a/1"), nullptr);
  EXPECT_EQ(t.kv_size(), 3u);
}

// Recovery = snapshot + replay: for random mutation streams cut at random points, the snapshot
// at the cut plus the records after it must give exactly the tables of the whole stream.
TEST(GcsTables, SnapshotPlusReplayRebuildsTheSameTables) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 20; ++round) {
    GcsTables live;
    std::vector<proto::WalRecord> log;
    auto record = [&](const proto::Mutation& m) {
      if (!live.check(m).ok()) return;
      live.apply(m, live.last_index() + 1);
      proto::WalRecord r;
      r.set_index(live.last_index());
      *r.mutable_mutation() = m;
      log.push_back(r);
    };
    record(cluster_created());
    std::vector<NodeId> ids(5);
    for (auto& id : ids) id = NodeId::random();
    for (int i = 0; i < 200; ++i) {
      const NodeId& id = ids[rng() % ids.size()];
      switch (rng() % 5) {
        case 0:
          record(node_put(id, live.next_incarnation(id)));
          break;
        case 1:
          if (const proto::NodeInfo* row = live.node(id)) {
            record(
                state_change(id, row->incarnation(), static_cast<proto::NodeState>(1 + rng() % 5)));
          }
          break;
        case 2: {
          proto::Mutation job;
          job.mutable_job_put()->set_job_id(live.next_job_id());
          job.mutable_job_put()->set_state(proto::JOB_RUNNING);
          record(job);
          break;
        }
        default:
          record(kv_put("ns", std::to_string(rng() % 20), std::to_string(rng())));
      }
    }
    // Cut at a random point: snapshot there, the rest as records.
    const size_t cut = rng() % log.size();
    GcsTables prefix;
    for (size_t i = 0; i < cut; ++i) prefix.apply(log[i].mutation(), log[i].index());
    RecoveredState recovered;
    recovered.snapshot = prefix.to_snapshot();
    recovered.records.assign(log.begin() + static_cast<std::ptrdiff_t>(cut), log.end());
    auto rebuilt = GcsTables::from(recovered);
    ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
    EXPECT_EQ(rebuilt->to_snapshot().SerializeAsString(), live.to_snapshot().SerializeAsString())
        << "round " << round << ", cut at " << cut;
  }
}

TEST(GcsTables, RecoveryRefusesAGapInTheRecords) {
  RecoveredState recovered;
  proto::WalRecord first;
  first.set_index(1);
  *first.mutable_mutation() = cluster_created();
  proto::WalRecord third;
  third.set_index(3);
  *third.mutable_mutation() = kv_put("ns", "k", "v");
  recovered.records = {first, third};
  auto tables = GcsTables::from(recovered);
  EXPECT_EQ(tables.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace halo::gcs
