// The object table of a node's store: id -> entry (where the bytes are, state, kind, creator,
// pins per client, pending removal, spill file) plus the two indexes the store's policy needs:
// the objects each client has a stake in (for client_gone) and, per copy kind, the evictable
// objects in least-recently-used order.
//
// The table keeps its records consistent; it decides nothing. Which objects are evictable,
// when memory is freed and what is spilled are ObjectStore's rules (object_store.cc).
//
//   ObjectEntry& e = table.add(id, size, offset, client, CopyKind::kPrimary);
//   table.set_state(e, ObjectState::kSealed);
//   table.set_evictable(e, true);            // now the most recently used
//   ObjectEntry* victim = table.least_recently_used(CopyKind::kSecondary);
//
// Entries stay at the same address until erased. Not thread-safe: ObjectStore's lock guards it.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "halo/base/ids.h"
#include "objstore/store/object_info.h"

namespace halo::objstore {

struct ObjectEntry {
  ObjectId id;
  uint64_t size = 0;  // The object's exact size.
  // The object's block in the segment while its bytes are in memory, or while a restore
  // reads them into it.
  std::optional<uint64_t> offset;
  ObjectState state = ObjectState::kCreated;
  CopyKind kind = CopyKind::kPrimary;
  ClientId creator = kNodeClient;
  std::map<ClientId, uint32_t> pins;  // Per client, each > 0.
  uint64_t pin_count = 0;             // Sum of `pins`.
  bool pending_remove = false;        // No reference is left anywhere; free when unpinned.
  bool spilling = false;              // The spill thread is writing `spill_path`.
  bool restoring = false;             // The spill thread is reading `spill_path` into `offset`.
  std::string spill_path;             // A spill file exists (complete unless `spilling`).

 private:
  friend class ObjectTable;
  // Set exactly while the entry is in its kind's LRU list.
  std::optional<std::list<ObjectId>::iterator> lru_position_;
};

class ObjectTable {
 public:
  // Adds an object in state kCreated at `offset`. Precondition: `id` is not in the table.
  ObjectEntry& add(ObjectId id, uint64_t size, uint64_t offset, ClientId creator, CopyKind kind);
  ObjectEntry* find(const ObjectId& id);
  const ObjectEntry* find(const ObjectId& id) const;
  // Removes the entry from the table and every index; `entry` is invalid afterwards.
  void erase(ObjectEntry& entry);

  void set_state(ObjectEntry& entry, ObjectState state);
  void add_pin(ObjectEntry& entry, ClientId client);
  // Drops one pin of `client` on `entry`, or all of them with `all`. Returns how many were
  // dropped: 0 when the client held none.
  uint32_t drop_pins(ObjectEntry& entry, ClientId client, bool all);
  // The objects `client` has a stake in: those it created and has not sealed, and those it pins.
  std::vector<ObjectId> objects_of(ClientId client) const;

  // Puts the entry at the most-recently-used end of its kind's LRU list (true), or takes it
  // out (false). Setting true on an entry already in the list leaves its position.
  void set_evictable(ObjectEntry& entry, bool evictable);
  bool is_evictable(const ObjectEntry& entry) const { return entry.lru_position_.has_value(); }
  // Changes the entry's copy kind, moving it to the new kind's LRU list if it is evictable.
  void set_kind(ObjectEntry& entry, CopyKind kind);
  // The least recently used evictable entry of `kind`, or null.
  ObjectEntry* least_recently_used(CopyKind kind);

  size_t size() const { return entries_.size(); }
  size_t count(ObjectState state) const { return state_counts_[static_cast<size_t>(state)]; }

  template <typename F>
  void for_each(F&& f) const {
    for (const auto& [id, entry] : entries_) f(entry);
  }

 private:
  // Keeps `client`'s stake in `entry` in `stakes_` as the entry says it should be.
  void update_stake(const ObjectEntry& entry, ClientId client);
  void unstake(ClientId client, const ObjectId& id);
  std::list<ObjectId>& lru(CopyKind kind) { return lru_[static_cast<size_t>(kind)]; }

  std::unordered_map<ObjectId, ObjectEntry> entries_;
  std::unordered_map<ClientId, std::unordered_set<ObjectId>> stakes_;
  std::array<std::list<ObjectId>, 2> lru_;  // Front: least recently used.
  std::array<size_t, 3> state_counts_ = {};
};

}  // namespace halo::objstore
