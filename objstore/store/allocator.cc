#include "objstore/store/allocator.h"

#include <cstdio>
#include <cstdlib>
#include <iterator>

namespace halo::objstore {
namespace {

// A broken allocator corrupts objects silently, so misuse stops the process at once.
[[noreturn]] void die(const char* what, uint64_t value) {
  std::fprintf(stderr, "halo object store allocator: %s %llu\n", what,
               static_cast<unsigned long long>(value));
  std::abort();
}

}  // namespace

Allocator::Allocator(uint64_t capacity, uint64_t alignment)
    : capacity_(alignment == 0 ? 0 : capacity / alignment * alignment), alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    die("alignment must be a power of two, got", alignment);
  }
  if (capacity_ > 0) add_free(0, capacity_);
}

uint64_t Allocator::rounded_size(uint64_t size) const {
  if (size == 0) return alignment_;
  return (size + alignment_ - 1) & ~(alignment_ - 1);
}

std::optional<uint64_t> Allocator::allocate(uint64_t size) {
  if (size > capacity_) return std::nullopt;
  const uint64_t want = rounded_size(size);
  auto best = free_by_size_.lower_bound({want, 0});
  if (best == free_by_size_.end()) return std::nullopt;
  const auto [block_size, offset] = *best;
  remove_free(free_by_offset_.find(offset));
  if (block_size > want) add_free(offset + want, block_size - want);
  allocated_.emplace(offset, want);
  used_ += want;
  return offset;
}

void Allocator::free(uint64_t offset) {
  auto live = allocated_.find(offset);
  if (live == allocated_.end()) {
    die("free of an offset that is not an allocated block (double free or stray offset):", offset);
  }
  uint64_t start = offset;
  uint64_t size = live->second;
  used_ -= size;
  allocated_.erase(live);

  auto next = free_by_offset_.lower_bound(offset);
  if (next != free_by_offset_.end() && next->first == start + size) {
    size += next->second;
    next = std::next(next);
    remove_free(std::prev(next));
  }
  if (next != free_by_offset_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      remove_free(prev);
    }
  }
  add_free(start, size);
}

void Allocator::split(uint64_t offset, uint64_t first_size) {
  auto live = allocated_.find(offset);
  if (live == allocated_.end()) die("split of an offset that is not an allocated block:", offset);
  if (first_size == 0 || first_size % alignment_ != 0 || first_size >= live->second) {
    die("split with a first part that is not a smaller multiple of the alignment:", first_size);
  }
  const uint64_t rest = live->second - first_size;
  live->second = first_size;
  allocated_.emplace(offset + first_size, rest);
}

uint64_t Allocator::largest_free_block() const {
  return free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
}

uint64_t Allocator::block_size(uint64_t offset) const {
  auto live = allocated_.find(offset);
  return live == allocated_.end() ? 0 : live->second;
}

void Allocator::add_free(uint64_t offset, uint64_t size) {
  free_by_offset_.emplace(offset, size);
  free_by_size_.emplace(size, offset);
}

void Allocator::remove_free(std::map<uint64_t, uint64_t>::iterator block) {
  free_by_size_.erase({block->second, block->first});
  free_by_offset_.erase(block);
}

}  // namespace halo::objstore
