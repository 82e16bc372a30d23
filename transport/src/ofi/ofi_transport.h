// The libfabric backend: one FI_EP_RDM endpoint per Transport over `tcp;ofi_rxm` or `shm` (or
// any provider with messages and RMA), one completion queue for everything, halo's own framing
// (ofi_frame.h) to tell connections apart. See docs/transport.md, "libfabric backend".
//
// The fabric endpoint is opened by the first listen() or connect(): its source address must
// be the one peers reach (the listen address, or the local address that routes to the first
// peer), and on an RDM endpoint it is fixed at creation.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "ofi/ofi_domain.h"
#include "ofi/ofi_frame.h"
#include "ofi/ofi_operation.h"
#include "ofi/ofi_shm_peer_watch.h"
#include "transport_base.h"

namespace halo::transport::internal::ofi {

class OfiEndpoint;

// A pre-posted receive buffer; every message arrives in one.
struct ReceiveBuffer {
  OfiContext context;
  std::byte* data = nullptr;
  void* desc = nullptr;
};

class OfiTransport final : public TransportBase {
 public:
  static StatusOr<std::unique_ptr<OfiTransport>> create(const TransportConfig& config,
                                                        std::string cluster_secret);
  ~OfiTransport() override;

  std::string_view backend_name() const override { return "ofi"; }
  StatusOr<std::unique_ptr<MemoryRegion>> register_memory(void* data, size_t size) override;

  // Frames dropped because they were malformed or named no known connection (for tests).
  uint64_t frames_dropped() const { return frames_dropped_.load(); }
  // The raw fabric address of this transport's endpoint (empty before listen/connect).
  std::string raw_address() const;
  const OfiDomain& domain() const { return *domain_; }

 protected:
  StatusOr<std::string> do_listen(const std::string& host, uint16_t port) override;
  void do_connect(const std::string& address,
                  std::function<void(StatusOr<std::shared_ptr<EndpointBase>>)> done) override;
  unsigned progress_backend() override;
  int backend_event_fd() override { return wait_fd_; }
  bool arm_backend() override;

 private:
  friend class OfiEndpoint;

  OfiTransport(const TransportConfig& config, std::string cluster_secret,
               std::shared_ptr<OfiDomain> domain, fid_cq* cq, fid_av* av, int wait_fd);

  // The fabric endpoint, bound to `source` (a raw address; empty: the provider's default).
  Status open_endpoint(const std::string& source);
  Status post_receive(ReceiveBuffer& buffer);

  // Completions.
  void dispatch(const fi_cq_data_entry& entry);
  void dispatch_error(const fi_cq_err_entry& entry);
  void handle_receive(ReceiveBuffer& buffer, size_t length);
  void handle_hello(const ParsedFrame& frame);
  // A frame for `ep` from its peer: taken now if it is the next in sequence, else kept.
  void take_in_order(OfiEndpoint& ep, const ParsedFrame& frame, std::span<const std::byte> bytes);
  void take_frame(OfiEndpoint& ep, const ParsedFrame& frame);
  void handle_rendezvous(OfiEndpoint& ep, const ParsedFrame& frame);
  void handle_rendezvous_done(OfiEndpoint& ep, const ParsedFrame& frame);
  void complete_context(OfiContext& context, const Status& status);
  void finish_operation(OfiOperation* op);
  void drop_frame(std::string_view why);

  // Posting; each returns 0, -FI_EAGAIN, or another libfabric error.
  int post_send(OfiOperation& op);
  int post_rma_chunk(OfiOperation& op);
  int post_flush_read(OfiOperation& op, uint64_t target, uint64_t key);

  // Operations.
  OfiOperation* acquire(OpKind kind, OfiEndpoint& ep);
  void release(OfiOperation* op);
  Status prepare_send_buffer(OfiOperation& op, size_t size);

  // Address vector.
  StatusOr<AvEntry*> acquire_av(const std::string& raw);
  void release_av(AvEntry* av, bool force);
  void maybe_remove_av(AvEntry* av, bool force);

  uint64_t new_conn_key();
  void retry_later(OfiEndpoint& ep);
  unsigned retry_blocked();

  // Calls into user code (completions, failure handling) are deferred to safe points so that
  // nothing runs while a queue is being walked.
  void defer(Completion done, Status status);
  void defer_failure(OfiEndpoint& ep, Status why);
  void run_deferred();

  // Forwarders to TransportBase's protected interface for OfiEndpoint.
  void deliver(OfiEndpoint& ep, uint16_t am_id, std::span<const std::byte> header,
               std::span<const std::byte> payload);

  std::shared_ptr<OfiDomain> domain_;
  fid_cq* cq_ = nullptr;
  fid_av* av_ = nullptr;
  fid_ep* ep_ = nullptr;
  int wait_fd_ = -1;

  // Limits derived from the provider and the configuration.
  size_t receive_buffer_bytes_ = 0;  // Also the largest eager frame.
  size_t inject_bytes_ = 0;
  size_t iov_limit_ = 1;
  uint64_t chunk_bytes_ = 0;

  mutable std::mutex address_mu_;
  std::string self_raw_;  // Our raw fabric address (fi_getname); progress thread writes once.

  std::vector<ReceiveBuffer> receive_buffers_;
  std::unique_ptr<std::byte[]> receive_memory_;
  fid_mr* receive_mr_ = nullptr;
  std::vector<ReceiveBuffer*> repost_;  // Receive buffers whose fi_recv hit FI_EAGAIN.

  std::unique_ptr<std::byte[]> flush_scratch_;  // Target of flush reads (a few bytes).
  fid_mr* flush_mr_ = nullptr;
  void* flush_desc_ = nullptr;

  std::vector<std::unique_ptr<OfiOperation>> operations_;  // Owns every operation.
  std::vector<OfiOperation*> free_operations_;
  uint64_t operations_posted_ = 0;  // Posted contexts not yet completed.

  std::unordered_map<std::string, std::unique_ptr<AvEntry>> av_by_raw_;
  std::vector<std::unique_ptr<AvEntry>> retired_av_;  // Removed; waiting for operations.

  std::unordered_map<uint64_t, OfiEndpoint*> connections_;  // By this side's key.
  std::mt19937_64 key_random_;

  std::vector<std::shared_ptr<OfiEndpoint>> retry_;  // Endpoints blocked on FI_EAGAIN.

  struct Deferred {
    Completion done;
    Status status;
    std::shared_ptr<OfiEndpoint> failed;
  };
  std::vector<Deferred> deferred_;
  std::vector<Deferred> running_;
  bool running_deferred_ = false;

  // shm only: frees a peer region's lock its owner died holding (see ofi_shm_peer_watch.h).
  std::unique_ptr<ShmPeerWatch> shm_peer_watch_;

  bool shutting_down_ = false;  // After stop(): drop whatever arrives.
  std::atomic<uint64_t> frames_dropped_{0};
};

}  // namespace halo::transport::internal::ofi
