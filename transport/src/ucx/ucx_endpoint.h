// One connection of the UCX backend: a UCX endpoint (ucp_ep) to the peer's worker, the token
// that names this connection in the peer's messages, and the state of put/get over active
// messages in both directions. Everything here runs on the progress thread.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "transport_base.h"
#include "ucx/ucx_bootstrap.h"
#include "ucx/ucx_operation.h"
#include "ucx/ucx_wire.h"

namespace halo::transport::internal::ucx {

class UcxMemoryRegion;
class UcxTransport;

class UcxEndpoint final : public EndpointBase {
 public:
  // `local_token` names this endpoint in the messages the peer sends.
  UcxEndpoint(UcxTransport& transport, bool outbound, std::string peer_address,
              uint64_t local_token);
  ~UcxEndpoint() override;

  uint64_t local_token() const { return local_token_; }
  ucp_ep_h ucp_endpoint() const { return ep_; }
  BootstrapSocket* socket() const { return socket_.get(); }
  bool closed() const { return closed_; }

  // Connection set-up. The socket carries the address exchange, then signals liveness.
  void set_socket(std::unique_ptr<BootstrapSocket> socket) { socket_ = std::move(socket); }
  // The UCX endpoint exists: messages queued during set-up go out now. `shared_memory`: it
  // was created without peer-failure handling (UCX then cancels nothing on a forced close).
  void attach(ucp_ep_h ep, uint64_t remote_token, bool shared_memory);
  // UCX reported the endpoint failed: its close must be forced.
  void mark_failed() {
    ucp_failed_ = true;
    peer_gone_ = true;
  }
  // The peer can no longer write here: its process closed the set-up connection, or it sent
  // its close notice (nothing it sent earlier can arrive after that).
  void mark_peer_gone() { peer_gone_ = true; }
  bool ucp_close_started() const { return ucp_close_started_; }
  void set_ucp_close_started() { ucp_close_started_ = true; }

  // A message for this endpoint arrived (from the transport's active-message callback).
  ucs_status_t on_message(const WireHeader& wire, std::span<const std::byte> header, void* data,
                          size_t length, bool rendezvous);
  // A rendezvous receive started by on_message finished.
  void on_receive_done(UcxOp* op, ucs_status_t status);
  // A send of this endpoint's get request failed before the peer could answer it.
  void fail_get(uint64_t request_id, const Status& why);
  // ucp_ep_close_nbx finished: UCX no longer uses the endpoint, its keys can go.
  void on_close_done();
  // The set-up connection closes: the peer learns at once that this side is gone.
  void drop_socket() { socket_.reset(); }

  // Operations of this endpoint that UCX holds (sends, puts, gets, flushes, receives).
  UcxOp* new_op(UcxOp::Kind kind);
  void in_flight(UcxOp* op);
  void landed(UcxOp* op);  // UCX completed `op`: off the list.
  void unlink(UcxOp* op);
  // Why an operation UCX ended with `status` failed, in terms the caller can act on: the
  // endpoint's own failure once it is down.
  Status failure(ucs_status_t status, std::string_view what) const;

 protected:
  void do_send_am(uint16_t am_id, std::span<const std::byte> header,
                  std::span<const std::byte> payload, Completion done) override;
  void do_put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
              size_t remote_offset, size_t length, Completion done) override;
  void do_get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
              size_t remote_offset, size_t length, Completion done) override;
  void do_flush(Completion done) override;
  void do_close(bool force) override;

 private:
  enum class Mechanism : uint8_t { kUndecided, kRma, kAm };

  struct QueuedSend {  // A message sent before the UCX endpoint existed (handshake only).
    uint16_t am_id;
    std::vector<std::byte> header;
    std::span<const std::byte> payload;
    Completion done;
  };
  struct PendingGet {  // A get over active messages, waiting for the peer's reply.
    std::byte* destination;
    uint64_t length;
    Completion done;
    bool landing = false;  // The reply's payload is being received into `destination`.
  };
  struct FlushWaiter {
    uint64_t seq;  // Done once the peer confirms every put up to here.
    Completion done;
  };

  // Sends one message; `done` may be empty for replies nobody waits for. `memh` registers the
  // payload (or null). `request_id` is kept with the operation (get requests).
  void send_message(uint16_t am_id, std::span<const std::byte> header,
                    std::span<const std::byte> payload, ucp_mem_h memh, Completion done,
                    UcxOp::Kind kind = UcxOp::Kind::kSend, uint64_t request_id = 0);
  Mechanism mechanism();
  StatusOr<ucp_rkey_h> remote_key(const std::string& rkey);
  const UcxMemoryRegion* local_region(const MemoryRegion& region, Completion& done);

  // The caller's messages and handshake messages.
  ucs_status_t on_user_message(const WireHeader& wire, std::span<const std::byte> header,
                               void* data, size_t length, bool rendezvous);
  void deliver(uint16_t am_id, uint16_t flags, std::span<const std::byte> header,
               std::span<const std::byte> payload);
  // Put and get over active messages, target side then initiator side.
  ucs_status_t on_put(std::span<const std::byte> header, void* data, size_t length,
                      bool rendezvous);
  void put_landed(uint64_t seq, const Status& status);
  void on_flush_request(std::span<const std::byte> header);
  void answer_flush(uint64_t seq);
  void on_get_request(std::span<const std::byte> header);
  void reply_get(uint64_t request_id, const Status& status, std::span<const std::byte> bytes,
                 ucp_mem_h memh);
  void on_flush_reply(std::span<const std::byte> header);
  ucs_status_t on_get_reply(std::span<const std::byte> header, void* data, size_t length,
                            bool rendezvous);
  void protocol_error(const std::string& what);

  UcxTransport& transport_;
  const uint64_t local_token_;
  uint64_t remote_token_ = 0;
  ucp_ep_h ep_ = nullptr;
  std::unique_ptr<BootstrapSocket> socket_;
  bool ucp_failed_ = false;
  bool peer_gone_ = false;
  bool ucp_close_started_ = false;
  bool close_deferred_ = false;
  bool shared_memory_ = false;
  bool closed_ = false;
  Status down_reason_;          // Set by do_close.
  UcxOp* in_flight_ = nullptr;  // Head of the list of operations UCX holds.
  std::vector<QueuedSend> queued_;
  Mechanism mechanism_ = Mechanism::kUndecided;
  // Remote keys unpacked on this endpoint, by their packed bytes; destroyed after the close.
  std::unordered_map<std::string, ucp_rkey_h> rkeys_;

  // Initiator side of put/get over active messages.
  uint64_t next_put_seq_ = 1;
  uint64_t flush_requested_through_ = 0;
  uint64_t confirmed_through_ = 0;
  std::deque<FlushWaiter> flush_waiters_;
  uint64_t next_get_id_ = 1;
  std::unordered_map<uint64_t, PendingGet> pending_gets_;

  // Target side: which of the peer's puts have landed. Every seq below landed_base_ has;
  // landed_[i] tells for landed_base_ + i.
  uint64_t landed_base_ = 1;
  std::deque<bool> landed_;
  Status first_put_error_;  // Reported (then cleared) by the next flush reply.
  std::deque<uint64_t> flush_requests_;
};

}  // namespace halo::transport::internal::ucx
