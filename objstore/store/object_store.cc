#include "objstore/store/object_store.h"

#include <unistd.h>

#include <filesystem>
#include <string_view>
#include <utility>

#include "halo/base/logging.h"
#include "objstore/store/byte_count.h"
#include "objstore/store/spill_file.h"

namespace halo::objstore {
namespace {

// How often a restore waits for spills it started before it gives up for lack of room. Each
// round spills at least the bytes it needs, so more rounds only help when other objects keep
// taking the memory freed meanwhile.
constexpr int kRestoreAttempts = 4;

// Removes the spill files an earlier run with the same prefix left behind (a killed node):
// the new store's table is empty, so nothing can ever read them.
void remove_stale_spill_files(const std::string& dir) {
  std::error_code error;
  for (const auto& file : std::filesystem::directory_iterator(dir, error)) {
    if (file.path().extension() != ".obj") continue;
    if (Status removed = remove_spill_file(file.path()); !removed.ok()) {
      log::warn("object store: stale spill file: {}", removed);
    }
  }
}

}  // namespace

// Holds the store's lock for one operation. On leaving it releases the lock and then, if the
// operation freed memory, runs the space listener: after the lock, so the listener may call
// the store.
class ObjectStore::Section {
 public:
  explicit Section(ObjectStore& store) : store_(store), lock_(store.mu_) {}
  ~Section() {
    std::function<void()> listener;
    if (store_.space_freed_) {
      store_.space_freed_ = false;
      listener = store_.space_listener_;
    }
    lock_.unlock();
    if (listener) listener();
  }
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;

 private:
  ObjectStore& store_;
  std::unique_lock<std::mutex> lock_;
};

StatusOr<std::unique_ptr<ObjectStore>> ObjectStore::create(StoreOptions options) {
  if (options.capacity_bytes == 0) {
    return invalid_argument_error(
        "--object-store-memory is 0: give the object store the bytes of memory it may use");
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t alignment = options.alignment;
  if (alignment < 8 || alignment > page || (alignment & (alignment - 1)) != 0) {
    return invalid_argument_error(str_cat("object alignment ", alignment,
                                          " is not a power of two from 8 to the page size (", page,
                                          ")"));
  }
  options.segment.size_bytes = (options.capacity_bytes + alignment - 1) / alignment * alignment;

  std::string spill_path;
  if (!options.spill_dir.empty()) {
    if (options.spill_prefix.empty()) options.spill_prefix = "node-" + NodeId::random().to_hex();
    const std::string& prefix = options.spill_prefix;
    if (prefix.find('/') != std::string::npos || prefix == "." || prefix == "..") {
      return invalid_argument_error(
          str_cat("spill prefix '", prefix, "' must be one folder name (the node id)"));
    }
    spill_path = str_cat(options.spill_dir, "/", prefix);
    HALO_RETURN_IF_ERROR(make_private_dir(spill_path));
    remove_stale_spill_files(spill_path);
  }
  HALO_ASSIGN_OR_RETURN(std::unique_ptr<ShmSegment> segment, ShmSegment::create(options.segment));
  return std::unique_ptr<ObjectStore>(
      new ObjectStore(std::move(options), std::move(segment), std::move(spill_path)));
}

ObjectStore::ObjectStore(StoreOptions options, std::unique_ptr<ShmSegment> segment,
                         std::string spill_path)
    : options_(std::move(options)),
      segment_(std::move(segment)),
      spill_path_(std::move(spill_path)),
      allocator_(options_.segment.size_bytes, options_.alignment) {}

ObjectStore::~ObjectStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    space_listener_ = nullptr;
  }
  spill_thread_.stop();
  table_.for_each([](const ObjectEntry& entry) {
    if (entry.spill_path.empty()) return;
    if (Status removed = remove_spill_file(entry.spill_path); !removed.ok()) {
      log::warn("object store shutdown: {}", removed);
    }
  });
  if (!spill_path_.empty()) ::rmdir(spill_path_.c_str());
}

StatusOr<Placement> ObjectStore::create(ObjectId id, uint64_t size, ClientId creator,
                                        CopyKind kind) {
  Section section(*this);
  HALO_RETURN_IF_ERROR(check_new_id_locked(id));
  if (size > options_.capacity_bytes) {
    return out_of_range_error(
        str_cat("object ", id.to_hex(), " is ", size, " bytes (", format_bytes(size),
                "), more than the whole object store holds (", options_.capacity_bytes,
                " bytes, --object-store-memory): it can never be stored on this node; raise "
                "--object-store-memory or split the object"));
  }
  const Room room = make_room_locked(size);
  if (!room.offset)
    return room_error_locked(str_cat("creating object ", id.to_hex()), size,
                             room.bytes_being_spilled);
  table_.add(id, size, *room.offset, creator, kind);
  object_bytes_ += size;
  return Placement{*room.offset, size};
}

Status ObjectStore::check_new_id_locked(ObjectId id) const {
  const ObjectEntry* existing = table_.find(id);
  if (existing == nullptr) return Status();
  return already_exists_error(str_cat("object ", id.to_hex(), " is already in this node's store (",
                                      object_state_name(existing->state),
                                      existing->pending_remove ? ", being removed" : "",
                                      "): an object id is created once"));
}

StatusOr<Placement> ObjectStore::create_from_spare_room(ObjectId id, uint64_t size,
                                                        ClientId creator, uint64_t spare) {
  Section section(*this);
  HALO_RETURN_IF_ERROR(check_new_id_locked(id));
  const uint64_t used = allocator_.used();
  const uint64_t block = allocator_.rounded_size(size);
  if (used > options_.capacity_bytes || options_.capacity_bytes - used < block + spare) {
    return resource_exhausted_error("no room to spare");
  }
  const std::optional<uint64_t> offset = allocator_.allocate(size);
  if (!offset) return resource_exhausted_error("no free block large enough to spare");
  table_.add(id, size, *offset, creator, CopyKind::kPrimary);
  object_bytes_ += size;
  return Placement{*offset, size};
}

StatusOr<Placement> ObjectStore::reserve_arena(ClientId client, uint64_t size) {
  Section section(*this);
  if (size > options_.capacity_bytes) {
    return out_of_range_error(str_cat("an arena of ", size, " bytes is more than the whole object ",
                                      "store holds (", options_.capacity_bytes, " bytes)"));
  }
  release_arena_locked(client);
  const Room room = make_room_locked(size);
  if (!room.offset) {
    return room_error_locked(str_cat("reserving room for the small objects of client ", client),
                             size, room.bytes_being_spilled);
  }
  const uint64_t block = allocator_.block_size(*room.offset);
  arenas_[client] = Arena{*room.offset, *room.offset + block};
  arena_bytes_ += block;
  return Placement{*room.offset, block};
}

StatusOr<Placement> ObjectStore::seal_in_arena(ObjectId id, ClientId client, uint64_t offset,
                                               uint64_t size) {
  Section section(*this);
  auto arena = arenas_.find(client);
  if (arena == arenas_.end()) {
    return invalid_argument_error(str_cat("object ", id.to_hex(), " claims to be in an arena of ",
                                          "client ", client, ", which has none"));
  }
  Arena& a = arena->second;
  // Bounded before rounding: a size near 2^64 would round to 0.
  const uint64_t block = size > a.end - a.front ? 0 : allocator_.rounded_size(size);
  if (offset != a.front || block == 0 || block > a.end - a.front) {
    return invalid_argument_error(str_cat("object ", id.to_hex(), " (", size, " bytes at offset ",
                                          offset, ") is not at the front of the arena of client ",
                                          client, " (offset ", a.front, ", ", a.end - a.front,
                                          " bytes left)"));
  }
  HALO_RETURN_IF_ERROR(check_new_id_locked(id));
  if (block < a.end - a.front) allocator_.split(a.front, block);
  ObjectEntry& entry = table_.add(id, size, a.front, client, CopyKind::kPrimary);
  table_.set_state(entry, ObjectState::kSealed);
  update_evictable_locked(entry);
  object_bytes_ += size;
  arena_bytes_ -= block;
  a.front += block;
  if (a.front == a.end) arenas_.erase(arena);
  return Placement{offset, size};
}

void ObjectStore::release_arena_locked(ClientId client) {
  auto arena = arenas_.find(client);
  if (arena == arenas_.end()) return;
  allocator_.free(arena->second.front);
  arena_bytes_ -= arena->second.end - arena->second.front;
  arenas_.erase(arena);
  space_freed_ = true;
}

Status ObjectStore::seal(ObjectId id) {
  Section section(*this);
  ObjectEntry* entry = table_.find(id);
  if (entry == nullptr) {
    return not_found_error(str_cat("cannot seal object ", id.to_hex(),
                                   ": it is not in this node's store "
                                   "(never created, aborted, or its creator is gone)"));
  }
  if (entry->state != ObjectState::kCreated) {
    return failed_precondition_error(str_cat("object ", id.to_hex(), " is already sealed"));
  }
  table_.set_state(*entry, ObjectState::kSealed);
  if (entry->pending_remove) {
    drop_locked(*entry);
  } else {
    update_evictable_locked(*entry);
  }
  return Status();
}

Status ObjectStore::make_primary(ObjectId id) {
  Section section(*this);
  ObjectEntry* entry = table_.find(id);
  if (entry == nullptr || entry->pending_remove) {
    return not_found_error(str_cat("object ", id.to_hex(), " is not in this node's store"));
  }
  table_.set_kind(*entry, CopyKind::kPrimary);
  return Status();
}

Status ObjectStore::abort(ObjectId id) {
  Section section(*this);
  ObjectEntry* entry = table_.find(id);
  if (entry == nullptr) {
    return not_found_error(
        str_cat("cannot abort object ", id.to_hex(), ": it is not in this node's store"));
  }
  if (entry->state != ObjectState::kCreated) {
    return failed_precondition_error(
        str_cat("cannot abort object ", id.to_hex(), ": it is sealed; remove() it instead"));
  }
  drop_locked(*entry);
  return Status();
}

StatusOr<Placement> ObjectStore::pin(ObjectId id, ClientId client) {
  Section section(*this);
  ObjectEntry* entry = table_.find(id);
  if (entry == nullptr || entry->pending_remove) {
    return not_found_error(str_cat("object ", id.to_hex(), " is not in this node's store"));
  }
  if (entry->state == ObjectState::kCreated) {
    return unavailable_error(
        str_cat("object ", id.to_hex(), " is not sealed yet: its creator is still writing it"));
  }
  if (entry->state == ObjectState::kSpilled) {
    return failed_precondition_error(str_cat("object ", id.to_hex(), " is spilled to ",
                                             entry->spill_path,
                                             ": restore() it, then pin it again"));
  }
  table_.add_pin(*entry, client);
  update_evictable_locked(*entry);
  return Placement{*entry->offset, entry->size};
}

Status ObjectStore::unpin(ObjectId id, ClientId client) {
  Section section(*this);
  ObjectEntry* entry = table_.find(id);
  if (entry == nullptr) {
    return not_found_error(
        str_cat("cannot unpin object ", id.to_hex(), ": it is not in this node's store"));
  }
  if (table_.drop_pins(*entry, client, /*all=*/false) == 0) {
    return failed_precondition_error(
        str_cat("client ", client, " holds no pin on object ", id.to_hex(), " to unpin"));
  }
  after_unpin_locked(*entry);
  return Status();
}

Status ObjectStore::remove(ObjectId id) {
  Section section(*this);
  ObjectEntry* entry = table_.find(id);
  if (entry == nullptr) {
    return not_found_error(
        str_cat("cannot remove object ", id.to_hex(), ": it is not in this node's store"));
  }
  if (entry->pending_remove) return Status();
  entry->pending_remove = true;
  // The bytes are in use (being written, spilled, restored, or read): whoever finishes with
  // them frees them.
  if (entry->state == ObjectState::kCreated || entry->spilling || entry->restoring ||
      entry->pin_count > 0) {
    update_evictable_locked(*entry);
    return Status();
  }
  drop_locked(*entry);
  return Status();
}

void ObjectStore::client_gone(ClientId client) {
  Section section(*this);
  release_arena_locked(client);
  for (const ObjectId& id : table_.objects_of(client)) {
    ObjectEntry* entry = table_.find(id);
    if (entry->state == ObjectState::kCreated && entry->creator == client) {
      drop_locked(*entry);
    } else if (table_.drop_pins(*entry, client, /*all=*/true) > 0) {
      after_unpin_locked(*entry);
    }
  }
}

void ObjectStore::restore(ObjectId id, std::function<void(Status)> done) {
  Section section(*this);
  const ObjectEntry* entry = table_.find(id);
  if (entry == nullptr || entry->pending_remove) {
    answer_later(std::move(done), not_found_error(str_cat("cannot restore object ", id.to_hex(),
                                                          ": it is not in this node's store")));
    return;
  }
  if (entry->state == ObjectState::kCreated) {
    answer_later(std::move(done),
                 unavailable_error(str_cat("cannot restore object ", id.to_hex(),
                                           ": it is not sealed yet, so it was never spilled")));
    return;
  }
  if (entry->state == ObjectState::kSealed) {
    answer_later(std::move(done), Status());
    return;
  }
  auto& waiters = restore_waiters_[id];
  waiters.push_back(std::move(done));
  if (waiters.size() == 1) {
    spill_thread_.post([this, id](bool stopping) { restore_job(id, 0, stopping); });
  }
}

void ObjectStore::set_space_listener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  space_listener_ = std::move(listener);
}

std::optional<ObjectInfo> ObjectStore::info(ObjectId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const ObjectEntry* entry = table_.find(id);
  if (entry == nullptr) return std::nullopt;
  ObjectInfo info;
  info.state = entry->state;
  info.size = entry->size;
  info.kind = entry->kind;
  info.creator = entry->creator;
  info.pins = entry->pin_count;
  if (entry->offset && !entry->restoring) info.placement = Placement{*entry->offset, entry->size};
  info.pending_remove = entry->pending_remove;
  info.spill_path = entry->spill_path;
  return info;
}

StoreStats ObjectStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  StoreStats stats;
  stats.capacity = options_.capacity_bytes;
  stats.used = allocator_.used();
  stats.arena_bytes = arena_bytes_;
  stats.object_bytes = object_bytes_;
  stats.largest_free_block = allocator_.largest_free_block();
  stats.objects = table_.size();
  stats.unsealed = table_.count(ObjectState::kCreated);
  stats.sealed = table_.count(ObjectState::kSealed);
  stats.spilled = table_.count(ObjectState::kSpilled);
  stats.evictions = evictions_;
  stats.spills = spills_;
  stats.bytes_spilled = bytes_spilled_;
  stats.restores = restores_;
  stats.bytes_restored = bytes_restored_;
  stats.spill_failures = spill_failures_;
  return stats;
}

ObjectStore::Room ObjectStore::make_room_locked(uint64_t size) {
  const uint64_t block = allocator_.rounded_size(size);
  Room room;
  while (!(room.offset = allocator_.allocate(size))) {
    if (ObjectEntry* victim = table_.least_recently_used(CopyKind::kSecondary)) {
      ++evictions_;
      drop_locked(*victim);
      continue;
    }
    if (spill_path_.empty()) break;
    ObjectEntry* primary = table_.least_recently_used(CopyKind::kPrimary);
    if (primary == nullptr) break;
    if (!primary->spill_path.empty()) {
      // Restored earlier and its file is still complete: it leaves memory with no write.
      finish_spill_locked(*primary);
      continue;
    }
    // Spill until enough is on its way out, counting the free space (which may be in pieces
    // too small) only once at least one spill is under way.
    const uint64_t free_bytes = allocator_.capacity() - allocator_.used();
    if (bytes_being_spilled_ >= block ||
        (bytes_being_spilled_ > 0 && free_bytes + bytes_being_spilled_ >= block)) {
      break;
    }
    begin_spill_locked(*primary);
  }
  room.bytes_being_spilled = bytes_being_spilled_;
  return room;
}

void ObjectStore::begin_spill_locked(ObjectEntry& entry) {
  entry.spilling = true;
  update_evictable_locked(entry);
  bytes_being_spilled_ += allocator_.block_size(*entry.offset);
  spill_thread_.post([this, id = entry.id](bool stopping) { spill_job(id, stopping); });
}

void ObjectStore::finish_spill_locked(ObjectEntry& entry) {
  release_memory_locked(entry);
  table_.set_state(entry, ObjectState::kSpilled);
}

void ObjectStore::release_memory_locked(ObjectEntry& entry) {
  table_.set_evictable(entry, false);
  allocator_.free(*entry.offset);
  object_bytes_ -= entry.size;
  entry.offset.reset();
  space_freed_ = true;
}

void ObjectStore::drop_locked(ObjectEntry& entry) {
  if (entry.offset) release_memory_locked(entry);
  if (!entry.spill_path.empty()) {
    spill_thread_.post([path = entry.spill_path](bool) {
      if (Status removed = remove_spill_file(path); !removed.ok()) {
        log::warn("object store: {}", removed);
      }
    });
  }
  table_.erase(entry);
}

void ObjectStore::update_evictable_locked(ObjectEntry& entry) {
  table_.set_evictable(entry, entry.state == ObjectState::kSealed && entry.offset &&
                                  entry.pin_count == 0 && !entry.spilling && !entry.pending_remove);
}

void ObjectStore::after_unpin_locked(ObjectEntry& entry) {
  if (entry.pin_count == 0 && entry.pending_remove && !entry.spilling) {
    drop_locked(entry);
  } else {
    update_evictable_locked(entry);
  }
}

Status ObjectStore::room_error_locked(std::string_view what, uint64_t size,
                                      uint64_t bytes_being_spilled) const {
  const uint64_t free_bytes = allocator_.capacity() - allocator_.used();
  std::string next;
  if (bytes_being_spilled > 0) {
    next = str_cat(format_bytes(bytes_being_spilled), " of primary copies are being spilled to ",
                   spill_path_, "; retry when space is freed");
  } else if (spill_path_.empty()) {
    next =
        "the rest is pinned, being written, or primary copies, which are only spilled with "
        "--spill-dir: release references, set --spill-dir or raise --object-store-memory";
  } else {
    next =
        "the rest is pinned or being written: release references or raise "
        "--object-store-memory";
  }
  return resource_exhausted_error(
      str_cat("object store full ", what, ": it needs ", size, " bytes (", format_bytes(size),
              "), ", free_bytes, " bytes are free (largest free block ",
              allocator_.largest_free_block(), ") of ", options_.capacity_bytes, "; ", next));
}

void ObjectStore::answer_later(std::function<void(Status)> done, Status status) {
  spill_thread_.post([done = std::move(done), status = std::move(status)](bool) { done(status); });
}

void ObjectStore::spill_job(ObjectId id, bool stopping) {
  std::string path;
  const std::byte* data = nullptr;
  uint64_t size = 0;
  // A spilling entry is erased only here, so the lookups below always find it.
  auto end_spill = [this](ObjectEntry& entry) {
    entry.spilling = false;
    bytes_being_spilled_ -= allocator_.block_size(*entry.offset);
  };
  {
    Section section(*this);
    ObjectEntry& entry = *table_.find(id);
    if (stopping || (entry.pending_remove && entry.pin_count == 0)) {
      end_spill(entry);
      after_unpin_locked(entry);
      return;
    }
    path = spill_file_path(spill_path_, id);
    data = segment_->data() + *entry.offset;
    size = entry.size;
  }
  // The memory cannot be freed or reused meanwhile: a spilling object is never dropped.
  const Status written = write_spill_file(path, id, data, size);

  Section section(*this);
  ObjectEntry& entry = *table_.find(id);
  end_spill(entry);
  if (written.ok()) {
    entry.spill_path = path;
    ++spills_;
    bytes_spilled_ += size;
  } else {
    ++spill_failures_;
    log::warn("object store: {}; object {} stays in memory", written, id);
  }
  if (written.ok() && entry.pin_count == 0 && !entry.pending_remove) {
    finish_spill_locked(entry);
  } else {
    // Pinned during the write (it stays in memory, readable), removed, or not written.
    after_unpin_locked(entry);
  }
}

void ObjectStore::restore_job(ObjectId id, int attempt, bool stopping) {
  Status answer;
  std::string path;
  std::byte* data = nullptr;
  uint64_t size = 0;
  std::vector<std::function<void(Status)>> waiters;
  bool reading = false;
  {
    Section section(*this);
    ObjectEntry* entry = table_.find(id);
    if (stopping) {
      answer = cancelled_error(
          str_cat("the object store shut down before object ", id.to_hex(), " was restored"));
    } else if (entry == nullptr || entry->pending_remove) {
      answer =
          not_found_error(str_cat("object ", id.to_hex(), " was removed before it was restored"));
    } else if (entry->state == ObjectState::kSpilled) {
      const Room room = make_room_locked(entry->size);
      if (room.offset) {
        reading = true;
        entry->offset = room.offset;
        entry->restoring = true;
        object_bytes_ += entry->size;
        path = entry->spill_path;
        data = segment_->data() + *room.offset;
        size = entry->size;
      } else if (room.bytes_being_spilled > 0 && attempt + 1 < kRestoreAttempts) {
        // After the spills just queued (the thread runs jobs in order), try again.
        spill_thread_.post([this, id, attempt](bool stop) { restore_job(id, attempt + 1, stop); });
        return;
      } else {
        answer = room_error_locked(str_cat("restoring object ", id.to_hex()), entry->size,
                                   room.bytes_being_spilled);
      }
    }
    if (!reading) waiters = take_restore_waiters_locked(id);
  }
  if (!reading) {
    for (auto& done : waiters) done(answer);
    return;
  }

  const Status read = read_spill_file(path, id, data, size);
  {
    Section section(*this);
    // A restoring entry is erased only here.
    ObjectEntry& entry = *table_.find(id);
    entry.restoring = false;
    if (entry.pending_remove) {
      answer =
          not_found_error(str_cat("object ", id.to_hex(), " was removed while it was restored"));
      drop_locked(entry);
    } else if (!read.ok()) {
      answer = read;
      release_memory_locked(entry);
    } else {
      table_.set_state(entry, ObjectState::kSealed);
      ++restores_;
      bytes_restored_ += size;
      update_evictable_locked(entry);
    }
    waiters = take_restore_waiters_locked(id);
  }
  for (auto& done : waiters) done(answer);
}

std::vector<std::function<void(Status)>> ObjectStore::take_restore_waiters_locked(
    const ObjectId& id) {
  auto it = restore_waiters_.find(id);
  if (it == restore_waiters_.end()) return {};
  std::vector<std::function<void(Status)>> waiters = std::move(it->second);
  restore_waiters_.erase(it);
  return waiters;
}

}  // namespace halo::objstore
