#include "objstore/store/object_table.h"

#include <utility>

namespace halo::objstore {

ObjectEntry& ObjectTable::add(ObjectId id, uint64_t size, uint64_t offset, ClientId creator,
                              CopyKind kind) {
  ObjectEntry& entry = entries_[id];
  entry.id = id;
  entry.size = size;
  entry.offset = offset;
  entry.state = ObjectState::kCreated;
  entry.kind = kind;
  entry.creator = creator;
  ++state_counts_[static_cast<size_t>(ObjectState::kCreated)];
  update_stake(entry, creator);
  return entry;
}

ObjectEntry* ObjectTable::find(const ObjectId& id) {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

const ObjectEntry* ObjectTable::find(const ObjectId& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

void ObjectTable::erase(ObjectEntry& entry) {
  set_evictable(entry, false);
  --state_counts_[static_cast<size_t>(entry.state)];
  const ObjectId id = entry.id;
  unstake(entry.creator, id);
  for (const auto& [client, count] : entry.pins) unstake(client, id);
  entries_.erase(id);
}

void ObjectTable::set_state(ObjectEntry& entry, ObjectState state) {
  --state_counts_[static_cast<size_t>(entry.state)];
  ++state_counts_[static_cast<size_t>(state)];
  entry.state = state;
  update_stake(entry, entry.creator);
}

void ObjectTable::add_pin(ObjectEntry& entry, ClientId client) {
  ++entry.pins[client];
  ++entry.pin_count;
  update_stake(entry, client);
}

uint32_t ObjectTable::drop_pins(ObjectEntry& entry, ClientId client, bool all) {
  auto held = entry.pins.find(client);
  if (held == entry.pins.end()) return 0;
  const uint32_t dropped = all ? held->second : 1;
  held->second -= dropped;
  entry.pin_count -= dropped;
  if (held->second == 0) entry.pins.erase(held);
  update_stake(entry, client);
  return dropped;
}

std::vector<ObjectId> ObjectTable::objects_of(ClientId client) const {
  auto stake = stakes_.find(client);
  if (stake == stakes_.end()) return {};
  return std::vector<ObjectId>(stake->second.begin(), stake->second.end());
}

void ObjectTable::set_evictable(ObjectEntry& entry, bool evictable) {
  if (evictable == entry.lru_position_.has_value()) return;
  std::list<ObjectId>& list = lru(entry.kind);
  if (evictable) {
    entry.lru_position_ = list.insert(list.end(), entry.id);
  } else {
    list.erase(*entry.lru_position_);
    entry.lru_position_.reset();
  }
}

void ObjectTable::set_kind(ObjectEntry& entry, CopyKind kind) {
  if (entry.kind == kind) return;
  const bool evictable = is_evictable(entry);
  set_evictable(entry, false);
  entry.kind = kind;
  set_evictable(entry, evictable);
}

ObjectEntry* ObjectTable::least_recently_used(CopyKind kind) {
  std::list<ObjectId>& list = lru(kind);
  return list.empty() ? nullptr : find(list.front());
}

void ObjectTable::update_stake(const ObjectEntry& entry, ClientId client) {
  const bool has_stake = (entry.state == ObjectState::kCreated && entry.creator == client) ||
                         entry.pins.count(client) > 0;
  if (has_stake) {
    stakes_[client].insert(entry.id);
  } else {
    unstake(client, entry.id);
  }
}

void ObjectTable::unstake(ClientId client, const ObjectId& id) {
  auto stake = stakes_.find(client);
  if (stake == stakes_.end()) return;
  stake->second.erase(id);
  if (stake->second.empty()) stakes_.erase(stake);
}

}  // namespace halo::objstore
