#include "ucx/ucx_endpoint.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <new>

#include "ucx/ucx_memory_region.h"
#include "ucx/ucx_status.h"
#include "ucx/ucx_transport.h"

namespace halo::transport::internal::ucx {
namespace {

// Messages whose UCX header fits this, with payloads up to kImmediatePayloadBytes, are first
// tried without an operation context (see send_message).
constexpr size_t kStackHeaderBytes = 128;
constexpr size_t kImmediatePayloadBytes = 1024;
// Put sequence numbers a peer may run ahead of the oldest put not yet landed here.
constexpr uint64_t kMaxPutWindow = 1 << 20;
// Flush requests a peer may have waiting here.
constexpr size_t kMaxFlushRequests = 4096;

template <typename T>
std::span<const std::byte> record_bytes(const T& record) {
  return std::as_bytes(std::span(&record, 1));
}

// A status code from the wire, kept only when it is one halo knows.
StatusCode wire_code(uint64_t code) {
  return code >= 1 && code <= static_cast<uint64_t>(StatusCode::kUnauthenticated)
             ? static_cast<StatusCode>(code)
             : StatusCode::kUnknown;
}

std::string_view rest_as_text(std::span<const std::byte> bytes, size_t offset) {
  if (bytes.size() <= offset) return {};
  return {reinterpret_cast<const char*>(bytes.data() + offset), bytes.size() - offset};
}

void append_text(std::vector<std::byte>& out, std::string_view text) {
  const auto* bytes = reinterpret_cast<const std::byte*>(text.data());
  out.insert(out.end(), bytes, bytes + text.size());
}

ucp_request_param_t request_param(UcxOp* op, ucp_mem_h memh) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &UcxTransport::send_callback;
  param.user_data = op;
  if (memh != nullptr) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    param.memh = memh;
  }
  return param;
}

ucp_request_param_t receive_param(UcxOp* op) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.recv_am = &UcxTransport::receive_callback;
  param.user_data = op;
  return param;
}

}  // namespace

UcxEndpoint::UcxEndpoint(UcxTransport& transport, bool outbound, std::string peer_address,
                         uint64_t local_token)
    : EndpointBase(transport, outbound, std::move(peer_address)),
      transport_(transport),
      local_token_(local_token) {}

// UCX resources go in do_close / on_close_done, on the progress thread; the last reference
// may be dropped on any thread, after the transport is gone.
UcxEndpoint::~UcxEndpoint() = default;

void UcxEndpoint::attach(ucp_ep_h ep, uint64_t remote_token, bool shared_memory) {
  ep_ = ep;
  remote_token_ = remote_token;
  shared_memory_ = shared_memory;
  std::vector<QueuedSend> queued;
  queued.swap(queued_);
  for (QueuedSend& send : queued) {
    send_message(send.am_id, send.header, send.payload, nullptr, std::move(send.done));
  }
}

// ---------------------------------------------------------------------------------------------
// Sending

void UcxEndpoint::do_send_am(uint16_t am_id, std::span<const std::byte> header,
                             std::span<const std::byte> payload, Completion done) {
  if (ep_ == nullptr && !closed_) {
    // Still exchanging worker addresses: only the handshake is sent this early.
    queued_.push_back(QueuedSend{am_id, {header.begin(), header.end()}, payload, std::move(done)});
    return;
  }
  send_message(am_id, header, payload, nullptr, std::move(done));
}

void UcxEndpoint::send_message(uint16_t am_id, std::span<const std::byte> header,
                               std::span<const std::byte> payload, ucp_mem_h memh, Completion done,
                               UcxOp::Kind kind, uint64_t request_id) {
  if (ep_ == nullptr || closed_) {
    transport_.complete(std::move(done),
                        unavailable_error(str_cat("connection to ", peer_address(), " is closed")));
    return;
  }
  if (kWireHeaderBytes + header.size() <= kStackHeaderBytes &&
      payload.size() <= kImmediatePayloadBytes) {
    // Small messages usually leave at once (copied into the transport): try that with the
    // header on the stack, which UCX may use only during the call, and no operation context.
    std::array<std::byte, kStackHeaderBytes> stack_header;
    const WireHeader wire{remote_token_, am_id, 0};
    std::memcpy(stack_header.data(), &wire.token, 8);
    std::memcpy(stack_header.data() + 8, &wire.am_id, 2);
    std::memcpy(stack_header.data() + 10, &wire.flags, 2);
    if (!header.empty()) {
      std::memcpy(stack_header.data() + kWireHeaderBytes, header.data(), header.size());
    }
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL;
    const ucs_status_ptr_t sent =
        ucp_am_send_nbx(ep_, kUcpAmId, stack_header.data(), kWireHeaderBytes + header.size(),
                        payload.data(), payload.size(), &param);
    if (sent == nullptr) {
      transport_.complete(std::move(done), Status());
      return;
    }
    if (UCS_PTR_IS_PTR(sent)) ucp_request_free(sent);  // Not expected with FORCE_IMM_CMPL.
    if (UCS_PTR_IS_ERR(sent) && UCS_PTR_STATUS(sent) != UCS_ERR_NO_RESOURCE) {
      transport_.complete(
          std::move(done),
          from_ucs(UCS_PTR_STATUS(sent), str_cat("UCX message send to ", peer_address())));
      return;
    }
    // No room right now: queue it through UCX with a context below.
  }
  UcxOp* op = new_op(kind);
  op->done = std::move(done);
  if (kind == UcxOp::Kind::kInternalSend) {
    op->seq = request_id;  // For a get request: its failure fails the get.
    op->endpoint = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  }
  WireHeader wire{remote_token_, am_id, 0};
  std::span<const std::byte> data = payload;
  if (kWireHeaderBytes + header.size() <= transport_.max_ucp_header()) {
    append_wire_header(op->header, wire);
    op->header.insert(op->header.end(), header.begin(), header.end());
  } else {
    // Larger than UCX takes as a header: send header and payload joined as the payload.
    wire.flags = kFlagHeaderInPayload;
    append_wire_header(op->header, wire);
    const auto header_size = static_cast<uint32_t>(header.size());
    op->buffer_size = sizeof(header_size) + header.size() + payload.size();
    op->buffer.reset(new std::byte[op->buffer_size]);
    std::memcpy(op->buffer.get(), &header_size, sizeof(header_size));
    if (!header.empty()) std::memcpy(op->buffer.get() + 4, header.data(), header.size());
    if (!payload.empty()) {
      std::memcpy(op->buffer.get() + 4 + header.size(), payload.data(), payload.size());
    }
    data = {op->buffer.get(), op->buffer_size};
    memh = nullptr;
  }
  const ucp_request_param_t param = request_param(op, memh);
  const ucs_status_ptr_t request = ucp_am_send_nbx(
      ep_, kUcpAmId, op->header.data(), op->header.size(), data.data(), data.size(), &param);
  transport_.settle(op, request, "message send", peer_address());
}

UcxEndpoint::Mechanism UcxEndpoint::mechanism() {
  if (mechanism_ == Mechanism::kUndecided) {
    const std::string& configured = transport_.config().rma_mechanism;
    if (configured == "rma") {
      mechanism_ = Mechanism::kRma;
    } else if (configured == "am") {
      mechanism_ = Mechanism::kAm;
    } else {
      mechanism_ = transport_.native_rma(ep_) ? Mechanism::kRma : Mechanism::kAm;
    }
    spdlog::debug("ucx transport: put/get to {} use {}", peer_address(),
                  mechanism_ == Mechanism::kRma ? "UCX RMA" : "active messages");
  }
  return mechanism_;
}

const UcxMemoryRegion* UcxEndpoint::local_region(const MemoryRegion& region, Completion& done) {
  const auto* ucx_region = dynamic_cast<const UcxMemoryRegion*>(&region);
  if (ucx_region == nullptr || ucx_region->owner() != &transport_) {
    transport_.complete(
        std::move(done),
        invalid_argument_error(
            "the local region was not registered with this transport (register_memory)"));
    return nullptr;
  }
  return ucx_region;
}

StatusOr<ucp_rkey_h> UcxEndpoint::remote_key(const std::string& rkey) {
  auto it = rkeys_.find(rkey);
  if (it != rkeys_.end()) return it->second;
  HALO_ASSIGN_OR_RETURN(UnpackedRemoteKey key, unpack_remote_key(rkey));
  ucp_rkey_h handle = nullptr;
  const ucs_status_t status = ucp_ep_rkey_unpack(ep_, key.ucp_rkey.data(), &handle);
  if (status != UCS_OK) {
    return from_ucs(status, str_cat("unpacking the remote key of a region of ", peer_address()));
  }
  rkeys_.emplace(rkey, handle);
  return handle;
}

void UcxEndpoint::do_put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                         size_t remote_offset, size_t length, Completion done) {
  if (length == 0) return transport_.complete(std::move(done), Status());
  const UcxMemoryRegion* source = local_region(local, done);
  if (source == nullptr) return;
  const std::byte* from = source->data() + local_offset;
  if (mechanism() == Mechanism::kAm) {
    StatusOr<UnpackedRemoteKey> key = unpack_remote_key(remote.rkey);
    if (!key.ok()) return transport_.complete(std::move(done), key.status());
    const PutHeader put{next_put_seq_++, remote.addr + remote_offset, key->token};
    send_message(kAmPut, record_bytes(put), {from, length}, source->memh(), std::move(done));
    return;
  }
  StatusOr<ucp_rkey_h> rkey = remote_key(remote.rkey);
  if (!rkey.ok()) return transport_.complete(std::move(done), rkey.status());
  UcxOp* op = new_op(UcxOp::Kind::kSend);
  op->done = std::move(done);
  const ucp_request_param_t param = request_param(op, source->memh());
  const ucs_status_ptr_t request =
      ucp_put_nbx(ep_, from, length, remote.addr + remote_offset, *rkey, &param);
  transport_.settle(op, request, "put", peer_address());
}

void UcxEndpoint::do_get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                         size_t remote_offset, size_t length, Completion done) {
  if (length == 0) return transport_.complete(std::move(done), Status());
  const UcxMemoryRegion* target = local_region(local, done);
  if (target == nullptr) return;
  std::byte* into = target->data() + local_offset;
  if (mechanism() == Mechanism::kAm) {
    StatusOr<UnpackedRemoteKey> key = unpack_remote_key(remote.rkey);
    if (!key.ok()) return transport_.complete(std::move(done), key.status());
    const uint64_t id = next_get_id_++;
    pending_gets_.emplace(id, PendingGet{into, length, std::move(done)});
    const GetRequest request{id, remote.addr + remote_offset, key->token, length};
    send_message(kAmGetRequest, record_bytes(request), {}, nullptr, nullptr,
                 UcxOp::Kind::kInternalSend, id);
    return;
  }
  StatusOr<ucp_rkey_h> rkey = remote_key(remote.rkey);
  if (!rkey.ok()) return transport_.complete(std::move(done), rkey.status());
  UcxOp* op = new_op(UcxOp::Kind::kSend);
  op->done = std::move(done);
  const ucp_request_param_t param = request_param(op, target->memh());
  const ucs_status_ptr_t request =
      ucp_get_nbx(ep_, into, length, remote.addr + remote_offset, *rkey, &param);
  transport_.settle(op, request, "get", peer_address());
}

void UcxEndpoint::do_flush(Completion done) {
  switch (mechanism_) {
    case Mechanism::kUndecided:
      return transport_.complete(std::move(done), Status());  // No put was issued here.
    case Mechanism::kRma: {
      UcxOp* op = new_op(UcxOp::Kind::kSend);
      op->done = std::move(done);
      const ucp_request_param_t param = request_param(op, nullptr);
      transport_.settle(op, ucp_ep_flush_nbx(ep_, &param), "flush", peer_address());
      return;
    }
    case Mechanism::kAm: {
      // A put's send completion says nothing about the target's memory: the target confirms,
      // once every put up to `last` has landed (by sequence number, not relying on ordering).
      const uint64_t last = next_put_seq_ - 1;
      if (last <= confirmed_through_) return transport_.complete(std::move(done), Status());
      flush_waiters_.push_back(FlushWaiter{last, std::move(done)});
      if (last > flush_requested_through_) {
        flush_requested_through_ = last;
        const FlushRequest request{last};
        send_message(kAmFlushRequest, record_bytes(request), {}, nullptr, nullptr,
                     UcxOp::Kind::kInternalSend);
      }
      return;
    }
  }
}

void UcxEndpoint::do_close(bool force) {
  if (closed_) return;
  closed_ = true;
  const bool failed = state() != State::kClosed;
  down_reason_ = failed ? unavailable_error(str_cat("connection to ", peer_address(), " failed"))
                        : cancelled_error(str_cat("connection to ", peer_address(), " closed"));
  auto self = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  transport_.forget(*this);
  std::vector<QueuedSend> queued;
  queued.swap(queued_);
  for (QueuedSend& send : queued) send.done(down_reason_);
  // Flushes wait on the peer's word, which will not come, and gets whose reply has not begun
  // to land touch no buffer: both end now.
  std::deque<FlushWaiter> waiters;
  waiters.swap(flush_waiters_);
  for (FlushWaiter& waiter : waiters) waiter.done(down_reason_);
  flush_requests_.clear();
  std::erase_if(pending_gets_, [this](auto& entry) {
    if (entry.second.landing) return false;
    Completion done = std::move(entry.second.done);
    done(down_reason_);
    return true;
  });
  if (ep_ == nullptr) {
    socket_.reset();
    return;
  }
  // A forced close makes UCX drop the endpoint's operations; an orderly one waits for them,
  // which a peer that is going away may never let happen.
  //  - With peer-failure handling UCX cancels what a forced close cuts off: force whenever
  //    anything is in flight, and after failures.
  //  - Over shared memory UCX cancels nothing: a local close lets the live peer finish the
  //    caller's operations (orderly); a failed peer's operations end in on_close_done.
  //  - The peer's own operations here (messages and puts landing, get replies) need no care:
  //    their buffers are this backend's or registered regions.
  bool callers_in_flight = false;
  for (UcxOp* op = in_flight_; op != nullptr; op = op->next) {
    callers_in_flight = callers_in_flight || op->kind == UcxOp::Kind::kSend;
  }
  const bool anything_in_flight = in_flight_ != nullptr;
  const bool forced =
      ucp_failed_ || failed ||
      (shared_memory_ ? anything_in_flight && !callers_in_flight : force || anything_in_flight);
  if (forced) socket_.reset();
  if (forced && !ucp_failed_ && !shared_memory_ && anything_in_flight) {
    // UCX 1.13's TCP transport completes zero-copy requests twice when a forced close races
    // with its own handling of the connection's failure (an assertion, or memory corruption
    // without assertions). Let UCX report the failure first (a gone peer's connection
    // resets at once), or the operations drain, or a short deadline pass.
    close_deferred_ = true;
    transport_.defer_close(self);
    return;
  }
  transport_.close_ucp_endpoint(self, forced);
}

void UcxEndpoint::on_close_done() {
  auto keep = shared_from_this();  // Completions may drop the last other reference.
  for (auto& [packed, rkey] : rkeys_) ucp_rkey_destroy(rkey);
  rkeys_.clear();
  ep_ = nullptr;
  socket_.reset();          // Closing the set-up connection tells the peer at once.
  if (!peer_gone_) return;  // UCX completes what is left, or TransportBase's close_grace_ms.
  // The peer is gone and UCX works no more on this endpoint, but over shared memory it leaves
  // operations to the dead peer hanging instead of cancelling them: nothing can write into
  // their buffers any more, so complete them; UCX's late callbacks, if any, find them done.
  while (in_flight_ != nullptr) {
    UcxOp* op = in_flight_;
    Completion done = std::move(op->done);
    unlink(op);
    if (done) done(down_reason_);
  }
  std::unordered_map<uint64_t, PendingGet> gets;
  gets.swap(pending_gets_);
  for (auto& [id, get] : gets) get.done(down_reason_);
}

UcxOp* UcxEndpoint::new_op(UcxOp::Kind kind) {
  UcxOp* op = transport_.acquire_op(kind);
  op->owner = this;
  return op;
}

void UcxEndpoint::in_flight(UcxOp* op) {
  op->owner = this;
  op->prev = nullptr;
  op->next = in_flight_;
  if (in_flight_ != nullptr) in_flight_->prev = op;
  in_flight_ = op;
}

void UcxEndpoint::landed(UcxOp* op) {
  if (op->owner != this) return;
  unlink(op);
  if (close_deferred_ && in_flight_ == nullptr && !ucp_close_started_) {
    transport_.close_ucp_endpoint(std::static_pointer_cast<UcxEndpoint>(shared_from_this()),
                                  /*force=*/true);
  }
}

void UcxEndpoint::unlink(UcxOp* op) {
  if (op->prev != nullptr) {
    op->prev->next = op->next;
  } else if (in_flight_ == op) {
    in_flight_ = op->next;
  }
  if (op->next != nullptr) op->next->prev = op->prev;
  op->prev = op->next = nullptr;
  op->owner = nullptr;
}

Status UcxEndpoint::failure(ucs_status_t status, std::string_view what) const {
  if (closed_) return down_reason_;
  return from_ucs(status, str_cat("UCX ", what, " with ", peer_address()));
}

// ---------------------------------------------------------------------------------------------
// Receiving

ucs_status_t UcxEndpoint::on_message(const WireHeader& wire, std::span<const std::byte> header,
                                     void* data, size_t length, bool rendezvous) {
  // Every early return below may follow a reject that destroyed this endpoint: they touch
  // only locals.
  const ucs_status_t refused = rendezvous ? UCS_ERR_REJECTED : UCS_OK;
  const State current = state();
  if (closed_ || current == State::kClosed || current == State::kFailed) {
    return rendezvous ? UCS_ERR_NOT_CONNECTED : UCS_OK;
  }
  if ((wire.flags & ~kKnownFlags) != 0) {
    protocol_error(str_cat("unknown message flags ", wire.flags));
    return refused;
  }
  if (wire.am_id < kFirstBackendAm) {
    if (wire.am_id == kAmClose) mark_peer_gone();
    return on_user_message(wire, header, data, length, rendezvous);
  }
  if (current != State::kOpen) {
    transport_.refuse(*this, unauthenticated_error(str_cat("peer sent transport message ",
                                                           wire.am_id, " before authenticating")));
    return refused;
  }
  if (wire.flags != 0) {
    protocol_error("flags on a transport message");
    return refused;
  }
  transport_.heard_from(*this);
  switch (wire.am_id) {
    case kAmPut:
      return on_put(header, data, length, rendezvous);
    case kAmGetReply:
      return on_get_reply(header, data, length, rendezvous);
    case kAmFlushRequest:
    case kAmFlushReply:
    case kAmGetRequest:
      if (length != 0) {
        protocol_error(str_cat("transport message ", wire.am_id, " with a payload"));
        return refused;
      }
      if (wire.am_id == kAmFlushRequest) on_flush_request(header);
      if (wire.am_id == kAmFlushReply) on_flush_reply(header);
      if (wire.am_id == kAmGetRequest) on_get_request(header);
      return UCS_OK;
    default:
      protocol_error(str_cat("unknown transport message id ", wire.am_id));
      return refused;
  }
}

ucs_status_t UcxEndpoint::on_user_message(const WireHeader& wire, std::span<const std::byte> header,
                                          void* data, size_t length, bool rendezvous) {
  const ucs_status_t refused = rendezvous ? UCS_ERR_REJECTED : UCS_OK;
  const TransportConfig& config = transport_.config();
  const bool joined = (wire.flags & kFlagHeaderInPayload) != 0;
  if (header.size() > config.max_am_header_bytes) {
    transport_.refuse(*this, invalid_argument_error(str_cat("message header of ", header.size(),
                                                            " bytes exceeds max_am_header_bytes (",
                                                            config.max_am_header_bytes, ")")));
    return refused;
  }
  const uint64_t limit =
      config.max_am_payload_bytes + (joined ? 4 + config.max_am_header_bytes : 0);
  if (length > limit) {
    transport_.refuse(*this, invalid_argument_error(str_cat("message payload of ", length,
                                                            " bytes exceeds max_am_payload_bytes (",
                                                            config.max_am_payload_bytes, ")")));
    return refused;
  }
  if (length > 0 && state() != State::kOpen) {
    // Checked before any buffer is allocated: an unauthenticated peer gets no memory.
    transport_.refuse(*this, unauthenticated_error("peer sent a payload before authenticating"));
    return refused;
  }
  if (!rendezvous) {
    deliver(wire.am_id, wire.flags, header, {static_cast<const std::byte*>(data), length});
    return UCS_OK;
  }
  auto* buffer = new (std::nothrow) std::byte[length];
  if (buffer == nullptr) {
    spdlog::warn("ucx transport: no memory for a {}-byte message from {}; refused", length,
                 peer_address());
    return UCS_ERR_NO_MEMORY;  // The sender's send fails; the connection stays.
  }
  UcxOp* op = new_op(UcxOp::Kind::kReceiveAm);
  op->endpoint = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  op->am_id = wire.am_id;
  op->seq = wire.flags;
  op->header.assign(header.begin(), header.end());
  op->buffer.reset(buffer);
  op->buffer_size = length;
  const ucp_request_param_t param = receive_param(op);
  const ucs_status_ptr_t request =
      ucp_am_recv_data_nbx(transport_.worker(), data, buffer, length, &param);
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    on_receive_done(op, request == nullptr ? UCS_OK : UCS_PTR_STATUS(request));
    return UCS_OK;
  }
  in_flight(op);
  return UCS_INPROGRESS;
}

void UcxEndpoint::deliver(uint16_t am_id, uint16_t flags, std::span<const std::byte> header,
                          std::span<const std::byte> payload) {
  if ((flags & kFlagHeaderInPayload) != 0) {
    uint32_t header_size = 0;
    if (payload.size() < sizeof(header_size)) return protocol_error("truncated joined header");
    std::memcpy(&header_size, payload.data(), sizeof(header_size));
    const TransportConfig& config = transport_.config();
    if (!header.empty() || header_size > payload.size() - sizeof(header_size) ||
        header_size > config.max_am_header_bytes) {
      return protocol_error("malformed joined header");
    }
    header = payload.subspan(sizeof(header_size), header_size);
    payload = payload.subspan(sizeof(header_size) + header_size);
    if (payload.size() > config.max_am_payload_bytes) {
      return transport_.refuse(
          *this, invalid_argument_error(str_cat("message payload of ", payload.size(),
                                                " bytes exceeds max_am_payload_bytes (",
                                                config.max_am_payload_bytes, ")")));
    }
  }
  transport_.deliver(*this, am_id, header, payload);
}

void UcxEndpoint::on_receive_done(UcxOp* op, ucs_status_t status) {
  std::shared_ptr<UcxEndpoint> keep = std::move(op->endpoint);
  const uint64_t seq = op->seq;
  switch (op->kind) {
    case UcxOp::Kind::kReceiveAm:
      if (status == UCS_OK) {
        deliver(op->am_id, static_cast<uint16_t>(seq), op->header,
                {op->buffer.get(), op->buffer_size});
      } else {
        spdlog::debug("ucx transport: message {} from {} cut off: {}", op->am_id, peer_address(),
                      ucs_status_string(status));
      }
      transport_.release_op(op);
      return;
    case UcxOp::Kind::kReceivePut:
      transport_.release_op(op);
      put_landed(seq, status == UCS_OK
                          ? Status()
                          : from_ucs(status, str_cat("landing a put from ", peer_address())));
      return;
    case UcxOp::Kind::kReceiveGet: {
      transport_.release_op(op);
      auto it = pending_gets_.find(seq);
      if (it == pending_gets_.end()) return;
      Completion done = std::move(it->second.done);
      pending_gets_.erase(it);
      done(status == UCS_OK ? Status()
                            : from_ucs(status, str_cat("UCX get from ", peer_address())));
      return;
    }
    default:
      transport_.release_op(op);
      return;
  }
}

void UcxEndpoint::protocol_error(const std::string& what) {
  transport_.refuse(
      *this, invalid_argument_error(
                 str_cat("peer ", peer_address(), " broke the UCX backend protocol: ", what)));
}

// ---------------------------------------------------------------------------------------------
// Put and get over active messages: target side

ucs_status_t UcxEndpoint::on_put(std::span<const std::byte> header, void* data, size_t length,
                                 bool rendezvous) {
  const ucs_status_t refused = rendezvous ? UCS_ERR_REJECTED : UCS_OK;
  PutHeader put{};
  if (header.size() != sizeof(put) || !read_record(header, put)) {
    protocol_error("malformed put header");
    return refused;
  }
  if (put.seq < landed_base_ || put.seq - landed_base_ >= kMaxPutWindow ||
      (put.seq - landed_base_ < landed_.size() && landed_[put.seq - landed_base_])) {
    protocol_error(str_cat("put sequence number ", put.seq, " out of order"));
    return refused;
  }
  const UcxTransport::Region* region = transport_.find_region(put.region_token, put.addr, length);
  if (region == nullptr) {
    // Never write where a peer says without checking it is memory registered here.
    put_landed(put.seq, out_of_range_error(str_cat(
                            "a put of ", length, " bytes was refused by ", peer_address(),
                            "'s peer: the target range is not inside a region registered there "
                            "(deregistered, or a wrong remote key)")));
    return rendezvous ? UCS_ERR_INVALID_ADDR : UCS_OK;
  }
  auto* target = reinterpret_cast<std::byte*>(put.addr);
  if (!rendezvous) {
    if (length > 0) std::memcpy(target, data, length);
    put_landed(put.seq, Status());
    return UCS_OK;
  }
  UcxOp* op = new_op(UcxOp::Kind::kReceivePut);
  op->endpoint = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  op->seq = put.seq;
  ucp_request_param_t param = receive_param(op);
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
  param.memh = region->memh;
  const ucs_status_ptr_t request =
      ucp_am_recv_data_nbx(transport_.worker(), data, target, length, &param);
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    on_receive_done(op, request == nullptr ? UCS_OK : UCS_PTR_STATUS(request));
    return UCS_OK;
  }
  in_flight(op);
  return UCS_INPROGRESS;
}

void UcxEndpoint::put_landed(uint64_t seq, const Status& status) {
  if (seq < landed_base_) return;
  const uint64_t index = seq - landed_base_;
  if (landed_.size() <= index) landed_.resize(index + 1, false);
  landed_[index] = true;
  if (!status.ok() && first_put_error_.ok()) first_put_error_ = status;
  while (!landed_.empty() && landed_.front()) {
    landed_.pop_front();
    ++landed_base_;
  }
  while (!flush_requests_.empty() && flush_requests_.front() < landed_base_) {
    const uint64_t flushed = flush_requests_.front();
    flush_requests_.pop_front();
    answer_flush(flushed);
  }
}

void UcxEndpoint::on_flush_request(std::span<const std::byte> header) {
  FlushRequest request{};
  if (header.size() != sizeof(request) || !read_record(header, request)) {
    return protocol_error("malformed flush request");
  }
  if (!flush_requests_.empty() && request.seq <= flush_requests_.back()) {
    return protocol_error("flush requests out of order");
  }
  if (request.seq < landed_base_) return answer_flush(request.seq);
  if (flush_requests_.size() >= kMaxFlushRequests) {
    return protocol_error("too many flush requests waiting");
  }
  flush_requests_.push_back(request.seq);
}

void UcxEndpoint::answer_flush(uint64_t seq) {
  const FlushReply reply{seq, static_cast<uint64_t>(first_put_error_.code())};
  std::vector<std::byte> header;
  append_record(header, reply);
  append_text(header, first_put_error_.message());
  first_put_error_ = Status();
  send_message(kAmFlushReply, header, {}, nullptr, nullptr, UcxOp::Kind::kInternalSend);
}

void UcxEndpoint::on_get_request(std::span<const std::byte> header) {
  GetRequest request{};
  if (header.size() != sizeof(request) || !read_record(header, request)) {
    return protocol_error("malformed get request");
  }
  const UcxTransport::Region* region =
      transport_.find_region(request.region_token, request.addr, request.length);
  if (region == nullptr) {
    return reply_get(request.request_id,
                     out_of_range_error("the source range is not inside a region registered "
                                        "at the peer (deregistered, or a wrong remote key)"),
                     {}, nullptr);
  }
  reply_get(request.request_id, Status(),
            {reinterpret_cast<const std::byte*>(request.addr), request.length}, region->memh);
}

void UcxEndpoint::reply_get(uint64_t request_id, const Status& status,
                            std::span<const std::byte> bytes, ucp_mem_h memh) {
  const GetReply reply{request_id, static_cast<uint64_t>(status.code())};
  std::vector<std::byte> header;
  append_record(header, reply);
  append_text(header, status.message());
  send_message(kAmGetReply, header, bytes, memh, nullptr, UcxOp::Kind::kInternalSend);
}

// ---------------------------------------------------------------------------------------------
// Put and get over active messages: initiator side

void UcxEndpoint::on_flush_reply(std::span<const std::byte> header) {
  auto keep = shared_from_this();  // Completions may drop the last other reference.
  FlushReply reply{};
  if (header.size() < sizeof(reply) || !read_record(header, reply)) {
    return protocol_error("malformed flush reply");
  }
  if (reply.seq > flush_requested_through_) {
    return protocol_error("a flush reply for a flush never requested");
  }
  confirmed_through_ = std::max(confirmed_through_, reply.seq);
  const Status status = reply.code == 0 ? Status()
                                        : Status(wire_code(reply.code),
                                                 std::string(rest_as_text(header, sizeof(reply))));
  while (!flush_waiters_.empty() && flush_waiters_.front().seq <= reply.seq) {
    Completion done = std::move(flush_waiters_.front().done);
    flush_waiters_.pop_front();
    done(status);
  }
}

ucs_status_t UcxEndpoint::on_get_reply(std::span<const std::byte> header, void* data, size_t length,
                                       bool rendezvous) {
  auto keep = shared_from_this();  // Completions may drop the last other reference.
  const ucs_status_t refused = rendezvous ? UCS_ERR_REJECTED : UCS_OK;
  GetReply reply{};
  if (header.size() < sizeof(reply) || !read_record(header, reply)) {
    protocol_error("malformed get reply");
    return refused;
  }
  auto it = pending_gets_.find(reply.request_id);
  if (it == pending_gets_.end()) {
    return rendezvous ? UCS_ERR_CANCELED : UCS_OK;  // Cancelled here meanwhile.
  }
  const auto complete = [this, &it](Status status) {
    Completion done = std::move(it->second.done);
    pending_gets_.erase(it);
    done(std::move(status));
  };
  if (reply.code != 0) {
    complete(Status(wire_code(reply.code),
                    str_cat("get from ", peer_address(),
                            " refused by the peer: ", rest_as_text(header, sizeof(reply)))));
    return refused;
  }
  if (length != it->second.length) {
    complete(data_loss_error(str_cat("get from ", peer_address(), " returned ", length,
                                     " bytes instead of ", it->second.length)));
    protocol_error("get reply of the wrong length");
    return refused;
  }
  std::byte* destination = it->second.destination;
  if (!rendezvous) {
    std::memcpy(destination, data, length);
    complete(Status());
    return UCS_OK;
  }
  it->second.landing = true;
  UcxOp* op = new_op(UcxOp::Kind::kReceiveGet);
  op->endpoint = std::static_pointer_cast<UcxEndpoint>(shared_from_this());
  op->seq = reply.request_id;
  const ucp_request_param_t param = receive_param(op);
  const ucs_status_ptr_t request =
      ucp_am_recv_data_nbx(transport_.worker(), data, destination, length, &param);
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    on_receive_done(op, request == nullptr ? UCS_OK : UCS_PTR_STATUS(request));
    return UCS_OK;
  }
  in_flight(op);
  return UCS_INPROGRESS;
}

void UcxEndpoint::fail_get(uint64_t request_id, const Status& why) {
  auto it = pending_gets_.find(request_id);
  if (it == pending_gets_.end()) return;
  Completion done = std::move(it->second.done);
  pending_gets_.erase(it);
  done(why);
}

}  // namespace halo::transport::internal::ucx
