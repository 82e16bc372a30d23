// The context of one UCX request in flight: what UCX hands back to the completion callback as
// `user_data`. Operations are pooled per transport, so issuing one allocates nothing once the
// pool is warm; everything here runs on the progress thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "halo/transport/transport.h"

namespace halo::transport::internal::ucx {

class UcxEndpoint;
class UcxTransport;

struct UcxOp {
  enum class Kind : uint8_t {
    kSend,          // A caller's send_am, put or get, or a flush: runs `done`.
    kInternalSend,  // A backend reply nobody waits for (get and flush replies).
    kReceiveAm,     // A rendezvous payload of a message into `buffer`, delivered when complete.
    kReceivePut,    // A rendezvous payload of a put over active messages, landed in a region.
    kReceiveGet,    // A rendezvous payload of a get reply, landed in the requester's region.
    kClose,         // ucp_ep_close_nbx of `endpoint`.
  };

  UcxTransport* transport = nullptr;
  Kind kind = Kind::kSend;
  // The endpoint whose in-flight list holds this operation while UCX has it; cleared when
  // the endpoint completes it early (after its UCX endpoint closed) or UCX completes it.
  UcxEndpoint* owner = nullptr;
  UcxOp* prev = nullptr;
  UcxOp* next = nullptr;
  uint16_t am_id = 0;
  uint64_t seq = 0;  // kReceivePut: the put's sequence number; kReceiveGet: the request id.
  // Receive and close operations keep their endpoint alive until they complete.
  std::shared_ptr<UcxEndpoint> endpoint;
  Completion done;
  // Sends: the UCX header, which UCX reads until the send completes. kReceiveAm: the
  // caller's header, kept for the delivery.
  std::vector<std::byte> header;
  // kReceiveAm: the payload; sends with an oversized header: header and payload joined.
  std::unique_ptr<std::byte[]> buffer;
  size_t buffer_size = 0;
};

class UcxOpPool {
 public:
  UcxOp* acquire(UcxTransport* transport, UcxOp::Kind kind) {
    UcxOp* op;
    if (free_.empty()) {
      owned_.push_back(std::make_unique<UcxOp>());
      op = owned_.back().get();
      op->header.reserve(kHeaderCapacity);
    } else {
      op = free_.back();
      free_.pop_back();
    }
    op->transport = transport;
    op->kind = kind;
    ++in_use_;
    return op;
  }

  void release(UcxOp* op) {
    op->owner = nullptr;
    op->prev = op->next = nullptr;
    op->endpoint.reset();
    op->done = nullptr;
    op->buffer.reset();
    op->buffer_size = 0;
    op->header.clear();
    // Keep the common header capacity, give back what an occasional huge header took.
    if (op->header.capacity() > 4 * kHeaderCapacity) {
      std::vector<std::byte>().swap(op->header);
      op->header.reserve(kHeaderCapacity);
    }
    free_.push_back(op);
    --in_use_;
  }

  size_t in_use() const { return in_use_; }

 private:
  static constexpr size_t kHeaderCapacity = 256;
  std::vector<std::unique_ptr<UcxOp>> owned_;
  std::vector<UcxOp*> free_;
  size_t in_use_ = 0;
};

}  // namespace halo::transport::internal::ucx
