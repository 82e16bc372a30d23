// One connection of the libfabric backend. FI_EP_RDM has no connections, so an OfiEndpoint is
// halo's own: a peer address in the address vector, this side's connection key (the peer
// writes it into every frame it sends us) and the peer's key (written into every frame we
// send), and two queues of work not yet accepted by libfabric.
//
// Messages (sends, rendezvous descriptors, acknowledgements) and RMA (put, get, rendezvous
// reads, flush) queue separately, so a long put never holds back keep-alives. Each queue is
// FIFO: active messages keep their order, and a flush starts only after every put queued
// before it has completed.
//
// Everything here runs on the transport's progress thread.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ofi/ofi_operation.h"
#include "transport_base.h"

namespace halo::transport::internal::ofi {

class OfiTransport;

class OfiEndpoint final : public EndpointBase {
 public:
  OfiEndpoint(OfiTransport& transport, bool outbound, std::string peer_address, AvEntry* av,
              uint64_t conn_key, uint64_t peer_conn_key);
  ~OfiEndpoint() override;

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
  friend class OfiTransport;

  // Sends one frame: inline (fi_inject) when small and nothing is queued, else queued.
  void send_frame(uint8_t kind, uint16_t am_id, std::span<const std::byte> extra,
                  std::span<const std::byte> header, std::span<const std::byte> payload,
                  Completion done);
  void send_rendezvous(uint16_t am_id, std::span<const std::byte> header,
                       std::span<const std::byte> payload, Completion done);
  void start_rma(OpKind kind, const MemoryRegion& local, size_t local_offset,
                 const RemoteRegion& remote, size_t remote_offset, size_t length, Completion done);

  // Post queued work until libfabric pushes back (FI_EAGAIN: retried from progress) or a
  // window fills (resumed when a chunk completes).
  void pump();
  void pump_sends();
  void pump_rma();

  void link(OfiOperation* op);
  void unlink(OfiOperation* op);

  // Receiving side.
  void hold_or_deliver(uint16_t am_id, std::span<const std::byte> header,
                       std::span<const std::byte> payload);
  void deliver_ready();

  OfiTransport& ofi_;
  AvEntry* av_;
  const uint64_t conn_key_;
  uint64_t peer_conn_key_;  // 0 until the peer's first frame arrives (outbound).
  bool closed_ = false;

  OfiOperation* live_ = nullptr;  // Every operation not yet finished, queued or posted.
  std::deque<OfiOperation*> send_queue_;
  std::deque<OfiOperation*> rma_queue_;
  bool awaiting_retry_ = false;

  uint32_t puts_in_flight_ = 0;
  bool wrote_since_flush_ = false;
  uint64_t last_write_target_ = 0;  // A byte written by the latest put, for the flush read.
  uint64_t last_write_key_ = 0;

  uint64_t next_send_seq_ = 1;
  uint64_t next_receive_seq_ = 0;  // 0 until the peer's first frame.
  // Frames that overtook an earlier one, by sequence number, until their turn.
  std::map<uint64_t, std::vector<std::byte>> early_frames_;

  uint64_t next_rendezvous_id_ = 1;
  std::unordered_map<uint64_t, OfiOperation*> rendezvous_sends_;
  std::deque<InboundMessage> inbound_;
};

}  // namespace halo::transport::internal::ofi
