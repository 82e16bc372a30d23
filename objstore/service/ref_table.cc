#include "objstore/service/ref_table.h"

#include <utility>

#include "halo/base/status.h"

namespace halo::objstore {

void RefActions::append(RefActions other) {
  free.insert(free.end(), other.free.begin(), other.free.end());
  borrow.insert(borrow.end(), other.borrow.begin(), other.borrow.end());
  unborrow.insert(unborrow.end(), other.unborrow.begin(), other.unborrow.end());
}

void RefTable::created(const ObjectId& id, ClientId client) {
  Entry& e = entries_[id];
  e.owner_address = self_;
  e.clients.insert(client);
  by_client_[client].insert(id);
}

StatusOr<RefActions> RefTable::add_refs(ClientId client, const std::vector<RefSpec>& given) {
  std::vector<RefSpec> refs = given;
  for (RefSpec& ref : refs) {
    if (auto moved = moved_.find(ref.id); moved != moved_.end()) ref.owner_address = moved->second;
  }
  for (const RefSpec& ref : refs) {
    if (ref.owner_address == self_ && !entries_.contains(ref.id)) {
      return failed_precondition_error(
          str_cat("object ", ref.id.to_hex(),
                  " was freed: no reference to it remained (keep an ObjectRef alive while "
                  "another process may still take one from it)"));
    }
  }
  RefActions actions;
  for (const RefSpec& ref : refs) {
    auto [it, inserted] = entries_.try_emplace(ref.id);
    Entry& e = it->second;
    if (inserted) {
      e.owner_address = ref.owner_address;
      if (!owned_here(e)) actions.borrow.push_back(ref);
    }
    e.clients.insert(client);
    by_client_[client].insert(ref.id);
  }
  return actions;
}

RefActions RefTable::remove_refs(ClientId client, const std::vector<ObjectId>& ids) {
  RefActions actions;
  auto held = by_client_.find(client);
  for (const ObjectId& id : ids) {
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.clients.erase(client) == 0) continue;
    if (held != by_client_.end()) held->second.erase(id);
    settle(id, actions);
  }
  if (held != by_client_.end() && held->second.empty()) by_client_.erase(held);
  return actions;
}

RefActions RefTable::client_gone(ClientId client) {
  auto held = by_client_.find(client);
  if (held == by_client_.end()) return {};
  std::vector<ObjectId> ids(held->second.begin(), held->second.end());
  return remove_refs(client, ids);
}

Status RefTable::add_borrower(const ObjectId& id, const NodeId& node) {
  auto it = entries_.find(id);
  if (it == entries_.end() || !owned_here(it->second)) {
    return not_found_error(str_cat("object ", id.to_hex(), " is not owned by node ", self_,
                                   " (freed, or never created here)"));
  }
  it->second.borrowers.insert(node);
  return Status();
}

RefActions RefTable::remove_borrower(const ObjectId& id, const NodeId& node) {
  RefActions actions;
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.borrowers.erase(node) == 0) return actions;
  settle(id, actions);
  return actions;
}

RefActions RefTable::node_gone(const NodeId& node) {
  std::vector<ObjectId> borrowed;
  for (const auto& [id, e] : entries_) {
    if (e.borrowers.contains(node)) borrowed.push_back(id);
  }
  RefActions actions;
  for (const ObjectId& id : borrowed) actions.append(remove_borrower(id, node));
  return actions;
}

void RefTable::adopt(const ObjectId& id, ClientId holder) {
  moved_[id] = self_;
  Entry& e = entries_[id];
  e.owner_address = self_;
  e.clients.insert(holder);
  by_client_[holder].insert(id);
}

bool RefTable::owner_moved(const ObjectId& id, const std::string& new_owner) {
  moved_[id] = new_owner;
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  it->second.owner_address = new_owner;
  return !it->second.clients.empty();
}

size_t RefTable::borrowers(const ObjectId& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? 0 : it->second.borrowers.size();
}

void RefTable::settle(const ObjectId& id, RefActions& actions) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (!e.clients.empty() || !e.borrowers.empty()) return;
  if (!owned_here(e)) actions.unborrow.push_back({id, e.owner_address});
  actions.free.push_back(id);
  entries_.erase(it);
}

}  // namespace halo::objstore
