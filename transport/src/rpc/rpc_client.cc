// The client half of the RPC layer: starting calls, matching responses to them, and ending
// them on deadline, peer failure or cancellation (see rpc_client_core.h).
#include <utility>
#include <vector>

#include "rpc/rpc_client_core.h"
#include "rpc/rpc_frame.h"

namespace halo::transport {
namespace internal {
namespace {

std::string describe(const RpcMethod& method, const Endpoint& peer) {
  return str_cat("rpc ", method.to_string(), " to ", peer.peer_address());
}

}  // namespace

ClientCore::ClientCore(std::shared_ptr<RpcCounters> counters,
                       std::shared_ptr<std::atomic<int64_t>> awaited,
                       std::chrono::milliseconds check_interval)
    : counters_(std::move(counters)),
      awaited_(std::move(awaited)),
      timer_([this](uint64_t id) { on_deadline(id); }, check_interval,
             [this] { check_endpoints(); }) {}

ClientCore::~ClientCore() { stop(); }

RpcCallId ClientCore::start_call(const EndpointPtr& peer, const RpcMethod& method,
                                 std::shared_ptr<const std::string> body,
                                 std::chrono::milliseconds timeout, ResponseSink sink) {
  if (peer == nullptr || !method.valid() || timeout.count() <= 0) {
    sink(invalid_argument_error(str_cat(
             "rpc ", method.to_string(), ": ",
             peer == nullptr   ? "no endpoint (null EndpointPtr)"
             : !method.valid() ? "invalid method: use a non-zero id or a non-empty name"
                               : "the timeout must be positive, every call has a deadline")),
         {});
    return 0;
  }
  const RpcCallId id = next_id_.fetch_add(1, std::memory_order_relaxed);
  const Clock::time_point deadline = Clock::now() + timeout;
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      lock.unlock();
      sink(cancelled_error(describe(method, *peer) + ": the RPC node is shutting down"), {});
      return 0;
    }
    // Registered before sending: the response may arrive before send_am returns.
    calls_.emplace(id, PendingCall{peer, method, deadline, timeout, std::move(sink)});
    count_calls_locked();
    timer_.add(deadline, id);
  }
  RpcCounters::bump(counters_->calls_started);

  proto::RpcHeader header;
  header.set_request_id(id);
  header.set_kind(proto::RPC_REQUEST);
  set_method(header, method);
  header.set_deadline_ms(static_cast<uint64_t>(timeout.count()));
  HeaderBytes header_bytes(header);
  std::weak_ptr<ClientCore> weak = weak_from_this();
  // `body` stays alive in the completion until the transport is done with it.
  peer->send_am(
      kRpcRequestAm, header_bytes.span(), as_bytes(*body), [weak, id, body](Status status) {
        if (status.ok()) return;
        auto self = weak.lock();
        if (self == nullptr) return;
        RpcCounters::bump(self->counters_->send_failures);
        auto call = self->take(id);
        if (!call) return;
        // The transport's reasons (UNAVAILABLE for a failed endpoint, CANCELLED for a
        // closed one, INVALID_ARGUMENT for an oversized frame) stand as they are.
        self->complete(id, *call,
                       status.with_context(
                           str_cat(describe(call->method, *call->peer), ": sending the request")),
                       {});
      });
  return id;
}

bool ClientCore::cancel(RpcCallId id) {
  auto call = take(id);
  if (!call) return false;
  proto::RpcHeader header;
  header.set_request_id(id);
  header.set_kind(proto::RPC_CANCEL);
  HeaderBytes header_bytes(header);
  auto counters = counters_;
  call->peer->send_am(kRpcCancelAm, header_bytes.span(), {}, [counters](Status status) {
    if (!status.ok()) RpcCounters::bump(counters->send_failures);
  });
  complete(id, *call,
           cancelled_error(describe(call->method, *call->peer) + ": cancelled by the caller"), {});
  return true;
}

void ClientCore::on_response(const AmMessage& message) {
  auto header = decode_header(message.header);
  if (!header || header->kind() != proto::RPC_RESPONSE) {
    RpcCounters::bump(counters_->frames_dropped);
    return;
  }
  const RpcCallId id = header->request_id();
  std::optional<PendingCall> call;
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(id);
    // A response from another endpoint than the one called is not this call's answer.
    if (it != calls_.end() && message.from != nullptr &&
        it->second.peer->id() == message.from->id()) {
      call = std::move(it->second);
      calls_.erase(it);
      count_calls_locked();
    }
  }
  if (!call) {
    // Late (the call completed on its deadline or was cancelled), or unknown: ignored.
    RpcCounters::bump(counters_->responses_ignored);
    return;
  }
  timer_.remove(call->deadline, id);
  Status status = status_of(*header);
  if (!status.ok()) {
    complete(id, *call, status.with_context(describe(call->method, *call->peer)), {});
    return;
  }
  complete(id, *call, Status(), message.payload);
}

void ClientCore::fail_endpoint(const Endpoint& endpoint, const Status& why) {
  const uint64_t endpoint_id = endpoint.id();
  fail_where([endpoint_id](const PendingCall& call) { return call.peer->id() == endpoint_id; },
             [&why](const PendingCall& call) {
               return unavailable_error(str_cat(describe(call.method, *call.peer),
                                                ": the peer failed (", why.to_string(),
                                                "); retry on another node or after reconnecting"));
             });
}

void ClientCore::check_endpoints() {
  fail_where([](const PendingCall& call) { return !call.peer->is_open(); },
             [](const PendingCall& call) {
               return unavailable_error(str_cat(describe(call.method, *call.peer),
                                                ": the connection closed before the response; "
                                                "connect again to retry"));
             });
}

void ClientCore::stop() {
  std::unordered_map<RpcCallId, PendingCall> calls;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    calls.swap(calls_);
    count_calls_locked();
  }
  // Not under mu_: the timer thread may be waiting for it in a callback.
  timer_.stop();
  for (auto& [id, call] : calls) {
    complete(id, call,
             cancelled_error(describe(call.method, *call.peer) + ": the RPC node is shutting down"),
             {});
  }
}

std::optional<ClientCore::PendingCall> ClientCore::take(RpcCallId id) {
  std::optional<PendingCall> call;
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return std::nullopt;
    call = std::move(it->second);
    calls_.erase(it);
    count_calls_locked();
  }
  timer_.remove(call->deadline, id);
  return call;
}

void ClientCore::complete(RpcCallId, PendingCall& call, Status status,
                          std::span<const std::byte> body) {
  switch (status.code()) {
    case StatusCode::kOk:
      RpcCounters::bump(counters_->calls_succeeded);
      break;
    case StatusCode::kDeadlineExceeded:
      RpcCounters::bump(counters_->calls_deadline_exceeded);
      break;
    case StatusCode::kUnavailable:
      RpcCounters::bump(counters_->calls_unavailable);
      break;
    case StatusCode::kCancelled:
      RpcCounters::bump(counters_->calls_cancelled);
      break;
    default:
      break;
  }
  if (!status.ok()) RpcCounters::bump(counters_->calls_failed);
  call.sink(std::move(status), body);
}

void ClientCore::count_calls_locked() {
  // By difference: other RPC nodes on the transport count theirs in the same place.
  const auto now = static_cast<int64_t>(calls_.size());
  awaited_->fetch_add(now - counted_, std::memory_order_relaxed);
  counted_ = now;
}

void ClientCore::on_deadline(RpcCallId id) {
  std::optional<PendingCall> call;
  {
    std::lock_guard lock(mu_);
    auto it = calls_.find(id);
    if (it == calls_.end()) return;
    call = std::move(it->second);
    calls_.erase(it);
    count_calls_locked();
  }
  complete(id, *call,
           deadline_exceeded_error(str_cat(describe(call->method, *call->peer),
                                           ": no response within ", call->timeout.count(), " ms")),
           {});
}

void ClientCore::fail_where(const std::function<bool(const PendingCall&)>& doomed,
                            const std::function<Status(const PendingCall&)>& why) {
  std::vector<std::pair<RpcCallId, PendingCall>> failed;
  {
    std::lock_guard lock(mu_);
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (doomed(it->second)) {
        failed.emplace_back(it->first, std::move(it->second));
        it = calls_.erase(it);
        count_calls_locked();
      } else {
        ++it;
      }
    }
  }
  for (auto& [id, call] : failed) {
    timer_.remove(call.deadline, id);
    complete(id, call, why(call), {});
  }
}

}  // namespace internal

RpcCallId RpcClient::start_call(const EndpointPtr& peer, const RpcMethod& method,
                                std::shared_ptr<const std::string> body,
                                std::chrono::milliseconds timeout, ResponseSink sink) {
  return core_.start_call(peer, method, std::move(body), timeout, std::move(sink));
}

bool RpcClient::cancel(RpcCallId id) { return core_.cancel(id); }

Status RpcClient::unparsable_response(const std::string& type_name) {
  return internal_error(str_cat("the response does not parse as ", type_name,
                                ": the server registered another response type for the method"));
}

}  // namespace halo::transport
