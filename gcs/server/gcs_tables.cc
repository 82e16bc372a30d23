#include "gcs/server/gcs_tables.h"

#include <algorithm>
#include <cmath>

#include "gcs/storage/durable_log.h"

namespace halo::gcs {

namespace {

using proto::NodeState;

Status id_size_error(std::string_view what, size_t expected, size_t got) {
  return invalid_argument_error(
      str_cat(what, " must be ", expected, " bytes (a halo id), got ", got));
}

// True for the transitions of docs/gcs.md's state machine.
bool transition_allowed(NodeState from, NodeState to) {
  switch (from) {
    case proto::ALIVE:
      return to == proto::SUSPECTED || to == proto::DEAD || to == proto::DRAINING ||
             to == proto::REMOVED;
    case proto::SUSPECTED:
      return to == proto::ALIVE || to == proto::DEAD || to == proto::DRAINING ||
             to == proto::REMOVED;
    case proto::DRAINING:
    case proto::DEAD:
      return to == proto::REMOVED;
    default:
      return false;
  }
}

}  // namespace

std::string_view node_state_name(proto::NodeState state) {
  switch (state) {
    case proto::ALIVE:
      return "ALIVE";
    case proto::SUSPECTED:
      return "SUSPECTED";
    case proto::DEAD:
      return "DEAD";
    case proto::DRAINING:
      return "DRAINING";
    case proto::REMOVED:
      return "REMOVED";
    default:
      return "UNSPECIFIED";
  }
}

StatusOr<GcsTables> GcsTables::from_snapshot(const proto::GcsSnapshot& snapshot, Limits limits) {
  GcsTables t(limits);
  t.last_index_ = snapshot.last_index();
  t.cluster_id_ = snapshot.cluster_id();
  for (const auto& node : snapshot.nodes()) {
    auto id = NodeId::from_binary(node.node_id());
    if (!id.ok()) return data_loss_error(str_cat("snapshot node row: ", id.status().message()));
    t.nodes_[*id] = node;
  }
  for (const auto& job : snapshot.jobs()) t.jobs_[job.job_id()] = job;
  t.next_job_id_ = std::max<uint32_t>(1, snapshot.next_job_id());
  for (const auto& actor : snapshot.actors()) {
    auto id = ActorId::from_binary(actor.actor_id());
    if (!id.ok()) return data_loss_error(str_cat("snapshot actor row: ", id.status().message()));
    t.actors_[*id] = actor;
  }
  for (const auto& object : snapshot.ha_objects()) {
    auto id = ObjectId::from_binary(object.object_id());
    if (!id.ok()) return data_loss_error(str_cat("snapshot HA object: ", id.status().message()));
    t.ha_objects_[*id] = object;
  }
  for (const auto& entry : snapshot.kv()) t.kv_[{entry.namespace_(), entry.key()}] = entry.value();
  return t;
}

StatusOr<GcsTables> GcsTables::from(const RecoveredState& recovered, Limits limits) {
  HALO_ASSIGN_OR_RETURN(GcsTables t, from_snapshot(recovered.snapshot, limits));
  for (const auto& record : recovered.records) {
    if (record.index() != t.last_index_ + 1) {
      return data_loss_error(str_cat("log record ", record.index(), " follows record ",
                                     t.last_index_,
                                     ": the log has a gap; restore the data "
                                     "directory from a backup"));
    }
    t.apply(record.mutation(), record.index());
  }
  return t;
}

Status GcsTables::check_node_info(const proto::NodeInfo& node) const {
  if (node.node_id().size() != NodeId::kSize) {
    return id_size_error("node.node_id", NodeId::kSize, node.node_id().size());
  }
  if (node.address().empty()) {
    return invalid_argument_error(
        "node.address is empty: a node must give the transport "
        "address its peers connect to");
  }
  for (const std::string* s : {&node.address(), &node.hostname(), &node.state_reason()}) {
    if (s->size() > limits_.max_string_bytes) {
      return invalid_argument_error(str_cat("a node string field has ", s->size(),
                                            " bytes; at most ", limits_.max_string_bytes));
    }
  }
  if (!proto::NodeState_IsValid(node.state())) {
    return invalid_argument_error(str_cat("unknown node state ", static_cast<int>(node.state())));
  }
  if (static_cast<uint64_t>(node.resources_size()) > limits_.max_map_entries ||
      static_cast<uint64_t>(node.labels_size()) > limits_.max_map_entries) {
    return invalid_argument_error(str_cat("node has ", node.resources_size(), " resources and ",
                                          node.labels_size(), " labels; at most ",
                                          limits_.max_map_entries, " of each"));
  }
  for (const auto& [name, amount] : node.resources()) {
    if (name.empty() || name.size() > limits_.max_string_bytes || !std::isfinite(amount) ||
        amount < 0) {
      return invalid_argument_error(str_cat("resource \"", name.substr(0, 64), "\" = ", amount,
                                            ": names must be non-empty and amounts finite and "
                                            "not negative"));
    }
  }
  for (const auto& [key, value] : node.labels()) {
    if (key.empty() || key.size() > limits_.max_string_bytes ||
        value.size() > limits_.max_string_bytes) {
      return invalid_argument_error(str_cat("label \"", key.substr(0, 64),
                                            "\": keys must be non-empty and at most ",
                                            limits_.max_string_bytes, " bytes, values too"));
    }
  }
  return Status();
}

Status GcsTables::check_state_change(const proto::NodeStateChange& change) const {
  auto id = NodeId::from_binary(change.node_id());
  if (!id.ok()) return id.status().with_context("node_state.node_id");
  if (!proto::NodeState_IsValid(change.state()) ||
      change.state() == proto::NODE_STATE_UNSPECIFIED) {
    return invalid_argument_error(str_cat("unknown node state ", static_cast<int>(change.state())));
  }
  if (change.reason().size() > limits_.max_string_bytes) {
    return invalid_argument_error(str_cat("reason has ", change.reason().size(), " bytes; at most ",
                                          limits_.max_string_bytes));
  }
  const proto::NodeInfo* row = node(*id);
  if (row == nullptr) {
    return not_found_error(str_cat("node ", id->to_hex(), " is not registered"));
  }
  if (row->incarnation() != change.incarnation()) {
    return failed_precondition_error(
        str_cat("node ", id->to_hex(), " incarnation ", change.incarnation(),
                " is not current (the GCS knows incarnation ", row->incarnation(), ")"));
  }
  if (!transition_allowed(row->state(), change.state())) {
    return failed_precondition_error(str_cat("node ", id->to_hex(), " cannot go from ",
                                             node_state_name(row->state()), " to ",
                                             node_state_name(change.state())));
  }
  return Status();
}

Status GcsTables::check_kv(const proto::KvEntry& entry, bool with_value) const {
  if (entry.key().empty()) return invalid_argument_error("KV key is empty");
  if (entry.key().size() > limits_.kv_max_key_bytes) {
    return invalid_argument_error(str_cat("KV key has ", entry.key().size(), " bytes; at most ",
                                          limits_.kv_max_key_bytes, " (kv_max_key_bytes)"));
  }
  if (entry.namespace_().size() > limits_.max_string_bytes) {
    return invalid_argument_error(str_cat("KV namespace has ", entry.namespace_().size(),
                                          " bytes; at most ", limits_.max_string_bytes));
  }
  if (with_value && entry.value().size() > limits_.kv_max_value_bytes) {
    return invalid_argument_error(
        str_cat("KV value for key of namespace \"", entry.namespace_(), "\" has ",
                entry.value().size(), " bytes; at most ", limits_.kv_max_value_bytes,
                " (kv_max_value_bytes): store large data as objects, not in the KV"));
  }
  return Status();
}

Status GcsTables::check(const proto::Mutation& m) const {
  switch (m.kind_case()) {
    case proto::Mutation::kClusterCreated:
      if (!cluster_id_.empty()) return failed_precondition_error("the cluster already exists");
      if (m.cluster_created().size() != 16) {
        return id_size_error("cluster id", 16, m.cluster_created().size());
      }
      return Status();
    case proto::Mutation::kNodePut: {
      HALO_RETURN_IF_ERROR(check_node_info(m.node_put()));
      auto id = NodeId::from_binary(m.node_put().node_id());
      if (m.node_put().incarnation() < next_incarnation(*id)) {
        return failed_precondition_error(
            str_cat("node ", id->to_hex(), " incarnation ", m.node_put().incarnation(),
                    " is not newer than the ones the GCS gave before"));
      }
      return Status();
    }
    case proto::Mutation::kNodeState:
      return check_state_change(m.node_state());
    case proto::Mutation::kJobPut: {
      const auto& job = m.job_put();
      if (job.job_id() == 0) return invalid_argument_error("job_id 0 is not a job");
      if (!proto::JobState_IsValid(job.state()) || job.state() == proto::JOB_STATE_UNSPECIFIED) {
        return invalid_argument_error(str_cat("unknown job state ", static_cast<int>(job.state())));
      }
      if (!job.driver_node_id().empty() && job.driver_node_id().size() != NodeId::kSize) {
        return id_size_error("job.driver_node_id", NodeId::kSize, job.driver_node_id().size());
      }
      if (job.driver_address().size() > limits_.max_string_bytes ||
          job.entrypoint().size() > limits_.max_string_bytes) {
        return invalid_argument_error(
            str_cat("job strings are limited to ", limits_.max_string_bytes, " bytes"));
      }
      return Status();
    }
    case proto::Mutation::kActorPut: {
      const auto& actor = m.actor_put();
      if (actor.actor_id().size() != ActorId::kSize) {
        return id_size_error("actor.actor_id", ActorId::kSize, actor.actor_id().size());
      }
      if (!actor.node_id().empty() && actor.node_id().size() != NodeId::kSize) {
        return id_size_error("actor.node_id", NodeId::kSize, actor.node_id().size());
      }
      if (!proto::ActorState_IsValid(actor.state())) {
        return invalid_argument_error(
            str_cat("unknown actor state ", static_cast<int>(actor.state())));
      }
      if (actor.name().size() > limits_.max_string_bytes ||
          actor.namespace_().size() > limits_.max_string_bytes ||
          actor.address().size() > limits_.max_string_bytes) {
        return invalid_argument_error(
            str_cat("actor strings are limited to ", limits_.max_string_bytes, " bytes"));
      }
      return Status();
    }
    case proto::Mutation::kActorRemove:
      if (m.actor_remove().size() != ActorId::kSize) {
        return id_size_error("actor_id", ActorId::kSize, m.actor_remove().size());
      }
      return Status();
    case proto::Mutation::kHaObjectPut: {
      const auto& object = m.ha_object_put();
      if (object.object_id().size() != ObjectId::kSize) {
        return id_size_error("object.object_id", ObjectId::kSize, object.object_id().size());
      }
      if (object.owner_node_id().size() != NodeId::kSize) {
        return id_size_error("object.owner_node_id", NodeId::kSize, object.owner_node_id().size());
      }
      if (static_cast<uint64_t>(object.holders_size()) > limits_.max_map_entries) {
        return invalid_argument_error(str_cat("object has ", object.holders_size(),
                                              " holders; at most ", limits_.max_map_entries));
      }
      for (const auto& holder : object.holders()) {
        if (holder.size() != NodeId::kSize) {
          return id_size_error("object.holders[]", NodeId::kSize, holder.size());
        }
      }
      return Status();
    }
    case proto::Mutation::kHaObjectRemove:
      if (m.ha_object_remove().size() != ObjectId::kSize) {
        return id_size_error("object_id", ObjectId::kSize, m.ha_object_remove().size());
      }
      return Status();
    case proto::Mutation::kKvPut:
      return check_kv(m.kv_put(), true);
    case proto::Mutation::kKvRemove:
      return check_kv(m.kv_remove(), false);
    case proto::Mutation::KIND_NOT_SET:
      break;
  }
  return invalid_argument_error("mutation has no kind (an unknown or empty change)");
}

void GcsTables::apply(const proto::Mutation& m, uint64_t index) {
  last_index_ = index;
  switch (m.kind_case()) {
    case proto::Mutation::kClusterCreated:
      cluster_id_ = m.cluster_created();
      break;
    case proto::Mutation::kNodePut: {
      auto id = NodeId::from_binary(m.node_put().node_id());
      if (!id.ok()) break;
      proto::NodeInfo& row = nodes_[*id];
      row = m.node_put();
      if (row.state() == proto::NODE_STATE_UNSPECIFIED) row.set_state(proto::ALIVE);
      if (row.registered_at_ms() == 0) row.set_registered_at_ms(m.at_ms());
      if (row.state_changed_at_ms() == 0) row.set_state_changed_at_ms(m.at_ms());
      break;
    }
    case proto::Mutation::kNodeState: {
      auto id = NodeId::from_binary(m.node_state().node_id());
      if (!id.ok()) break;
      auto it = nodes_.find(*id);
      if (it == nodes_.end() || it->second.incarnation() != m.node_state().incarnation()) break;
      it->second.set_state(m.node_state().state());
      it->second.set_state_reason(m.node_state().reason());
      it->second.set_state_changed_at_ms(m.at_ms());
      break;
    }
    case proto::Mutation::kJobPut:
      jobs_[m.job_put().job_id()] = m.job_put();
      if (m.job_put().job_id() >= next_job_id_) next_job_id_ = m.job_put().job_id() + 1;
      break;
    case proto::Mutation::kActorPut: {
      auto id = ActorId::from_binary(m.actor_put().actor_id());
      if (id.ok()) actors_[*id] = m.actor_put();
      break;
    }
    case proto::Mutation::kActorRemove: {
      auto id = ActorId::from_binary(m.actor_remove());
      if (id.ok()) actors_.erase(*id);
      break;
    }
    case proto::Mutation::kHaObjectPut: {
      auto id = ObjectId::from_binary(m.ha_object_put().object_id());
      if (id.ok()) ha_objects_[*id] = m.ha_object_put();
      break;
    }
    case proto::Mutation::kHaObjectRemove: {
      auto id = ObjectId::from_binary(m.ha_object_remove());
      if (id.ok()) ha_objects_.erase(*id);
      break;
    }
    case proto::Mutation::kKvPut: {
      const proto::KvEntry& e = m.kv_put();
      if (auto it = kv_.find(KvKeyView{e.namespace_(), e.key()}); it != kv_.end()) {
        it->second = e.value();
      } else {
        kv_.emplace(std::pair{e.namespace_(), e.key()}, e.value());
      }
      break;
    }
    case proto::Mutation::kKvRemove:
      if (auto it = kv_.find(KvKeyView{m.kv_remove().namespace_(), m.kv_remove().key()});
          it != kv_.end()) {
        kv_.erase(it);
      }
      break;
    case proto::Mutation::KIND_NOT_SET:
      break;
  }
}

proto::GcsSnapshot GcsTables::to_snapshot() const {
  proto::GcsSnapshot s;
  s.set_format_version(1);
  s.set_cluster_id(cluster_id_);
  s.set_last_index(last_index_);
  s.set_next_job_id(next_job_id_);
  // Rows are written in id order, so two snapshots of the same tables are the same bytes.
  std::vector<const proto::NodeInfo*> nodes;
  nodes.reserve(nodes_.size());
  for (const auto& [id, row] : nodes_) nodes.push_back(&row);
  std::sort(nodes.begin(), nodes.end(),
            [](auto* a, auto* b) { return a->node_id() < b->node_id(); });
  for (const auto* row : nodes) *s.add_nodes() = *row;
  for (const auto& [id, job] : jobs_) *s.add_jobs() = job;
  std::map<ActorId, const proto::ActorInfo*> actors;
  for (const auto& [id, actor] : actors_) actors[id] = &actor;
  for (const auto& [id, actor] : actors) *s.add_actors() = *actor;
  std::map<ObjectId, const proto::HaObjectInfo*> objects;
  for (const auto& [id, object] : ha_objects_) objects[id] = &object;
  for (const auto& [id, object] : objects) *s.add_ha_objects() = *object;
  s.mutable_kv()->Reserve(static_cast<int>(kv_.size()));
  for (const auto& [key, value] : kv_) {
    proto::KvEntry* e = s.add_kv();
    e->set_namespace_(key.first);
    e->set_key(key.second);
    e->set_value(value);
  }
  return s;
}

const proto::NodeInfo* GcsTables::node(const NodeId& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

std::vector<proto::NodeInfo> GcsTables::nodes(bool include_removed) const {
  std::vector<proto::NodeInfo> out;
  out.reserve(nodes_.size());
  for (const auto& [id, row] : nodes_) {
    if (include_removed || row.state() != proto::REMOVED) out.push_back(row);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.node_id() < b.node_id(); });
  return out;
}

uint64_t GcsTables::next_incarnation(const NodeId& id) const {
  const proto::NodeInfo* row = node(id);
  return row == nullptr ? 1 : row->incarnation() + 1;
}

std::vector<NodeId> GcsTables::nodes_with_prefix(std::string_view prefix) const {
  std::vector<NodeId> out;
  for (const auto& [id, row] : nodes_) {
    if (row.state() != proto::REMOVED && id.to_hex().starts_with(prefix)) out.push_back(id);
  }
  return out;
}

const proto::JobInfo* GcsTables::job(uint32_t job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

std::vector<proto::JobInfo> GcsTables::jobs() const {
  std::vector<proto::JobInfo> out;
  out.reserve(jobs_.size());
  for (const auto& [id, job] : jobs_) out.push_back(job);
  return out;
}

const proto::ActorInfo* GcsTables::actor(const ActorId& id) const {
  auto it = actors_.find(id);
  return it == actors_.end() ? nullptr : &it->second;
}

std::vector<proto::ActorInfo> GcsTables::actors() const {
  std::vector<proto::ActorInfo> out;
  out.reserve(actors_.size());
  for (const auto& [id, actor] : actors_) out.push_back(actor);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.actor_id() < b.actor_id(); });
  return out;
}

const proto::HaObjectInfo* GcsTables::ha_object(const ObjectId& id) const {
  auto it = ha_objects_.find(id);
  return it == ha_objects_.end() ? nullptr : &it->second;
}

GcsTables::HaHealth GcsTables::ha_health() const {
  HaHealth health;
  for (const auto& [id, object] : ha_objects_) {
    uint32_t live = 0;
    for (const std::string& holder : object.holders()) {
      auto node_id = NodeId::from_binary(holder);
      const proto::NodeInfo* row = node_id.ok() ? node(*node_id) : nullptr;
      if (row != nullptr && row->state() != proto::DEAD && row->state() != proto::REMOVED) ++live;
    }
    ++health.objects;
    health.bytes += object.size();
    if (live == 0) {
      ++health.lost_objects;
    } else if (live < object.copies_wanted()) {
      ++health.short_objects;
      health.short_bytes += object.size();
    }
  }
  return health;
}

const std::string* GcsTables::kv_get(const std::string& ns, const std::string& key) const {
  auto it = kv_.find(KvKeyView{ns, key});
  return it == kv_.end() ? nullptr : &it->second;
}

std::vector<std::string> GcsTables::kv_keys(const std::string& ns,
                                            const std::string& prefix) const {
  std::vector<std::string> out;
  for (auto it = kv_.lower_bound(KvKeyView{ns, prefix});
       it != kv_.end() && it->first.first == ns && it->first.second.starts_with(prefix); ++it) {
    out.push_back(it->first.second);
  }
  return out;
}

}  // namespace halo::gcs
