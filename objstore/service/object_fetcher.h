// Brings objects owned by other nodes into this node's store, as secondary copies: asks the
// owner how big the object is (small ones come back in that answer), reserves room here, and
// has the owner put the bytes straight into the reserved range of this node's registered
// segment (peer.pull: pipelined RMA chunks, then a flush), then seals. Concurrent fetches of
// one object share one transfer.
//
//   fetcher.fetch(id, owner_address, deadline, [](Status s) { /* OK: store.pin() works */ });
//
// Progress-thread only: every method and callback runs on the transport's progress thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "objstore/proto/objstore.pb.h"
#include "objstore/service/peer_links.h"
#include "objstore/store/object_store.h"

namespace halo::objstore {

class ObjectFetcher {
 public:
  using Clock = std::chrono::steady_clock;
  using Done = std::function<void(Status)>;
  // Where room for a fetched object comes from: `reserve(id, size, deadline, done)` calls
  // done with the placement (waiting for room when the store is full) or why not.
  using Reserve = std::function<void(const ObjectId&, uint64_t, Clock::time_point,
                                     std::function<void(StatusOr<Placement>)>)>;

  // Where a fetched object's seal (or abort) is announced, to those who wait for the object
  // without having asked for the fetch.
  using Sealed = std::function<void(const ObjectId&, const Status&)>;

  // `post(fn)` runs fn on the progress thread (inline when already there): RPC deadlines
  // complete on another thread.
  ObjectFetcher(ObjectStore& store, const transport::MemoryRegion& segment_region,
                std::shared_ptr<PeerLinks> links, transport::RpcClient& rpc,
                std::function<void(std::function<void()>)> post, Reserve reserve, Sealed sealed)
      : store_(store),
        region_(segment_region),
        links_(std::move(links)),
        rpc_(rpc),
        post_(std::move(post)),
        reserve_(std::move(reserve)),
        sealed_(std::move(sealed)) {}

  // Whether a fetch of `id` is under way (a get should join it rather than wait for a seal).
  bool fetching(const ObjectId& id) const { return in_flight_.contains(id); }

  // Fetches `id` from `owner_address` unless a fetch of it is under way (then joins it).
  // done(OK): the object is sealed here. NOT_FOUND: the owner does not have it (lost);
  // UNAVAILABLE: the owner cannot be reached (its node is gone: lost as well);
  // DEADLINE_EXCEEDED; RESOURCE_EXHAUSTED/OUT_OF_RANGE: no room here.
  void fetch(const ObjectId& id, const std::string& owner_address, Clock::time_point deadline,
             Done done);

  uint64_t fetches() const { return fetches_; }
  uint64_t fetched_bytes() const { return fetched_bytes_; }

 private:
  void looked_up(const ObjectId& id, const transport::EndpointPtr& owner,
                 Clock::time_point deadline, StatusOr<proto::LookupResponse> lookup);
  void pull(const ObjectId& id, const transport::EndpointPtr& owner, uint64_t size,
            Placement placement, Clock::time_point deadline);
  void finish(const ObjectId& id, Status status);
  // Seals a fetched object (or aborts it after `status`), announces it, and finishes.
  void complete(const ObjectId& id, Status status);

  ObjectStore& store_;
  const transport::MemoryRegion& region_;
  std::shared_ptr<PeerLinks> links_;
  transport::RpcClient& rpc_;
  std::function<void(std::function<void()>)> post_;
  Reserve reserve_;
  Sealed sealed_;
  std::unordered_map<ObjectId, std::vector<Done>> in_flight_;
  std::atomic<uint64_t> fetches_{0};
  std::atomic<uint64_t> fetched_bytes_{0};
};

// The time left until `deadline`, at least 1 ms (RPC timeouts must be positive).
std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point deadline);

}  // namespace halo::objstore
