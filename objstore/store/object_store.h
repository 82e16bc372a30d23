// The node daemon's object store: objects in one shared-memory segment that the node's clients
// map (ShmSegment), an allocator inside it, the object table, LRU eviction of secondary copies
// and spilling of primary copies to disk when memory runs out.
//
//   StoreOptions options;
//   options.capacity_bytes = 8ull << 30;         // --object-store-memory
//   options.segment.net_interface = "ib0";       // NUMA node nearest the NIC
//   options.spill_dir = "/scratch/halo-spill";   // --spill-dir (may be a shared filesystem)
//   options.spill_prefix = node_id.to_hex();     // this node's folder inside it
//   HALO_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> store, ObjectStore::create(options));
//   store->set_space_listener([&] { service.retry_waiting_puts(); });
//
//   // A put from client 7: reserve, the client writes the bytes in place, seal.
//   HALO_ASSIGN_OR_RETURN(Placement where, store->create(id, size, 7, CopyKind::kPrimary));
//   ...client writes size bytes at segment.data() + where.offset...
//   HALO_RETURN_IF_ERROR(store->seal(id));
//
//   // A get from client 9: pin (the bytes stay put while pinned), read in place, unpin.
//   StatusOr<Placement> pinned = store->pin(id, 9);
//   if (pinned.status().code() == StatusCode::kFailedPrecondition)   // spilled
//     store->restore(id, [&](Status s) { ...pin again once s is OK... });
//   HALO_RETURN_IF_ERROR(store->unpin(id, 9));
//
//   // The last ObjectRef anywhere is gone.
//   HALO_RETURN_IF_ERROR(store->remove(id));
//
// Memory policy (docs/objstore-store.md). When a create finds no room, the store evicts
// unpinned sealed secondary copies, least recently used first, at once (another node holds the
// object). Primary copies are never evicted: with a spill directory they are spilled, least
// recently used first, on the spill thread, and the create answers RESOURCE_EXHAUSTED; the
// space listener fires when a spill frees memory, and the caller retries. A spilled object is
// brought back by restore(). Its spill file is kept until remove(), so once restored it can
// leave memory again with no write.
//
// A pin taken while the object is being spilled wins: the spill finishes writing the file but
// the memory stays, and the object stays sealed and readable.
//
// Thread safety: every method may be called from any thread; one lock guards the store and is
// never held during disk I/O, which only the store's spill thread does. No method blocks on
// I/O. Callbacks (the space listener, restore's `done`) run without the lock held and may call
// the store; they should not block, since they run on the spill thread or on the thread of the
// call that freed memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "objstore/store/allocator.h"
#include "objstore/store/object_info.h"
#include "objstore/store/object_table.h"
#include "objstore/store/shm_segment.h"
#include "objstore/store/spill_thread.h"

namespace halo::objstore {

struct StoreOptions {
  // Bytes of objects the store holds in memory (--object-store-memory). Required.
  uint64_t capacity_bytes = 0;
  // numa_node, net_interface, prefault, lock_memory. size_bytes is ignored: the store sets it
  // from capacity_bytes.
  SegmentOptions segment;
  // Folder for spill files (--spill-dir); may be on a shared filesystem. Empty: no spilling,
  // so a store full of primary copies refuses new objects.
  std::string spill_dir;
  // This node's folder inside spill_dir (the service passes the node id), so that nodes
  // sharing a filesystem never touch each other's files. Empty: a random name.
  std::string spill_prefix;
  // Alignment of every object's first byte; a power of two from 8 to the page size.
  uint64_t alignment = 64;
};

struct StoreStats {
  uint64_t capacity = 0;            // capacity_bytes.
  uint64_t used = 0;                // Bytes in allocated blocks, alignment padding included,
  uint64_t arena_bytes = 0;         // ...of which in client arenas, not holding objects yet.
  uint64_t object_bytes = 0;        // Sum of the sizes of the objects whose bytes are in memory.
  uint64_t largest_free_block = 0;  // The largest object that fits now without eviction.
  uint64_t objects = 0;             // Objects in the table, in any state.
  uint64_t unsealed = 0;            // ...of which being written (kCreated),
  uint64_t sealed = 0;              // ...sealed and in memory (kSealed),
  uint64_t spilled = 0;             // ...only on disk (kSpilled).
  uint64_t evictions = 0;           // Secondary copies evicted, since the start.
  uint64_t spills = 0;              // Spill files written, since the start.
  uint64_t bytes_spilled = 0;       // Bytes of objects written to spill files, since the start.
  uint64_t restores = 0;            // Objects read back from spill files, since the start.
  uint64_t bytes_restored = 0;      // Bytes of objects read back, since the start.
  uint64_t spill_failures = 0;      // Spill files that could not be written (full disk...).
};

class ObjectStore {
 public:
  // Creates the segment (see ShmSegment::create) and the spill folder
  // `<spill_dir>/<spill_prefix>` (mode 0700; stale spill files of an earlier run with the same
  // prefix are removed), and starts the spill thread. Errors: INVALID_ARGUMENT for a capacity
  // of 0, a bad alignment or prefix; the segment's and the folder's errors.
  static StatusOr<std::unique_ptr<ObjectStore>> create(StoreOptions options);

  // Stops the spill thread (queued spills are dropped, waiting restores get CANCELLED) and
  // removes this store's spill files. The segment goes with it: clients' mappings keep the
  // memory alive until they unmap.
  ~ObjectStore();
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  ShmSegment& segment() { return *segment_; }
  const ShmSegment& segment() const { return *segment_; }
  const StoreOptions& options() const { return options_; }

  // Reserves `size` bytes for a new, unsealed object created by `creator`, who then writes
  // its bytes at segment().data() + offset and seals it (or aborts).
  //   ALREADY_EXISTS: the id is in the store (any state).
  //   OUT_OF_RANGE: size > capacity_bytes: it can never fit.
  //   RESOURCE_EXHAUSTED: no room now, even after evicting every unpinned sealed secondary
  //     copy; when spill_dir is set, spills of unpinned sealed primary copies (LRU) have been
  //     started, so a retry after the space listener fires may succeed. The message says
  //     the bytes needed, free and in the largest free block.
  StatusOr<Placement> create(ObjectId id, uint64_t size, ClientId creator, CopyKind kind);
  // A primary copy created only from room free now, with `spare` bytes still free after it:
  // nothing is evicted or spilled for it (a client's room created ahead of its next put).
  // RESOURCE_EXHAUSTED otherwise; ALREADY_EXISTS as create().
  StatusOr<Placement> create_from_spare_room(ObjectId id, uint64_t size, ClientId creator,
                                             uint64_t spare);
  // Makes a created object readable and immutable. NOT_FOUND; FAILED_PRECONDITION if it is
  // already sealed. Sealing an object removed meanwhile frees it at once.
  Status seal(ObjectId id);
  // Frees an unsealed object. NOT_FOUND; FAILED_PRECONDITION if sealed (remove() it instead).
  Status abort(ObjectId id);
  // Makes a copy primary (an HA copy fetched from its creating node): never evicted from now
  // on, only spilled. NOT_FOUND if unknown or removed.
  Status make_primary(ObjectId id);

  // Pins a sealed, in-memory object for `client`: its bytes stay at the returned placement
  // until unpinned. Pins count per client (pin twice, unpin twice); pinning marks the object
  // most recently used. NOT_FOUND: unknown or removed; UNAVAILABLE: not sealed yet;
  // FAILED_PRECONDITION ("spilled"): only on disk, restore() it first.
  StatusOr<Placement> pin(ObjectId id, ClientId client);
  // Drops one pin of `client`. NOT_FOUND: unknown id; FAILED_PRECONDITION: the client holds
  // no pin on it. The last pin of a removed object frees it.
  Status unpin(ObjectId id, ClientId client);

  // The last reference anywhere is gone: frees the memory now if the object is unpinned (and
  // sealed), else when the last pin goes (or at seal/abort); removes its spill file.
  // NOT_FOUND if unknown; calling it again is OK.
  Status remove(ObjectId id);

  // Arenas: room a client reserves once for many small objects. It writes each object in
  // place at the arena's front and announces it afterwards with seal_in_arena, which carves
  // the object off the front as a sealed primary copy of its own (freed on its own), so a
  // small put needs no round trip. A client has at most one arena; what it leaves unused goes
  // back with its next arena or when it goes away.
  //
  // Reserves an arena of `size` bytes for `client`, giving back the rest of its previous one.
  // Errors as create(): OUT_OF_RANGE, RESOURCE_EXHAUSTED.
  StatusOr<Placement> reserve_arena(ClientId client, uint64_t size);
  // Object `id` of `size` bytes, written by `client` at `offset`: carved off the client's
  // arena, sealed. INVALID_ARGUMENT if the client has no arena, `offset` is not its front, or
  // the object does not fit in what is left; ALREADY_EXISTS for a known id.
  StatusOr<Placement> seal_in_arena(ObjectId id, ClientId client, uint64_t offset, uint64_t size);

  // A client went away: aborts the unsealed objects it created and drops all its pins.
  void client_gone(ClientId client);

  // Brings a spilled object back into memory on the spill thread. `done` always runs on that
  // thread, never inside this call: OK once pin() works (also when the object was in memory
  // already); NOT_FOUND if unknown or removed; UNAVAILABLE if not sealed; RESOURCE_EXHAUSTED
  // if no room can be made; DATA_LOSS naming the file if the spill file is missing or damaged
  // (the object stays spilled); CANCELLED when the store shuts down first. Concurrent
  // restores of one object share one read. Under heavy memory pressure the object may be
  // spilled again before the pin: pin() then says "spilled" again and the caller restores
  // again.
  void restore(ObjectId id, std::function<void(Status)> done);

  // `listener` runs every time memory was freed (abort, remove, unpin, eviction, a finished
  // spill...), on the thread that freed it, after the store's lock is released: the service
  // retries the puts waiting for room. Replaces any previous listener; empty to clear.
  void set_space_listener(std::function<void()> listener);

  // What the store knows about `id`, or nullopt if it is not here.
  std::optional<ObjectInfo> info(ObjectId id) const;
  StoreStats stats() const;
  uint64_t capacity() const { return options_.capacity_bytes; }

 private:
  class Section;
  // What make_room_locked found: a block, or none and how many bytes are on their way out.
  struct Room {
    std::optional<uint64_t> offset;
    uint64_t bytes_being_spilled = 0;
  };

  ObjectStore(StoreOptions options, std::unique_ptr<ShmSegment> segment, std::string spill_path);

  // The lock must be held by the *_locked functions.
  Room make_room_locked(uint64_t size);
  void begin_spill_locked(ObjectEntry& entry);
  void finish_spill_locked(ObjectEntry& entry);
  void release_memory_locked(ObjectEntry& entry);
  void drop_locked(ObjectEntry& entry);
  void update_evictable_locked(ObjectEntry& entry);
  void after_unpin_locked(ObjectEntry& entry);
  // ALREADY_EXISTS if `id` is in the store, in any state.
  Status check_new_id_locked(ObjectId id) const;
  Status room_error_locked(std::string_view what, uint64_t size,
                           uint64_t bytes_being_spilled) const;
  void release_arena_locked(ClientId client);
  std::vector<std::function<void(Status)>> take_restore_waiters_locked(const ObjectId& id);
  void answer_later(std::function<void(Status)> done, Status status);

  void spill_job(ObjectId id, bool stopping);
  void restore_job(ObjectId id, int attempt, bool stopping);

  const StoreOptions options_;
  const std::unique_ptr<ShmSegment> segment_;
  const std::string spill_path_;  // <spill_dir>/<prefix>; empty without spilling.

  mutable std::mutex mu_;
  Allocator allocator_;
  ObjectTable table_;
  std::unordered_map<ObjectId, std::vector<std::function<void(Status)>>> restore_waiters_;
  std::function<void()> space_listener_;
  bool space_freed_ = false;  // Memory was freed in the current section.
  // A client's arena: [front, end) is one allocated block, the room not used yet.
  struct Arena {
    uint64_t front = 0;
    uint64_t end = 0;
  };
  std::unordered_map<ClientId, Arena> arenas_;
  uint64_t arena_bytes_ = 0;
  uint64_t object_bytes_ = 0;
  uint64_t bytes_being_spilled_ = 0;  // Blocks of the objects queued or being written.
  uint64_t evictions_ = 0;
  uint64_t spills_ = 0;
  uint64_t bytes_spilled_ = 0;
  uint64_t restores_ = 0;
  uint64_t bytes_restored_ = 0;
  uint64_t spill_failures_ = 0;

  SpillThread spill_thread_;  // Last: its jobs use everything above.
};

}  // namespace halo::objstore
