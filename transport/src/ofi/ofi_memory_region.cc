#include "ofi/ofi_memory_region.h"

#include <cstring>

namespace halo::transport::internal::ofi {
namespace {

constexpr size_t kRkeyBytes = 16;
constexpr char kRkeyMagic = 'F';
constexpr char kRkeyVersion = 1;
constexpr uint8_t kRkeyVirtAddr = 1;

}  // namespace

std::string pack_rkey(uint64_t key, bool virt_addr) {
  std::string rkey(kRkeyBytes, '\0');
  rkey[0] = kRkeyMagic;
  rkey[1] = kRkeyVersion;
  rkey[2] = static_cast<char>(virt_addr ? kRkeyVirtAddr : 0);
  std::memcpy(rkey.data() + 8, &key, sizeof(key));
  return rkey;
}

StatusOr<RemoteKey> unpack_rkey(const std::string& rkey) {
  if (rkey.size() != kRkeyBytes || rkey[0] != kRkeyMagic || rkey[1] != kRkeyVersion ||
      (static_cast<uint8_t>(rkey[2]) & ~kRkeyVirtAddr) != 0) {
    return invalid_argument_error(
        str_cat("remote key of ", rkey.size(),
                " bytes is not a libfabric-backend key; was the region registered by a peer "
                "using HALO_TRANSPORT=ofi with the same provider?"));
  }
  RemoteKey out;
  out.virt_addr = (static_cast<uint8_t>(rkey[2]) & kRkeyVirtAddr) != 0;
  std::memcpy(&out.key, rkey.data() + 8, sizeof(out.key));
  return out;
}

OfiMemoryRegion::OfiMemoryRegion(std::shared_ptr<OfiDomain> domain, std::byte* data, size_t size,
                                 fid_mr* mr)
    : MemoryRegion(data, size), domain_(std::move(domain)), mr_(mr) {
  if (mr_ != nullptr) {
    desc_ = fi_mr_desc(mr_);
    key_ = fi_mr_key(mr_);
  }
  remote_.addr = reinterpret_cast<uint64_t>(data);
  remote_.length = size;
  remote_.rkey = pack_rkey(key_, domain_->virt_addr());
  domain_->count_registered(static_cast<int64_t>(size));
}

OfiMemoryRegion::~OfiMemoryRegion() {
  domain_->close_mr(mr_);
  domain_->count_registered(-static_cast<int64_t>(size()));
}

}  // namespace halo::transport::internal::ofi
