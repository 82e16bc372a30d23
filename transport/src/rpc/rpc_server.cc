// The server half of the RPC layer: dispatching requests to handlers, replying, and the
// bookkeeping that lets a cancel frame or a peer failure reach a call in progress (see
// rpc_server_core.h).
#include <algorithm>
#include <limits>
#include <vector>

#include "rpc/rpc_frame.h"
#include "rpc/rpc_server_core.h"

namespace halo::transport {
namespace internal {
namespace {

// Longer than any real deadline; larger values would overflow the clock and mean "none".
constexpr uint64_t kMaxDeadlineMs = 10ull * 365 * 24 * 3600 * 1000;

}  // namespace

ServerCall::ServerCall(std::shared_ptr<ServerCore> server, EndpointPtr peer, RpcMethod method,
                       uint64_t request_id, Clock::time_point deadline)
    : server_(std::move(server)),
      peer_(std::move(peer)),
      method_(std::move(method)),
      request_id_(request_id),
      deadline_(deadline) {}

ServerCall::~ServerCall() {
  if (ended_.load()) return;
  finish(internal_error(str_cat("the handler of method ", method_.to_string(),
                                " dropped its responder without replying")),
         nullptr);
}

bool ServerCall::end() {
  if (ended_.exchange(true)) return false;
  server_->forget(*this);
  return true;
}

void ServerCall::finish(const Status& status, const std::shared_ptr<const std::string>& body) {
  if (!end() || server_->stopping()) return;
  RpcCounters& counters = server_->counters();
  // Nobody waits for these replies: the caller gave up or is gone.
  if (cancelled() || !peer_->is_open()) {
    RpcCounters::bump(counters.requests_cancelled);
    return;
  }
  if (Clock::now() >= deadline_) {
    RpcCounters::bump(counters.requests_expired);
    return;
  }
  proto::RpcHeader header;
  header.set_request_id(request_id_);
  header.set_kind(proto::RPC_RESPONSE);
  set_status(header, status);
  HeaderBytes header_bytes(header);
  std::span<const std::byte> payload;
  if (status.ok() && body != nullptr) payload = as_bytes(*body);
  RpcCounters::bump(counters.responses_sent);
  // `body` stays alive in the completion until the transport is done with it.
  peer_->send_am(kRpcResponseAm, header_bytes.span(), payload,
                 [body, counters = server_->counters_ptr()](Status sent) {
                   if (!sent.ok()) RpcCounters::bump(counters->send_failures);
                 });
}

bool ServerCall::skip_if_stale() {
  if (server_->stopping()) {
    end();
    return true;
  }
  if (cancelled() || !peer_->is_open()) {
    if (end()) RpcCounters::bump(server_->counters().requests_cancelled);
    return true;
  }
  if (Clock::now() >= deadline_) {
    if (end()) RpcCounters::bump(server_->counters().requests_expired);
    return true;
  }
  return false;
}

ServerCore::ServerCore(std::shared_ptr<RpcCounters> counters, int handler_threads)
    : counters_(std::move(counters)) {
  if (handler_threads > 0) pool_ = std::make_unique<HandlerPool>(handler_threads);
}

ServerCore::~ServerCore() { stop(); }

Status ServerCore::add_handler(RpcMethod method, ErasedHandler handler) {
  if (!method.valid()) {
    return invalid_argument_error("an RPC method needs a non-zero id or a non-empty name");
  }
  if (stopping()) {
    return failed_precondition_error(
        str_cat("cannot register method ", method.to_string(), ": the RPC node is shutting down"));
  }
  auto shared = std::make_shared<const ErasedHandler>(std::move(handler));
  std::unique_lock lock(methods_mu_);
  const bool added = method.by_id() ? by_id_.emplace(method.id(), std::move(shared)).second
                                    : by_name_.emplace(method.name(), std::move(shared)).second;
  if (!added) {
    return already_exists_error(
        str_cat("method ", method.to_string(), " already has a handler on this RPC node"));
  }
  return Status();
}

std::shared_ptr<const ServerCore::ErasedHandler> ServerCore::find_handler(
    const RpcMethod& method) const {
  std::shared_lock lock(methods_mu_);
  if (method.by_id()) {
    auto it = by_id_.find(method.id());
    return it == by_id_.end() ? nullptr : it->second;
  }
  auto it = by_name_.find(method.name());
  return it == by_name_.end() ? nullptr : it->second;
}

void ServerCore::on_request(const AmMessage& message) {
  if (stopping()) return;
  auto header = decode_header(message.header);
  if (!header || message.from == nullptr) {
    RpcCounters::bump(counters_->frames_dropped);
    return;
  }
  RpcCounters::bump(counters_->requests_received);
  // The caller sent how long it still waits. Measured from arrival, this node's deadline is
  // the caller's plus the transit time: never earlier, so work is skipped only once the
  // caller has surely given up.
  const uint64_t deadline_ms = header->deadline_ms();
  const Clock::time_point deadline = deadline_ms == 0 || deadline_ms > kMaxDeadlineMs
                                         ? Clock::time_point::max()
                                         : Clock::now() + std::chrono::milliseconds(deadline_ms);
  const RpcMethod method = method_of(*header);
  auto call = std::make_shared<ServerCall>(shared_from_this(), message.from, method,
                                           header->request_id(), deadline);

  auto reject = [&](Status why) {
    RpcCounters::bump(counters_->requests_rejected);
    call->finish(why, nullptr);
  };
  if (header->kind() != proto::RPC_REQUEST) {
    return reject(invalid_argument_error(str_cat("frame ", header->request_id(),
                                                 " arrived as a request but is of kind ",
                                                 static_cast<int>(header->kind()))));
  }
  if (!method.valid()) {
    return reject(invalid_argument_error(
        str_cat("request ", header->request_id(), " names no method (id 0 or empty name)")));
  }
  auto handler = find_handler(method);
  if (handler == nullptr) {
    RpcCounters::bump(counters_->unknown_methods);
    return reject(unimplemented_error(
        str_cat("method ", method.to_string(),
                " has no handler on this node; check that the client "
                "and the server agree on the method and that the server registered it")));
  }
  {
    std::lock_guard lock(live_mu_);
    auto [it, added] = live_.try_emplace(CallKey(message.from->id(), header->request_id()),
                                         LiveCall{call.get(), call});
    if (!added) {
      // Request ids are unique per caller: a repeat is a broken or hostile client.
      return reject(invalid_argument_error(
          str_cat("request id ", header->request_id(), " is already in progress from this peer")));
    }
  }
  (*handler)(message.payload, RpcContext(std::move(call)));
}

void ServerCore::on_cancel(const AmMessage& message) {
  if (stopping()) return;
  auto header = decode_header(message.header);
  if (!header || header->kind() != proto::RPC_CANCEL || message.from == nullptr) {
    RpcCounters::bump(counters_->frames_dropped);
    return;
  }
  std::shared_ptr<ServerCall> call;
  {
    std::lock_guard lock(live_mu_);
    auto it = live_.find(CallKey(message.from->id(), header->request_id()));
    if (it != live_.end()) call = it->second.handle.lock();
  }
  // Outside the lock: dropping the last handle may finish the call, which takes the lock.
  if (call != nullptr) call->cancel();
}

void ServerCore::cancel_endpoint(const Endpoint& endpoint) {
  std::vector<std::shared_ptr<ServerCall>> calls;
  {
    std::lock_guard lock(live_mu_);
    const uint64_t id = endpoint.id();
    for (auto it = live_.lower_bound(CallKey(id, 0)); it != live_.end() && it->first.first == id;
         ++it) {
      if (auto call = it->second.handle.lock()) calls.push_back(std::move(call));
    }
  }
  for (auto& call : calls) call->cancel();
}

void ServerCore::stop() {
  if (stopping_.exchange(true)) return;
  if (pool_ != nullptr) pool_->stop();
  // Release the handlers (and what they capture) now, not when the transport lets go of the
  // last reference to this core.
  std::unique_lock lock(methods_mu_);
  by_id_.clear();
  by_name_.clear();
}

void ServerCore::run(const std::shared_ptr<ServerCall>& call, std::function<void()> work) {
  if (pool_ == nullptr) {
    if (call->skip_if_stale()) return;
    RpcCounters::bump(counters_->requests_handled);
    work();
    return;
  }
  pool_->post([call, work = std::move(work), counters = counters_] {
    // Checked again when a thread is free: the queue may have held it past the deadline.
    if (call->skip_if_stale()) return;
    RpcCounters::bump(counters->requests_handled);
    work();
  });
}

void ServerCore::forget(const ServerCall& call) {
  std::lock_guard lock(live_mu_);
  auto it = live_.find(CallKey(call.peer()->id(), call.request_id()));
  if (it != live_.end() && it->second.call == &call) live_.erase(it);
}

}  // namespace internal

const EndpointPtr& RpcContext::peer() const { return call_->peer(); }
const RpcMethod& RpcContext::method() const { return call_->method(); }
uint64_t RpcContext::request_id() const { return call_->request_id(); }
Clock::time_point RpcContext::deadline() const { return call_->deadline(); }
bool RpcContext::cancelled() const { return call_->cancelled() || !call_->peer()->is_open(); }

void RpcContext::run(std::function<void()> work) const {
  // The server core outlives every call (each holds it), so this reference is safe.
  call_->server().run(call_, std::move(work));
}

void RpcContext::finish(Status status, std::shared_ptr<const std::string> body) const {
  call_->finish(status, body);
}

void RpcContext::reject_body(const std::string& type_name) const {
  internal::RpcCounters::bump(call_->server().counters().requests_rejected);
  call_->finish(
      invalid_argument_error(str_cat("the request body for method ", call_->method().to_string(),
                                     " does not parse as ", type_name)),
      nullptr);
}

Status RpcServer::add_handler(RpcMethod method, ErasedHandler handler) {
  return core_.add_handler(std::move(method), std::move(handler));
}

}  // namespace halo::transport
