// Internal to gcs/client: GcsClient's state (one connection to the GCS, re-established on
// demand) and the cancellable call that both GcsClient::call and NodeSubscription use.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gcs/client/gcs_client.h"

namespace halo::gcs {

// Lets one thread abandon another thread's blocking call: cancel() ends the RPC in flight
// (CANCELLED) and any wait for a connection. Thread-safe.
class CallCanceller {
 public:
  explicit CallCanceller(transport::RpcClient& client) : client_(client) {}
  void cancel();
  bool cancelled() const;
  // Records the call in flight; false (and the caller cancels it) if cancel() came first.
  bool attach(transport::RpcCallId id);
  void detach();

 private:
  transport::RpcClient& client_;
  mutable std::mutex mu_;
  bool cancelled_ = false;
  transport::RpcCallId current_ = 0;
};

// The connection and call machinery behind GcsClient (GcsClient::Impl is this, under the name
// the public header declares), shared with NodeSubscription.
class GcsClientCore {
 public:
  explicit GcsClientCore(GcsClientOptions options);
  ~GcsClientCore();
  GcsClientCore(const GcsClientCore&) = delete;
  GcsClientCore& operator=(const GcsClientCore&) = delete;
  Status init();

  Status connect();
  // One call with reconnection and retry until `timeout` (0: the default).
  StatusOr<std::string> call(const transport::RpcMethod& method, std::string request,
                             std::chrono::milliseconds timeout, CallCanceller* canceller);
  // Wakes every thread waiting for a connection, so it re-checks its canceller.
  void wake_waiters();

  transport::EndpointPtr endpoint() const;
  void on_reconnect(std::function<void()> callback);
  void on_endpoint_failure(
      std::function<void(const transport::EndpointPtr&, const Status&)> handler);

  const GcsClientOptions& options() const { return options_; }
  transport::RpcNode& rpc() { return *rpc_; }
  transport::Transport& transport() { return *transport_; }

 private:
  using Clock = std::chrono::steady_clock;

  // The open endpoint, connecting first if needed; gives up at `deadline` or after
  // reconnect_timeout of failed attempts, whichever comes first.
  StatusOr<transport::EndpointPtr> endpoint_for_call(Clock::time_point deadline,
                                                     CallCanceller* canceller);
  void on_connected(StatusOr<transport::EndpointPtr> result);
  // Forgets `ep` if it is the current endpoint (it failed or closed).
  void forget(const transport::EndpointPtr& ep);
  void run_callbacks();

  const GcsClientOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  transport::EndpointPtr endpoint_;
  bool connecting_ = false;
  bool ever_connected_ = false;
  bool shutdown_ = false;
  Clock::time_point next_attempt_{};
  Clock::duration backoff_ = std::chrono::milliseconds(50);
  Status last_error_;
  std::vector<std::function<void()>> reconnect_callbacks_;
  std::vector<std::function<void(const transport::EndpointPtr&, const Status&)>> failure_handlers_;
  uint64_t reconnects_pending_ = 0;  // Reconnections whose callbacks have not run yet.
  std::thread callback_thread_;

  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::RpcNode> rpc_;
};

class GcsClient::Impl : public GcsClientCore {
 public:
  using GcsClientCore::GcsClientCore;
};

}  // namespace halo::gcs
