#include "ofi/ofi_endpoint.h"

#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include <algorithm>
#include <cstring>

#include "ofi/ofi_frame.h"
#include "ofi/ofi_memory_region.h"
#include "ofi/ofi_transport.h"

namespace halo::transport::internal::ofi {
namespace {

// Payloads up to this size are copied next to the frame header and sent as one buffer;
// larger eager payloads go as a second iovec straight from the caller's memory.
constexpr size_t kCopyPayloadBytes = 16 * 1024;

std::byte* append(std::byte* out, std::span<const std::byte> bytes) {
  if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
  return out + bytes.size();
}

}  // namespace

OfiEndpoint::OfiEndpoint(OfiTransport& transport, bool outbound, std::string peer_address,
                         AvEntry* av, uint64_t conn_key, uint64_t peer_conn_key)
    : EndpointBase(transport, outbound, std::move(peer_address)),
      ofi_(transport),
      av_(av),
      conn_key_(conn_key),
      peer_conn_key_(peer_conn_key) {}

// The base closes every endpoint (do_close) before dropping it, so nothing is left to undo;
// a user may hold the last reference after the transport is gone.
OfiEndpoint::~OfiEndpoint() = default;

void OfiEndpoint::link(OfiOperation* op) {
  op->prev = nullptr;
  op->next = live_;
  if (live_ != nullptr) live_->prev = op;
  live_ = op;
}

void OfiEndpoint::unlink(OfiOperation* op) {
  if (op->prev != nullptr) op->prev->next = op->next;
  if (op->next != nullptr) op->next->prev = op->prev;
  if (live_ == op) live_ = op->next;
  op->prev = op->next = nullptr;
}

// -------------------------------------------------------------------------------------------
// Active messages

void OfiEndpoint::do_send_am(uint16_t am_id, std::span<const std::byte> header,
                             std::span<const std::byte> payload, Completion done) {
  if (closed_) {
    done(unavailable_error(str_cat("connection to ", peer_address(), " is closed")));
    return;
  }
  if (am_id == kAmHello && outbound() && peer_conn_key_ == 0) {
    // The peer has never heard of us: the Hello carries our address so it can answer.
    const std::string& self = ofi_.self_raw_;
    send_frame(static_cast<uint8_t>(FrameKind::kHello), am_id,
               {reinterpret_cast<const std::byte*>(self.data()), self.size()}, header, payload,
               std::move(done));
  } else if (sizeof(FrameHeader) + header.size() + payload.size() <= ofi_.receive_buffer_bytes_) {
    send_frame(static_cast<uint8_t>(FrameKind::kEager), am_id, {}, header, payload,
               std::move(done));
  } else {
    send_rendezvous(am_id, header, payload, std::move(done));
  }
  ofi_.run_deferred();
}

void OfiEndpoint::send_frame(uint8_t kind, uint16_t am_id, std::span<const std::byte> extra,
                             std::span<const std::byte> header, std::span<const std::byte> payload,
                             Completion done) {
  const size_t head = sizeof(FrameHeader) + extra.size() + header.size();
  const size_t total = head + payload.size();
  const FrameHeader frame =
      make_frame_header(static_cast<FrameKind>(kind), am_id,
                        static_cast<FrameKind>(kind) == FrameKind::kHello ? 0 : peer_conn_key_,
                        conn_key_, static_cast<uint32_t>(extra.size()),
                        static_cast<uint32_t>(header.size()), payload.size(), next_send_seq_++);

  // Small and nothing queued ahead: fi_inject copies it, no completion to wait for.
  if (send_queue_.empty() && total <= ofi_.inject_bytes_) {
    alignas(8) std::byte bytes[4096];
    std::byte* out = append(bytes, {reinterpret_cast<const std::byte*>(&frame), sizeof(frame)});
    out = append(out, extra);
    out = append(out, header);
    append(out, payload);
    const int ret = static_cast<int>(fi_inject(ofi_.ep_, bytes, total, av_->addr));
    if (ret == 0) {
      // Hooks may complete inline, and send_frame is never called while a queue is walked.
      if (done) done(Status());
      return;
    }
    if (ret != -FI_EAGAIN) {
      Status failed = fi_status("fi_inject", ret);
      if (done) ofi_.defer(std::move(done), failed);
      if (failed.code() == StatusCode::kUnavailable) ofi_.defer_failure(*this, failed);
      return;
    }
  }

  OfiOperation* op = ofi_.acquire(OpKind::kSend, *this);
  op->done = std::move(done);
  const bool copy_payload = payload.size() <= kCopyPayloadBytes ||
                            ofi_.domain_->needs_local_desc() || ofi_.iov_limit_ < 2;
  const size_t bytes = copy_payload ? total : head;
  Status prepared = ofi_.prepare_send_buffer(*op, bytes);
  if (!prepared.ok()) {
    op->status = prepared;
    ofi_.finish_operation(op);
    return;
  }
  std::byte* out =
      append(op->buffer.data(), {reinterpret_cast<const std::byte*>(&frame), sizeof(frame)});
  out = append(out, extra);
  out = append(out, header);
  if (copy_payload) append(out, payload);
  op->frame_bytes = bytes;
  op->payload = copy_payload ? std::span<const std::byte>() : payload;
  op->queued = true;
  send_queue_.push_back(op);
  pump_sends();
}

void OfiEndpoint::send_rendezvous(uint16_t am_id, std::span<const std::byte> header,
                                  std::span<const std::byte> payload, Completion done) {
  // The payload is registered where it lies (zero copy); the peer reads it with fi_read and
  // answers with a RendezvousDone, which completes the send.
  OfiOperation* op = ofi_.acquire(OpKind::kRendezvousSend, *this);
  op->done = std::move(done);
  auto mr = ofi_.domain_->register_buffer(const_cast<std::byte*>(payload.data()), payload.size(),
                                          ofi_.ep_);
  if (!mr.ok()) {
    op->status = mr.status().with_context("registering a message payload for rendezvous");
    ofi_.finish_operation(op);
    return;
  }
  op->payload_mr = *mr;
  op->rendezvous_id = next_rendezvous_id_++;
  const RendezvousDescriptor descriptor{
      op->rendezvous_id, ofi_.domain_->virt_addr() ? reinterpret_cast<uint64_t>(payload.data()) : 0,
      fi_mr_key(op->payload_mr), 0};
  const FrameHeader frame = make_frame_header(
      FrameKind::kRendezvous, am_id, peer_conn_key_, conn_key_, sizeof(descriptor),
      static_cast<uint32_t>(header.size()), payload.size(), next_send_seq_++);
  const size_t bytes = sizeof(frame) + sizeof(descriptor) + header.size();
  Status prepared = ofi_.prepare_send_buffer(*op, bytes);
  if (!prepared.ok()) {
    op->status = prepared;
    ofi_.finish_operation(op);
    return;
  }
  std::byte* out =
      append(op->buffer.data(), {reinterpret_cast<const std::byte*>(&frame), sizeof(frame)});
  out = append(out, {reinterpret_cast<const std::byte*>(&descriptor), sizeof(descriptor)});
  append(out, header);
  op->frame_bytes = bytes;
  op->awaiting_done = true;
  rendezvous_sends_[op->rendezvous_id] = op;
  op->queued = true;
  send_queue_.push_back(op);
  pump_sends();
}

void OfiEndpoint::hold_or_deliver(uint16_t am_id, std::span<const std::byte> header,
                                  std::span<const std::byte> payload) {
  if (inbound_.empty()) {
    ofi_.deliver(*this, am_id, header, payload);
    return;
  }
  // A rendezvous payload from this peer is still being read: keep the order.
  InboundMessage& held = inbound_.emplace_back();
  held.am_id = am_id;
  held.header.assign(header.begin(), header.end());
  held.payload.reset(new std::byte[std::max<size_t>(payload.size(), 1)]);
  append(held.payload.get(), payload);
  held.payload_len = payload.size();
  held.ready = true;
}

void OfiEndpoint::deliver_ready() {
  auto keep = shared_from_this();  // A handler may close the endpoint.
  while (!closed_ && !inbound_.empty() && inbound_.front().ready) {
    InboundMessage message = std::move(inbound_.front());
    inbound_.pop_front();
    ofi_.deliver(*this, message.am_id, message.header,
                 {message.payload.get(), static_cast<size_t>(message.payload_len)});
  }
}

// -------------------------------------------------------------------------------------------
// RMA

void OfiEndpoint::do_put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                         size_t remote_offset, size_t length, Completion done) {
  start_rma(OpKind::kPut, local, local_offset, remote, remote_offset, length, std::move(done));
}

void OfiEndpoint::do_get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                         size_t remote_offset, size_t length, Completion done) {
  start_rma(OpKind::kGet, local, local_offset, remote, remote_offset, length, std::move(done));
}

void OfiEndpoint::start_rma(OpKind kind, const MemoryRegion& local, size_t local_offset,
                            const RemoteRegion& remote, size_t remote_offset, size_t length,
                            Completion done) {
  if (closed_) {
    done(unavailable_error(str_cat("connection to ", peer_address(), " is closed")));
    return;
  }
  if (length == 0) {
    done(Status());
    return;
  }
  const auto* region = dynamic_cast<const OfiMemoryRegion*>(&local);
  if (region == nullptr) {
    done(invalid_argument_error("the local region was not registered with this ofi transport"));
    return;
  }
  auto key = unpack_rkey(remote.rkey);
  if (!key.ok()) {
    done(key.status());
    return;
  }
  OfiOperation* op = ofi_.acquire(kind, *this);
  op->done = std::move(done);
  op->local = region->data() + local_offset;
  op->local_desc = region->desc();
  op->remote_target = key->target(remote, remote_offset);
  op->key = key->key;
  op->length = length;
  op->queued = true;
  rma_queue_.push_back(op);
  pump_rma();
  ofi_.run_deferred();
}

void OfiEndpoint::do_flush(Completion done) {
  if (closed_) {
    done(unavailable_error(str_cat("connection to ", peer_address(), " is closed")));
    return;
  }
  OfiOperation* op = ofi_.acquire(OpKind::kFlush, *this);
  op->done = std::move(done);
  op->queued = true;
  rma_queue_.push_back(op);
  pump_rma();
  ofi_.run_deferred();
}

// -------------------------------------------------------------------------------------------
// Posting

void OfiEndpoint::pump() {
  pump_sends();
  pump_rma();
}

void OfiEndpoint::pump_sends() {
  while (!send_queue_.empty()) {
    OfiOperation* op = send_queue_.front();
    const int ret = ofi_.post_send(*op);
    if (ret == -FI_EAGAIN) {
      ofi_.retry_later(*this);
      return;
    }
    send_queue_.pop_front();
    op->queued = false;
    if (ret != 0) {
      op->status = fi_status("fi_sendv", ret);
      op->awaiting_done = false;
      if (op->inflight == 0) ofi_.finish_operation(op);
    }
  }
}

void OfiEndpoint::pump_rma() {
  while (!rma_queue_.empty()) {
    OfiOperation* op = rma_queue_.front();
    if (op->kind == OpKind::kFlush) {
      // Every put queued before this flush has been posted; wait until all have completed,
      // then read one byte of the latest write. libfabric performs a read after the writes
      // before it on the same peer (FI_ORDER_RAW), so when the read completes every earlier
      // write is in the target's memory.
      if (puts_in_flight_ > 0) return;
      if (wrote_since_flush_) {
        const int ret = ofi_.post_flush_read(*op, last_write_target_, last_write_key_);
        if (ret == -FI_EAGAIN) {
          ofi_.retry_later(*this);
          return;
        }
        rma_queue_.pop_front();
        op->queued = false;
        if (ret != 0) {
          op->status = fi_status("fi_read (flush)", ret);
          ofi_.finish_operation(op);
        } else {
          wrote_since_flush_ = false;
        }
      } else {
        rma_queue_.pop_front();
        op->queued = false;
        ofi_.finish_operation(op);
      }
      continue;
    }
    while (op->status.ok() && op->issued < op->length && op->inflight < OfiOperation::kWindow) {
      const uint64_t target = op->remote_target + op->issued;
      const int ret = ofi_.post_rma_chunk(*op);
      if (ret == -FI_EAGAIN) {
        ofi_.retry_later(*this);
        return;
      }
      if (ret != 0) {
        op->status = fi_status(op->kind == OpKind::kPut ? "fi_write" : "fi_read", ret);
        break;
      }
      if (op->kind == OpKind::kPut) {
        if (!op->started) ++puts_in_flight_;
        wrote_since_flush_ = true;
        last_write_target_ = target;
        last_write_key_ = op->key;
      }
      op->started = true;
    }
    if (op->status.ok() && op->issued < op->length) return;  // Window full: resumes later.
    rma_queue_.pop_front();
    op->queued = false;
    if (op->inflight == 0) ofi_.finish_operation(op);
  }
}

// -------------------------------------------------------------------------------------------
// Close

void OfiEndpoint::do_close(bool force) {
  if (closed_) return;
  // An orderly close lets queued messages (the close notice) go out first.
  if (!force) pump_sends();
  closed_ = true;
  ofi_.connections_.erase(conn_key_);
  // Work libfabric never saw is dropped; work it holds is orphaned: its buffers stay alive
  // until its completion, which is then ignored. The base completes every user operation.
  send_queue_.clear();
  rma_queue_.clear();
  rendezvous_sends_.clear();
  while (live_ != nullptr) {
    OfiOperation* op = live_;
    unlink(op);
    op->done = nullptr;
    op->slot = nullptr;
    op->queued = false;
    if (op->kind == OpKind::kPut && op->started) --puts_in_flight_;
    if (op->inflight == 0) {
      ofi_.release(op);
    } else {
      op->ep = nullptr;
    }
  }
  inbound_.clear();
  if (awaiting_retry_) {
    std::erase_if(ofi_.retry_, [this](const auto& ep) { return ep.get() == this; });
    awaiting_retry_ = false;
  }
  ofi_.release_av(av_, force);
}

}  // namespace halo::transport::internal::ofi
