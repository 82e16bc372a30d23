// What a node's object store needs from the cluster to keep HA objects (docs/objstore.md,
// "HA objects"): whether this node may take copies, which nodes could take one, where an
// object's copies are, and a place to record them. The node daemon implements it with its GCS
// client (launcher/node/gcs_ha_directory.h); the store service calls it from the transport's
// progress thread, so every call returns at once; those that ask the GCS answer later, on
// another thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "halo/base/ids.h"
#include "halo/base/status.h"

namespace halo::objstore {

// A node that could take a copy.
struct HaCandidate {
  NodeId node;
  std::string address;         // Its daemon's transport address.
  std::string failure_domain;  // Its "failure_domain" label; empty when it has none.
};

// What the directory says about one HA object.
struct HaRecord {
  uint64_t size = 0;
  NodeId owner;  // The creating node.
  uint32_t copies_wanted = 0;
  struct Holder {
    NodeId node;
    std::string address;  // Empty when the node is no longer in the node table.
    bool alive = false;   // Neither DEAD nor REMOVED (nor unknown).
  };
  std::vector<Holder> holders;  // In recorded order.
};

class HaDirectory {
 public:
  virtual ~HaDirectory() = default;

  // OK when this node may take a new HA copy; FAILED_PRECONDITION saying why not (fenced,
  // draining, stopping). Answers at once (it may take a short lock).
  virtual Status admit_copy() = 0;
  // This node's failure domain and the ALIVE nodes other than this one. May answer at once,
  // on the caller's thread (the node daemon's directory keeps the node table it follows).
  struct Candidates {
    std::string own_failure_domain;
    std::vector<HaCandidate> nodes;
  };
  virtual void candidates(std::function<void(StatusOr<Candidates>)> done) = 0;
  // Records that `holders` keep primary copies of `id` (created on `owner`), durably: the GCS
  // directory then owns the object. Replaces what was recorded before.
  virtual void record(const ObjectId& id, uint64_t size, const NodeId& owner,
                      const std::vector<NodeId>& holders, uint32_t copies_wanted,
                      std::function<void(Status)> done) = 0;
  // Removes `id` from the directory (its copies are being freed).
  virtual void forget(const ObjectId& id, std::function<void(Status)> done) = 0;
  // What the directory records about `id`, with each holder's address and liveness from the
  // node table. NOT_FOUND when `id` is not an HA object.
  virtual void lookup(const ObjectId& id, std::function<void(StatusOr<HaRecord>)> done) = 0;
  // From now on, `listener` hears of every node the GCS declares DEAD, with the transport
  // address it had (from another thread; a node may be reported more than once). Set once.
  virtual void on_node_dead(
      std::function<void(const NodeId&, const std::string& address)> listener) = 0;
};

// The order in which to ask `candidates` for copies: nodes in failure domains not yet used
// (starting with `own_failure_domain`) first, the rest after, for when a chosen node fails.
// Nodes without a domain count as each in its own. The walk over `candidates` starts at index
// `start` (modulo their number) and wraps around, so that objects given different starts (the
// store uses a hash of the object id) spread their copies over the nodes.
std::vector<HaCandidate> order_for_copies(std::vector<HaCandidate> candidates,
                                          const std::string& own_failure_domain, size_t start = 0);

}  // namespace halo::objstore
