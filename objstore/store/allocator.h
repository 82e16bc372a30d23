// The allocator of the object store's segment: hands out blocks (offsets) inside
// [0, capacity), knowing nothing of objects.
//
//   Allocator allocator(1ull << 30);                 // 1 GiB, 64-byte alignment
//   std::optional<uint64_t> offset = allocator.allocate(1000);  // a 1024-byte block
//   if (!offset) { ...evict or spill, then retry... }
//   allocator.free(*offset);
//
// Policy: best fit (the smallest free block that holds the request; the lowest offset among
// equals) with immediate coalescing (a freed block merges with free neighbours at once). Both
// operations take O(log n) in the number of free blocks.
//
// Fragmentation bound. Because neighbours always merge, no two free blocks touch, so there is
// at most one free block more than there are allocated blocks: with k blocks allocated,
//   largest_free_block() >= (capacity() - used()) / (k + 1),
// and any request up to largest_free_block() succeeds. In practice best fit does far better
// than this worst case; the allocator test measures it under a random churn workload
// (Allocator.MeasuredFragmentationUnderChurn prints the number; see docs/objstore-store.md).
//
// Every block starts at a multiple of `alignment` and its size is the request rounded up to a
// multiple of it, so used() counts that padding. A request of 0 bytes gets a block of
// `alignment` bytes, so that every live block has its own offset.
//
// Not thread-safe: ObjectStore calls it under its lock. free() of an offset that is not the
// start of a live block (a double free, a stray offset) is a bug in the caller and aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

namespace halo::objstore {

class Allocator {
 public:
  // `alignment` must be a power of two; `capacity` is rounded down to a multiple of it.
  explicit Allocator(uint64_t capacity, uint64_t alignment = 64);

  // The offset of a new block of at least `size` bytes, or nullopt when no free block is large
  // enough (then largest_free_block() < the rounded size).
  std::optional<uint64_t> allocate(uint64_t size);
  // Returns the block at `offset` (as allocate() gave it) to the free space.
  void free(uint64_t offset);
  // Cuts the live block at `offset` in two live blocks: its first `first_size` bytes (a
  // multiple of the alignment, less than the block) at `offset`, the rest right after; each
  // is freed on its own. Used for client arenas, whose objects are carved off their front.
  void split(uint64_t offset, uint64_t first_size);

  uint64_t capacity() const { return capacity_; }
  uint64_t alignment() const { return alignment_; }
  // Bytes in allocated blocks, padding included.
  uint64_t used() const { return used_; }
  uint64_t largest_free_block() const;
  // Number of free blocks; 1 when nothing is allocated.
  size_t free_blocks() const { return free_by_offset_.size(); }
  size_t allocated_blocks() const { return allocated_.size(); }
  // The size of the live block at `offset`, or 0 if there is none.
  uint64_t block_size(uint64_t offset) const;
  // The block size allocate(size) would use.
  uint64_t rounded_size(uint64_t size) const;

 private:
  void add_free(uint64_t offset, uint64_t size);
  void remove_free(std::map<uint64_t, uint64_t>::iterator block);

  uint64_t capacity_;
  uint64_t alignment_;
  uint64_t used_ = 0;
  std::map<uint64_t, uint64_t> free_by_offset_;           // offset -> size
  std::set<std::pair<uint64_t, uint64_t>> free_by_size_;  // (size, offset)
  std::unordered_map<uint64_t, uint64_t> allocated_;      // offset -> size
};

}  // namespace halo::objstore
