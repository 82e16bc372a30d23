// The client half of an RpcNode: the table of outstanding calls and the ways a call ends
// (response, deadline, peer failure, closed endpoint, cancellation, shutdown). Whoever removes
// a call from the table completes it, so each call completes exactly once.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

#include "halo/base/deadline_timer.h"
#include "halo/transport/rpc.h"
#include "rpc/rpc_counters.h"

namespace halo::transport::internal {

class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  using ResponseSink = std::function<void(Status status, std::span<const std::byte> body)>;

  // The number of outstanding calls is added to `awaited` (Transport::awaited_replies).
  ClientCore(std::shared_ptr<RpcCounters> counters, std::shared_ptr<std::atomic<int64_t>> awaited,
             std::chrono::milliseconds check_interval);
  ~ClientCore();
  ClientCore(const ClientCore&) = delete;
  ClientCore& operator=(const ClientCore&) = delete;

  RpcCallId start_call(const EndpointPtr& peer, const RpcMethod& method,
                       std::shared_ptr<const std::string> body, std::chrono::milliseconds timeout,
                       ResponseSink sink);
  bool cancel(RpcCallId id);

  // Active-message handler for kRpcResponseAm (progress thread).
  void on_response(const AmMessage& message);
  // Completes every call to `endpoint` with UNAVAILABLE (the transport declared it failed).
  void fail_endpoint(const Endpoint& endpoint, const Status& why);
  // Completes every outstanding call with CANCELLED and refuses new ones. Idempotent.
  void stop();

 private:
  struct PendingCall {
    EndpointPtr peer;
    RpcMethod method;
    Clock::time_point deadline;
    std::chrono::milliseconds timeout;
    ResponseSink sink;
  };

  std::optional<PendingCall> take(RpcCallId id);
  // Adds the change of calls_.size() since the last count to awaited_ (mu_ held).
  void count_calls_locked();
  void complete(RpcCallId id, PendingCall& call, Status status, std::span<const std::byte> body);
  void on_deadline(RpcCallId id);
  // Fails calls whose endpoint is no longer open (closed without a failure report).
  void check_endpoints();
  // Removes and fails every call `doomed` selects, with the status `why` gives it.
  void fail_where(const std::function<bool(const PendingCall&)>& doomed,
                  const std::function<Status(const PendingCall&)>& why);

  const std::shared_ptr<RpcCounters> counters_;
  const std::shared_ptr<std::atomic<int64_t>> awaited_;
  std::atomic<uint64_t> next_id_{1};

  std::mutex mu_;
  std::unordered_map<RpcCallId, PendingCall> calls_;
  int64_t counted_ = 0;  // calls_.size() as last added to awaited_.
  bool stopping_ = false;

  // Last member: its thread calls back into the members above, so it stops first.
  DeadlineTimer timer_;
};

}  // namespace halo::transport::internal
