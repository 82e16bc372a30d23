// The UCX (UCP) backend of halo's transport.
//
// One UCP context and one worker per Transport, driven only by the progress thread
// (UCS_THREAD_MODE_SINGLE). Peers find each other through a TCP listener on host:port that
// exchanges UCX worker addresses (ucx_bootstrap.h explains why not ucp_listener), then talk
// through UCX endpoints created from those addresses:
//   - every halo message is one UCX active message; the UCX header names the receiving
//     endpoint by a token and carries halo's 16-bit id (ucx_wire.h);
//   - put/get use UCX's one-sided operations where they are native (shared memory, RDMA) and
//     active messages landing straight in the target's registered region where UCX only
//     emulates them (TCP): rma_mechanism, docs/transport.md;
//   - a peer on the same host is reached over shared memory, where UCX has no peer-failure
//     detection: the idle TCP connection from set-up and the keep-alives of TransportBase
//     notice its death; other peers use UCP_ERR_HANDLING_MODE_PEER.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "transport_base.h"
#include "ucx/ucx_bootstrap.h"
#include "ucx/ucx_memory_region.h"
#include "ucx/ucx_operation.h"

namespace halo::transport::internal::ucx {

class UcxEndpoint;

class UcxTransport final : public TransportBase {
 public:
  static StatusOr<std::unique_ptr<Transport>> create(const TransportConfig& config,
                                                     std::string cluster_secret);
  ~UcxTransport() override;

  std::string_view backend_name() const override { return "ucx"; }
  StatusOr<std::unique_ptr<MemoryRegion>> register_memory(void* data, size_t size) override;

  // ---- For UcxEndpoint and UcxMemoryRegion; progress thread only. ----
  ucp_worker_h worker() const { return worker_; }
  // Largest UCX header of an active message (WireHeader included).
  size_t max_ucp_header() const { return max_ucp_header_; }
  UcxOp* acquire_op(UcxOp::Kind kind) { return ops_.acquire(this, kind); }
  void release_op(UcxOp* op) { ops_.release(op); }
  // Completes `op` now if UCX finished (or refused) it at once, else when its callback runs.
  void settle(UcxOp* op, ucs_status_ptr_t request, std::string_view what, const std::string& peer);
  // Runs `done` from the progress loop, soon: operations that complete at once must not run
  // their completion inside the call that issued them (re-issuing from it would recurse).
  void complete(Completion done, Status status);
  static void send_callback(void* request, ucs_status_t status, void* user_data);
  static void receive_callback(void* request, ucs_status_t status, size_t length, void* user_data);

  // A registered region of this transport containing [addr, addr + length) whose token is
  // `token`, for put/get over active messages: never touch peer-named memory otherwise.
  struct Region {
    std::byte* base = nullptr;
    size_t size = 0;
    ucp_mem_h memh = nullptr;
  };
  const Region* find_region(uint64_t token, uint64_t addr, uint64_t length) const;
  void unregister_region(uint64_t token);

  // Put and get use UCX's one-sided operations on `ep` (else active messages).
  bool native_rma(ucp_ep_h ep) const;

  // Closes `ep` now, or right after the current ucp_worker_progress returns when called from
  // inside a UCX callback (UCX must not destroy an endpoint under its own feet).
  void close_ucp_endpoint(const std::shared_ptr<UcxEndpoint>& endpoint, bool force);
  // Forces `endpoint`'s UCX close later: at UCX's error report on it, when its last operation
  // completes, or at a deadline, whichever comes first.
  void defer_close(const std::shared_ptr<UcxEndpoint>& endpoint);
  // The endpoint is going away: forget its token, UCX endpoint and socket.
  void forget(UcxEndpoint& endpoint);
  void watch_socket(UcxEndpoint& endpoint);

  // TransportBase's backend calls, for the endpoints.
  void deliver(UcxEndpoint& ep, uint16_t am_id, std::span<const std::byte> header,
               std::span<const std::byte> payload);
  void heard_from(UcxEndpoint& ep);
  void refuse(UcxEndpoint& ep, const Status& why);
  void fail(UcxEndpoint& ep, const Status& why);

 protected:
  StatusOr<std::string> do_listen(const std::string& host, uint16_t port) override;
  void do_connect(const std::string& address,
                  std::function<void(StatusOr<std::shared_ptr<EndpointBase>>)> done) override;
  unsigned progress_backend() override;
  int backend_event_fd() override { return epoll_fd_; }
  bool arm_backend() override;

 private:
  struct PendingInbound {  // An accepted connection that has not sent its hello yet.
    std::unique_ptr<BootstrapSocket> socket;
    Clock::time_point deadline;
  };

  UcxTransport(const TransportConfig& config, std::string cluster_secret);
  Status init();
  uint64_t new_token();

  static ucs_status_t am_callback(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param);
  static void ep_error_callback(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void close_callback(void* request, ucs_status_t status, void* user_data);

  unsigned worker_progress();
  unsigned run_completions();
  void run_deferred();
  unsigned poll_sockets();
  void accept_connections();
  void on_inbound_ready(int fd, uint32_t events);
  void on_endpoint_socket_ready(UcxEndpoint& ep, uint32_t events);
  // Drops a connection that failed set-up, counted as a rejected peer.
  void reject_inbound(std::unique_ptr<BootstrapSocket> socket, const Status& why);
  void peer_connection_lost(UcxEndpoint& ep, const Status& why);
  // The peer's hello: creates the UCX endpoint to its worker address.
  struct WorkerConnection {
    ucp_ep_h ep;
    bool shared_memory;  // Created without peer-failure handling.
  };
  StatusOr<WorkerConnection> connect_worker(const BootstrapHello& peer,
                                            const std::string& peer_name);
  std::string make_hello(uint64_t token) const;
  StatusOr<BootstrapHello> verify_hello(const BootstrapHello& hello) const;
  void unwatch(int fd);
  void close_overdue(bool all);

  const std::string secret_;  // Signs the set-up hellos (TransportBase authenticates later).
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::string worker_address_;
  size_t max_ucp_header_ = 0;
  bool has_shared_memory_ = false;  // posix or sysv among the context's transports.
  int epoll_fd_ = -1;               // The worker's event fd and every socket.
  int worker_fd_ = -1;
  int listen_fd_ = -1;

  UcxOpPool ops_;
  std::vector<std::pair<Completion, Status>> completions_;  // See complete().
  bool in_worker_progress_ = false;
  std::vector<std::function<void()>> deferred_;
  bool check_sockets_ = false;
  unsigned iterations_since_socket_poll_ = 0;

  std::unordered_map<uint64_t, UcxEndpoint*> by_token_;
  uint64_t last_token_ = 0;  // Tokens are never 0.
  UcxEndpoint* last_endpoint_ = nullptr;
  std::unordered_map<ucp_ep_h, UcxEndpoint*> by_ucp_ep_;
  std::unordered_map<int, UcxEndpoint*> by_socket_;
  std::unordered_map<int, PendingInbound> inbound_;
  // Endpoints closed here whose forced UCX close waits (defer_close).
  struct LameDuck {
    std::shared_ptr<UcxEndpoint> endpoint;
    Clock::time_point deadline;
  };
  std::unordered_map<UcxEndpoint*, LameDuck> lame_ducks_;
  // Endpoints whose ucp_ep_close_nbx is in flight.
  std::unordered_map<UcxEndpoint*, std::shared_ptr<UcxEndpoint>> closing_;

  std::shared_ptr<UcxRegionLink> region_link_ = std::make_shared<UcxRegionLink>();
  std::unordered_map<uint64_t, Region> regions_;
};

}  // namespace halo::transport::internal::ucx
