// Page-aligned anonymous memory for transport tests: the local and peer regions that RMA
// tests register. Pre-faulted on request so that the first transfer does not measure page
// faults (and so that running out of memory shows at allocation, not mid-transfer).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstring>
#include <span>
#include <utility>

#include "halo/base/status.h"

namespace halo::transport::testing {

class PageBuffer {
 public:
  static StatusOr<PageBuffer> allocate(size_t size) {
    // mmap refuses length 0; a zero-byte buffer still gets one page so data() is valid.
    const size_t mapped = size == 0 ? 1 : size;
    void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return errno_error(errno, str_cat("mapping a ", size, "-byte test buffer"));
    }
    return PageBuffer(static_cast<std::byte*>(p), size, mapped);
  }

  PageBuffer(PageBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        mapped_(std::exchange(other.mapped_, 0)) {}
  PageBuffer& operator=(PageBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(mapped_, other.mapped_);
    return *this;
  }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  ~PageBuffer() {
    if (data_ != nullptr) ::munmap(data_, mapped_);
  }

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }

 private:
  PageBuffer(std::byte* data, size_t size, size_t mapped)
      : data_(data), size_(size), mapped_(mapped) {}

  std::byte* data_;
  size_t size_;
  size_t mapped_;
};

}  // namespace halo::transport::testing
