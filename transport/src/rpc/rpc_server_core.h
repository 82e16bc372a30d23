// The server half of an RpcNode: the method table, the calls in progress (so a cancel frame
// or a peer failure can reach them), and where handlers run.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "halo/transport/rpc.h"
#include "rpc/handler_pool.h"
#include "rpc/rpc_counters.h"

namespace halo::transport::internal {

class ServerCore;

// One request being served. Shared by the RpcContext / RpcResponder handles the handler
// holds; the last one to go replies INTERNAL if nobody replied.
class ServerCall {
 public:
  ServerCall(std::shared_ptr<ServerCore> server, EndpointPtr peer, RpcMethod method,
             uint64_t request_id, Clock::time_point deadline);
  ~ServerCall();
  ServerCall(const ServerCall&) = delete;
  ServerCall& operator=(const ServerCall&) = delete;

  ServerCore& server() const { return *server_; }
  const EndpointPtr& peer() const { return peer_; }
  const RpcMethod& method() const { return method_; }
  uint64_t request_id() const { return request_id_; }
  Clock::time_point deadline() const { return deadline_; }
  bool cancelled() const { return cancelled_.load(); }
  void cancel() { cancelled_.store(true); }

  // Sends the reply once (later calls do nothing), unless nobody waits for it any more.
  void finish(const Status& status, const std::shared_ptr<const std::string>& body);
  // Before a handler runs: true (and the call ends without a reply) if it need not run
  // because the caller's deadline passed or it cancelled.
  bool skip_if_stale();

 private:
  // Ends the call; false if it had ended already.
  bool end();

  const std::shared_ptr<ServerCore> server_;
  const EndpointPtr peer_;
  const RpcMethod method_;
  const uint64_t request_id_;
  const Clock::time_point deadline_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> ended_{false};
};

class ServerCore : public std::enable_shared_from_this<ServerCore> {
 public:
  using ErasedHandler = std::function<void(std::span<const std::byte> body, RpcContext context)>;

  ServerCore(std::shared_ptr<RpcCounters> counters, int handler_threads);
  ~ServerCore();
  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  Status add_handler(RpcMethod method, ErasedHandler handler);

  // Active-message handlers for kRpcRequestAm and kRpcCancelAm (progress thread).
  void on_request(const AmMessage& message);
  void on_cancel(const AmMessage& message);
  // Marks every call from `endpoint` cancelled: its replies have nowhere to go.
  void cancel_endpoint(const Endpoint& endpoint);
  // Stops serving: no reply is sent from now on; waits for handlers running on the pool.
  void stop();
  bool stopping() const { return stopping_.load(); }

  // Runs `work` (a handler) where handlers run, unless the call is stale by then.
  void run(const std::shared_ptr<ServerCall>& call, std::function<void()> work);
  // The call ended: it can no longer be cancelled.
  void forget(const ServerCall& call);
  RpcCounters& counters() { return *counters_; }
  const std::shared_ptr<RpcCounters>& counters_ptr() const { return counters_; }

 private:
  using CallKey = std::pair<uint64_t, uint64_t>;  // (endpoint id, request id).
  struct LiveCall {
    const ServerCall* call;  // Identity: a finished call removes only its own entry.
    std::weak_ptr<ServerCall> handle;
  };

  std::shared_ptr<const ErasedHandler> find_handler(const RpcMethod& method) const;

  const std::shared_ptr<RpcCounters> counters_;
  std::atomic<bool> stopping_{false};

  mutable std::shared_mutex methods_mu_;
  std::unordered_map<uint32_t, std::shared_ptr<const ErasedHandler>> by_id_;
  std::unordered_map<std::string, std::shared_ptr<const ErasedHandler>> by_name_;

  std::mutex live_mu_;
  std::map<CallKey, LiveCall> live_;  // Ordered, so one endpoint's calls form a range.

  std::unique_ptr<HandlerPool> pool_;  // Null: handlers run on the progress thread.
};

}  // namespace halo::transport::internal
