// The object store's face in a node daemon (docs/objstore.md): the store itself (a
// shared-memory segment registered once with the transport), the RPC methods local clients
// call ("store.*": connect, create/seal, put_inline, arenas and batches, get, wait, references,
// stats) and those
// other node daemons call ("peer.*": lookup, pull, borrow). It fetches objects owned by other
// nodes (ObjectFetcher), decides with the RefTable when objects are freed, and cleans up after
// a client or a peer node that goes away.
//
//   auto service = StoreService::start(store_config, node_id, transport, rpc,
//                                      node_memory_bytes, "eth0").value();
//   HALO_RETURN_IF_ERROR(transport.listen(host, port));
//   service->set_address(transport.local_address());   // The owner address of new objects.
//   ...
//   service->stop();                                     // Before the transport goes.
//
// Failure: a client whose connection fails or closes loses its references and pins, and the
// objects it had created but not sealed are aborted (their space comes back). A get of an
// object whose owner node cannot be reached, or no longer has it, fails with NOT_FOUND or
// UNAVAILABLE, which the client library raises as ObjectLostError; it never waits beyond its
// timeout. A node that borrowed objects from this one and whose connection failed is dropped
// as a borrower.
//
// Threads: every handler and callback runs on the transport's progress thread (work that
// arrives elsewhere, such as deadlines and the store's spill thread, is posted there), so the
// service's state needs no lock; stats() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "halo/base/deadline_timer.h"
#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "objstore/proto/objstore.pb.h"
#include "objstore/service/ha_directory.h"
#include "objstore/service/object_fetcher.h"
#include "objstore/service/peer_links.h"
#include "objstore/service/ref_table.h"
#include "objstore/service/store_config.h"
#include "objstore/store/object_store.h"

namespace halo::objstore {

class StoreService {
 public:
  using Clock = std::chrono::steady_clock;

  // Creates the store (object_store_memory bytes; 0 = 30% of `node_memory_bytes`; its memory
  // near `net_interface` unless config.numa_node says where), registers its segment with
  // `transport`, and installs the handlers on `rpc`: call before listen.
  static StatusOr<std::unique_ptr<StoreService>> start(
      const StoreConfig& config, const NodeId& node_id, transport::Transport& transport,
      transport::RpcNode& rpc, uint64_t node_memory_bytes, const std::string& net_interface);
  ~StoreService();
  StoreService(const StoreService&) = delete;
  StoreService& operator=(const StoreService&) = delete;

  // The node's transport address, once it listens: the owner address of objects created here.
  void set_address(const std::string& address);
  // Runs for every failed endpoint (wire it to the transport's failure handler).
  void endpoint_failed(const transport::EndpointPtr& endpoint);
  // Stops timers and the store's notifications and closes connections to peers; nothing is
  // posted to the transport afterwards. Call before the transport is destroyed, and destroy
  // the service after it (transfers in flight write into the segment until the transport has
  // stopped). Idempotent.
  void stop();

  // Lets the node keep HA objects (docs/objstore.md, "HA objects"): without a directory,
  // store.make_ha and peer.replicate are refused. Call before listen; `directory` must outlive
  // the service's stop().
  void set_ha_directory(HaDirectory* directory);

  // After this node registered again under a new incarnation (the GCS had declared it DEAD):
  // copies it keeps for other nodes that the directory does not list here were replaced while
  // it was away (or belong to a put that gave up on it), and are freed.
  void recheck_ha_copies();

  proto::StoreStatsResponse stats() const;
  const ObjectStore& store() const { return *store_; }

 private:
  StoreService(const StoreConfig& config, const NodeId& node_id, transport::Transport& transport,
               transport::RpcNode& rpc);
  Status install_handlers();
  void post(std::function<void()> fn);

  // Client id of the caller's connection (its endpoint), registering it on first use.
  ClientId client_of(const transport::EndpointPtr& peer);

  // store.* handlers.
  void handle_connect(const proto::StoreConnectRequest& request,
                      transport::RpcResponder<proto::StoreConnectResponse> reply);
  void handle_create(const proto::CreateRequest& request,
                     transport::RpcResponder<proto::CreateResponse> reply);
  // A RoomRequest of store.batch: room created now or never (see objstore.proto).
  StatusOr<Placement> create_room(const ObjectId& id, uint64_t size, bool ahead, ClientId client);
  // `client` created object `id` (unsealed): it holds a reference and may seal it.
  void note_created(const ObjectId& id, ClientId client);
  // Seals an object `client` created (store.seal, or a seal in store.batch).
  Status seal_created(const ObjectId& id, ClientId client);
  // A room created ahead was sealed or aborted: it no longer counts against its client.
  void forget_ahead(const ObjectId& id, ClientId client);
  void handle_seal(const proto::SealRequest& request,
                   transport::RpcResponder<proto::SealResponse> reply);
  void handle_put_inline(const proto::PutInlineRequest& request,
                         transport::RpcResponder<proto::PutInlineResponse> reply);
  void handle_reserve_arena(const proto::ReserveArenaRequest& request,
                            transport::RpcResponder<proto::ReserveArenaResponse> reply);
  void handle_batch(const proto::StoreBatchRequest& request,
                    transport::RpcResponder<proto::StoreBatchResponse> reply);
  void handle_get(const proto::GetRequest& request,
                  transport::RpcResponder<proto::GetResponse> reply);
  void handle_wait(const proto::WaitRequest& request,
                   transport::RpcResponder<proto::WaitResponse> reply);
  void handle_release(const proto::ReleaseRequest& request,
                      transport::RpcResponder<proto::ReleaseResponse> reply);
  void handle_add_refs(const proto::RefsRequest& request,
                       transport::RpcResponder<proto::RefsResponse> reply);
  void handle_remove_refs(const proto::RefsRequest& request,
                          transport::RpcResponder<proto::RefsResponse> reply);
  void handle_stats(const proto::StoreStatsRequest& request,
                    transport::RpcResponder<proto::StoreStatsResponse> reply);
  void handle_make_ha(const proto::MakeHaRequest& request,
                      transport::RpcResponder<proto::MakeHaResponse> reply);
  // peer.* handlers.
  void handle_lookup(const proto::LookupRequest& request,
                     transport::RpcResponder<proto::LookupResponse> reply);
  void handle_pull(const proto::PullRequest& request,
                   transport::RpcResponder<proto::PullResponse> reply);
  void handle_borrow(const proto::BorrowRequest& request,
                     transport::RpcResponder<proto::BorrowResponse> reply);
  void handle_unborrow(const proto::BorrowRequest& request,
                       transport::RpcResponder<proto::BorrowResponse> reply);
  void handle_replicate(const proto::ReplicateRequest& request,
                        transport::RpcResponder<proto::ReplicateResponse> reply);
  void handle_owner_moved(const proto::OwnerMovedRequest& request,
                          transport::RpcResponder<proto::OwnerMovedResponse> reply);
  // This node counts the references of HA object `id` from now on (its owner died and this
  // node repaired it): it tells every other node, which says whether it borrows the object.
  void take_over(const ObjectId& id);
  void handle_drop_ha_copy(const proto::DropHaCopyRequest& request,
                           transport::RpcResponder<proto::DropHaCopyResponse> reply);
  // The last reference to an HA object created here is gone: the other holders free their
  // copies and the directory forgets it.
  void free_ha_object(const ObjectId& id);
  // Asks `holders` to free their copies of `id` (peer.drop_ha_copy); failures are logged.
  void drop_copies(const ObjectId& id, const std::vector<std::string>& holders);

  // Copies of HA objects (store.make_ha, and repairs after a holder died): lists the
  // candidates, asks them in turn until enough hold a copy, then put->finished runs.
  struct HaPut;
  void take_copies(const std::shared_ptr<HaPut>& put);
  void ask_for_copies(const std::shared_ptr<HaPut>& put);
  void copy_answered(const std::shared_ptr<HaPut>& put, const HaCandidate& target,
                     const Status& outcome);
  // Node `dead` died: every HA object held here that it also held gets its copies back, each
  // repaired by its first surviving holder (in the directory's order).
  void repair_after(const NodeId& dead);
  void repair(const ObjectId& id, const NodeId& dead, const StatusOr<HaRecord>& record);
  // Fetches `id` from its owner; when that fails and `id` is an HA object, from the other
  // nodes the directory names, in turn. done() as for pin_when_ready.
  void fetch(const ObjectId& id, const std::string& owner_address, ClientId client,
             Clock::time_point deadline, std::function<void(StatusOr<Placement>)> done);
  void fetch_from_holders(const ObjectId& id, std::shared_ptr<std::vector<std::string>> holders,
                          size_t next, ClientId client, Clock::time_point deadline,
                          Status first_failure, std::function<void(StatusOr<Placement>)> done);

  // Reserves room for `client` with `attempt` (a store create or arena), trying again whenever
  // space is freed until `deadline` while it answers RESOURCE_EXHAUSTED (full now, could fit
  // later), or until the client goes.
  using Attempt = std::function<StatusOr<Placement>()>;
  void reserve(ClientId client, Attempt attempt, Clock::time_point deadline,
               std::function<void(StatusOr<Placement>)> done);
  bool connected(ClientId client) const;
  void retry_space_waiters();

  // Pins `id` for `client` once it is sealed here: waits for a local creator to seal it,
  // restores it from the spill folder, or fetches it from `owner_address` (when not this
  // node). done() gets the placement or why not.
  void pin_when_ready(const ObjectId& id, const std::string& owner_address, ClientId client,
                      Clock::time_point deadline, std::function<void(StatusOr<Placement>)> done);
  // Waits until `id` is sealed (or aborted) here.
  void wait_for_seal(const ObjectId& id, Clock::time_point deadline,
                     std::function<void(Status)> done);
  void sealed(const ObjectId& id, const Status& outcome);

  // A callback that runs once: with the result, or with DEADLINE_EXCEEDED at `deadline`.
  uint64_t add_deadline(Clock::time_point deadline, std::function<void()> on_expired);
  void cancel_deadline(uint64_t id);

  void apply(RefActions actions);
  // `client` dropped its references to `ids` (and with them its pins).
  void drop_refs(ClientId client, const std::vector<ObjectId>& ids);
  void send_borrow(const RefSpec& ref, bool borrow);
  void client_gone(ClientId client);

  const StoreConfig config_;
  const NodeId node_id_;
  transport::Transport& transport_;
  transport::RpcNode& rpc_;
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<transport::MemoryRegion> region_;
  std::shared_ptr<PeerLinks> links_;
  std::unique_ptr<ObjectFetcher> fetcher_;
  std::unique_ptr<RefTable> refs_;
  HaDirectory* ha_ = nullptr;
  // Primary copies of HA objects this node took for others (peer.replicate): local
  // references do not free them.
  std::unordered_set<ObjectId> ha_copies_;
  // HA objects created here (their last reference frees every copy), and those whose copies
  // this node is restoring.
  std::unordered_set<ObjectId> ha_owned_;
  std::unordered_set<ObjectId> repairing_;
  std::string address_;
  std::mutex post_mu_;
  bool stopped_ = false;  // Under post_mu_: nothing is posted to the transport any more.

  // Clients by endpoint id, and the objects each created and has not sealed yet.
  std::unordered_map<uint64_t, ClientId> clients_;
  std::unordered_map<ObjectId, ClientId> unsealed_;
  // Rooms created ahead and not sealed yet (of unsealed_): their sizes, and each client's total,
  // which put_ahead_bytes bounds.
  std::unordered_map<ObjectId, uint64_t> ahead_rooms_;
  std::unordered_map<ClientId, uint64_t> ahead_bytes_;
  // Nodes that borrow objects owned here, by the endpoint their borrow came on.
  std::unordered_map<uint64_t, NodeId> borrower_endpoints_;

  // Waiters for an object's seal, and puts waiting for room.
  std::unordered_map<ObjectId, std::vector<std::function<void(Status)>>> seal_waiters_;
  struct SpaceWaiter {
    ClientId client;  // Who waits (kNodeClient for a fetch).
    Attempt attempt;
    uint64_t deadline_id;
    std::function<void(StatusOr<Placement>)> done;
  };
  std::deque<std::shared_ptr<SpaceWaiter>> space_waiters_;

  std::unordered_map<uint64_t, std::function<void()>> deadlines_;
  uint64_t next_deadline_id_ = 1;
  std::unique_ptr<DeadlineTimer> timer_;

  std::atomic<uint64_t> clients_connected_{0};
  std::atomic<uint64_t> waiting_for_room_{0};     // space_waiters_.size(), for stats().
  std::atomic<uint64_t> rooms_created_ahead_{0};  // RoomRequests with `ahead` granted.
  std::atomic<uint64_t> referenced_{0};
};

}  // namespace halo::objstore
