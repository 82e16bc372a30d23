// The node's object store: the life of an object (create, write, seal, pin, remove), clients
// going away, eviction of secondary copies, spilling and restoring primary copies, damaged
// spill files, exact statistics, memory back to empty, and many threads at once.
#include "objstore/store/object_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/objstore/store/store_fixture.h"
#include "tests/support/wait_for.h"

namespace halo::objstore {
namespace {

using namespace std::chrono_literals;
using halo::test::wait_for;
using test::checksum;
using test::fill_pattern;
using test::TempDir;

constexpr uint64_t kKiB = 1024;
constexpr ClientId kWriter = 1;
constexpr ClientId kReader = 2;

std::unique_ptr<ObjectStore> make_store(uint64_t capacity, const std::string& spill_dir = "") {
  StoreOptions options;
  options.capacity_bytes = capacity;
  options.segment.lock_memory = false;  // Tests run under small RLIMIT_MEMLOCKs too.
  options.spill_dir = spill_dir;
  options.spill_prefix = spill_dir.empty() ? "" : "node-test";
  auto store = ObjectStore::create(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

uint64_t seed_of(const ObjectId& id) { return id.hash(); }

// Creates `id` with `size` pattern bytes (seeded by the id) and seals it.
void put(ObjectStore& store, const ObjectId& id, uint64_t size, CopyKind kind = CopyKind::kPrimary,
         ClientId creator = kWriter) {
  auto placement = store.create(id, size, creator, kind);
  ASSERT_TRUE(placement.ok()) << placement.status();
  fill_pattern(store.segment().data() + placement->offset, size, seed_of(id));
  ASSERT_TRUE(store.seal(id).ok());
}

uint32_t expected_checksum(const ObjectId& id, uint64_t size) {
  const std::vector<std::byte> bytes = test::pattern(size, seed_of(id));
  return checksum(bytes.data(), size);
}

// Pins `id`, checks its bytes against the pattern, unpins it.
void expect_intact(ObjectStore& store, const ObjectId& id, uint64_t size) {
  auto placement = store.pin(id, kReader);
  ASSERT_TRUE(placement.ok()) << placement.status();
  EXPECT_EQ(placement->size, size);
  EXPECT_EQ(checksum(store.segment().data() + placement->offset, size), expected_checksum(id, size))
      << "object " << id << " changed";
  ASSERT_TRUE(store.unpin(id, kReader).ok());
}

// Calls store.restore and waits for its answer.
Status restore_and_wait(ObjectStore& store, const ObjectId& id) {
  std::mutex mu;
  std::condition_variable answered;
  std::optional<Status> result;
  store.restore(id, [&](Status status) {
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(status);
    answered.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  if (!answered.wait_for(lock, 10s, [&] { return result.has_value(); })) {
    return deadline_exceeded_error("restore never answered");
  }
  return *result;
}

std::optional<ObjectState> state_of(const ObjectStore& store, const ObjectId& id) {
  auto info = store.info(id);
  return info ? std::optional<ObjectState>(info->state) : std::nullopt;
}

size_t files_in(const std::string& dir) {
  std::error_code error;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, error);
       it != std::filesystem::directory_iterator(); ++it) {
    ++n;
  }
  return n;
}

TEST(ObjectStore, CreateWriteSealPinReadsTheBytesInPlace) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  auto placement = store->create(id, 1000, kWriter, CopyKind::kPrimary);
  ASSERT_TRUE(placement.ok()) << placement.status();
  EXPECT_EQ(placement->size, 1000u);
  EXPECT_EQ(placement->offset % 64, 0u);
  EXPECT_EQ(state_of(*store, id), ObjectState::kCreated);
  EXPECT_EQ(store->pin(id, kReader).status().code(), StatusCode::kUnavailable);

  fill_pattern(store->segment().data() + placement->offset, 1000, seed_of(id));
  ASSERT_TRUE(store->seal(id).ok());
  EXPECT_EQ(store->seal(id).code(), StatusCode::kFailedPrecondition);
  auto info = store->info(id);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, ObjectState::kSealed);
  EXPECT_EQ(info->size, 1000u) << "info must report the object's size, not its block's";
  EXPECT_EQ(info->creator, kWriter);
  EXPECT_EQ(info->kind, CopyKind::kPrimary);
  EXPECT_EQ(info->placement, *placement);

  auto pinned = store->pin(id, kReader);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(*pinned, *placement);
  EXPECT_EQ(store->info(id)->pins, 1u);
  EXPECT_EQ(checksum(store->segment().data() + pinned->offset, 1000), expected_checksum(id, 1000));
  ASSERT_TRUE(store->unpin(id, kReader).ok());
  EXPECT_EQ(store->unpin(id, kReader).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->info(id)->pins, 0u);
}

TEST(ObjectStore, ObjectIdsAreCreatedOnce) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  put(*store, id, 10);
  auto again = store->create(id, 10, kWriter, CopyKind::kPrimary);
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find(id.to_hex()), std::string::npos);
}

TEST(ObjectStore, UnknownIdsAreNotFound) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  EXPECT_EQ(store->seal(id).code(), StatusCode::kNotFound);
  EXPECT_EQ(store->abort(id).code(), StatusCode::kNotFound);
  EXPECT_EQ(store->pin(id, kReader).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->unpin(id, kReader).code(), StatusCode::kNotFound);
  EXPECT_EQ(store->remove(id).code(), StatusCode::kNotFound);
  EXPECT_EQ(restore_and_wait(*store, id).code(), StatusCode::kNotFound);
  EXPECT_FALSE(store->info(id).has_value());
}

TEST(ObjectStore, AbortFreesAnUnsealedObjectAndRefusesASealedOne) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  ASSERT_TRUE(store->create(id, 5000, kWriter, CopyKind::kPrimary).ok());
  EXPECT_EQ(store->stats().used, 5056u);
  ASSERT_TRUE(store->abort(id).ok());
  EXPECT_FALSE(store->info(id).has_value());
  EXPECT_EQ(store->stats().used, 0u);

  put(*store, id, 10);
  EXPECT_EQ(store->abort(id).code(), StatusCode::kFailedPrecondition);
}

TEST(ObjectStore, ClientGoneAbortsItsUnsealedObjectsAndDropsItsPins) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId unsealed = ObjectId::random();
  const ObjectId shared = ObjectId::random();
  const ObjectId sealed_by_gone = ObjectId::random();
  ASSERT_TRUE(store->create(unsealed, 1000, 7, CopyKind::kPrimary).ok());
  put(*store, sealed_by_gone, 100, CopyKind::kPrimary, 7);
  put(*store, shared, 100, CopyKind::kPrimary, 8);
  ASSERT_TRUE(store->pin(shared, 7).ok());
  ASSERT_TRUE(store->pin(shared, 7).ok());
  ASSERT_TRUE(store->pin(shared, 9).ok());

  store->client_gone(7);
  EXPECT_FALSE(store->info(unsealed).has_value()) << "the dead creator's object was kept";
  EXPECT_EQ(state_of(*store, sealed_by_gone), ObjectState::kSealed)
      << "a sealed object outlives its creator";
  EXPECT_EQ(store->info(shared)->pins, 1u);
  EXPECT_EQ(store->unpin(shared, 7).code(), StatusCode::kFailedPrecondition);

  // A removed object whose last pin belongs to a client that goes away is freed then.
  ASSERT_TRUE(store->remove(shared).ok());
  EXPECT_TRUE(store->info(shared).has_value());
  store->client_gone(9);
  EXPECT_FALSE(store->info(shared).has_value());
  EXPECT_EQ(store->stats().used, 128u) << "only sealed_by_gone's block should be left";
}

TEST(ObjectStore, PinsCountPerClient) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  put(*store, id, 100);
  ASSERT_TRUE(store->pin(id, kReader).ok());
  ASSERT_TRUE(store->pin(id, kReader).ok());
  ASSERT_TRUE(store->remove(id).ok());
  ASSERT_TRUE(store->unpin(id, kReader).ok());
  EXPECT_TRUE(store->info(id).has_value()) << "freed with a pin still held";
  ASSERT_TRUE(store->unpin(id, kReader).ok());
  EXPECT_FALSE(store->info(id).has_value());
}

TEST(ObjectStore, RemoveWhilePinnedFreesAtTheLastUnpin) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  std::atomic<int> freed{0};
  store->set_space_listener([&] { ++freed; });
  const ObjectId id = ObjectId::random();
  put(*store, id, 4096);
  ASSERT_TRUE(store->pin(id, 1).ok());
  ASSERT_TRUE(store->pin(id, 2).ok());

  ASSERT_TRUE(store->remove(id).ok());
  ASSERT_TRUE(store->remove(id).ok()) << "remove is idempotent";
  auto info = store->info(id);
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->pending_remove);
  EXPECT_EQ(store->stats().used, 4096u) << "the memory went while pinned";
  EXPECT_EQ(store->pin(id, 3).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(freed, 0);

  ASSERT_TRUE(store->unpin(id, 1).ok());
  EXPECT_TRUE(store->info(id).has_value());
  ASSERT_TRUE(store->unpin(id, 2).ok());
  EXPECT_FALSE(store->info(id).has_value());
  EXPECT_EQ(store->stats().used, 0u);
  EXPECT_EQ(freed, 1) << "the space listener did not fire when the memory was freed";
}

TEST(ObjectStore, RemoveOfAnUnsealedObjectFreesItAtSeal) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  ASSERT_TRUE(store->create(id, 100, kWriter, CopyKind::kPrimary).ok());
  ASSERT_TRUE(store->remove(id).ok());
  EXPECT_EQ(store->stats().used, 128u) << "freed while its creator still writes into it";
  ASSERT_TRUE(store->seal(id).ok());
  EXPECT_FALSE(store->info(id).has_value());
  EXPECT_EQ(store->stats().used, 0u);
}

TEST(ObjectStore, ObjectLargerThanTheStoreIsOutOfRangeAtOnce) {
  const uint64_t capacity = 1 << 20;
  auto store = make_store(capacity);
  ASSERT_NE(store, nullptr);
  auto too_big = store->create(ObjectId::random(), capacity + 1, kWriter, CopyKind::kPrimary);
  ASSERT_EQ(too_big.status().code(), StatusCode::kOutOfRange);
  const std::string message(too_big.status().message());
  EXPECT_NE(message.find(std::to_string(capacity + 1)), std::string::npos) << message;
  EXPECT_NE(message.find(std::to_string(capacity)), std::string::npos) << message;
  EXPECT_NE(message.find("--object-store-memory"), std::string::npos) << message;
  EXPECT_TRUE(store->create(ObjectId::random(), capacity, kWriter, CopyKind::kPrimary).ok());
}

TEST(ObjectStore, FullStoreEvictsLeastRecentlyUsedSecondariesAndNeverPrimaries) {
  const uint64_t block = 64 * kKiB;
  auto store = make_store(10 * block);
  ASSERT_NE(store, nullptr);
  std::vector<ObjectId> secondary(4);
  std::vector<ObjectId> primary(4);
  for (auto& id : secondary) put(*store, id = ObjectId::random(), block, CopyKind::kSecondary);
  for (auto& id : primary) put(*store, id = ObjectId::random(), block, CopyKind::kPrimary);
  // secondary[0] becomes the most recently used: order now 1, 2, 3, 0.
  expect_intact(*store, secondary[0], block);

  put(*store, ObjectId::random(), block);  // Fits in the free space.
  put(*store, ObjectId::random(), block);
  EXPECT_EQ(store->stats().evictions, 0u);
  put(*store, ObjectId::random(), block);  // Needs one eviction: the least recently used.
  EXPECT_EQ(store->stats().evictions, 1u);
  EXPECT_FALSE(store->info(secondary[1]).has_value());
  EXPECT_TRUE(store->info(secondary[2]).has_value());

  // A pinned secondary copy is not evicted.
  ASSERT_TRUE(store->pin(secondary[2], kReader).ok());
  put(*store, ObjectId::random(), block);
  EXPECT_TRUE(store->info(secondary[2]).has_value());
  EXPECT_FALSE(store->info(secondary[3]).has_value());

  // No room even after evicting every unpinned secondary copy: primaries stay.
  auto full = store->create(ObjectId::random(), 2 * block, kWriter, CopyKind::kPrimary);
  ASSERT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  const std::string message(full.status().message());
  for (const char* part :
       {"needs 131072 bytes", "bytes are free", "largest free block", "--spill-dir"}) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' missing: " << message;
  }
  EXPECT_FALSE(store->info(secondary[0]).has_value()) << "every unpinned secondary goes first";
  EXPECT_EQ(store->stats().evictions, 3u);
  for (const ObjectId& id : primary) {
    EXPECT_EQ(state_of(*store, id), ObjectState::kSealed) << "a primary copy was evicted";
    expect_intact(*store, id, block);
  }
  expect_intact(*store, secondary[2], block);
}

TEST(ObjectStore, ASecondaryCopyMadePrimaryIsNeverEvicted) {
  const uint64_t block = 64 * kKiB;
  auto store = make_store(4 * block);
  ASSERT_NE(store, nullptr);
  const ObjectId kept = ObjectId::random();
  const ObjectId other = ObjectId::random();
  put(*store, kept, block, CopyKind::kSecondary);
  put(*store, other, block, CopyKind::kSecondary);
  ASSERT_TRUE(store->make_primary(kept).ok());
  EXPECT_EQ(store->info(kept)->kind, CopyKind::kPrimary);
  // Room for three more blocks needs one eviction; `kept` is the least recently used but no
  // longer a candidate.
  for (int i = 0; i < 3; ++i) put(*store, ObjectId::random(), block);
  EXPECT_EQ(store->stats().evictions, 1u);
  EXPECT_FALSE(store->info(other).has_value());
  expect_intact(*store, kept, block);
  EXPECT_EQ(store->make_primary(ObjectId::random()).code(), StatusCode::kNotFound);
}

TEST(ObjectStore, WithASpillDirSecondariesAreEvictedBeforeAnyPrimaryIsSpilled) {
  TempDir dir;
  const uint64_t block = 64 * kKiB;
  auto store = make_store(4 * block, dir.path());
  ASSERT_NE(store, nullptr);
  const ObjectId old_primary = ObjectId::random();
  const ObjectId secondary = ObjectId::random();
  put(*store, old_primary, block, CopyKind::kPrimary);
  put(*store, secondary, block, CopyKind::kSecondary);
  put(*store, ObjectId::random(), block);
  put(*store, ObjectId::random(), block);
  put(*store, ObjectId::random(), block);
  EXPECT_FALSE(store->info(secondary).has_value());
  EXPECT_EQ(state_of(*store, old_primary), ObjectState::kSealed);
  EXPECT_EQ(store->stats().spills, 0u);
  EXPECT_EQ(store->stats().evictions, 1u);
}

// Fills a spilling store with four primary copies, then creates a fifth: the least recently
// used primary is spilled, the listener fires, and the retried create succeeds.
class SpillingStore : public ::testing::Test {
 protected:
  static constexpr uint64_t kBlock = 256 * kKiB;

  void SetUp() override {
    store_ = make_store(4 * kBlock, dir_.path());
    ASSERT_NE(store_, nullptr);
    store_->set_space_listener([this] { ++freed_; });
    for (auto& id : ids_) put(*store_, id = ObjectId::random(), kBlock);
  }

  // Creates `id` (kBlock bytes), waiting for a spill to make room if needed.
  void put_with_retry(const ObjectId& id) {
    const int freed_before = freed_;
    auto first = store_->create(id, kBlock, kWriter, CopyKind::kPrimary);
    if (first.ok()) {
      fill_pattern(store_->segment().data() + first->offset, kBlock, seed_of(id));
      ASSERT_TRUE(store_->seal(id).ok());
      return;
    }
    ASSERT_EQ(first.status().code(), StatusCode::kResourceExhausted) << first.status();
    EXPECT_NE(first.status().message().find("being spilled"), std::string::npos) << first.status();
    ASSERT_TRUE(wait_for([&] { return freed_ > freed_before; }, 10s))
        << "the space listener never fired";
    put(*store_, id, kBlock);
  }

  std::string spill_folder() const { return dir_.file("node-test"); }

  TempDir dir_;
  std::unique_ptr<ObjectStore> store_;
  std::atomic<int> freed_{0};
  std::vector<ObjectId> ids_ = std::vector<ObjectId>(4);
};

TEST_F(SpillingStore, FullStoreSpillsTheLruPrimaryThenTheRetrySucceeds) {
  expect_intact(*store_, ids_[0], kBlock);  // ids_[1] is now the least recently used.
  put_with_retry(ObjectId::random());
  EXPECT_EQ(state_of(*store_, ids_[1]), ObjectState::kSpilled);
  for (int i : {0, 2, 3}) EXPECT_EQ(state_of(*store_, ids_[i]), ObjectState::kSealed) << i;

  auto info = store_->info(ids_[1]);
  EXPECT_FALSE(info->placement.has_value());
  EXPECT_EQ(info->spill_path, spill_folder() + "/" + ids_[1].to_hex() + ".obj");
  struct stat st {};
  ASSERT_EQ(::stat(info->spill_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(spill_folder().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  auto pinned = store_->pin(ids_[1], kReader);
  EXPECT_EQ(pinned.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pinned.status().message().find("spilled"), std::string::npos) << pinned.status();
}

TEST_F(SpillingStore, RestoreBringsTheBytesBackIntactMakingRoomBySpilling) {
  put_with_retry(ObjectId::random());
  ASSERT_EQ(state_of(*store_, ids_[0]), ObjectState::kSpilled);
  // The store is full of primaries again; the restore must spill one to make room.
  ASSERT_TRUE(restore_and_wait(*store_, ids_[0]).ok());
  EXPECT_EQ(state_of(*store_, ids_[0]), ObjectState::kSealed);
  EXPECT_EQ(state_of(*store_, ids_[1]), ObjectState::kSpilled);
  expect_intact(*store_, ids_[0], kBlock);
  const StoreStats stats = store_->stats();
  EXPECT_EQ(stats.restores, 1u);
  EXPECT_EQ(stats.bytes_restored, kBlock);
  EXPECT_EQ(stats.spills, 2u);

  // Restoring what is in memory answers OK at once.
  EXPECT_TRUE(restore_and_wait(*store_, ids_[0]).ok());
  EXPECT_EQ(store_->stats().restores, 1u);
}

TEST_F(SpillingStore, ConcurrentRestoresOfOneObjectShareOneRead) {
  put_with_retry(ObjectId::random());
  ASSERT_TRUE(store_->remove(ids_[2]).ok());  // Room for the restore without spilling.
  std::atomic<int> ok{0};
  std::atomic<int> answered{0};
  for (int i = 0; i < 5; ++i) {
    store_->restore(ids_[0], [&](Status status) {
      ok += status.ok();
      ++answered;
    });
  }
  ASSERT_TRUE(wait_for([&] { return answered == 5; }, 10s));
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(store_->stats().restores, 1u);
  EXPECT_EQ(store_->stats().bytes_restored, kBlock);
  expect_intact(*store_, ids_[0], kBlock);
}

TEST_F(SpillingStore, ARestoredObjectLeavesMemoryAgainWithoutAWrite) {
  const ObjectId fifth = ObjectId::random();
  put_with_retry(fifth);
  ASSERT_TRUE(store_->remove(ids_[2]).ok());
  ASSERT_TRUE(restore_and_wait(*store_, ids_[0]).ok());
  // ids_[0] is the least recently used primary again after these reads.
  for (const ObjectId& id : {fifth, ids_[1], ids_[3]}) expect_intact(*store_, id, kBlock);
  const uint64_t spills = store_->stats().spills;
  ASSERT_TRUE(store_->create(ObjectId::random(), kBlock, kWriter, CopyKind::kPrimary).ok())
      << "a primary whose file is complete should leave memory at once";
  EXPECT_EQ(state_of(*store_, ids_[0]), ObjectState::kSpilled);
  EXPECT_EQ(store_->stats().spills, spills) << "the file was written a second time";
}

TEST_F(SpillingStore, DamagedSpillFileIsDataLossNamingTheFile) {
  put_with_retry(ObjectId::random());
  ASSERT_TRUE(store_->remove(ids_[2]).ok());
  const std::string path = store_->info(ids_[0])->spill_path;
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(100000);
    file.put('\x5a');
    file.seekp(100001);
    file.put('\xa5');
  }
  const uint64_t used = store_->stats().used;
  const Status damaged = restore_and_wait(*store_, ids_[0]);
  EXPECT_EQ(damaged.code(), StatusCode::kDataLoss) << damaged;
  EXPECT_NE(damaged.message().find(path), std::string::npos) << damaged;
  EXPECT_EQ(state_of(*store_, ids_[0]), ObjectState::kSpilled);
  EXPECT_EQ(store_->stats().used, used) << "the failed restore kept its memory";

  ASSERT_EQ(::unlink(path.c_str()), 0);
  const Status missing = restore_and_wait(*store_, ids_[0]);
  EXPECT_EQ(missing.code(), StatusCode::kDataLoss) << missing;
  EXPECT_NE(missing.message().find("missing"), std::string::npos) << missing;
  EXPECT_NE(missing.message().find(path), std::string::npos) << missing;
}

TEST_F(SpillingStore, RemoveDeletesTheSpillFile) {
  put_with_retry(ObjectId::random());
  const std::string path = store_->info(ids_[0])->spill_path;
  ASSERT_TRUE(std::filesystem::exists(path));
  ASSERT_TRUE(store_->remove(ids_[0]).ok());
  EXPECT_FALSE(store_->info(ids_[0]).has_value());
  EXPECT_TRUE(wait_for([&] { return !std::filesystem::exists(path); }, 10s))
      << path << " was left behind";
}

TEST_F(SpillingStore, APinTakenDuringTheSpillKeepsTheObjectInMemory) {
  // Hold the spill thread in a restore callback, so the spill waits behind it.
  std::mutex mu;
  std::condition_variable cv;
  bool holding = false;
  bool release = false;
  store_->restore(ids_[3], [&](Status) {
    std::unique_lock<std::mutex> lock(mu);
    holding = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  auto let_go = [&] {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  };
  // Whatever happens below, the spill thread must be let go, or the store's destructor waits.
  struct Release {
    std::function<void()> release;
    ~Release() { release(); }
  } guard{let_go};
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return holding; }));
  }
  auto full = store_->create(ObjectId::random(), kBlock, kWriter, CopyKind::kPrimary);
  ASSERT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  // ids_[0] is queued for spilling; a reader pins it meanwhile.
  auto pinned = store_->pin(ids_[0], kReader);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  let_go();
  ASSERT_TRUE(wait_for([&] { return store_->stats().spills == 1; }, 10s));
  auto info = store_->info(ids_[0]);
  EXPECT_EQ(info->state, ObjectState::kSealed);
  EXPECT_EQ(info->placement, *pinned) << "the pinned bytes moved";
  EXPECT_FALSE(info->spill_path.empty());
  EXPECT_EQ(checksum(store_->segment().data() + pinned->offset, kBlock),
            expected_checksum(ids_[0], kBlock));
  ASSERT_TRUE(store_->unpin(ids_[0], kReader).ok());
}

// --- Arenas ------------------------------------------------------------------------------

TEST(ObjectStore, ObjectsCarvedOffAnArenaAreSealedPrimariesFreedOnTheirOwn) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  auto arena = store->reserve_arena(kWriter, 64 * kKiB);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ(store->stats().arena_bytes, 64 * kKiB);
  uint64_t front = arena->offset;
  std::vector<std::pair<ObjectId, uint64_t>> objects;
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{80}, uint64_t{5000}}) {
    const ObjectId id = ObjectId::random();
    fill_pattern(store->segment().data() + front, size, seed_of(id));
    auto sealed = store->seal_in_arena(id, kWriter, front, size);
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_EQ(sealed->offset, front);
    auto info = store->info(id);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->state, ObjectState::kSealed);
    EXPECT_EQ(info->kind, CopyKind::kPrimary);
    front += size == 0 ? 64 : (size + 63) / 64 * 64;
    objects.emplace_back(id, size);
  }
  EXPECT_EQ(store->stats().arena_bytes, arena->offset + 64 * kKiB - front);
  for (const auto& [id, size] : objects) {
    auto pinned = store->pin(id, kReader);
    ASSERT_TRUE(pinned.ok()) << pinned.status();
    EXPECT_EQ(test::checksum(store->segment().data() + pinned->offset, size),
              expected_checksum(id, size));
    ASSERT_TRUE(store->unpin(id, kReader).ok());
  }
  // Freed in any order, with the arena's rest still reserved; then the client goes.
  ASSERT_TRUE(store->remove(objects[1].first).ok());
  ASSERT_TRUE(store->remove(objects[3].first).ok());
  ASSERT_TRUE(store->remove(objects[0].first).ok());
  ASSERT_TRUE(store->remove(objects[2].first).ok());
  EXPECT_EQ(store->stats().used, store->stats().arena_bytes);
  store->client_gone(kWriter);
  EXPECT_EQ(store->stats().used, 0u);
  EXPECT_EQ(store->stats().arena_bytes, 0u);
  EXPECT_EQ(store->stats().largest_free_block, 1u << 20) << "everything coalesced back";
}

TEST(ObjectStore, ArenaAnnouncementsOutOfPlaceAreRefused) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  const ObjectId id = ObjectId::random();
  EXPECT_EQ(store->seal_in_arena(id, kWriter, 0, 64).status().code(), StatusCode::kInvalidArgument)
      << "no arena";
  auto arena = store->reserve_arena(kWriter, 4 * kKiB);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ(store->seal_in_arena(id, kWriter, arena->offset + 64, 64).status().code(),
            StatusCode::kInvalidArgument)
      << "not the front";
  EXPECT_EQ(store->seal_in_arena(id, kWriter, arena->offset, 4 * kKiB + 1).status().code(),
            StatusCode::kInvalidArgument)
      << "larger than the rest";
  EXPECT_EQ(store->seal_in_arena(id, kReader, arena->offset, 64).status().code(),
            StatusCode::kInvalidArgument)
      << "another client's arena";
  put(*store, id, 10);
  EXPECT_EQ(store->seal_in_arena(id, kWriter, arena->offset, 64).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_FALSE(store->info(ObjectId::random()).has_value());
  EXPECT_EQ(store->stats().arena_bytes, 4 * kKiB) << "refusals leave the arena as it was";
}

TEST(ObjectStore, ANewArenaGivesBackTheRestOfThePreviousOne) {
  auto store = make_store(1 << 20);
  ASSERT_NE(store, nullptr);
  auto first = store->reserve_arena(kWriter, 8 * kKiB);
  ASSERT_TRUE(first.ok()) << first.status();
  const ObjectId id = ObjectId::random();
  ASSERT_TRUE(store->seal_in_arena(id, kWriter, first->offset, 100).ok());
  auto second = store->reserve_arena(kWriter, 8 * kKiB);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(store->stats().arena_bytes, 8 * kKiB);
  EXPECT_EQ(store->stats().used, 8 * kKiB + 128) << "the old arena's rest was freed";
  EXPECT_EQ(store->reserve_arena(kWriter, 2 << 20).status().code(), StatusCode::kOutOfRange);
}

TEST(ObjectStore, ArenaInAFullStoreIsResourceExhaustedAndEvictsSecondariesFirst) {
  auto store = make_store(64 * kKiB);
  ASSERT_NE(store, nullptr);
  const ObjectId primary = ObjectId::random(), secondary = ObjectId::random();
  put(*store, primary, 32 * kKiB);
  put(*store, secondary, 32 * kKiB, CopyKind::kSecondary);
  auto arena = store->reserve_arena(kWriter, 16 * kKiB);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_FALSE(store->info(secondary).has_value()) << "the secondary copy made room";
  auto refused = store->reserve_arena(kReader, 32 * kKiB);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("small objects of client"), std::string::npos)
      << refused.status();
}

TEST(ObjectStore, StatsAreExact) {
  TempDir dir;
  auto store = make_store(1 << 20, dir.path());
  ASSERT_NE(store, nullptr);
  const ObjectId a = ObjectId::random();
  const ObjectId b = ObjectId::random();
  const ObjectId c = ObjectId::random();
  put(*store, a, 1000);
  put(*store, b, 100, CopyKind::kSecondary);
  ASSERT_TRUE(store->create(c, 0, kWriter, CopyKind::kPrimary).ok());
  StoreStats stats = store->stats();
  EXPECT_EQ(stats.capacity, 1u << 20);
  EXPECT_EQ(stats.used, 1024u + 128u + 64u);
  EXPECT_EQ(stats.object_bytes, 1100u);
  EXPECT_EQ(stats.objects, 3u);
  EXPECT_EQ(stats.unsealed, 1u);
  EXPECT_EQ(stats.sealed, 2u);
  EXPECT_EQ(stats.spilled, 0u);
  EXPECT_EQ(stats.largest_free_block, (1u << 20) - 1216u);
  EXPECT_EQ(stats.evictions, 0u);
  EXPECT_EQ(stats.spills, 0u);

  // A full-size object needs everything: b is evicted, a spilled (c is being written).
  auto big = store->create(ObjectId::random(), (1 << 20) - 64, kWriter, CopyKind::kPrimary);
  ASSERT_EQ(big.status().code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(wait_for([&] { return state_of(*store, a) == ObjectState::kSpilled; }, 10s));
  stats = store->stats();
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_EQ(stats.spills, 1u);
  EXPECT_EQ(stats.bytes_spilled, 1000u);
  EXPECT_EQ(stats.objects, 2u);
  EXPECT_EQ(stats.spilled, 1u);
  EXPECT_EQ(stats.sealed, 0u);
  EXPECT_EQ(stats.used, 64u);
  EXPECT_EQ(stats.object_bytes, 0u);
}

TEST(ObjectStore, MemoryIsBackToEmptyAfterEveryObjectIsRemoved) {
  TempDir dir;
  const uint64_t capacity = 4 << 20;
  auto store = make_store(capacity, dir.path());
  ASSERT_NE(store, nullptr);
  std::atomic<int> freed{0};
  store->set_space_listener([&] { ++freed; });
  std::mt19937_64 random(5);
  std::vector<ObjectId> ids;
  for (int i = 0; i < 200; ++i) {
    const ObjectId id = ObjectId::random();
    const uint64_t size = random() % (128 * kKiB);
    const CopyKind kind = i % 3 == 0 ? CopyKind::kSecondary : CopyKind::kPrimary;
    const int before = freed;  // Before the create: the spill may finish before it returns.
    auto placement = store->create(id, size, kWriter, kind);
    if (!placement.ok()) {
      ASSERT_EQ(placement.status().code(), StatusCode::kResourceExhausted);
      ASSERT_TRUE(wait_for([&] { return freed > before; }, 10s)) << placement.status();
      placement = store->create(id, size, kWriter, kind);
      if (!placement.ok()) continue;  // Freed space in pieces; the next object may fit.
    }
    fill_pattern(store->segment().data() + placement->offset, size, seed_of(id));
    ASSERT_TRUE(store->seal(id).ok());
    ids.push_back(id);
  }
  ASSERT_GT(store->stats().spills, 0u) << "the workload never spilled";
  ASSERT_GT(store->stats().evictions, 0u) << "the workload never evicted";
  for (const ObjectId& id : ids) {
    const Status removed = store->remove(id);
    EXPECT_TRUE(removed.ok() || removed.code() == StatusCode::kNotFound) << removed;
  }
  ASSERT_TRUE(wait_for([&] { return store->stats().objects == 0; }, 10s));
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.used, 0u);
  EXPECT_EQ(stats.object_bytes, 0u);
  EXPECT_EQ(stats.largest_free_block, capacity);
  EXPECT_TRUE(wait_for([&] { return files_in(dir.file("node-test")) == 0; }, 10s))
      << "spill files were left behind";
}

TEST(ObjectStore, DestructionRemovesTheSpillFilesAndTheNodeFolder) {
  TempDir dir;
  {
    auto store = make_store(256 * kKiB, dir.path());
    ASSERT_NE(store, nullptr);
    const ObjectId first = ObjectId::random();
    put(*store, first, 200 * kKiB);
    ASSERT_FALSE(store->create(ObjectId::random(), 200 * kKiB, kWriter, CopyKind::kPrimary).ok());
    ASSERT_TRUE(wait_for([&] { return state_of(*store, first) == ObjectState::kSpilled; }, 10s));
    EXPECT_EQ(files_in(dir.file("node-test")), 1u);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("node-test")));
}

TEST(ObjectStore, StaleSpillFilesOfAnEarlierRunAreRemovedAtStart) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("node-test"));
  const std::string stale = dir.file("node-test/" + ObjectId::random().to_hex() + ".obj");
  std::ofstream(stale) << "left by a killed node";
  auto store = make_store(1 << 20, dir.path());
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(std::filesystem::exists(stale));
}

TEST(ObjectStore, InvalidOptionsAreRejected) {
  StoreOptions options;
  EXPECT_EQ(ObjectStore::create(options).status().code(), StatusCode::kInvalidArgument);
  options.capacity_bytes = 1 << 20;
  options.alignment = 48;
  EXPECT_EQ(ObjectStore::create(options).status().code(), StatusCode::kInvalidArgument);
  options.alignment = 64;
  options.spill_dir = "/tmp";
  options.spill_prefix = "../elsewhere";
  EXPECT_EQ(ObjectStore::create(options).status().code(), StatusCode::kInvalidArgument);
}

// Several client threads put, read, share and remove objects at once; every read sees its
// object's bytes, and the store is empty at the end.
TEST(ObjectStore, ConcurrentClientsKeepObjectsIntactAndLeaveTheStoreEmpty) {
  auto store = make_store(64 << 20);
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kRounds = 1000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const ClientId me = 100 + t;
      const ClientId other = 100 + (t + 1) % kThreads;
      std::mt19937_64 random(t);
      std::vector<std::pair<ObjectId, uint64_t>> mine;
      for (int round = 0; round < kRounds; ++round) {
        const ObjectId id = ObjectId::random();
        const uint64_t size = random() % (32 * kKiB);
        auto placement = store->create(id, size, me, CopyKind::kPrimary);
        if (!placement.ok()) {
          ++failures;
          continue;
        }
        fill_pattern(store->segment().data() + placement->offset, size, seed_of(id));
        if (round % 10 == 9) {  // A writer that gives up.
          if (!store->abort(id).ok()) ++failures;
          continue;
        }
        if (!store->seal(id).ok()) ++failures;
        mine.emplace_back(id, size);
        // Read a random object of mine, pinned by me and by another client.
        const size_t index = random() % mine.size();
        const auto [read_id, read_size] = mine[index];
        auto pinned = store->pin(read_id, me);
        if (!pinned.ok() || !store->pin(read_id, other).ok()) {
          ++failures;
          continue;
        }
        if (checksum(store->segment().data() + pinned->offset, read_size) !=
            expected_checksum(read_id, read_size)) {
          ++failures;
        }
        if (!store->unpin(read_id, me).ok()) ++failures;
        if (round % 3 == 0) {
          // Removed while the other client still pins it: freed at its unpin.
          if (!store->remove(read_id).ok()) ++failures;
          mine.erase(mine.begin() + static_cast<long>(index));
        }
        if (!store->unpin(read_id, other).ok()) ++failures;
        if (mine.size() > 32) {
          if (!store->remove(mine.front().first).ok()) ++failures;
          mine.erase(mine.begin());
        }
      }
      for (const auto& [id, size] : mine) {
        if (!store->remove(id).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  const StoreStats stats = store->stats();
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.used, 0u);
  EXPECT_EQ(stats.largest_free_block, 64u << 20);
}

}  // namespace
}  // namespace halo::objstore
