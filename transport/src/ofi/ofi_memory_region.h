// Memory registered with a libfabric domain, and the remote key format peers receive.
//
// RemoteRegion::rkey is 16 bytes: [0] 'F', [1] version 1, [2] flags (bit 0: the provider
// addresses RMA targets by virtual address, FI_MR_VIRT_ADDR; otherwise by offset into the
// region), [3..7] zero, [8..15] the memory key (fi_mr_key). Any other rkey is refused with
// INVALID_ARGUMENT before a byte moves.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <cstdint>
#include <memory>
#include <string>

#include "halo/transport/transport.h"
#include "ofi/ofi_domain.h"

namespace halo::transport::internal::ofi {

// A remote key, unpacked, and the address libfabric wants for `offset` bytes into the region.
struct RemoteKey {
  uint64_t key = 0;
  bool virt_addr = false;
  uint64_t target(const RemoteRegion& region, uint64_t offset) const {
    return virt_addr ? region.addr + offset : offset;
  }
};

std::string pack_rkey(uint64_t key, bool virt_addr);
StatusOr<RemoteKey> unpack_rkey(const std::string& rkey);

class OfiMemoryRegion final : public MemoryRegion {
 public:
  // `mr` may be null for an empty region (nothing to register; only 0-byte transfers use it).
  OfiMemoryRegion(std::shared_ptr<OfiDomain> domain, std::byte* data, size_t size, fid_mr* mr);
  ~OfiMemoryRegion() override;

  const RemoteRegion& remote() const override { return remote_; }
  // The local descriptor for operations on this memory (fi_mr_desc), or null.
  void* desc() const { return desc_; }
  uint64_t key() const { return key_; }

 private:
  std::shared_ptr<OfiDomain> domain_;
  fid_mr* mr_;
  void* desc_ = nullptr;
  uint64_t key_ = 0;
  RemoteRegion remote_;
};

}  // namespace halo::transport::internal::ofi
