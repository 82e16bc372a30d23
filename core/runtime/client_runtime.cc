#include "core/runtime/client_runtime.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <utility>

#include "halo/base/logging.h"

namespace halo::internal {
namespace {

using namespace std::chrono_literals;

// The RPC timeout for a request the node answers by `timeout` itself: a margin more, or a day
// for "for ever".
std::chrono::milliseconds call_timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) return std::chrono::hours(24);
  return timeout + 5s;
}

// One reply, waited for by the calling thread: spins for a few microseconds (a store call on
// the same machine takes about that), then sleeps on the atomic.
template <typename Resp>
struct Reply {
  std::atomic<uint32_t> ready{0};
  StatusOr<Resp> result{internal_error("no reply")};

  void set(StatusOr<Resp> r) {
    result = std::move(r);
    ready.store(1, std::memory_order_release);
    ready.notify_one();
  }
  StatusOr<Resp> take() {
    for (int i = 0; i < 2000 && ready.load(std::memory_order_acquire) == 0; ++i) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    ready.wait(0, std::memory_order_acquire);
    return std::move(result);
  }
};

}  // namespace

// Room created ahead for a next put of `size`: the object id it was created under, and the
// node's answer when it arrives.
struct AheadRoom {
  ObjectId id;
  size_t size = 0;
  // Asked ahead of the put that takes it (RoomRequest.ahead); else the room of the put that
  // asked it, with no room ready.
  bool ahead = true;
  // The node's answer (the room's offset), for the put that takes the room.
  Reply<uint64_t> reply;
  // Whichever comes second of the answer and the decision to give the room back undoes the
  // room's creation (a remove_ref), so that giving back never waits for the answer.
  std::mutex mu;
  bool answered = false;    // Under mu.
  bool created = false;     // Under mu: the answer was a room.
  bool given_back = false;  // Under mu.
};

namespace {

objstore::proto::ObjectRefProto ref_proto(const RefState& ref) {
  objstore::proto::ObjectRefProto p;
  p.set_object_id(ref.id().binary());
  p.set_owner_address(ref.owner_address());
  return p;
}

}  // namespace

// Bounds of the pin cache (see client_runtime.h).
constexpr size_t kPinCacheObjects = 1024;
constexpr uint64_t kPinCacheMaxBytes = 16 << 20;

ClientRuntime::OpKind kind_of(const objstore::proto::BatchOp& op) {
  if (op.has_arena_put()) return ClientRuntime::OpKind::kPut;
  // A seal need not hold back calls: whoever reads the object waits at the node for it.
  if (op.has_remove_ref() || op.has_seal()) return ClientRuntime::OpKind::kRemove;
  // Released pins, and room asked for a put (no call is about an object before its put).
  return ClientRuntime::OpKind::kRelease;
}

// A batch of queued one-way traffic holds at most this many operations.
constexpr int kMaxBatchOps = 4096;
// Released pins wait for company: they leave once this many are queued, or after this long.
constexpr size_t kLazyReleases = 64;
constexpr auto kReleaseDelay = std::chrono::milliseconds(2);
// Put-ahead: at most this many rooms ahead (a MiB takes ~30 us to write, a round trip to the
// node several times that); all are given back after this long without a large put.
constexpr size_t kMaxRoomsAhead = 8;
constexpr auto kAheadIdle = std::chrono::milliseconds(50);
// Ids of the release timer's deadlines.
constexpr uint64_t kReleaseDeadline = 0;
constexpr uint64_t kAheadIdleDeadline = 1;

ClientRuntime::ClientRuntime(ClientOptions options)
    : options_(std::move(options)),
      release_timer_(
          [this](uint64_t id) {
            if (id == kAheadIdleDeadline) return give_back_if_idle();
            {
              std::lock_guard lock(send_mu_);
              release_timer_armed_ = false;
              if (closed_) return;
            }
            transport_->run_on_progress_thread([this] { drain(true); });
          },
          std::chrono::milliseconds(100), [] {}) {}

template <typename Req, typename Resp>
void ClientRuntime::call_async(const char* method, const Req& request,
                               std::chrono::milliseconds timeout,
                               std::function<void(StatusOr<Resp>)> done) {
  Outgoing call;
  // A reference taken must not be applied before an earlier drop of the same object (the node
  // counts a client's references to an object as one); a sync must see everything before it.
  call.after_removes =
      std::string_view(method) == "store.add_refs" || std::string_view(method) == "store.batch";
  auto once = std::make_shared<std::function<void(StatusOr<Resp>)>>(std::move(done));
  call.call = [this, method, request, timeout, once] {
    rpc_->client().call<Req, Resp>(node_, method, request, timeout, std::move(*once));
  };
  call.cancel = [once, method] {
    if (*once) (*once)(cancelled_error(str_cat(method, ": the client is shutting down")));
  };
  push(std::move(call));
}

template <typename Req, typename Resp>
StatusOr<Resp> ClientRuntime::call(const char* method, const Req& request,
                                   std::chrono::milliseconds timeout) {
  auto reply = std::make_shared<Reply<Resp>>();
  call_async<Req, Resp>(method, request, timeout,
                        [reply](StatusOr<Resp> r) { reply->set(std::move(r)); });
  return reply->take();
}

void ClientRuntime::enqueue(objstore::proto::BatchOp op) {
  Outgoing item;
  item.op = std::move(op);
  push(std::move(item));
}

void ClientRuntime::ask_room(const ObjectId& id, size_t size, bool ahead, RoomAnswered answered) {
  Outgoing item;
  objstore::proto::RoomRequest* room = item.op.emplace().mutable_create();
  room->set_object_id(id.binary());
  room->set_size(size);
  room->set_ahead(ahead);
  auto once = std::make_shared<std::function<void(StatusOr<uint64_t>)>>(std::move(answered));
  item.room_answer = [once](StatusOr<uint64_t> offset) { (*once)(std::move(offset)); };
  item.cancel = [once] { (*once)(cancelled_error("room for a put: the client is shutting down")); };
  push(std::move(item));
}

void ClientRuntime::enqueue_remove_ref(const ObjectId& id, const std::string& owner) {
  objstore::proto::BatchOp op;
  op.mutable_remove_ref()->set_object_id(id.binary());
  op.mutable_remove_ref()->set_owner_address(owner);
  enqueue(std::move(op));
}

void ClientRuntime::push(Outgoing item) {
  {
    std::unique_lock lock(send_mu_);
    if (closed_) {
      lock.unlock();
      if (item.cancel) item.cancel();  // Shutting down.
      return;
    }
    const bool lazy = item.lazy;
    if (item.op && item.op->has_arena_put()) ++puts_queued_;
    outbox_.push_back(std::move(item));
    if (drain_posted_) return;
    if (lazy && outbox_.size() < kLazyReleases) return arm_release_timer_locked();
    drain_posted_ = true;
  }
  // Posted without the lock: on the progress thread this runs the drain inline.
  transport_->run_on_progress_thread([this] { drain(false); });
}

void ClientRuntime::arm_release_timer_locked() {
  if (release_timer_armed_) return;
  release_timer_armed_ = true;
  release_timer_.add(DeadlineTimer::Clock::now() + kReleaseDelay, kReleaseDeadline);
}

void ClientRuntime::drain(bool all) {
  std::unique_lock lock(send_mu_);
  drain_posted_ = false;
  // The transport does not promise that messages of a connection arrive in order (a large one
  // is received in two steps, and may complete after a smaller one sent later), so order on
  // the wire is not assumed: a batch leaves only when the previous one is answered, and a call
  // only when what it must not overtake is answered:
  //   - arena puts: nothing overtakes them (a call may be about the object);
  //   - dropped references: only calls that take references (and syncs) wait for them;
  //   - released pins: anything may overtake them (pins count). Alone, they wait until
  //     kLazyReleases of them are queued or kReleaseDelay has passed, to leave in batches.
  //
  //   - rooms asked for puts: anything may overtake them.
  //
  // Otherwise everything leaves in the order it was queued, so that, say, the drop of the last
  // put's reference reaches the node before the next put's room request (in the same batch or
  // an earlier one), and its room is reused while still in the cache.
  while (!closed_ && !outbox_.empty()) {
    // The first call in the outbox, and the strongest kind of operation queued before it.
    auto call = outbox_.end();
    OpKind before = in_flight_;
    bool lazy_only = true;  // Only released pins that may wait.
    size_t ops = 0;
    for (auto it = outbox_.begin(); it != outbox_.end(); ++it, ++ops) {
      if (it->call) {
        call = it;
        break;
      }
      before = std::max(before, kind_of(*it->op));
      lazy_only = lazy_only && it->lazy;
    }
    const bool hold_ops = ops > 0 && lazy_only && !all && ops < kLazyReleases;
    const bool send_ops = ops > 0 && !hold_ops && in_flight_ == OpKind::kNone;
    if (!send_ops) {
      // A call goes ahead of what may wait, or of a batch in flight it may overtake.
      const OpKind limit =
          call != outbox_.end() && call->after_removes ? OpKind::kRemove : OpKind::kPut;
      if (call != outbox_.end() && before < limit) {
        std::function<void()> start = std::move(call->call);
        outbox_.erase(call);
        lock.unlock();
        start();
        lock.lock();
        continue;
      }
      if (hold_ops && call == outbox_.end()) arm_release_timer_locked();
      break;
    }
    // The operations at the front leave as one batch.
    objstore::proto::StoreBatchRequest batch;
    std::vector<AskedRoom> rooms;
    uint64_t puts = puts_sent_;
    OpKind strongest = OpKind::kRelease;
    while (!outbox_.empty() && !outbox_.front().call && batch.ops_size() < kMaxBatchOps) {
      Outgoing& item = outbox_.front();
      if (item.op->has_arena_put()) ++puts;
      if (item.room_answer) {
        rooms.push_back({item.op->create().object_id(), std::move(item.room_answer)});
      }
      strongest = std::max(strongest, kind_of(*item.op));
      *batch.add_ops() = std::move(*item.op);
      outbox_.pop_front();
    }
    puts_sent_ = puts;
    in_flight_ = strongest;
    lock.unlock();
    send_batch(std::move(batch), puts, std::move(rooms));
    lock.lock();
  }
}

void ClientRuntime::send_batch(objstore::proto::StoreBatchRequest batch, uint64_t puts,
                               std::vector<AskedRoom> rooms) {
  rpc_->client().call<objstore::proto::StoreBatchRequest, objstore::proto::StoreBatchResponse>(
      node_, "store.batch", batch, 30s,
      [this, puts,
       rooms = std::move(rooms)](StatusOr<objstore::proto::StoreBatchResponse> applied) {
        answer_rooms(applied, rooms);
        {
          std::lock_guard lock(send_mu_);
          in_flight_ = OpKind::kNone;
        }
        if (!applied.ok()) {
          // Shutting down (CANCELLED) is no news. Otherwise the batch may or may not have been
          // applied: references published from now on could name objects the node lacks.
          if (applied.status().code() != StatusCode::kCancelled) {
            log::warn("the node did not confirm queued store operations: {}", applied.status());
            std::lock_guard lock(send_mu_);
            if (batch_error_.ok()) {
              batch_error_ = applied.status().with_context(
                  "the node did not confirm queued store operations of this process");
            }
          }
        } else {
          if (applied->refused() > 0) {
            log::error("the node refused {} queued store operations; first: {}", applied->refused(),
                       applied->first_error());
            std::lock_guard lock(send_mu_);
            if (batch_error_.ok()) {
              batch_error_ = internal_error(
                  str_cat("the node refused ", applied->refused(),
                          " queued store operations of this process (a bug in halo); first: ",
                          applied->first_error()));
            }
          } else {
            note_synced(puts);
          }
        }
        // Deadlines complete calls on the RPC client's timer thread: drains stay on the
        // progress thread, one at a time.
        transport_->run_on_progress_thread([this] { drain(false); });
      });
}

void ClientRuntime::answer_rooms(const StatusOr<objstore::proto::StoreBatchResponse>& applied,
                                 const std::vector<AskedRoom>& rooms) {
  for (size_t i = 0; i < rooms.size(); ++i) {
    const RoomAnswered& answered = rooms[i].answered;
    if (!applied.ok()) {
      if (applied.status().code() == StatusCode::kCancelled) {
        answered(applied.status());  // Shutting down: the node drops whatever this created.
        continue;
      }
      // The node may have created the room nonetheless (the answer was lost or late): it goes
      // back. UNAVAILABLE, whatever the batch's code, so that no put takes this for "no room".
      if (auto id = ObjectId::from_binary(rooms[i].object_id); id.ok()) forget_room(*id);
      answered(unavailable_error(
          str_cat("asking room for a put: the node did not answer: ", applied.status())));
    } else if (i >= static_cast<size_t>(applied->rooms_size())) {
      answered(internal_error(str_cat("the node answered ", applied->rooms_size(), " of ",
                                      rooms.size(), " rooms asked in a batch")));
    } else if (const objstore::proto::RoomAnswer& room = applied->rooms(static_cast<int>(i));
               room.code() != 0) {
      answered(Status(static_cast<StatusCode>(room.code()), room.message()));
    } else {
      answered(room.offset());
    }
  }
}

StatusOr<std::unique_ptr<ClientRuntime>> ClientRuntime::connect(ClientOptions options) {
  auto rt = std::unique_ptr<ClientRuntime>(new ClientRuntime(std::move(options)));
  HALO_ASSIGN_OR_RETURN(rt->transport_,
                        transport::Transport::create(rt->options_.transport, rt->options_.secret));
  HALO_ASSIGN_OR_RETURN(rt->rpc_, transport::RpcNode::create(*rt->transport_));
  auto node = rt->transport_->connect(rt->options_.node_address, rt->options_.connect_timeout);
  if (!node.ok()) {
    return node.status().with_context(
        str_cat("connecting to the node daemon at ", rt->options_.node_address));
  }
  rt->node_ = *node;
  objstore::proto::StoreConnectRequest request;
  request.set_pid(::getpid());
  request.set_client_name("driver");
  HALO_ASSIGN_OR_RETURN(
      auto connected,
      (rt->call<objstore::proto::StoreConnectRequest, objstore::proto::StoreConnectResponse>(
          "store.connect", request, 10s)));
  auto segment = objstore::ShmSegment::attach(connected.segment_owner_pid(), connected.segment_fd(),
                                              connected.segment_size());
  if (!segment.ok()) {
    return segment.status().with_context(
        str_cat("mapping the object store of the node daemon at ", rt->options_.node_address,
                " (it must run on this machine, as the same user)"));
  }
  rt->segment_ = std::move(*segment);
  rt->node_address_ = connected.node_address();
  rt->node_id_hex_ = internal_ids::to_hex(
      reinterpret_cast<const uint8_t*>(connected.node_id().data()), connected.node_id().size());
  rt->max_inline_bytes_ = connected.max_inline_bytes();
  rt->arena_bytes_ = connected.arena_bytes();
  rt->pin_cache_bytes_ = std::min<uint64_t>(kPinCacheMaxBytes, connected.segment_size() / 16);
  if (connected.alignment() != 0) rt->alignment_ = connected.alignment();
  rt->put_ahead_bytes_ = connected.put_ahead_bytes();
  return rt;
}

ClientRuntime::~ClientRuntime() {
  // The node drops this client's references and pins when the connection goes (and with them
  // whatever is still queued).
  std::deque<Outgoing> dropped;
  {
    std::lock_guard lock(send_mu_);
    closed_ = true;
    dropped.swap(outbox_);
  }
  for (Outgoing& item : dropped) {
    if (item.cancel) item.cancel();  // A caller waiting for it gets CANCELLED.
  }
  release_timer_.stop();
  // A drain running now started before closed_ was set: let it finish before the RPC node
  // goes (later drains see closed_).
  if (transport_) {
    std::promise<void> passed;
    transport_->run_on_progress_thread([&passed] { passed.set_value(); });
    passed.get_future().wait();
  }
  if (node_) node_->close();
  rpc_.reset();
  transport_.reset();
}

StatusOr<std::shared_ptr<RefState>> ClientRuntime::put(
    size_t size, const std::function<void(std::span<std::byte>)>& write, const PutParams& params) {
  ObjectId id = ObjectId::random();  // A large put takes its room's.
  const std::chrono::milliseconds timeout = params.timeout.value_or(options_.put_timeout);
  if (size <= max_inline_bytes_ && size <= arena_bytes_) {
    HALO_RETURN_IF_ERROR(put_in_arena(id, size, write, timeout));
  } else if (size <= max_inline_bytes_) {
    objstore::proto::PutInlineRequest request;
    request.set_object_id(id.binary());
    request.set_timeout_ms(timeout.count());
    std::string* data = request.mutable_data();
    data->resize(size);
    write(std::span<std::byte>(reinterpret_cast<std::byte*>(data->data()), size));
    HALO_RETURN_IF_ERROR(
        (call<objstore::proto::PutInlineRequest, objstore::proto::PutInlineResponse>(
             "store.put_inline", request, call_timeout(timeout)))
            .status());
  } else {
    HALO_ASSIGN_OR_RETURN(const Room room, room_for(size, timeout));
    id = room.id;
    write(std::span<std::byte>(segment_->data() + room.offset, size));
    // The seal is not waited for: nothing can refuse it (this client created the object and
    // holds its connection), and whoever reads the object meanwhile waits at the node for the
    // seal. It leaves in the next store.batch, with the drops of references queued around it
    // (one message for both; a refusal would be reported as any refused batch operation). If
    // the connection fails first, the node aborts the object as its creator's.
    objstore::proto::BatchOp seal;
    seal.set_seal(id.binary());
    enqueue(std::move(seal));
  }
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[id];
    e.refs += 1;
    e.owner = node_address_;
  }
  auto ref = std::make_shared<RefState>(id, node_address_);
  if (params.ha) {
    // After the put's own traffic (its seal or arena batch goes first); on failure `ref`
    // goes with the error, dropping the object.
    objstore::proto::MakeHaRequest request;
    request.set_object_id(id.binary());
    request.set_copies(params.num_primary_copies);
    request.set_timeout_ms(timeout.count());
    auto made = call<objstore::proto::MakeHaRequest, objstore::proto::MakeHaResponse>(
        "store.make_ha", request, call_timeout(timeout));
    if (!made.ok()) return made.status().with_context(str_cat("HA put of object ", id.to_hex()));
  }
  return ref;
}

StatusOr<ClientRuntime::Room> ClientRuntime::room_for(size_t size,
                                                      std::chrono::milliseconds timeout) {
  std::shared_ptr<AheadRoom> ahead;
  std::deque<std::shared_ptr<AheadRoom>> other_size;
  std::vector<std::shared_ptr<AheadRoom>> asked;
  {
    std::lock_guard lock(ahead_mu_);
    if (!ahead_.empty() && ahead_.front()->size != size) other_size.swap(ahead_);
    asked = rooms_to_ask_locked(size);
    if (!ahead_.empty()) {
      ahead = std::move(ahead_.front());
      ahead_.pop_front();
    }
  }
  for (auto& room : other_size) give_back(*room);
  // Asked after what is queued: the drop of the last put's object frees room still in the
  // cache, which the node hands out again.
  for (auto& room : asked) ask_room_ahead(room);
  ObjectId id = ObjectId::random();
  StatusOr<uint64_t> offset = resource_exhausted_error("no room asked yet");
  if (ahead) {
    // Its answer is on the way if it has not arrived.
    offset = ahead->reply.take();
    if (offset.ok()) return placed(ahead->id, *offset, size);
    if (!ahead->ahead) {
      id = ahead->id;  // This put's own room, refused: not created.
    } else {
      // A room ahead refused (no room to spare, most likely): the rest would be too. Pause
      // put-ahead and ask for room the ordinary way.
      std::deque<std::shared_ptr<AheadRoom>> refused;
      {
        std::lock_guard lock(ahead_mu_);
        ahead_paused_until_ = DeadlineTimer::Clock::now() + kAheadIdle;
        refused.swap(ahead_);
      }
      for (auto& r : refused) give_back(*r);
      offset = resource_exhausted_error("room ahead refused");
      ahead.reset();
    }
  }
  if (!ahead) {
    // Room now, in the next batch (after what is queued, as above), if there is room now.
    auto now = std::make_shared<Reply<uint64_t>>();
    ask_room(id, size, false, [now](StatusOr<uint64_t> r) { now->set(std::move(r)); });
    offset = now->take();
    if (offset.ok()) return placed(id, *offset, size);
  }
  if (offset.status().code() != StatusCode::kResourceExhausted) return offset.status();
  // Not now: store.create waits up to the put's timeout for room.
  objstore::proto::CreateRequest create;
  create.set_object_id(id.binary());
  create.set_size(size);
  create.set_timeout_ms(timeout.count());
  HALO_ASSIGN_OR_RETURN(auto created,
                        (call<objstore::proto::CreateRequest, objstore::proto::CreateResponse>(
                            "store.create", create, call_timeout(timeout))));
  return placed(id, created.offset(), size);
}

StatusOr<ClientRuntime::Room> ClientRuntime::placed(const ObjectId& id, uint64_t offset,
                                                    size_t size) {
  if (offset > segment_->size() || size > segment_->size() - offset) {
    forget_room(id);  // The node created it: it goes back.
    return internal_error(str_cat("the node placed object ", id.to_hex(), " (", size,
                                  " bytes) at offset ", offset, ", outside its segment of ",
                                  segment_->size()));
  }
  return Room{id, offset};
}

std::vector<std::shared_ptr<AheadRoom>> ClientRuntime::rooms_to_ask_locked(size_t size) {
  std::vector<std::shared_ptr<AheadRoom>> asked;
  last_large_put_ = DeadlineTimer::Clock::now();
  if (size > put_ahead_bytes_) return asked;
  if (!idle_check_armed_) {
    idle_check_armed_ = true;
    release_timer_.add(last_large_put_ + kAheadIdle, kAheadIdleDeadline);
  }
  if (last_large_put_ < ahead_paused_until_) return asked;
  // The room of this put and, after equal puts in a row, of the next ones: one more for each,
  // as many as put_ahead_bytes holds, at most kMaxRoomsAhead. A process that puts a size once
  // holds no room for it after the put.
  equal_puts_ = size == equal_size_ ? equal_puts_ + 1 : 1;
  equal_size_ = size;
  const size_t rooms =
      std::clamp<size_t>(std::min<size_t>(put_ahead_bytes_ / size, equal_puts_), 1, kMaxRoomsAhead);
  while (ahead_.size() < rooms) {
    auto room = std::make_shared<AheadRoom>();
    room->id = ObjectId::random();
    room->size = size;
    room->ahead = !ahead_.empty();  // The first, with none ready, is this put's own.
    ahead_.push_back(room);
    asked.push_back(std::move(room));
  }
  return asked;
}

void ClientRuntime::ask_room_ahead(const std::shared_ptr<AheadRoom>& room) {
  ask_room(room->id, room->size, room->ahead, [this, room](StatusOr<uint64_t> offset) {
    bool undo = false;
    {
      std::lock_guard room_lock(room->mu);
      room->answered = true;
      room->created = offset.ok();
      undo = room->given_back && room->created;
    }
    if (undo) return forget_room(room->id);
    room->reply.set(std::move(offset));
  });
}

void ClientRuntime::give_back(AheadRoom& room) {
  bool undo = false;
  {
    std::lock_guard lock(room.mu);
    room.given_back = true;
    undo = room.answered && room.created;
  }
  if (undo) forget_room(room.id);  // Otherwise its answer does it, if it is a room.
}

void ClientRuntime::forget_room(const ObjectId& id) { enqueue_remove_ref(id, node_address_); }

void ClientRuntime::give_back_if_idle() {
  std::deque<std::shared_ptr<AheadRoom>> idle;
  {
    std::lock_guard lock(ahead_mu_);
    const auto due = last_large_put_ + kAheadIdle;
    if (DeadlineTimer::Clock::now() < due) {
      release_timer_.add(due, kAheadIdleDeadline);
      return;
    }
    idle_check_armed_ = false;
    equal_puts_ = 0;
    idle.swap(ahead_);
  }
  for (auto& room : idle) give_back(*room);
}

Status ClientRuntime::put_in_arena(const ObjectId& id, size_t size,
                                   const std::function<void(std::span<std::byte>)>& write,
                                   std::chrono::milliseconds timeout) {
  const uint64_t block = size == 0 ? alignment_ : (size + alignment_ - 1) / alignment_ * alignment_;
  std::lock_guard lock(arena_mu_);
  if (arena_end_ - arena_front_ < block) {
    // The node gives back the rest of the current arena when it answers, and may have done so
    // even when the answer does not arrive: it is not ours from here on.
    arena_front_ = arena_end_ = 0;
    objstore::proto::ReserveArenaRequest request;
    request.set_size(arena_bytes_);
    request.set_min_size(block);
    request.set_timeout_ms(timeout.count());
    auto arena = call<objstore::proto::ReserveArenaRequest, objstore::proto::ReserveArenaResponse>(
        "store.reserve_arena", request, call_timeout(timeout));
    if (!arena.ok()) return arena.status().with_context(str_cat("putting object ", id.to_hex()));
    if (arena->offset() > segment_->size() || arena->size() > segment_->size() - arena->offset() ||
        arena->size() < block) {
      return internal_error(str_cat("the node gave an arena of ", arena->size(),
                                    " bytes at offset ", arena->offset(), " in a segment of ",
                                    segment_->size()));
    }
    arena_front_ = arena->offset();
    arena_end_ = arena->offset() + arena->size();
  }
  write(std::span<std::byte>(segment_->data() + arena_front_, size));
  objstore::proto::BatchOp op;
  objstore::proto::ArenaPut* put = op.mutable_arena_put();
  put->set_object_id(id.binary());
  put->set_offset(arena_front_);
  put->set_size(size);
  arena_front_ += block;
  enqueue(std::move(op));
  return Status();
}

void ClientRuntime::note_synced(uint64_t puts) {
  uint64_t synced = puts_synced_.load();
  while (synced < puts && !puts_synced_.compare_exchange_weak(synced, puts)) {
  }
}

Status ClientRuntime::sync() {
  uint64_t wanted;
  {
    std::lock_guard lock(send_mu_);
    HALO_RETURN_IF_ERROR(batch_error_);
    wanted = puts_queued_;
  }
  if (puts_synced_.load() >= wanted) return Status();
  // Answered after every batch sent before it has been applied.
  auto applied = call<objstore::proto::StoreBatchRequest, objstore::proto::StoreBatchResponse>(
      "store.batch", objstore::proto::StoreBatchRequest(), 30s);
  if (!applied.ok()) return applied.status();
  {
    std::lock_guard lock(send_mu_);
    HALO_RETURN_IF_ERROR(batch_error_);
  }
  note_synced(wanted);
  return Status();
}

StatusOr<std::vector<PinnedObject>> ClientRuntime::get(const std::vector<const RefState*>& refs,
                                                       std::chrono::milliseconds timeout) {
  std::vector<PinnedObject> out(refs.size());
  objstore::proto::GetRequest request;
  std::vector<size_t> missing;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < refs.size(); ++i) {
      auto it = entries_.find(refs[i]->id());
      if (it != entries_.end()) {
        if (auto pin = it->second.pin.lock()) {
          touch_pin_locked(it->second);
          out[i] = {it->second.bytes, std::move(pin)};
          continue;
        }
      }
      missing.push_back(i);
      *request.add_refs() = ref_proto(*refs[i]);
    }
  }
  if (missing.empty()) return out;
  request.set_timeout_ms(timeout.count() < 0 ? 0 : std::max<int64_t>(timeout.count(), 1));
  HALO_ASSIGN_OR_RETURN(auto response,
                        (call<objstore::proto::GetRequest, objstore::proto::GetResponse>(
                            "store.get", request, call_timeout(timeout))));
  if (response.objects_size() != static_cast<int>(missing.size())) {
    return internal_error(str_cat("the node answered a get of ", missing.size(), " objects with ",
                                  response.objects_size()));
  }
  // Every object the node pinned gets its token before any error is returned, so that no pin
  // is left behind.
  std::vector<std::shared_ptr<PinToken>> pins(missing.size());
  for (size_t k = 0; k < missing.size(); ++k) {
    if (response.objects(static_cast<int>(k)).code() == 0) {
      pins[k] = std::make_shared<PinToken>(
          refs[missing[k]]->id(),
          response.objects(static_cast<int>(k)).size() <= max_inline_bytes_);
    }
  }
  std::lock_guard lock(mu_);
  for (size_t k = 0; k < missing.size(); ++k) {
    const objstore::proto::ObjectLocation& location = response.objects(static_cast<int>(k));
    const RefState& ref = *refs[missing[k]];
    if (location.code() != 0) {
      return Status(static_cast<StatusCode>(location.code()), location.message())
          .with_context(str_cat("getting object ", ref.id().to_hex()));
    }
    if (location.offset() > segment_->size() ||
        location.size() > segment_->size() - location.offset()) {
      return internal_error(
          str_cat("the node placed object ", ref.id().to_hex(), " outside its segment"));
    }
    std::span<const std::byte> bytes(segment_->data() + location.offset(), location.size());
    out[missing[k]] = {bytes, pins[k]};
    Entry& e = entries_[ref.id()];
    e.pin = pins[k];
    e.bytes = bytes;
    if (bytes.size() <= max_inline_bytes_) keep_pin_locked(ref.id(), e);
  }
  return out;
}

StatusOr<std::vector<bool>> ClientRuntime::wait(const std::vector<const RefState*>& refs,
                                                size_t num_ready,
                                                std::chrono::milliseconds timeout) {
  objstore::proto::WaitRequest request;
  for (const RefState* ref : refs) *request.add_refs() = ref_proto(*ref);
  request.set_num_ready(static_cast<uint32_t>(num_ready));
  request.set_timeout_ms(timeout.count() < 0 ? 0 : std::max<int64_t>(timeout.count(), 1));
  HALO_ASSIGN_OR_RETURN(auto response,
                        (call<objstore::proto::WaitRequest, objstore::proto::WaitResponse>(
                            "store.wait", request, call_timeout(timeout))));
  std::vector<bool> ready(refs.size(), false);
  for (int i = 0; i < response.ready_size() && i < static_cast<int>(ready.size()); ++i) {
    ready[i] = response.ready(i) || response.lost(i);
  }
  return ready;
}

StatusOr<std::shared_ptr<RefState>> ClientRuntime::adopt(const ObjectId& id,
                                                         const std::string& owner) {
  using Added = Reply<objstore::proto::RefsResponse>;
  std::shared_ptr<Added> reply;
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[id];
    e.owner = owner;
    if (e.refs++ == 0) {
      // Queued under mu_, as release() queues the drop: whatever this process does with the
      // object afterwards (another adopt, a get) is queued after it.
      objstore::proto::RefsRequest request;
      auto* ref = request.add_refs();
      ref->set_object_id(id.binary());
      ref->set_owner_address(owner);
      reply = std::make_shared<Added>();
      call_async<objstore::proto::RefsRequest, objstore::proto::RefsResponse>(
          "store.add_refs", request, 30s,
          [reply](StatusOr<objstore::proto::RefsResponse> r) { reply->set(std::move(r)); });
    }
  }
  if (reply) {
    auto added = reply->take();
    if (!added.ok()) {
      std::lock_guard lock(mu_);
      auto it = entries_.find(id);
      if (it != entries_.end() && --it->second.refs == 0) {
        forget_pin_locked(it->second);
        entries_.erase(it);
      }
      return added.status();
    }
  }
  return std::make_shared<RefState>(id, owner);
}

void ClientRuntime::release(const ObjectId& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || --it->second.refs > 0) return;
  // Queued under mu_: an adopt() of the same object that follows must find the drop queued
  // before its store.add_refs (which waits for it), or the node would apply the drop last.
  // Nobody waits for it: the node frees what nobody references.
  const std::string owner = std::move(it->second.owner);
  forget_pin_locked(it->second);
  entries_.erase(it);
  enqueue_remove_ref(id, owner);
}

void ClientRuntime::keep_pin_locked(const ObjectId& id, Entry& entry) {
  if (entry.kept) {
    // Two gets that missed at once pinned it twice: keep the pin the views share now (the
    // other goes with its last view).
    if (auto live = entry.pin.lock()) entry.kept = std::move(live);
    return touch_pin_locked(entry);
  }
  entry.kept = entry.pin.lock();
  if (!entry.kept) return;
  kept_lru_.push_front(id);
  entry.kept_at = kept_lru_.begin();
  kept_bytes_ += entry.bytes.size();
  while (kept_lru_.size() > kPinCacheObjects || kept_bytes_ > pin_cache_bytes_) {
    auto oldest = entries_.find(kept_lru_.back());
    if (oldest == entries_.end() || !oldest->second.kept) {
      kept_lru_.pop_back();  // Not reached: entries leave the list before they go.
      continue;
    }
    forget_pin_locked(oldest->second);  // Its views, if any, keep the pin.
  }
}

void ClientRuntime::touch_pin_locked(Entry& entry) {
  if (entry.kept) kept_lru_.splice(kept_lru_.begin(), kept_lru_, entry.kept_at);
}

void ClientRuntime::forget_pin_locked(Entry& entry) {
  if (!entry.kept) return;
  kept_lru_.erase(entry.kept_at);
  kept_bytes_ -= entry.bytes.size();
  entry.kept.reset();
}

void ClientRuntime::unpin(const ObjectId& id, bool lazily) {
  Outgoing item;
  item.op.emplace().set_release(id.binary());
  item.lazy = lazily;
  push(std::move(item));
}

StatusOr<objstore::proto::StoreStatsResponse> ClientRuntime::stats() {
  return call<objstore::proto::StoreStatsRequest, objstore::proto::StoreStatsResponse>(
      "store.stats", objstore::proto::StoreStatsRequest(), 10s);
}

}  // namespace halo::internal
