// The GCS's tables: nodes, jobs, actors, the HA-object directory and the internal KV, changed
// only by Mutations (gcs/proto/gcs.proto) so that the live server and recovery build exactly
// the same state.
//
//   HALO_ASSIGN_OR_RETURN(GcsTables tables, GcsTables::from(opened.recovered, limits));
//   proto::Mutation m;
//   *m.mutable_kv_put() = entry;
//   m.set_at_ms(now_ms);
//   HALO_RETURN_IF_ERROR(tables.check(m));      // INVALID_ARGUMENT, FAILED_PRECONDITION, ...
//   const uint64_t index = tables.last_index() + 1;
//   tables.apply(m, index);                     // Never fails once check() passed.
//   log.append(m, done);                        // Under the same lock: returns `index` too.
//
// Contracts:
// - check() is the only validation: a Mutation it accepts applies cleanly. Ids must have their
//   exact sizes, enums known values, strings and maps bounded sizes (see TableLimits), KV keys
//   non-empty; node state changes must name the row's current incarnation and follow the
//   state machine (docs/gcs.md): ALIVE <-> SUSPECTED -> DEAD -> REMOVED, ALIVE/SUSPECTED ->
//   DRAINING -> REMOVED, and any non-REMOVED state -> REMOVED when the node leaves.
// - apply() is deterministic: it reads nothing but the Mutation and the tables (times come from
//   Mutation.at_ms), so replaying the log reproduces the tables bit for bit. It tolerates
//   records that no longer apply (a state change for an older incarnation is a no-op).
// - Node rows are never erased: a REMOVED row stays (hidden from nodes() unless asked for) so
//   that a node id's incarnations only grow, across re-registrations and restarts.
//
// Not thread-safe: the GCS service guards a GcsTables with its lock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gcs/proto/gcs.pb.h"
#include "gcs/proto/gcs_storage.pb.h"
#include "halo/base/ids.h"
#include "halo/base/status.h"

namespace halo::gcs {

struct RecoveredState;

// Sizes GcsTables::check() accepts; see GcsConfig for why.
struct TableLimits {
  uint64_t kv_max_value_bytes = 1ull << 20;
  uint64_t kv_max_key_bytes = 4096;
  uint64_t max_string_bytes = 4096;  // Addresses, names, reasons, labels.
  uint64_t max_map_entries = 1024;   // Resources and labels of one node.
};

class GcsTables {
 public:
  using Limits = TableLimits;

  explicit GcsTables(Limits limits = {}) : limits_(limits) {}

  // The tables from a snapshot followed by the records after it. A record whose index does not
  // follow the one before is DATA_LOSS (the storage checks this too; a second look is cheap).
  static StatusOr<GcsTables> from(const RecoveredState& recovered, Limits limits = {});
  static StatusOr<GcsTables> from_snapshot(const proto::GcsSnapshot& snapshot, Limits limits = {});

  Status check(const proto::Mutation& mutation) const;
  // Applies `mutation` as log record `index` (> last_index()).
  void apply(const proto::Mutation& mutation, uint64_t index);

  // Every table at last_index(), for a snapshot (REMOVED node rows included).
  proto::GcsSnapshot to_snapshot() const;

  // The log index of the last mutation applied (0 for a new cluster).
  uint64_t last_index() const { return last_index_; }
  // 16 random bytes from the cluster's first record; empty until then.
  const std::string& cluster_id() const { return cluster_id_; }

  // Nodes.
  const proto::NodeInfo* node(const NodeId& id) const;
  std::vector<proto::NodeInfo> nodes(bool include_removed) const;
  // The incarnation a new registration of `id` gets: one more than any before.
  uint64_t next_incarnation(const NodeId& id) const;
  // The non-REMOVED nodes whose hex id starts with `prefix` (for `halo drain PREFIX`).
  std::vector<NodeId> nodes_with_prefix(std::string_view prefix) const;

  // Jobs.
  uint32_t next_job_id() const { return next_job_id_; }
  const proto::JobInfo* job(uint32_t job_id) const;
  std::vector<proto::JobInfo> jobs() const;

  // Actors and HA objects.
  const proto::ActorInfo* actor(const ActorId& id) const;
  std::vector<proto::ActorInfo> actors() const;
  const proto::HaObjectInfo* ha_object(const ObjectId& id) const;
  size_t ha_object_count() const { return ha_objects_.size(); }
  // How the HA objects stand against the node table (what `halo status` shows while
  // re-replication runs). A holder counts while its node is neither DEAD nor REMOVED.
  struct HaHealth {
    uint64_t objects = 0;
    uint64_t bytes = 0;
    uint64_t short_objects = 0;  // Fewer counted holders than copies wanted, at least one.
    uint64_t short_bytes = 0;
    uint64_t lost_objects = 0;  // No counted holder at all.
  };
  HaHealth ha_health() const;

  // KV.
  const std::string* kv_get(const std::string& ns, const std::string& key) const;
  std::vector<std::string> kv_keys(const std::string& ns, const std::string& prefix) const;
  size_t kv_size() const { return kv_.size(); }

  const Limits& limits() const { return limits_; }

 private:
  Status check_node_info(const proto::NodeInfo& node) const;
  Status check_state_change(const proto::NodeStateChange& change) const;
  Status check_kv(const proto::KvEntry& entry, bool with_value) const;

  Limits limits_;
  uint64_t last_index_ = 0;
  std::string cluster_id_;
  std::unordered_map<NodeId, proto::NodeInfo> nodes_;
  std::map<uint32_t, proto::JobInfo> jobs_;
  uint32_t next_job_id_ = 1;
  std::unordered_map<ActorId, proto::ActorInfo> actors_;
  std::unordered_map<ObjectId, proto::HaObjectInfo> ha_objects_;
  // (namespace, key), ordered so that kv_keys(prefix) is a range scan; the comparison is
  // transparent, so a lookup by string_views copies neither string.
  struct KvKeyLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::tie(a.first, a.second) < std::tie(b.first, b.second);
    }
  };
  using KvKeyView = std::pair<std::string_view, std::string_view>;
  std::map<std::pair<std::string, std::string>, std::string, KvKeyLess> kv_;
};

// Names for messages ("ALIVE", "SUSPECTED", ...).
std::string_view node_state_name(proto::NodeState state);

}  // namespace halo::gcs
