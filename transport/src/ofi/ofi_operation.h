// What the libfabric backend hands libfabric as the context of each posted operation, and the
// operations themselves.
//
// Every posted call (fi_recv, fi_sendv, fi_write, fi_read) carries an OfiContext. Its first
// member is the struct fi_context2 that providers asking for FI_CONTEXT/FI_CONTEXT2 use as
// scratch space, so the context is valid until the operation's completion is read.
//
// An OfiOperation is one unit of work for one endpoint: an eager send, a rendezvous send
// (its descriptor is sent, then the peer reads the payload and answers), a put or get (split
// into chunks, at most kWindow in flight), the read of a rendezvous payload, or a flush.
// Operations are pooled by the transport and keep their send buffer between uses.
//
// Orphans: when an endpoint closes, its operations that libfabric still holds are orphaned
// (`ep` becomes null). Their buffers stay alive until libfabric reports them complete; then
// they are returned to the pool without running any callback (the base has completed them).
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "halo/transport/transport.h"

namespace halo::transport::internal::ofi {

class OfiEndpoint;
struct InboundMessage;

enum class ContextKind : uint8_t { kReceive, kOperation };

struct OfiContext {
  fi_context2 fi{};  // Must stay first: libfabric's scratch space for the operation.
  ContextKind kind = ContextKind::kOperation;
  bool busy = false;      // Posted; its completion not yet read.
  void* owner = nullptr;  // ReceiveBuffer* or OfiOperation*.
  uint64_t bytes = 0;     // Bytes this chunk moves (RMA).
};
static_assert(std::is_standard_layout_v<OfiContext>);

// The address-vector entry of one peer address, shared by every endpoint and operation that
// uses it; removed from the address vector (fi_av_remove) when the last one lets go.
struct AvEntry {
  std::string raw;
  fi_addr_t addr = FI_ADDR_UNSPEC;
  uint32_t endpoints = 0;
  uint32_t operations = 0;  // Posted operations not yet complete.
  bool removed = false;     // fi_av_remove done; kept only until `operations` drains.
};

enum class OpKind : uint8_t { kSend, kRendezvousSend, kPut, kGet, kRendezvousRead, kFlush };

struct OfiOperation {
  static constexpr int kWindow = 8;

  OpKind kind = OpKind::kSend;
  OfiEndpoint* ep = nullptr;  // Null once orphaned.
  AvEntry* av = nullptr;
  OfiOperation* prev = nullptr;  // In the endpoint's list of live operations.
  OfiOperation* next = nullptr;
  Completion done;        // Null for internal operations.
  Status status;          // The first error.
  uint32_t inflight = 0;  // Posted contexts not yet completed.
  bool queued = false;    // Waiting in one of the endpoint's queues.

  // Sends: frame, extra, AM header (and the payload when copied) in `buffer`; a payload that
  // is not copied goes as a second iovec straight from the caller's memory.
  std::vector<std::byte> buffer;
  fid_mr* buffer_mr = nullptr;  // FI_MR_LOCAL providers: registration of `buffer`.
  const std::byte* buffer_mr_base = nullptr;
  size_t buffer_mr_size = 0;
  size_t frame_bytes = 0;  // Bytes of `buffer` to send.
  std::span<const std::byte> payload;

  // Rendezvous send: waiting for the peer's RendezvousDone; the payload's registration.
  uint64_t rendezvous_id = 0;
  bool awaiting_done = false;
  fid_mr* payload_mr = nullptr;

  // RMA (put, get, rendezvous read, flush).
  std::byte* local = nullptr;
  void* local_desc = nullptr;
  uint64_t remote_target = 0;  // fi_write/fi_read address of the first byte.
  uint64_t key = 0;
  uint64_t length = 0;
  uint64_t issued = 0;   // Bytes posted so far.
  bool started = false;  // At least one chunk posted (puts count towards flush).

  // Rendezvous read: the buffer it fills, handed to `slot` when complete.
  std::unique_ptr<std::byte[]> owned;
  fid_mr* owned_mr = nullptr;
  InboundMessage* slot = nullptr;

  OfiContext contexts[kWindow];
};

// A message held back so active messages from one peer reach handlers in the order sent:
// while a rendezvous payload is being read, later messages from that peer wait behind it.
struct InboundMessage {
  uint16_t am_id = 0;
  std::vector<std::byte> header;
  std::unique_ptr<std::byte[]> payload;
  uint64_t payload_len = 0;
  bool ready = false;
};

}  // namespace halo::transport::internal::ofi
