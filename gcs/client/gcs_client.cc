// GcsClient: one connection to the GCS, re-established on demand with backoff, and calls that
// survive a reconnection (see gcs_client.h for the contract).
#include "gcs/client/gcs_client.h"

#include <algorithm>
#include <future>
#include <utility>

#include "gcs/client/gcs_client_impl.h"
#include "gcs/client/raw_message.h"
#include "halo/base/logging.h"

namespace halo::gcs {

using internal::RawMessage;
using transport::EndpointPtr;

namespace {

constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
constexpr auto kMaxBackoff = std::chrono::seconds(1);

}  // namespace

// ---------------------------------------------------------------------------------------------
// CallCanceller

void CallCanceller::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  // Completes the call inline with CANCELLED; its callback touches nothing of ours.
  if (current_ != 0) client_.cancel(current_);
}

bool CallCanceller::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool CallCanceller::attach(transport::RpcCallId id) {
  std::lock_guard lock(mu_);
  if (cancelled_) return false;
  current_ = id;
  return true;
}

void CallCanceller::detach() {
  std::lock_guard lock(mu_);
  current_ = 0;
}

// ---------------------------------------------------------------------------------------------
// GcsClientCore

GcsClientCore::GcsClientCore(GcsClientOptions options) : options_(std::move(options)) {}

Status GcsClientCore::init() {
  if (options_.address.empty()) {
    return invalid_argument_error("GcsClientOptions::address is empty: which GCS to talk to?");
  }
  HALO_ASSIGN_OR_RETURN(transport_,
                        transport::Transport::create(options_.transport, options_.cluster_secret));
  HALO_ASSIGN_OR_RETURN(rpc_, transport::RpcNode::create(*transport_, options_.rpc));
  rpc_->set_failure_handler([this](const EndpointPtr& ep, const Status& status) {
    forget(ep);
    std::vector<std::function<void(const EndpointPtr&, const Status&)>> handlers;
    {
      std::lock_guard lock(mu_);
      handlers = failure_handlers_;
    }
    for (auto& handler : handlers) handler(ep, status);
  });
  callback_thread_ = std::thread([this] { run_callbacks(); });
  return Status();
}

GcsClientCore::~GcsClientCore() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
  if (callback_thread_.joinable()) callback_thread_.join();
  // The RPC node first (it cancels outstanding calls), then the transport, which completes a
  // pending connect (whose callback locks mu_, still alive here) before it returns.
  rpc_.reset();
  EndpointPtr ep;
  {
    std::lock_guard lock(mu_);
    ep = std::move(endpoint_);
  }
  if (ep) ep->close();
  transport_.reset();
}

Status GcsClientCore::connect() {
  auto ep = endpoint_for_call(Clock::now() + options_.reconnect_timeout, nullptr);
  return ep.ok() ? Status() : ep.status();
}

void GcsClientCore::wake_waiters() { cv_.notify_all(); }

EndpointPtr GcsClientCore::endpoint() const {
  std::lock_guard lock(mu_);
  return endpoint_ && endpoint_->is_open() ? endpoint_ : nullptr;
}

void GcsClientCore::on_reconnect(std::function<void()> callback) {
  std::lock_guard lock(mu_);
  reconnect_callbacks_.push_back(std::move(callback));
}

void GcsClientCore::on_endpoint_failure(
    std::function<void(const EndpointPtr&, const Status&)> handler) {
  std::lock_guard lock(mu_);
  failure_handlers_.push_back(std::move(handler));
}

StatusOr<EndpointPtr> GcsClientCore::endpoint_for_call(Clock::time_point deadline,
                                                       CallCanceller* canceller) {
  const Clock::time_point started = Clock::now();
  const Clock::time_point give_up = std::min(deadline, started + options_.reconnect_timeout);
  std::unique_lock lock(mu_);
  while (true) {
    if (shutdown_) return cancelled_error("the GCS client is shutting down");
    if (canceller != nullptr && canceller->cancelled()) {
      return cancelled_error("the call to the GCS was cancelled");
    }
    if (endpoint_ && endpoint_->is_open()) return endpoint_;
    const Clock::time_point now = Clock::now();
    if (!connecting_ && now >= next_attempt_ && now < give_up) {
      // One attempt at a time, shared by every caller that needs the connection.
      connecting_ = true;
      const auto attempt = std::min<Clock::duration>(
          give_up - now, std::chrono::milliseconds(options_.transport.connect_timeout_ms));
      lock.unlock();
      transport_->connect(
          options_.address,
          std::max(std::chrono::milliseconds(1),
                   std::chrono::duration_cast<std::chrono::milliseconds>(attempt)),
          [this](StatusOr<EndpointPtr> result) { on_connected(std::move(result)); });
      lock.lock();
      continue;
    }
    if (!connecting_ && last_error_.code() == StatusCode::kUnauthenticated) {
      // The GCS answered but proved a different secret: trying again cannot help.
      return unauthenticated_error(str_cat("the GCS at ", options_.address,
                                           " refused this process: ", last_error_.message(),
                                           ". Check the cluster secret file (HALO_SECRET_FILE, "
                                           "--secret-file) against the one the GCS uses"));
    }
    if (now >= give_up) {
      return unavailable_error(str_cat(
          "cannot reach the GCS at ", options_.address, " (tried for ",
          std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count(), " ms): ",
          last_error_.ok() ? std::string("no attempt finished in time") : last_error_.to_string(),
          ". Is halo-gcs running there, and is the cluster secret the right one?"));
    }
    // Wake for the attempt's result, the next attempt, or the deadline.
    const Clock::time_point wake = connecting_ ? give_up : std::min(next_attempt_, give_up);
    cv_.wait_until(lock, wake);
  }
}

void GcsClientCore::on_connected(StatusOr<EndpointPtr> result) {
  EndpointPtr stale;
  {
    std::lock_guard lock(mu_);
    connecting_ = false;
    if (result.ok()) {
      stale = std::exchange(endpoint_, *result);
      backoff_ = kFirstBackoff;
      last_error_ = Status();
      if (ever_connected_) {
        ++reconnects_pending_;
        log::info("reconnected to the GCS at {}", options_.address);
      }
      ever_connected_ = true;
      if (shutdown_) stale = std::exchange(endpoint_, nullptr);
    } else {
      last_error_ = result.status();
      next_attempt_ = Clock::now() + backoff_;
      backoff_ = std::min<Clock::duration>(backoff_ * 2, kMaxBackoff);
    }
  }
  cv_.notify_all();
  if (stale) stale->close();
}

void GcsClientCore::forget(const EndpointPtr& ep) {
  {
    std::lock_guard lock(mu_);
    if (ep == nullptr || endpoint_ != ep) return;
    endpoint_.reset();
    // A connection that broke at once should not be retried in a tight loop.
    next_attempt_ = Clock::now() + backoff_;
  }
  log::warn("lost the connection to the GCS at {}; reconnecting on the next call",
            options_.address);
  ep->close();
  cv_.notify_all();
}

void GcsClientCore::run_callbacks() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return shutdown_ || reconnects_pending_ > 0; });
    if (shutdown_) return;
    --reconnects_pending_;
    auto callbacks = reconnect_callbacks_;
    lock.unlock();
    for (auto& callback : callbacks) callback();
    lock.lock();
  }
}

StatusOr<std::string> GcsClientCore::call(const transport::RpcMethod& method, std::string request,
                                          std::chrono::milliseconds timeout,
                                          CallCanceller* canceller) {
  if (timeout.count() <= 0) timeout = options_.call_timeout;
  const Clock::time_point deadline = Clock::now() + timeout;
  RawMessage body{std::move(request)};
  while (true) {
    auto ep = endpoint_for_call(deadline, canceller);
    if (!ep.ok()) return ep.status().with_context(str_cat("calling ", method.to_string()));
    const auto remaining = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (remaining.count() <= 0) {
      return deadline_exceeded_error(str_cat("calling ", method.to_string(), " on the GCS at ",
                                             options_.address, ": no answer within ",
                                             timeout.count(), " ms"));
    }
    auto promise = std::make_shared<std::promise<StatusOr<RawMessage>>>();
    auto future = promise->get_future();
    const transport::RpcCallId id = rpc_->client().call<RawMessage, RawMessage>(
        *ep, method, body, remaining,
        [promise](StatusOr<RawMessage> result) { promise->set_value(std::move(result)); });
    if (canceller != nullptr && id != 0 && !canceller->attach(id)) rpc_->client().cancel(id);
    StatusOr<RawMessage> result = future.get();
    if (canceller != nullptr) canceller->detach();
    if (result.ok()) return std::move(result->bytes);
    const StatusCode code = result.status().code();
    // The connection broke under the call (the GCS died or restarted): reconnect and send the
    // call again. An error the GCS itself returned leaves the endpoint open and stands.
    const bool broken =
        (code == StatusCode::kUnavailable || code == StatusCode::kCancelled) && !(*ep)->is_open();
    const bool abandoned = canceller != nullptr && canceller->cancelled();
    if (broken && !abandoned) {
      forget(*ep);
      continue;
    }
    return result.status();
  }
}

// ---------------------------------------------------------------------------------------------
// GcsClient

StatusOr<std::unique_ptr<GcsClient>> GcsClient::create(GcsClientOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  HALO_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<GcsClient>(new GcsClient(std::move(impl)));
}

GcsClient::GcsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GcsClient::~GcsClient() = default;

Status GcsClient::connect() { return impl_->connect(); }
transport::RpcNode& GcsClient::rpc() { return impl_->rpc(); }
transport::Transport& GcsClient::transport() { return impl_->transport(); }
EndpointPtr GcsClient::endpoint() const { return impl_->endpoint(); }

void GcsClient::on_reconnect(std::function<void()> callback) {
  impl_->on_reconnect(std::move(callback));
}

void GcsClient::on_endpoint_failure(
    std::function<void(const EndpointPtr&, const Status&)> handler) {
  impl_->on_endpoint_failure(std::move(handler));
}

StatusOr<std::string> GcsClient::call_bytes(const transport::RpcMethod& method, std::string request,
                                            std::chrono::milliseconds timeout) {
  return impl_->call(method, std::move(request), timeout, nullptr);
}

}  // namespace halo::gcs
