#include "objstore/service/store_service.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "halo/base/logging.h"

namespace halo::objstore {
namespace {

using transport::EndpointPtr;
using transport::RpcResponder;

// Client ids: connections are endpoint id + kFirstClient; below that, the node itself
// (kNodeClient creates fetched copies).
constexpr ClientId kPeerClient = 1;  // Pins an object while a peer reads it.
// Holds a reference to an HA object this node took over until the other nodes have said
// whether they borrow it.
constexpr ClientId kTakeoverClient = 2;
constexpr ClientId kFirstClient = 16;

// Most primary copies one HA put may ask for.
constexpr uint32_t kMaxPrimaryCopies = 16;

// A fetch from an object's owner that failed this way may succeed from another holder.
bool another_holder_may_help(const Status& status) {
  switch (status.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kNotFound:
    case StatusCode::kDataLoss:
    case StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

StatusOr<ObjectId> object_id_of(const std::string& bytes) {
  auto id = ObjectId::from_binary(bytes);
  if (!id.ok()) return id.status().with_context("object id in the request");
  return id;
}

StatusOr<std::vector<RefSpec>> refs_of(
    const google::protobuf::RepeatedPtrField<proto::ObjectRefProto>& refs) {
  std::vector<RefSpec> out;
  out.reserve(refs.size());
  for (const proto::ObjectRefProto& ref : refs) {
    HALO_ASSIGN_OR_RETURN(ObjectId id, object_id_of(ref.object_id()));
    out.push_back({id, ref.owner_address()});
  }
  return out;
}

StoreService::Clock::time_point deadline_after(int64_t timeout_ms) {
  if (timeout_ms <= 0) return StoreService::Clock::time_point::max();
  return StoreService::Clock::now() + std::chrono::milliseconds(timeout_ms);
}

// The store's default share of a node's memory (Ray's object_store_memory default).
constexpr double kDefaultMemoryShare = 0.3;

}  // namespace

StatusOr<std::unique_ptr<StoreService>> StoreService::start(
    const StoreConfig& config, const NodeId& node_id, transport::Transport& transport,
    transport::RpcNode& rpc, uint64_t node_memory_bytes, const std::string& net_interface) {
  auto service = std::unique_ptr<StoreService>(new StoreService(config, node_id, transport, rpc));
  StoreOptions options;
  options.capacity_bytes = config.object_store_memory;
  if (options.capacity_bytes == 0) {
    options.capacity_bytes = static_cast<uint64_t>(kDefaultMemoryShare * node_memory_bytes);
  }
  options.segment.numa_node = config.numa_node;
  options.segment.net_interface = net_interface;
  options.segment.prefault = config.object_store_prefault;
  options.segment.prefault_in_background = config.object_store_prefault_background;
  options.segment.lock_memory = config.object_store_lock_memory;
  options.spill_dir = config.spill_dir;
  options.spill_prefix = node_id.to_hex();
  HALO_ASSIGN_OR_RETURN(service->store_, ObjectStore::create(options));
  ShmSegment& segment = service->store_->segment();
  auto region = transport.register_memory(segment.data(), segment.size());
  if (!region.ok()) {
    return region.status().with_context(
        str_cat("registering the object store (", segment.size(), " bytes) with the transport"));
  }
  service->region_ = std::move(*region);
  StoreService* self = service.get();
  service->fetcher_ = std::make_unique<ObjectFetcher>(
      *service->store_, *service->region_, service->links_, rpc.client(),
      [self](std::function<void()> fn) { self->post(std::move(fn)); },
      [self](const ObjectId& id, uint64_t size, Clock::time_point deadline,
             std::function<void(StatusOr<Placement>)> done) {
        ObjectStore* store = self->store_.get();
        self->reserve(
            kNodeClient,
            [store, id, size] {
              return store->create(id, size, kNodeClient, CopyKind::kSecondary);
            },
            deadline, std::move(done));
      },
      [self](const ObjectId& id, const Status& outcome) { self->sealed(id, outcome); });
  service->store_->set_space_listener(
      [self] { self->post([self] { self->retry_space_waiters(); }); });
  HALO_RETURN_IF_ERROR(service->install_handlers());
  log::info("object store: {}", segment.describe());
  return service;
}

StoreService::StoreService(const StoreConfig& config, const NodeId& node_id,
                           transport::Transport& transport, transport::RpcNode& rpc)
    : config_(config),
      node_id_(node_id),
      transport_(transport),
      rpc_(rpc),
      links_(std::make_shared<PeerLinks>(
          transport, std::chrono::milliseconds(config.peer_connect_timeout_ms))),
      refs_(std::make_unique<RefTable>("")),
      timer_(std::make_unique<DeadlineTimer>(
          [this](uint64_t id) {
            post([this, id] {
              auto it = deadlines_.find(id);
              if (it == deadlines_.end()) return;
              std::function<void()> fn = std::move(it->second);
              deadlines_.erase(it);
              fn();
            });
          },
          std::chrono::milliseconds(100), [] {})) {}

StoreService::~StoreService() {
  stop();
  // The store (and its spill thread) goes after the transport: transfers that were in flight
  // when the transport shut down wrote into its segment until then.
}

void StoreService::set_address(const std::string& address) {
  post([this, address] {
    address_ = address;
    refs_ = std::make_unique<RefTable>(address);
  });
}

void StoreService::post(std::function<void()> fn) {
  {
    std::lock_guard lock(post_mu_);
    if (stopped_) return;
  }
  transport_.run_on_progress_thread(std::move(fn));
}

void StoreService::stop() {
  {
    std::lock_guard lock(post_mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  if (store_) store_->set_space_listener(nullptr);
  timer_->stop();
  links_->close_all();
}

// ---- Handlers ---------------------------------------------------------------------------------

namespace {

// Runs `handler(request, reply)` on the progress thread: inline when the RPC layer calls from
// there (handler_threads = 0, the node's setting), else with a copy of the request posted.
template <typename Req, typename Resp, typename Handler>
std::function<void(const Req&, RpcResponder<Resp>)> on_progress_thread(
    transport::Transport& transport, Handler handler) {
  return [&transport, handler](const Req& request, RpcResponder<Resp> reply) {
    if (transport.on_progress_thread()) return handler(request, std::move(reply));
    transport.run_on_progress_thread(
        [handler, request, reply = std::move(reply)] { handler(request, reply); });
  };
}

}  // namespace

Status StoreService::install_handlers() {
  transport::RpcServer& server = rpc_.server();
#define HALO_STORE_METHOD(name, Req, Resp, method)                                               \
  HALO_RETURN_IF_ERROR((server.handle_async<proto::Req, proto::Resp>(                            \
      name, on_progress_thread<proto::Req, proto::Resp>(                                         \
                transport_, [this](const proto::Req& request, RpcResponder<proto::Resp> reply) { \
                  method(request, reply);                                                        \
                }))))
  HALO_STORE_METHOD("store.connect", StoreConnectRequest, StoreConnectResponse, handle_connect);
  HALO_STORE_METHOD("store.create", CreateRequest, CreateResponse, handle_create);
  HALO_STORE_METHOD("store.seal", SealRequest, SealResponse, handle_seal);
  HALO_STORE_METHOD("store.put_inline", PutInlineRequest, PutInlineResponse, handle_put_inline);
  HALO_STORE_METHOD("store.reserve_arena", ReserveArenaRequest, ReserveArenaResponse,
                    handle_reserve_arena);
  HALO_STORE_METHOD("store.batch", StoreBatchRequest, StoreBatchResponse, handle_batch);
  HALO_STORE_METHOD("store.get", GetRequest, GetResponse, handle_get);
  HALO_STORE_METHOD("store.wait", WaitRequest, WaitResponse, handle_wait);
  HALO_STORE_METHOD("store.release", ReleaseRequest, ReleaseResponse, handle_release);
  HALO_STORE_METHOD("store.add_refs", RefsRequest, RefsResponse, handle_add_refs);
  HALO_STORE_METHOD("store.remove_refs", RefsRequest, RefsResponse, handle_remove_refs);
  HALO_STORE_METHOD("store.stats", StoreStatsRequest, StoreStatsResponse, handle_stats);
  HALO_STORE_METHOD("peer.lookup", LookupRequest, LookupResponse, handle_lookup);
  HALO_STORE_METHOD("peer.pull", PullRequest, PullResponse, handle_pull);
  HALO_STORE_METHOD("peer.borrow", BorrowRequest, BorrowResponse, handle_borrow);
  HALO_STORE_METHOD("peer.unborrow", BorrowRequest, BorrowResponse, handle_unborrow);
  HALO_STORE_METHOD("store.make_ha", MakeHaRequest, MakeHaResponse, handle_make_ha);
  HALO_STORE_METHOD("peer.replicate", ReplicateRequest, ReplicateResponse, handle_replicate);
  HALO_STORE_METHOD("peer.owner_moved", OwnerMovedRequest, OwnerMovedResponse, handle_owner_moved);
  HALO_STORE_METHOD("peer.drop_ha_copy", DropHaCopyRequest, DropHaCopyResponse,
                    handle_drop_ha_copy);
#undef HALO_STORE_METHOD
  return Status();
}

ClientId StoreService::client_of(const EndpointPtr& peer) {
  auto [it, inserted] = clients_.try_emplace(peer->id(), peer->id() + kFirstClient);
  if (inserted) clients_connected_ = clients_.size();
  return it->second;
}

void StoreService::handle_connect(const proto::StoreConnectRequest& request,
                                  RpcResponder<proto::StoreConnectResponse> reply) {
  if (address_.empty()) return reply.respond(unavailable_error("the node is starting"));
  const ClientId client = client_of(reply.context().peer());
  log::debug("store client {} connected: pid {} ({})", client, request.pid(),
             request.client_name());
  proto::StoreConnectResponse response;
  response.set_node_id(node_id_.binary());
  response.set_node_address(address_);
  response.set_segment_owner_pid(::getpid());
  response.set_segment_fd(store_->segment().fd());
  response.set_segment_size(store_->segment().size());
  response.set_max_inline_bytes(config_.max_inline_bytes);
  response.set_arena_bytes(config_.small_object_arena_bytes);
  response.set_put_ahead_bytes(config_.put_ahead_bytes);
  response.set_alignment(store_->options().alignment);
  reply.respond(std::move(response));
}

void StoreService::handle_create(const proto::CreateRequest& request,
                                 RpcResponder<proto::CreateResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  const ClientId client = client_of(reply.context().peer());
  reserve(
      client,
      [this, id = *id, size = request.size(), client] {
        return store_->create(id, size, client, CopyKind::kPrimary);
      },
      deadline_after(request.timeout_ms()),
      [this, id = *id, client, reply](StatusOr<Placement> placement) {
        if (!placement.ok()) return reply.respond(placement.status());
        if (!connected(client)) {
          (void)store_->abort(id);  // It waited for room and its creator left meanwhile.
          return;
        }
        note_created(id, client);
        proto::CreateResponse response;
        response.set_offset(placement->offset);
        reply.respond(std::move(response));
      });
}

StatusOr<Placement> StoreService::create_room(const ObjectId& id, uint64_t size, bool ahead,
                                              ClientId client) {
  if (!ahead) {
    HALO_ASSIGN_OR_RETURN(Placement placement,
                          store_->create(id, size, client, CopyKind::kPrimary));
    note_created(id, client);
    return placement;
  }
  // Room for the client's next put, asked before it needs it: only from room free now, with an
  // eighth of the store to spare, and none while puts wait for room.
  const auto holding = ahead_bytes_.find(client);
  const uint64_t held = holding == ahead_bytes_.end() ? 0 : holding->second;
  if (size == 0 || size > config_.put_ahead_bytes || held + size > config_.put_ahead_bytes) {
    return invalid_argument_error(str_cat("room asked ahead for ", size, " bytes, with ", held,
                                          " held ahead already: more than the node's ",
                                          config_.put_ahead_bytes, " (--put-ahead-bytes)"));
  }
  if (waiting_for_room_ > 0)
    return resource_exhausted_error("room ahead: puts are waiting for room");
  StatusOr<Placement> placement =
      store_->create_from_spare_room(id, size, client, store_->capacity() / 8);
  if (!placement.ok()) return placement.status().with_context("room ahead");
  ahead_bytes_[client] += size;
  ahead_rooms_[id] = size;
  ++rooms_created_ahead_;
  note_created(id, client);
  return placement;
}

void StoreService::note_created(const ObjectId& id, ClientId client) {
  unsealed_[id] = client;
  refs_->created(id, client);
  referenced_ = refs_->size();
}

void StoreService::forget_ahead(const ObjectId& id, ClientId client) {
  auto room = ahead_rooms_.find(id);
  if (room == ahead_rooms_.end()) return;
  auto held = ahead_bytes_.find(client);
  if (held != ahead_bytes_.end()) {
    held->second -= std::min(held->second, room->second);
    if (held->second == 0) ahead_bytes_.erase(held);
  }
  ahead_rooms_.erase(room);
}

void StoreService::handle_seal(const proto::SealRequest& request,
                               RpcResponder<proto::SealResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  Status s = seal_created(*id, client_of(reply.context().peer()));
  if (!s.ok()) return reply.respond(s);
  reply.respond(proto::SealResponse());
}

Status StoreService::seal_created(const ObjectId& id, ClientId client) {
  auto creator = unsealed_.find(id);
  if (creator == unsealed_.end() || creator->second != client) {
    return failed_precondition_error(
        str_cat("object ", id.to_hex(), " is not being created by this client"));
  }
  HALO_RETURN_IF_ERROR(store_->seal(id));
  forget_ahead(id, client);
  unsealed_.erase(creator);
  sealed(id, Status());
  return Status();
}

void StoreService::handle_put_inline(const proto::PutInlineRequest& request,
                                     RpcResponder<proto::PutInlineResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  const ClientId client = client_of(reply.context().peer());
  auto data = std::make_shared<std::string>(request.data());
  reserve(
      client,
      [this, id = *id, size = data->size(), client] {
        return store_->create(id, size, client, CopyKind::kPrimary);
      },
      deadline_after(request.timeout_ms()),
      [this, id = *id, client, data, reply](StatusOr<Placement> placement) {
        if (!placement.ok()) return reply.respond(placement.status());
        if (!connected(client)) {
          (void)store_->abort(id);  // It waited for room and its creator left meanwhile.
          return;
        }
        if (!data->empty()) {
          std::memcpy(store_->segment().data() + placement->offset, data->data(), data->size());
        }
        Status s = store_->seal(id);
        if (!s.ok()) return reply.respond(s);
        refs_->created(id, client);
        referenced_ = refs_->size();
        sealed(id, Status());
        reply.respond(proto::PutInlineResponse());
      });
}

void StoreService::handle_reserve_arena(const proto::ReserveArenaRequest& request,
                                        RpcResponder<proto::ReserveArenaResponse> reply) {
  if (config_.small_object_arena_bytes == 0) {
    return reply.respond(failed_precondition_error(
        "arenas are off on this node (--small-object-arena-bytes=0): use store.put_inline"));
  }
  if (request.size() == 0 || request.size() > config_.small_object_arena_bytes) {
    return reply.respond(invalid_argument_error(
        str_cat("an arena of ", request.size(), " bytes: it must be from 1 to ",
                config_.small_object_arena_bytes, " bytes (--small-object-arena-bytes)")));
  }
  const ClientId client = client_of(reply.context().peer());
  const uint64_t min_size = std::min(request.min_size(), request.size());
  reserve(
      client,
      [this, client, size = request.size(), min_size] {
        StatusOr<Placement> arena = store_->reserve_arena(client, size);
        if (arena.ok() || arena.status().code() != StatusCode::kResourceExhausted ||
            min_size == 0 || min_size == size) {
          return arena;
        }
        return store_->reserve_arena(client, min_size);  // A smaller one, for a full store.
      },
      deadline_after(request.timeout_ms()),
      [this, client, reply](StatusOr<Placement> placement) {
        if (!placement.ok()) return reply.respond(placement.status());
        if (!connected(client)) return store_->client_gone(client);
        proto::ReserveArenaResponse response;
        response.set_offset(placement->offset);
        response.set_size(placement->size);
        reply.respond(std::move(response));
      });
}

void StoreService::handle_batch(const proto::StoreBatchRequest& request,
                                RpcResponder<proto::StoreBatchResponse> reply) {
  const ClientId client = client_of(reply.context().peer());
  proto::StoreBatchResponse response;
  auto refuse = [&response](const Status& why) {
    if (response.refused() == 0) response.set_first_error(why.to_string());
    response.set_refused(response.refused() + 1);
  };
  for (const proto::BatchOp& op : request.ops()) {
    switch (op.op_case()) {
      case proto::BatchOp::kArenaPut: {
        const proto::ArenaPut& put = op.arena_put();
        auto id = object_id_of(put.object_id());
        if (!id.ok()) {
          refuse(id.status());
          break;
        }
        auto placed = store_->seal_in_arena(*id, client, put.offset(), put.size());
        if (!placed.ok()) {
          refuse(placed.status());
          break;
        }
        refs_->created(*id, client);
        sealed(*id, Status());
        break;
      }
      case proto::BatchOp::kRemoveRef: {
        auto id = object_id_of(op.remove_ref().object_id());
        if (!id.ok()) {
          refuse(id.status());
          break;
        }
        drop_refs(client, {*id});
        break;
      }
      case proto::BatchOp::kSeal: {
        auto id = object_id_of(op.seal());
        if (!id.ok()) {
          refuse(id.status());
          break;
        }
        if (Status s = seal_created(*id, client); !s.ok()) refuse(s);
        break;
      }
      case proto::BatchOp::kCreate: {
        const proto::RoomRequest& room = op.create();
        proto::RoomAnswer* answer = response.add_rooms();
        answer->set_object_id(room.object_id());
        auto id = object_id_of(room.object_id());
        if (!id.ok()) refuse(id.status());
        StatusOr<Placement> placement = id.ok()
                                            ? create_room(*id, room.size(), room.ahead(), client)
                                            : StatusOr<Placement>(id.status());
        if (placement.ok()) {
          answer->set_offset(placement->offset);
        } else {
          answer->set_code(static_cast<int32_t>(placement.status().code()));
          answer->set_message(std::string(placement.status().message()));
        }
        break;
      }
      case proto::BatchOp::kRelease: {
        auto id = object_id_of(op.release());
        if (!id.ok()) {
          refuse(id.status());
          break;
        }
        (void)store_->unpin(*id, client);
        break;
      }
      case proto::BatchOp::OP_NOT_SET:
        refuse(invalid_argument_error("an empty batch operation"));
        break;
    }
  }
  referenced_ = refs_->size();
  if (response.refused() > 0) {
    log::warn("store client {}: {} of {} batched operations refused; first: {}", client,
              response.refused(), request.ops_size(), response.first_error());
  }
  reply.respond(std::move(response));
}

void StoreService::handle_get(const proto::GetRequest& request,
                              RpcResponder<proto::GetResponse> reply) {
  auto refs = refs_of(request.refs());
  if (!refs.ok()) return reply.respond(refs.status());
  const ClientId client = client_of(reply.context().peer());
  struct Pending {
    proto::GetResponse response;
    size_t remaining = 0;
  };
  auto pending = std::make_shared<Pending>();
  pending->remaining = refs->size();
  for (const RefSpec& ref : *refs) {
    proto::ObjectLocation* location = pending->response.add_objects();
    location->set_object_id(ref.id.binary());
  }
  if (refs->empty()) return reply.respond(std::move(pending->response));
  const Clock::time_point deadline = deadline_after(request.timeout_ms());
  for (size_t i = 0; i < refs->size(); ++i) {
    pin_when_ready((*refs)[i].id, (*refs)[i].owner_address, client, deadline,
                   [pending, i, reply](StatusOr<Placement> placement) {
                     proto::ObjectLocation* location = pending->response.mutable_objects(i);
                     if (placement.ok()) {
                       location->set_offset(placement->offset);
                       location->set_size(placement->size);
                     } else {
                       location->set_code(static_cast<int32_t>(placement.status().code()));
                       location->set_message(std::string(placement.status().message()));
                     }
                     if (--pending->remaining == 0) reply.respond(std::move(pending->response));
                   });
  }
}

void StoreService::handle_wait(const proto::WaitRequest& request,
                               RpcResponder<proto::WaitResponse> reply) {
  auto refs = refs_of(request.refs());
  if (!refs.ok()) return reply.respond(refs.status());
  struct Pending {
    proto::WaitResponse response;
    size_t settled = 0;
    size_t wanted = 0;
    bool answered = false;
    uint64_t deadline_id = 0;
  };
  auto pending = std::make_shared<Pending>();
  pending->wanted = std::min<size_t>(request.num_ready(), refs->size());
  for (size_t i = 0; i < refs->size(); ++i) {
    pending->response.add_ready(false);
    pending->response.add_lost(false);
  }
  auto answer = [this, pending, reply] {
    if (pending->answered) return;
    pending->answered = true;
    cancel_deadline(pending->deadline_id);
    reply.respond(pending->response);
  };
  if (pending->wanted == 0) return answer();
  const Clock::time_point deadline = deadline_after(request.timeout_ms());
  pending->deadline_id = add_deadline(deadline, answer);
  for (size_t i = 0; i < refs->size(); ++i) {
    const RefSpec& ref = (*refs)[i];
    auto settle = [pending, i, answer](Status status) {
      if (pending->answered) return;
      if (status.ok()) {
        pending->response.set_ready(static_cast<int>(i), true);
      } else if (status.code() == StatusCode::kDeadlineExceeded) {
        return;
      } else {
        pending->response.set_lost(static_cast<int>(i), true);
      }
      if (++pending->settled >= pending->wanted) answer();
    };
    auto info = store_->info(ref.id);
    if (info && info->state != ObjectState::kCreated) {
      settle(Status());
    } else if (info || ref.owner_address.empty() || ref.owner_address == address_) {
      if (!info) {
        settle(not_found_error(str_cat("object ", ref.id.to_hex(), " is not at its owner")));
      } else {
        wait_for_seal(ref.id, deadline, settle);
      }
    } else {
      // Held elsewhere: ask its owner whether it is sealed there (no bytes move).
      links_->with_peer(ref.owner_address,
                        [this, id = ref.id, deadline, settle](StatusOr<EndpointPtr> peer) {
                          post([this, id, deadline, settle, peer = std::move(peer)] {
                            if (!peer.ok()) return settle(peer.status());
                            proto::LookupRequest lookup;
                            lookup.set_object_id(id.binary());
                            lookup.set_timeout_ms(time_left(deadline).count());
                            rpc_.client().call<proto::LookupRequest, proto::LookupResponse>(
                                *peer, "peer.lookup", lookup, time_left(deadline),
                                [this, settle](StatusOr<proto::LookupResponse> found) {
                                  post([settle, status = found.status()] { settle(status); });
                                });
                          });
                        });
    }
  }
}

void StoreService::handle_release(const proto::ReleaseRequest& request,
                                  RpcResponder<proto::ReleaseResponse> reply) {
  const ClientId client = client_of(reply.context().peer());
  for (const std::string& bytes : request.object_ids()) {
    auto id = ObjectId::from_binary(bytes);
    if (id.ok()) (void)store_->unpin(*id, client);
  }
  reply.respond(proto::ReleaseResponse());
}

void StoreService::handle_add_refs(const proto::RefsRequest& request,
                                   RpcResponder<proto::RefsResponse> reply) {
  auto refs = refs_of(request.refs());
  if (!refs.ok()) return reply.respond(refs.status());
  auto actions = refs_->add_refs(client_of(reply.context().peer()), *refs);
  if (!actions.ok()) return reply.respond(actions.status());
  apply(std::move(*actions));
  reply.respond(proto::RefsResponse());
}

void StoreService::handle_remove_refs(const proto::RefsRequest& request,
                                      RpcResponder<proto::RefsResponse> reply) {
  auto refs = refs_of(request.refs());
  if (!refs.ok()) return reply.respond(refs.status());
  std::vector<ObjectId> ids;
  ids.reserve(refs->size());
  for (const RefSpec& ref : *refs) ids.push_back(ref.id);
  drop_refs(client_of(reply.context().peer()), ids);
  reply.respond(proto::RefsResponse());
}

void StoreService::handle_stats(const proto::StoreStatsRequest&,
                                RpcResponder<proto::StoreStatsResponse> reply) {
  reply.respond(stats());
}

proto::StoreStatsResponse StoreService::stats() const {
  const StoreStats s = store_->stats();
  proto::StoreStatsResponse response;
  response.set_capacity_bytes(s.capacity);
  response.set_used_bytes(s.used);
  response.set_objects(s.objects);
  response.set_spilled_objects(s.spilled);
  response.set_evictions(s.evictions);
  response.set_spills(s.spills);
  response.set_restores(s.restores);
  response.set_clients(clients_connected_);
  response.set_referenced_objects(referenced_);
  response.set_fetches(fetcher_->fetches());
  response.set_fetched_bytes(fetcher_->fetched_bytes());
  response.set_segment(store_->segment().describe());
  response.set_arena_bytes(s.arena_bytes);
  response.set_puts_waiting_for_room(waiting_for_room_);
  response.set_rooms_created_ahead(rooms_created_ahead_);
  return response;
}

void StoreService::handle_lookup(const proto::LookupRequest& request,
                                 RpcResponder<proto::LookupResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  const bool want_data = request.want_data();
  // address_ as the owner: a lookup never makes this node fetch from elsewhere.
  pin_when_ready(*id, address_, kPeerClient, deadline_after(request.timeout_ms()),
                 [this, id = *id, want_data, reply](StatusOr<Placement> placement) {
                   if (!placement.ok()) return reply.respond(placement.status());
                   proto::LookupResponse response;
                   response.set_size(placement->size);
                   if (want_data && placement->size <= config_.max_inline_bytes) {
                     response.set_inline_data_present(true);
                     response.set_inline_data(reinterpret_cast<const char*>(
                                                  store_->segment().data() + placement->offset),
                                              placement->size);
                   }
                   (void)store_->unpin(id, kPeerClient);
                   reply.respond(std::move(response));
                 });
}

void StoreService::handle_pull(const proto::PullRequest& request,
                               RpcResponder<proto::PullResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  transport::RemoteRegion into;
  into.addr = request.into().addr();
  into.length = request.into().length();
  into.rkey = request.into().rkey();
  const uint64_t offset = request.offset();
  const uint64_t size = request.size();
  if (offset > into.length || size > into.length - offset) {
    return reply.respond(invalid_argument_error(
        str_cat("pull of object ", id->to_hex(), ": ", size, " bytes at offset ", offset,
                " do not fit the caller's region of ", into.length, " bytes")));
  }
  pin_when_ready(
      *id, address_, kPeerClient, reply.context().deadline(),
      [this, id = *id, into = std::move(into), offset, size, reply](StatusOr<Placement> placement) {
        if (!placement.ok()) return reply.respond(placement.status());
        if (placement->size != size) {
          (void)store_->unpin(id, kPeerClient);
          return reply.respond(
              invalid_argument_error(str_cat("pull of object ", id.to_hex(), " asks for ", size,
                                             " bytes; it has ", placement->size)));
        }
        const EndpointPtr& peer = reply.context().peer();
        // Every chunk is in flight at once (the library pipelines them); one flush then says
        // they all landed. A failed put fails the flush too.
        const uint64_t chunk = std::max<uint64_t>(config_.transfer_chunk_bytes, 4096);
        for (uint64_t done = 0; done < size; done += chunk) {
          const uint64_t len = std::min(chunk, size - done);
          peer->put(*region_, placement->offset + done, into, offset + done, len, [](Status) {});
        }
        peer->flush([this, id, reply](Status flushed) {
          post([this, id, reply, flushed] {
            (void)store_->unpin(id, kPeerClient);
            if (!flushed.ok()) return reply.respond(flushed);
            reply.respond(proto::PullResponse());
          });
        });
      });
}

void StoreService::handle_borrow(const proto::BorrowRequest& request,
                                 RpcResponder<proto::BorrowResponse> reply) {
  auto node = NodeId::from_binary(request.node_id());
  if (!node.ok()) return reply.respond(node.status().with_context("node id in the request"));
  borrower_endpoints_[reply.context().peer()->id()] = *node;
  Status first_error;
  for (const std::string& bytes : request.object_ids()) {
    auto id = object_id_of(bytes);
    Status s = id.ok() ? refs_->add_borrower(*id, *node) : id.status();
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  if (!first_error.ok()) return reply.respond(first_error);
  reply.respond(proto::BorrowResponse());
}

void StoreService::handle_unborrow(const proto::BorrowRequest& request,
                                   RpcResponder<proto::BorrowResponse> reply) {
  auto node = NodeId::from_binary(request.node_id());
  if (!node.ok()) return reply.respond(node.status().with_context("node id in the request"));
  for (const std::string& bytes : request.object_ids()) {
    auto id = ObjectId::from_binary(bytes);
    if (id.ok()) apply(refs_->remove_borrower(*id, *node));
  }
  reply.respond(proto::BorrowResponse());
}

// ---- Room, readiness and deadlines --------------------------------------------------------------

void StoreService::reserve(ClientId client, Attempt attempt, Clock::time_point deadline,
                           std::function<void(StatusOr<Placement>)> done) {
  StatusOr<Placement> placement = attempt();
  if (placement.ok() || placement.status().code() != StatusCode::kResourceExhausted ||
      Clock::now() >= deadline) {
    return done(std::move(placement));
  }
  auto waiter = std::make_shared<SpaceWaiter>();
  waiter->client = client;
  waiter->attempt = std::move(attempt);
  waiter->done = std::move(done);
  waiter->deadline_id = add_deadline(deadline, [this, waiter, why = placement.status()] {
    auto it = std::find(space_waiters_.begin(), space_waiters_.end(), waiter);
    if (it == space_waiters_.end()) return;
    space_waiters_.erase(it);
    waiting_for_room_ = space_waiters_.size();
    waiter->done(why.with_context("waited for room until the put's timeout"));
  });
  space_waiters_.push_back(std::move(waiter));
  waiting_for_room_ = space_waiters_.size();
}

void StoreService::retry_space_waiters() {
  // In arrival order; one that still does not fit does not hold back smaller ones behind it.
  for (auto it = space_waiters_.begin(); it != space_waiters_.end();) {
    std::shared_ptr<SpaceWaiter> waiter = *it;
    StatusOr<Placement> placement = waiter->attempt();
    if (!placement.ok() && placement.status().code() == StatusCode::kResourceExhausted) {
      ++it;
      continue;
    }
    it = space_waiters_.erase(it);
    waiting_for_room_ = space_waiters_.size();
    cancel_deadline(waiter->deadline_id);
    waiter->done(std::move(placement));
  }
}

bool StoreService::connected(ClientId client) const {
  return client >= kFirstClient && clients_.contains(client - kFirstClient);
}

void StoreService::pin_when_ready(const ObjectId& id, const std::string& owner_address,
                                  ClientId client, Clock::time_point deadline,
                                  std::function<void(StatusOr<Placement>)> done) {
  auto again = [this, id, owner_address, client, deadline, done](Status status) {
    if (!status.ok()) return done(status);
    pin_when_ready(id, owner_address, client, deadline, done);
  };
  // A copy being fetched is in the store (unsealed) already: join the transfer.
  if (fetcher_->fetching(id)) return fetch(id, owner_address, client, deadline, std::move(done));
  std::optional<ObjectInfo> info = store_->info(id);
  if (info) {
    switch (info->state) {
      case ObjectState::kSealed:
        return done(store_->pin(id, client));
      case ObjectState::kCreated:
        return wait_for_seal(id, deadline, again);
      case ObjectState::kSpilled:
        return store_->restore(
            id, [this, again](Status restored) { post([again, restored] { again(restored); }); });
    }
  }
  if (owner_address.empty() || owner_address == address_) {
    return done(not_found_error(
        str_cat("object ", id.to_hex(), " is lost: its owner node ", address_,
                " no longer has it (freed, or its creator died before sealing it)")));
  }
  fetch(id, owner_address, client, deadline, std::move(done));
}

// ---- HA objects ---------------------------------------------------------------------------------

// Taking copies of one HA object on other nodes, for a put (store.make_ha) or a repair after a
// holder died: candidates are asked in order, `copies` - holders.size() at a time, until the
// object has `copies` holders or no candidate is left.
struct StoreService::HaPut {
  ObjectId id;
  uint64_t size = 0;
  uint64_t offset = 0;  // Of this node's copy, pinned while the operation lasts.
  uint32_t copies = 0;
  Clock::time_point deadline;
  std::vector<HaCandidate> order;          // Whom to ask, in turn.
  size_t next = 0;                         // In `order`.
  size_t asking = 0;                       // Requests in flight.
  std::vector<NodeId> holders;             // Those that have a copy, this node's included.
  std::vector<std::string> new_addresses;  // Those this operation gave a copy.
  std::vector<std::string> refusals;
  std::function<void(Status)> finished;  // OK: `copies` holders; else why not.
};

void StoreService::set_ha_directory(HaDirectory* directory) {
  ha_ = directory;
  if (ha_ == nullptr) return;
  ha_->on_node_dead([this](const NodeId& dead, const std::string& address) {
    post([this, dead, address] {
      // Transfers from it and copies asked of it fail now, and move on to other holders and
      // nodes, rather than wait for a node that may be hung or cut off, not gone.
      if (!address.empty() && address != address_) {
        links_->close(address, unavailable_error(str_cat("node ", dead.to_hex(), " at ", address,
                                                         " was declared DEAD by the GCS")));
      }
      // It borrows nothing any more; HA objects it owned are taken over by their repairer.
      apply(refs_->node_gone(dead));
      repair_after(dead);
    });
  });
}

void StoreService::handle_make_ha(const proto::MakeHaRequest& request,
                                  RpcResponder<proto::MakeHaResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  if (ha_ == nullptr) {
    return reply.respond(
        failed_precondition_error("this node keeps no HA objects (it has no GCS directory)"));
  }
  const uint32_t copies = request.copies() == 0 ? config_.num_primary_copies : request.copies();
  if (copies < 1 || copies > kMaxPrimaryCopies) {
    return reply.respond(invalid_argument_error(
        str_cat("an HA object with ", copies, " primary copies: from 1 to ", kMaxPrimaryCopies)));
  }
  auto put = std::make_shared<HaPut>();
  put->id = *id;
  put->copies = copies;
  put->deadline = deadline_after(request.timeout_ms());
  put->holders.push_back(node_id_);
  put->finished = [this, put, reply](Status outcome) {
    if (!outcome.ok()) {
      // A failed put gives back the copies other nodes took: it never leaves fewer than asked
      // behind a success, nor copies nobody will free behind a failure.
      (void)store_->unpin(put->id, kPeerClient);
      drop_copies(put->id, put->new_addresses);
      return reply.respond(outcome);
    }
    ha_->record(
        put->id, put->size, node_id_, put->holders, put->copies,
        [this, put, reply](Status recorded) {
          post([this, put, reply, recorded] {
            (void)store_->unpin(put->id, kPeerClient);
            if (!recorded.ok()) {
              drop_copies(put->id, put->new_addresses);
              return reply.respond(recorded.with_context("recording the copies in the GCS"));
            }
            ha_owned_.insert(put->id);
            proto::MakeHaResponse response;
            for (const NodeId& holder : put->holders) response.add_holders(holder.binary());
            reply.respond(std::move(response));
          });
        });
  };
  // The put's seal may still be on its way (it is one-way): wait for it. The pin keeps the
  // bytes here while the copies are taken.
  pin_when_ready(*id, address_, kPeerClient, put->deadline,
                 [this, put](StatusOr<Placement> placement) {
                   if (!placement.ok()) return put->finished(placement.status());
                   put->size = placement->size;
                   put->offset = placement->offset;
                   take_copies(put);
                 });
}

void StoreService::take_copies(const std::shared_ptr<HaPut>& put) {
  if (put->holders.size() >= put->copies) return ask_for_copies(put);
  ha_->candidates([this, put](StatusOr<HaDirectory::Candidates> found) {
    post([this, put, found = std::move(found)] {
      if (!found.ok()) {
        return put->finished(found.status().with_context("listing the nodes to copy to"));
      }
      std::vector<HaCandidate> others;
      for (const HaCandidate& c : found->nodes) {
        if (std::find(put->holders.begin(), put->holders.end(), c.node) == put->holders.end()) {
          others.push_back(c);
        }
      }
      put->order = order_for_copies(std::move(others), found->own_failure_domain,
                                    std::hash<ObjectId>()(put->id));
      ask_for_copies(put);
    });
  });
}

void StoreService::ask_for_copies(const std::shared_ptr<HaPut>& put) {
  while (put->holders.size() + put->asking < put->copies && put->next < put->order.size()) {
    const HaCandidate target = put->order[put->next++];
    ++put->asking;
    links_->with_peer(target.address, [this, put, target](StatusOr<EndpointPtr> peer) {
      post([this, put, target, peer = std::move(peer)] {
        if (!peer.ok()) return copy_answered(put, target, peer.status());
        proto::ReplicateRequest request;
        request.set_object_id(put->id.binary());
        request.set_owner_address(address_);
        request.set_timeout_ms(time_left(put->deadline).count());
        if (put->size <= config_.max_inline_bytes) {
          request.set_inline_data_present(true);
          request.set_inline_data(
              reinterpret_cast<const char*>(store_->segment().data() + put->offset), put->size);
        }
        rpc_.client().call<proto::ReplicateRequest, proto::ReplicateResponse>(
            *peer, "peer.replicate", request, time_left(put->deadline),
            [this, put, target](StatusOr<proto::ReplicateResponse> result) {
              post([this, put, target, outcome = result.status()] {
                copy_answered(put, target, outcome);
              });
            });
      });
    });
  }
  if (put->asking > 0) return;
  if (put->holders.size() < put->copies) {
    std::string why = put->refusals.empty() ? "no more ALIVE nodes to ask" : "";
    for (const std::string& refusal : put->refusals) {
      why += (why.empty() ? "" : "; ") + refusal;
    }
    return put->finished(failed_precondition_error(
        str_cat("object ", put->id.to_hex(), " got ", put->holders.size(), " of ", put->copies,
                " primary copies (", put->order.size(), " other ALIVE node(s) asked): ", why)));
  }
  put->finished(Status());
}

void StoreService::copy_answered(const std::shared_ptr<HaPut>& put, const HaCandidate& target,
                                 const Status& outcome) {
  --put->asking;
  if (outcome.ok()) {
    put->holders.push_back(target.node);
    put->new_addresses.push_back(target.address);
  } else {
    log::warn("node {} did not take a copy of HA object {}: {}", target.address, put->id, outcome);
    put->refusals.push_back(str_cat(target.address, ": ", outcome.to_string()));
    // A node that timed out or went away may still finish its copy later: it is told to drop
    // it (best effort; should it miss this too, it rechecks its copies once it registers again).
    if (outcome.code() == StatusCode::kUnavailable ||
        outcome.code() == StatusCode::kDeadlineExceeded) {
      drop_copies(put->id, {target.address});
    }
  }
  ask_for_copies(put);
}

void StoreService::repair_after(const NodeId& dead) {
  if (ha_ == nullptr) return;
  std::vector<ObjectId> ids(ha_owned_.begin(), ha_owned_.end());
  ids.insert(ids.end(), ha_copies_.begin(), ha_copies_.end());
  for (const ObjectId& id : ids) {
    ha_->lookup(id, [this, id, dead](StatusOr<HaRecord> record) {
      post([this, id, dead, record = std::move(record)] { repair(id, dead, record); });
    });
  }
}

void StoreService::repair(const ObjectId& id, const NodeId& dead,
                          const StatusOr<HaRecord>& record) {
  if (!record.ok()) {
    if (record.status().code() != StatusCode::kNotFound) {
      log::warn("HA object {}: cannot check its copies after node {} died: {}", id, dead,
                record.status());
    }
    return;
  }
  const bool held_by_dead = std::any_of(record->holders.begin(), record->holders.end(),
                                        [&](const HaRecord::Holder& h) { return h.node == dead; });
  // The owner counted the object's references; whoever repairs it counts them from now on.
  const bool owner_died = record->owner == dead;
  if ((!held_by_dead && !owner_died) || repairing_.contains(id)) return;
  std::vector<NodeId> alive;
  for (const HaRecord::Holder& h : record->holders) {
    if (h.alive && h.node != dead) alive.push_back(h.node);
  }
  // One node repairs: the first surviving holder in the recorded order.
  if (alive.empty() || alive.front() != node_id_) return;
  if (alive.size() >= record->copies_wanted && !owner_died) return;
  repairing_.insert(id);
  if (alive.size() < record->copies_wanted) {
    log::info("HA object {}: {} of {} copies left after node {} died; restoring", id, alive.size(),
              record->copies_wanted, dead);
  }
  auto put = std::make_shared<HaPut>();
  put->id = id;
  put->copies = record->copies_wanted;
  put->deadline = Clock::now() + std::chrono::seconds(60);
  put->holders = alive;
  const NodeId owner = owner_died ? node_id_ : record->owner;
  put->finished = [this, put, owner, owner_died, before = alive.size()](Status outcome) {
    (void)store_->unpin(put->id, kPeerClient);
    if (!outcome.ok()) {
      log::warn("HA object {}: only {} of {} copies after a holder died: {}", put->id,
                put->holders.size(), put->copies, outcome);
    }
    if (put->holders.size() == before && !owner_died) {
      repairing_.erase(put->id);
      return;
    }
    // Whatever copies were restored are recorded, also when fewer than wanted.
    ha_->record(put->id, put->size, owner, put->holders, put->copies,
                [this, put, owner_died](Status done) {
                  post([this, put, owner_died, done] {
                    repairing_.erase(put->id);
                    if (!done.ok()) {
                      log::warn("HA object {}: restored copies not recorded: {}", put->id, done);
                      return;
                    }
                    if (!put->new_addresses.empty()) {
                      std::string added;
                      for (const std::string& a : put->new_addresses) {
                        added += (added.empty() ? "" : ", ") + a;
                      }
                      log::info("HA object {}: back to {} of {} copies (new on {})", put->id,
                                put->holders.size(), put->copies, added);
                    }
                    if (owner_died) take_over(put->id);
                  });
                });
  };
  pin_when_ready(
      id, address_, kPeerClient, put->deadline, [this, put](StatusOr<Placement> placement) {
        if (!placement.ok()) {
          repairing_.erase(put->id);
          log::warn("HA object {}: cannot restore its copies: {}", put->id, placement.status());
          return;
        }
        put->size = placement->size;
        put->offset = placement->offset;
        take_copies(put);
      });
}

void StoreService::take_over(const ObjectId& id) {
  ha_copies_.erase(id);
  ha_owned_.insert(id);
  refs_->adopt(id, kTakeoverClient);
  log::info("HA object {}: its owner node died; this node counts its references now", id);
  // Every other node says whether its clients reference the object; until all have answered
  // (or failed), the takeover's own reference keeps it.
  ha_->candidates([this, id](StatusOr<HaDirectory::Candidates> found) {
    post([this, id, found = std::move(found)] {
      auto release = [this, id] { apply(refs_->remove_refs(kTakeoverClient, {id})); };
      if (!found.ok()) {
        log::warn("HA object {}: cannot ask the other nodes whether they reference it: {}", id,
                  found.status());
        return release();
      }
      auto waiting = std::make_shared<size_t>(found->nodes.size());
      if (*waiting == 0) return release();
      auto answered = [waiting, release] {
        if (--*waiting == 0) release();
      };
      for (const HaCandidate& node : found->nodes) {
        links_->with_peer(node.address, [this, id, node, answered](StatusOr<EndpointPtr> peer) {
          post([this, id, node, answered, peer = std::move(peer)] {
            if (!peer.ok()) return answered();
            proto::OwnerMovedRequest request;
            request.add_object_ids(id.binary());
            request.set_new_owner_address(address_);
            const EndpointPtr endpoint = *peer;
            rpc_.client().call<proto::OwnerMovedRequest, proto::OwnerMovedResponse>(
                endpoint, "peer.owner_moved", request, std::chrono::seconds(10),
                [this, id, node, endpoint, answered](StatusOr<proto::OwnerMovedResponse> result) {
                  post([this, id, node, endpoint, answered, result = std::move(result)] {
                    if (!result.ok()) {
                      log::warn("node {} did not hear that HA object {} has a new owner: {}",
                                node.address, id, result.status());
                    } else if (result->borrowed_ids_size() > 0) {
                      borrower_endpoints_[endpoint->id()] = node.node;
                      (void)refs_->add_borrower(id, node.node);
                    }
                    answered();
                  });
                });
          });
        });
      }
    });
  });
}

void StoreService::handle_owner_moved(const proto::OwnerMovedRequest& request,
                                      RpcResponder<proto::OwnerMovedResponse> reply) {
  if (request.new_owner_address().empty()) {
    return reply.respond(invalid_argument_error("peer.owner_moved without the new owner"));
  }
  proto::OwnerMovedResponse response;
  response.set_node_id(node_id_.binary());
  for (const std::string& bytes : request.object_ids()) {
    auto id = object_id_of(bytes);
    if (!id.ok()) return reply.respond(id.status());
    if (refs_->owner_moved(*id, request.new_owner_address())) response.add_borrowed_ids(bytes);
  }
  reply.respond(std::move(response));
}

void StoreService::handle_replicate(const proto::ReplicateRequest& request,
                                    RpcResponder<proto::ReplicateResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  if (ha_ == nullptr) {
    return reply.respond(
        failed_precondition_error("this node keeps no HA objects (it has no GCS directory)"));
  }
  if (request.owner_address().empty() || request.owner_address() == address_) {
    return reply.respond(invalid_argument_error(
        str_cat("a copy of object ", id->to_hex(), " asked of its own owner node")));
  }
  if (Status admitted = ha_->admit_copy(); !admitted.ok()) return reply.respond(admitted);
  const Clock::time_point deadline = deadline_after(request.timeout_ms());
  auto keep = [this, id = *id, reply](Status sealed_here) {
    if (!sealed_here.ok()) return reply.respond(sealed_here);
    Status primary = store_->make_primary(id);
    if (!primary.ok()) return reply.respond(primary);
    ha_copies_.insert(id);
    reply.respond(proto::ReplicateResponse());
  };
  if (request.inline_data_present() && !store_->info(*id)) {
    // A small object came with the request: written here at once, no fetch.
    auto data = std::make_shared<std::string>(request.inline_data());
    return reserve(
        kNodeClient,
        [this, id = *id, size = data->size()] {
          return store_->create(id, size, kNodeClient, CopyKind::kPrimary);
        },
        deadline,
        [this, id = *id, data, keep](StatusOr<Placement> placement) {
          if (!placement.ok()) return keep(placement.status());
          if (!data->empty()) {
            std::memcpy(store_->segment().data() + placement->offset, data->data(), data->size());
          }
          Status s = store_->seal(id);
          sealed(id, s);
          keep(s);
        });
  }
  // As a get: the owner RMA-puts the bytes into room reserved here.
  pin_when_ready(*id, request.owner_address(), kPeerClient, deadline,
                 [this, id = *id, keep](StatusOr<Placement> placement) {
                   if (!placement.ok()) return keep(placement.status());
                   (void)store_->unpin(id, kPeerClient);
                   keep(Status());
                 });
}

void StoreService::handle_drop_ha_copy(const proto::DropHaCopyRequest& request,
                                       RpcResponder<proto::DropHaCopyResponse> reply) {
  auto id = object_id_of(request.object_id());
  if (!id.ok()) return reply.respond(id.status());
  if (ha_copies_.erase(*id) > 0) (void)store_->remove(*id);
  reply.respond(proto::DropHaCopyResponse());
}

void StoreService::recheck_ha_copies() {
  post([this] {
    if (ha_ == nullptr) return;
    // Objects created here are not rechecked: their freeing still starts here, when their
    // last reference goes, and reaches every holder the directory lists.
    std::vector<ObjectId> ids(ha_copies_.begin(), ha_copies_.end());
    if (!ids.empty()) {
      log::info("rechecking {} HA object(s) with the directory after registering again",
                ids.size());
    }
    for (const ObjectId& id : ids) {
      ha_->lookup(id, [this, id](StatusOr<HaRecord> record) {
        post([this, id, record = std::move(record)] {
          if (!record.ok() && record.status().code() != StatusCode::kNotFound) {
            log::warn("HA object {}: cannot recheck this node's copy: {}", id, record.status());
            return;
          }
          const bool listed =
              record.ok() &&
              std::any_of(record->holders.begin(), record->holders.end(),
                          [&](const HaRecord::Holder& h) { return h.node == node_id_; });
          if (listed) return;
          if (ha_copies_.erase(id) > 0) {
            log::info("HA object {}: this node's copy was replaced while it was away; freed", id);
            (void)store_->remove(id);
          }
        });
      });
    }
  });
}

void StoreService::free_ha_object(const ObjectId& id) {
  if (ha_owned_.erase(id) == 0 || ha_ == nullptr) return;
  // The directory knows every holder, also those that took a copy after another died.
  ha_->lookup(id, [this, id](StatusOr<HaRecord> record) {
    post([this, id, record = std::move(record)] {
      if (!record.ok()) {
        log::warn("HA object {}: cannot free its other copies: {}", id, record.status());
        return;
      }
      std::vector<std::string> others;
      for (const HaRecord::Holder& h : record->holders) {
        if (h.node != node_id_ && !h.address.empty()) others.push_back(h.address);
      }
      drop_copies(id, others);
      ha_->forget(id, [id](Status forgotten) {
        if (!forgotten.ok()) log::warn("the GCS did not forget HA object {}: {}", id, forgotten);
      });
    });
  });
}

void StoreService::drop_copies(const ObjectId& id, const std::vector<std::string>& holders) {
  for (const std::string& holder : holders) {
    links_->with_peer(holder, [this, id, holder](StatusOr<EndpointPtr> peer) {
      if (!peer.ok()) {
        log::warn("cannot ask {} to free its copy of HA object {}: {}", holder, id, peer.status());
        return;
      }
      proto::DropHaCopyRequest request;
      request.set_object_id(id.binary());
      rpc_.client().call<proto::DropHaCopyRequest, proto::DropHaCopyResponse>(
          *peer, "peer.drop_ha_copy", request, std::chrono::seconds(10),
          [id, holder](StatusOr<proto::DropHaCopyResponse> result) {
            if (!result.ok()) {
              log::warn("{} did not free its copy of HA object {}: {}", holder, id,
                        result.status());
            }
          });
    });
  }
}

void StoreService::fetch(const ObjectId& id, const std::string& owner_address, ClientId client,
                         Clock::time_point deadline,
                         std::function<void(StatusOr<Placement>)> done) {
  fetcher_->fetch(
      id, owner_address, deadline,
      [this, id, owner_address, client, deadline, done](Status fetched) {
        if (fetched.ok()) {
          return pin_when_ready(id, owner_address, client, deadline, done);
        }
        if (ha_ == nullptr || !another_holder_may_help(fetched)) return done(fetched);
        ha_->lookup(id, [this, id, owner_address, client, deadline, done,
                         fetched](StatusOr<HaRecord> holders) {
          post([this, id, owner_address, client, deadline, done, fetched,
                holders = std::move(holders)] {
            if (!holders.ok()) {
              if (holders.status().code() == StatusCode::kNotFound) {
                return done(fetched);  // Not an HA object.
              }
              return done(fetched.with_context(
                  str_cat("and the HA directory could not say where other copies "
                          "are: ",
                          holders.status().to_string())));
            }
            auto others = std::make_shared<std::vector<std::string>>();
            for (const HaRecord::Holder& holder : holders->holders) {
              if (holder.alive && holder.address != owner_address && holder.address != address_) {
                others->push_back(holder.address);
              }
            }
            log::info("object {}: its owner {} failed ({}); trying {} other holder(s)", id,
                      owner_address, fetched, others->size());
            fetch_from_holders(id, others, 0, client, deadline, fetched, done);
          });
        });
      });
}

void StoreService::fetch_from_holders(const ObjectId& id,
                                      std::shared_ptr<std::vector<std::string>> holders,
                                      size_t next, ClientId client, Clock::time_point deadline,
                                      Status first_failure,
                                      std::function<void(StatusOr<Placement>)> done) {
  if (next >= holders->size()) {
    return done(first_failure.with_context(
        str_cat("no other holder of HA object ", id.to_hex(), " could give it")));
  }
  const std::string holder = (*holders)[next];
  fetcher_->fetch(
      id, holder, deadline,
      [this, id, holders, next, client, deadline, first_failure, done, holder](Status fetched) {
        if (fetched.ok()) return pin_when_ready(id, holder, client, deadline, done);
        log::warn("object {}: holder {} could not give it: {}", id, holder, fetched);
        fetch_from_holders(id, holders, next + 1, client, deadline, first_failure, done);
      });
}

void StoreService::wait_for_seal(const ObjectId& id, Clock::time_point deadline,
                                 std::function<void(Status)> done) {
  struct Once {
    std::function<void(Status)> done;
    uint64_t deadline_id = 0;
  };
  auto once = std::make_shared<Once>();
  once->done = std::move(done);
  once->deadline_id = add_deadline(deadline, [once, id] {
    if (!once->done) return;
    auto finish = std::move(once->done);
    once->done = nullptr;
    finish(deadline_exceeded_error(str_cat("object ", id.to_hex(), " was not sealed in time")));
  });
  seal_waiters_[id].push_back([this, once](Status outcome) {
    if (!once->done) return;
    cancel_deadline(once->deadline_id);
    auto finish = std::move(once->done);
    once->done = nullptr;
    finish(outcome);
  });
}

void StoreService::sealed(const ObjectId& id, const Status& outcome) {
  auto it = seal_waiters_.find(id);
  if (it == seal_waiters_.end()) return;
  auto waiting = std::move(it->second);
  seal_waiters_.erase(it);
  for (auto& w : waiting) w(outcome);
}

uint64_t StoreService::add_deadline(Clock::time_point deadline, std::function<void()> on_expired) {
  if (deadline == Clock::time_point::max()) return 0;
  const uint64_t id = next_deadline_id_++;
  deadlines_.emplace(id, std::move(on_expired));
  timer_->add(deadline, id);
  return id;
}

void StoreService::cancel_deadline(uint64_t id) {
  if (id != 0) deadlines_.erase(id);
}

// ---- References and departures ----------------------------------------------------------------

void StoreService::drop_refs(ClientId client, const std::vector<ObjectId>& ids) {
  for (const ObjectId& id : ids) {
    // The client reads an object only while it holds a reference: its pins go with it.
    while (store_->unpin(id, client).ok()) {
    }
  }
  apply(refs_->remove_refs(client, ids));
}

void StoreService::apply(RefActions actions) {
  for (const ObjectId& id : actions.free) {
    auto unsealed = unsealed_.find(id);
    if (unsealed != unsealed_.end()) {
      // Freed before it was sealed: its creator dropped the reference (or died).
      (void)store_->abort(id);
      forget_ahead(id, unsealed->second);
      unsealed_.erase(unsealed);
      sealed(id,
             not_found_error(str_cat("object ", id.to_hex(), " was aborted before it was sealed")));
      continue;
    }
    // A copy this node keeps for an HA object goes with the object, not with local references.
    if (ha_copies_.contains(id)) continue;
    free_ha_object(id);
    (void)store_->remove(id);
  }
  for (const RefSpec& ref : actions.borrow) send_borrow(ref, true);
  for (const RefSpec& ref : actions.unborrow) send_borrow(ref, false);
  referenced_ = refs_->size();
}

void StoreService::send_borrow(const RefSpec& ref, bool borrow) {
  links_->with_peer(ref.owner_address, [this, ref, borrow](StatusOr<EndpointPtr> peer) {
    if (!peer.ok()) {
      log::debug("cannot tell {} about object {}: {}", ref.owner_address, ref.id, peer.status());
      return;
    }
    proto::BorrowRequest request;
    request.add_object_ids(ref.id.binary());
    request.set_node_id(node_id_.binary());
    rpc_.client().call<proto::BorrowRequest, proto::BorrowResponse>(
        *peer, borrow ? "peer.borrow" : "peer.unborrow", request, std::chrono::seconds(10),
        [ref, borrow](StatusOr<proto::BorrowResponse> result) {
          if (!result.ok()) {
            log::debug("{} of object {} at {} failed: {}", borrow ? "borrow" : "unborrow", ref.id,
                       ref.owner_address, result.status());
          }
        });
  });
}

void StoreService::client_gone(ClientId client) {
  // Its puts waiting for room wait no more (their answers would go nowhere).
  for (auto it = space_waiters_.begin(); it != space_waiters_.end();) {
    if ((*it)->client != client) {
      ++it;
      continue;
    }
    cancel_deadline((*it)->deadline_id);
    it = space_waiters_.erase(it);
    waiting_for_room_ = space_waiters_.size();
  }
  store_->client_gone(client);
  for (auto it = unsealed_.begin(); it != unsealed_.end();) {
    if (it->second != client) {
      ++it;
      continue;
    }
    const ObjectId id = it->first;
    forget_ahead(id, client);
    it = unsealed_.erase(it);
    sealed(id, not_found_error(str_cat("object ", id.to_hex(),
                                       " is lost: its creator went away before sealing it")));
  }
  apply(refs_->client_gone(client));
}

void StoreService::endpoint_failed(const EndpointPtr& endpoint) {
  const uint64_t endpoint_id = endpoint->id();
  post([this, endpoint_id, endpoint] {
    links_->forget(endpoint);
    if (auto it = clients_.find(endpoint_id); it != clients_.end()) {
      const ClientId client = it->second;
      clients_.erase(it);
      clients_connected_ = clients_.size();
      client_gone(client);
    }
    if (auto it = borrower_endpoints_.find(endpoint_id); it != borrower_endpoints_.end()) {
      const NodeId node = it->second;
      borrower_endpoints_.erase(it);
      apply(refs_->node_gone(node));
    }
  });
}

}  // namespace halo::objstore
