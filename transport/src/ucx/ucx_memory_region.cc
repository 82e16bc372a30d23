#include "ucx/ucx_memory_region.h"

#include <cstring>
#include <future>

#include "ucx/ucx_transport.h"
#include "ucx/ucx_wire.h"

namespace halo::transport::internal::ucx {

UcxMemoryRegion::UcxMemoryRegion(std::shared_ptr<UcxRegionLink> link, std::byte* data, size_t size,
                                 ucp_mem_h memh, uint64_t token, RemoteRegion remote)
    : MemoryRegion(data, size),
      link_(std::move(link)),
      owner_(link_->transport),
      memh_(memh),
      token_(token),
      remote_(std::move(remote)) {}

UcxMemoryRegion::~UcxMemoryRegion() {
  std::unique_lock lock(link_->mu);
  UcxTransport* transport = link_->transport;
  if (transport == nullptr) return;  // The transport deregistered it when it shut down.
  if (transport->on_progress_thread()) {
    transport->unregister_region(token_);
    return;
  }
  // Posted under the lock: the transport clears the link before it stops, and stop() runs
  // everything posted before it, so this task runs even if the transport is being destroyed.
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  const uint64_t token = token_;
  transport->run_on_progress_thread([transport, token, &done] {
    transport->unregister_region(token);
    done.set_value();
  });
  lock.unlock();
  finished.wait();
}

std::string pack_remote_key(uint64_t token, std::span<const std::byte> ucp_rkey) {
  std::string out(kRkeyPrefixBytes + ucp_rkey.size(), '\0');
  std::memcpy(out.data(), &kRkeyMagic, 4);
  std::memcpy(out.data() + 4, &token, 8);
  if (!ucp_rkey.empty())
    std::memcpy(out.data() + kRkeyPrefixBytes, ucp_rkey.data(), ucp_rkey.size());
  return out;
}

StatusOr<UnpackedRemoteKey> unpack_remote_key(std::string_view rkey) {
  uint32_t magic = 0;
  if (rkey.size() >= 4) std::memcpy(&magic, rkey.data(), 4);
  if (rkey.size() < kRkeyPrefixBytes || magic != kRkeyMagic) {
    return invalid_argument_error(
        "the remote region's key was not packed by halo's UCX backend (a region of another "
        "transport, or corrupted in transit)");
  }
  UnpackedRemoteKey key;
  std::memcpy(&key.token, rkey.data() + 4, 8);
  key.ucp_rkey = rkey.substr(kRkeyPrefixBytes);
  return key;
}

}  // namespace halo::transport::internal::ucx
