// The libfabric fabric and domain of one OfiTransport: which provider was chosen, what it
// requires of memory registration (mr_mode), and the fids every other object hangs off.
//
// Shared (shared_ptr) between the transport and its memory regions, so a region may be
// destroyed after its transport: the domain and fabric close when the last holder lets go.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "halo/transport/transport.h"

namespace halo::transport::internal::ofi {

// Formats a libfabric return code: "fi_write: Connection refused (-111)".
std::string fi_error_text(std::string_view call, int ret);
// An error Status for a failed libfabric call, with a code chosen from the error.
Status fi_status(std::string_view call, int ret);

class OfiDomain : public std::enable_shared_from_this<OfiDomain> {
 public:
  // Chooses the provider named by config.ofi_provider ("tcp" means "tcp;ofi_rxm"), FI_EP_RDM
  // with messages and RMA, and opens its fabric and domain.
  static StatusOr<std::shared_ptr<OfiDomain>> open(const TransportConfig& config);
  ~OfiDomain();
  OfiDomain(const OfiDomain&) = delete;
  OfiDomain& operator=(const OfiDomain&) = delete;

  const fi_info& info() const { return *info_; }
  fid_fabric* fabric() const { return fabric_; }
  fid_domain* domain() const { return domain_; }
  // "tcp;ofi_rxm", "shm", ...
  const std::string& provider() const { return provider_; }
  // Address scheme: "ofi+tcp", "ofi+shm", "ofi+<first provider name>".
  const std::string& scheme() const { return scheme_; }

  uint64_t mr_mode() const { return info_->domain_attr->mr_mode; }
  // Local buffers of sends, receives and RMA need a registered descriptor (FI_MR_LOCAL).
  bool needs_local_desc() const { return (mr_mode() & FI_MR_LOCAL) != 0; }
  // RMA targets are virtual addresses (FI_MR_VIRT_ADDR) rather than offsets into the region.
  bool virt_addr() const { return (mr_mode() & FI_MR_VIRT_ADDR) != 0; }
  bool prov_key() const { return (mr_mode() & FI_MR_PROV_KEY) != 0; }
  bool mr_endpoint() const { return (mr_mode() & FI_MR_ENDPOINT) != 0; }
  // The domain tolerates calls from several threads at once (FI_THREAD_SAFE).
  bool thread_safe() const { return info_->domain_attr->threading == FI_THREAD_SAFE; }

  // Registers [data, data + size) with every access halo uses, binding it to `ep` when the
  // provider wants FI_MR_ENDPOINT. Caller: the progress thread (or any, if thread_safe()).
  StatusOr<fid_mr*> register_buffer(void* data, size_t size, fid_ep* ep);

  // Deregistration, from any thread. With a live transport whose domain is not thread-safe,
  // the close runs on its progress thread (this call waits); otherwise right here.
  void close_mr(fid_mr* mr);

  // The transport attaches itself once its progress thread runs, and detaches once that
  // thread has stopped for good, so close_mr knows where provider calls may run.
  using ProgressRunner = std::function<void(std::function<void()>)>;
  using OnProgressThread = std::function<bool()>;
  // `registered_bytes` is the transport's counter, kept up to date while attached.
  void attach(ProgressRunner run, OnProgressThread on_thread,
              std::atomic<uint64_t>* registered_bytes);
  void detach();
  void count_registered(int64_t delta);

 private:
  OfiDomain() = default;
  void close_doomed_locked();

  fi_info* info_ = nullptr;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  std::string provider_;
  std::string scheme_;
  std::mutex key_mu_;
  uint64_t next_key_ = 1;

  std::mutex mu_;
  std::condition_variable closed_cv_;
  ProgressRunner run_;
  OnProgressThread on_thread_;
  std::vector<fid_mr*> doomed_;  // Handed to the progress thread to close.
  std::atomic<uint64_t>* registered_bytes_ = nullptr;
};

}  // namespace halo::transport::internal::ofi
