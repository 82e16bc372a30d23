// Who holds references to which objects, as one node daemon sees it: the clients on this node
// and, for objects this node owns, the other nodes that borrow them. It decides when an object
// is freed; it does no I/O itself but returns what the service must do.
//
// The model (docs/objstore.md, "Reference counting"): every object has one owner node, the node
// whose store it was created in. A client holds a reference while any ObjectRef to the object
// lives in its process (the client library counts copies and tells its node only about the
// first and the last). A node that holds references to an object it does not own is a borrower:
// it tells the owner when it starts and when it stops. The owner frees the object when neither
// a client of its own nor any borrower holds a reference; a borrower drops its secondary copy
// when its own clients are done. A client that dies drops its references; a borrower node that
// dies is dropped by the owner.
//
//   RefTable refs(my_address);
//   refs.created(id, client);                      // A put: the creator holds the first ref.
//   RefActions a = refs.remove_refs(client, {id});
//   for (ObjectId id : a.free) store.remove(id);   // Nobody holds it any more.
//
// Not thread-safe: the service calls it from the transport's progress thread only.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "objstore/store/object_info.h"

namespace halo::objstore {

// A reference as clients pass it: the object and the address of its owner node.
struct RefSpec {
  ObjectId id;
  std::string owner_address;
};

// What the service must do after a change.
struct RefActions {
  std::vector<ObjectId> free;     // Remove from the local store (primary or secondary copy).
  std::vector<RefSpec> borrow;    // Tell the owner this node now holds references.
  std::vector<RefSpec> unborrow;  // Tell the owner this node holds none any more.
  void append(RefActions other);
};

class RefTable {
 public:
  explicit RefTable(std::string self_address) : self_(std::move(self_address)) {}

  // An object created here by `client`, which holds the first reference.
  void created(const ObjectId& id, ClientId client);
  // `client` now holds references to these objects. An object created here that was freed
  // already cannot be referenced again: FAILED_PRECONDITION naming it (nothing changes then).
  StatusOr<RefActions> add_refs(ClientId client, const std::vector<RefSpec>& refs);
  RefActions remove_refs(ClientId client, const std::vector<ObjectId>& ids);
  // The client is gone: every reference it held is dropped.
  RefActions client_gone(ClientId client);

  // Another node borrows / stops borrowing an object owned here. add_borrower fails with
  // NOT_FOUND when the object was freed before the borrower arrived.
  Status add_borrower(const ObjectId& id, const NodeId& node);
  RefActions remove_borrower(const ObjectId& id, const NodeId& node);
  // A node died: it borrows nothing any more.
  RefActions node_gone(const NodeId& node);

  // HA objects whose owner node died (docs/objstore.md, "HA objects"): this node takes over
  // `id` and owns it from now on; `holder` holds a reference until the other nodes have said
  // whether they borrow it (remove_refs(holder, {id}) then).
  void adopt(const ObjectId& id, ClientId holder);
  // `new_owner` owns `id` now: references here borrow from it, also those taken later with
  // the old owner's address. True when clients here hold references to it.
  bool owner_moved(const ObjectId& id, const std::string& new_owner);

  bool referenced(const ObjectId& id) const { return entries_.contains(id); }
  size_t size() const { return entries_.size(); }
  size_t borrowers(const ObjectId& id) const;

 private:
  struct Entry {
    std::string owner_address;
    std::unordered_set<ClientId> clients;
    std::unordered_set<NodeId> borrowers;  // Only for objects owned here.
  };
  bool owned_here(const Entry& e) const { return e.owner_address == self_; }
  // Frees or unborrows `id` when nothing holds it any more.
  void settle(const ObjectId& id, RefActions& actions);

  const std::string self_;
  std::unordered_map<ObjectId, Entry> entries_;
  std::unordered_map<ClientId, std::unordered_set<ObjectId>> by_client_;
  std::unordered_map<ObjectId, std::string> moved_;  // HA objects' new owners.
};

}  // namespace halo::objstore
