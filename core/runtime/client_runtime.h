// The client side of the object store in a driver or worker process: one connection to the
// node daemon on its machine, the node's shared-memory segment mapped once, and this process's
// references (docs/objstore.md, "Clients").
//
// Small puts (at most the node's max_inline_bytes) go into the process's arena, room the node
// reserved for it once (store.reserve_arena): the caller writes the object at the arena's
// front and queues its announcement, with no round trip. Larger puts ask room in the next
// store.batch (after the drops of references queued before, so that the room of the object
// the caller dropped last, still in the cache, is handed out again; store.create, which
// waits, when there is no room now), are written in place by the caller, then sealed
// (one-way: the seal is queued for the next store.batch and not waited for). Put-ahead: equal
// large puts in a row (up to the node's put_ahead_bytes) also ask room for the next ones, so
// that a stream of them finds its room ready; a put of another size, or kAheadIdle without a
// large put, gives it back. A get of an object this process is reading (a view
// of it exists) is answered from its own table; otherwise the node pins it, fetching it from its
// owner node first.
//
// Order. Everything the process tells its node goes through one outbox, drained in order by
// the transport's progress thread; what it says without waiting for an answer (arena puts,
// seals, dropped references, released pins) leaves as one store.batch. The transport does not
// promise to deliver messages in order (a large one may complete after a smaller one sent later),
// so a batch leaves only when the previous one is answered, and a request never overtakes queued
// puts (nor, for store.add_refs, dropped references); only released pins, which may wait to leave
// in batches, and a batch in flight that holds nothing it depends on, are overtaken (see drain()).
// A reference that leaves the process (publish_refs, from ObjectRef::binary) waits until the node
// has applied the puts queued so far.
//
// Reference counting: the process counts its references per object and tells its node about
// the first (store.add_refs; a put counts as one) and the last (a queued remove_ref, which also
// unpins). Pins: the node keeps an object pinned for the process while views of it exist
// (PinToken); a copy fetched from another node that nobody here reads may then be evicted.
// The pin cache keeps the pins of the small objects read last a while longer, so that reading
// one again is answered here (as halo's Ray-style benchmark loop of gets of one object is);
// it is bounded so that what it keeps pinned stays a small share of the store.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "halo/base/deadline_timer.h"
#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "halo/internal/client.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"
#include "objstore/proto/objstore.pb.h"
#include "objstore/store/shm_segment.h"

namespace halo::internal {

// One pin the node holds for this process (one store.get answer for one object); released
// (store.release) when the last view sharing it goes.
struct PinToken {
  PinToken(const ObjectId& object, bool small_object) : id(object), small(small_object) {}
  ~PinToken();
  PinToken(const PinToken&) = delete;
  PinToken& operator=(const PinToken&) = delete;
  ObjectId id;
  // Released pins of small objects may wait to leave in a batch; those of larger objects
  // leave at once (their memory may be wanted).
  bool small;
};

// Room created ahead for a next put (client_runtime.cc).
struct AheadRoom;

struct ClientOptions {
  std::string node_address;  // Transport address of the node daemon on this machine.
  std::string secret;        // The cluster secret.
  std::string gcs_address;   // For store_info(); informational.
  transport::TransportConfig transport;
  std::chrono::milliseconds put_timeout{10'000};
  std::chrono::milliseconds connect_timeout{10'000};
};

class ClientRuntime {
 public:
  // Kinds of queued operations, weakest first (see drain()).
  enum class OpKind { kNone, kRelease, kRemove, kPut };

  static StatusOr<std::unique_ptr<ClientRuntime>> connect(ClientOptions options);
  ~ClientRuntime();

  StatusOr<std::shared_ptr<RefState>> put(size_t size,
                                          const std::function<void(std::span<std::byte>)>& write,
                                          const PutParams& params);
  StatusOr<std::vector<PinnedObject>> get(const std::vector<const RefState*>& refs,
                                          std::chrono::milliseconds timeout);
  StatusOr<std::vector<bool>> wait(const std::vector<const RefState*>& refs, size_t num_ready,
                                   std::chrono::milliseconds timeout);
  StatusOr<std::shared_ptr<RefState>> adopt(const ObjectId& id, const std::string& owner);
  // A RefState was destroyed.
  void release(const ObjectId& id);
  // A PinToken was destroyed: the node may unpin the object for this process.
  void unpin(const ObjectId& id, bool lazily);
  // Returns once the node has applied every put queued so far.
  Status sync();
  StatusOr<objstore::proto::StoreStatsResponse> stats();

  const std::string& node_address() const { return node_address_; }
  const std::string& node_id_hex() const { return node_id_hex_; }
  const std::string& gcs_address() const { return options_.gcs_address; }
  const std::string& secret() const { return options_.secret; }
  const transport::TransportConfig& transport_config() const { return options_.transport; }

 private:
  explicit ClientRuntime(ClientOptions options);
  // A call to the node (after what is queued), waited for by spinning briefly, then sleeping.
  template <typename Req, typename Resp>
  StatusOr<Resp> call(const char* method, const Req& request, std::chrono::milliseconds timeout);
  // Starts a call after what is queued; `done` runs on the progress thread.
  template <typename Req, typename Resp>
  void call_async(const char* method, const Req& request, std::chrono::milliseconds timeout,
                  std::function<void(StatusOr<Resp>)> done);

  // What goes to the node, in order: a queued one-way operation, or a call to start.
  struct Outgoing {
    std::optional<objstore::proto::BatchOp> op;
    std::function<void()> call;
    std::function<void()> cancel;  // Ends a call (or room) that will not be sent: CANCELLED.
    bool after_removes = false;    // A call that must not overtake dropped references.
    bool lazy = false;             // A released pin that may wait for company.
    // For a RoomRequest: takes the node's answer (the room's offset).
    std::function<void(StatusOr<uint64_t>)> room_answer;
  };
  using RoomAnswered = std::function<void(StatusOr<uint64_t>)>;
  // A room asked in a batch in flight: its object id (binary) and who takes the answer.
  struct AskedRoom {
    std::string object_id;
    RoomAnswered answered;
  };
  void push(Outgoing item);
  // On the progress thread: sends the outbox in order, consecutive operations as one batch;
  // with `all`, released pins too however few.
  void drain(bool all);
  void arm_release_timer_locked();
  void send_batch(objstore::proto::StoreBatchRequest batch, uint64_t puts,
                  std::vector<AskedRoom> rooms);
  // Gives each room asked in a batch the node's answer to it; when the batch failed, gives
  // the rooms back (the node may have created them) and answers UNAVAILABLE.
  void answer_rooms(const StatusOr<objstore::proto::StoreBatchResponse>& applied,
                    const std::vector<AskedRoom>& rooms);
  // The node has applied the first `puts` arena puts (puts_synced_ only grows).
  void note_synced(uint64_t puts);

  // A small put into the arena. `write` runs with arena_mu_ held: it must not put.
  Status put_in_arena(const ObjectId& id, size_t size,
                      const std::function<void(std::span<std::byte>)>& write,
                      std::chrono::milliseconds timeout);
  // Queues one-way traffic for the node.
  void enqueue(objstore::proto::BatchOp op);
  // Queues a RoomRequest (objstore.proto): room created now or never, answered on the
  // progress thread.
  void ask_room(const ObjectId& id, size_t size, bool ahead, RoomAnswered answered);
  // Queues the drop of this process's reference to `id` (owned by `owner`).
  void enqueue_remove_ref(const ObjectId& id, const std::string& owner);

  // Room for a put larger than max_inline_bytes: its object id and offset in the segment.
  struct Room {
    ObjectId id;
    uint64_t offset = 0;
  };
  // The oldest room created ahead when it has this size (asking rooms for the next puts of
  // the size), else room asked in the next batch, else a store.create (waiting up to `timeout`
  // for room).
  StatusOr<Room> room_for(size_t size, std::chrono::milliseconds timeout);
  // `offset` of the segment for an object of `size`, checked to lie in it.
  // (A room outside it goes back to the node.)
  StatusOr<Room> placed(const ObjectId& id, uint64_t offset, size_t size);
  // Put-ahead (ahead_mu_ held): the rooms to ask for a put of `size` and the next ones, added
  // to ahead_; one more for each equal put in a row, as many as put_ahead_bytes holds (1 to
  // kMaxRoomsAhead).
  std::vector<std::shared_ptr<AheadRoom>> rooms_to_ask_locked(size_t size);
  // Asks the node for a room ahead (RoomRequest with `ahead`), whose answer goes to the room.
  void ask_room_ahead(const std::shared_ptr<AheadRoom>& room);
  // Gives room created ahead back to the node without waiting for its answer: a remove_ref
  // of the unsealed object, queued now or when the answer comes.
  void give_back(AheadRoom& room);
  void forget_room(const ObjectId& id);
  // On the timer thread: gives every room ahead back if no large put came for kAheadIdle.
  void give_back_if_idle();

  struct Entry {
    uint64_t refs = 0;
    std::string owner;
    // While views of the object exist (or the pin cache keeps it): its bytes, and the token
    // they share.
    std::weak_ptr<PinToken> pin;
    std::span<const std::byte> bytes;
    // The pin cache's share of the token, and the entry's place in its LRU list.
    std::shared_ptr<PinToken> kept;
    std::list<ObjectId>::iterator kept_at;
  };
  // Keeps the pin of a small object just read, so that reading it again needs no call to the
  // node; the least recently read go when the cache is over its bounds. mu_ held.
  void keep_pin_locked(const ObjectId& id, Entry& entry);
  void touch_pin_locked(Entry& entry);
  void forget_pin_locked(Entry& entry);

  const ClientOptions options_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::RpcNode> rpc_;
  transport::EndpointPtr node_;
  std::unique_ptr<objstore::ShmSegment> segment_;
  std::string node_address_;
  std::string node_id_hex_;
  uint64_t max_inline_bytes_ = 0;
  uint64_t arena_bytes_ = 0;  // 0: the node has arenas off; small puts use store.put_inline.
  uint64_t alignment_ = 64;
  uint64_t put_ahead_bytes_ = 0;  // 0: the node has put-ahead off.

  // Rooms created ahead for the next large puts, oldest first, all of one size (their answers
  // may still be on the way). The round trip to the node takes several times as long as
  // writing a MiB, so one room ahead would still be waited for.
  std::mutex ahead_mu_;
  std::deque<std::shared_ptr<AheadRoom>> ahead_;
  // Under ahead_mu_ too: when the last large put was, the idle check, the run of equal puts,
  // and until when put-ahead pauses after the node refused room ahead.
  DeadlineTimer::Clock::time_point last_large_put_;
  bool idle_check_armed_ = false;
  size_t equal_size_ = 0;
  size_t equal_puts_ = 0;
  DeadlineTimer::Clock::time_point ahead_paused_until_;

  std::mutex mu_;
  std::unordered_map<ObjectId, Entry> entries_;
  // The pin cache: objects of up to max_inline_bytes, at most kPinCacheObjects of them and
  // pin_cache_bytes_ in all (a sixteenth of the store, at most 16 MiB), most recent first.
  std::list<ObjectId> kept_lru_;
  uint64_t kept_bytes_ = 0;
  uint64_t pin_cache_bytes_ = 0;

  // The arena: [front, end) is room still free. Held across a whole small put, so that objects
  // are announced in the order of their offsets. Taken before send_mu_.
  std::mutex arena_mu_;
  uint64_t arena_front_ = 0;
  uint64_t arena_end_ = 0;

  // Everything sent to the node goes through the outbox, in order, and leaves it on the
  // progress thread. send_mu_ is held only briefly.
  std::mutex send_mu_;
  std::deque<Outgoing> outbox_;
  bool drain_posted_ = false;             // A drain of the outbox is posted to the progress thread.
  OpKind in_flight_ = OpKind::kNone;      // The strongest operation of the batch in flight.
  bool closed_ = false;                   // Shutting down: nothing more is sent.
  uint64_t puts_queued_ = 0;              // Arena puts queued, since the start (under send_mu_)...
  uint64_t puts_sent_ = 0;                // ...sent (under send_mu_)...
  std::atomic<uint64_t> puts_synced_{0};  // ...and applied by the node, at least.
  bool release_timer_armed_ = false;      // Under send_mu_.
  Status batch_error_;                    // Under send_mu_: the node refused queued operations.
  // Sends released pins that waited long enough; gives back rooms ahead nobody used.
  DeadlineTimer release_timer_;
};

}  // namespace halo::internal
