// Memory registered with UCX (ucp_mem_map) for put and get, with its packed remote key.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>

#include "halo/transport/transport.h"

namespace halo::transport::internal::ucx {

class UcxTransport;

// Ties regions to their transport, which may be destroyed first: the transport clears
// `transport` (under `mu`) before it stops, and deregisters what is left itself.
struct UcxRegionLink {
  std::mutex mu;
  UcxTransport* transport = nullptr;
};

class UcxMemoryRegion final : public MemoryRegion {
 public:
  // Built by UcxTransport::register_memory on the progress thread. `memh` is null for an empty
  // region.
  UcxMemoryRegion(std::shared_ptr<UcxRegionLink> link, std::byte* data, size_t size, ucp_mem_h memh,
                  uint64_t token, RemoteRegion remote);
  // Deregisters on the progress thread (waits for it when called from another thread).
  ~UcxMemoryRegion() override;

  const RemoteRegion& remote() const override { return remote_; }
  ucp_mem_h memh() const { return memh_; }
  uint64_t token() const { return token_; }
  const UcxTransport* owner() const { return owner_; }

 private:
  std::shared_ptr<UcxRegionLink> link_;
  const UcxTransport* owner_;
  ucp_mem_h memh_;
  uint64_t token_;
  RemoteRegion remote_;
};

// RemoteRegion::rkey as UcxTransport packs it: magic, region token, then UCX's packed key.
std::string pack_remote_key(uint64_t token, std::span<const std::byte> ucp_rkey);
// The region token and UCX's packed key of a remote key; INVALID_ARGUMENT when `rkey` is not
// one this backend packed (for instance a libfabric key).
struct UnpackedRemoteKey {
  uint64_t token = 0;
  std::string_view ucp_rkey;
};
StatusOr<UnpackedRemoteKey> unpack_remote_key(std::string_view rkey);

}  // namespace halo::transport::internal::ucx
