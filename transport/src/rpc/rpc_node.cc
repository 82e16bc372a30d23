// RpcNode: wires a client and a server onto one Transport — its three RPC active-message ids
// and its single failure handler — and takes them down in order.
#include <future>
#include <mutex>

#include "rpc/rpc_client_core.h"
#include "rpc/rpc_server_core.h"

namespace halo::transport {
namespace internal {

// What the transport's handlers hold on to. It outlives the RpcNode when the transport does;
// `stopping` then turns every handler into a no-op.
class NodeCore {
 public:
  NodeCore(const RpcConfig& config, std::shared_ptr<std::atomic<int64_t>> awaited_replies)
      : counters(std::make_shared<RpcCounters>()),
        client(std::make_shared<ClientCore>(
            counters, std::move(awaited_replies),
            std::chrono::milliseconds(config.endpoint_check_interval_ms))),
        server(std::make_shared<ServerCore>(counters, config.handler_threads)) {}

  void on_failure(const EndpointPtr& endpoint, const Status& why) {
    if (stopping.load()) return;
    client->fail_endpoint(*endpoint, why);
    server->cancel_endpoint(*endpoint);
    std::function<void(const EndpointPtr&, const Status&)> chained;
    {
      std::lock_guard lock(failure_mu);
      chained = failure_handler;
    }
    if (chained) chained(endpoint, why);
  }

  void stop() {
    stopping.store(true);
    client->stop();
    server->stop();
    std::lock_guard lock(failure_mu);
    failure_handler = nullptr;
  }

  const std::shared_ptr<RpcCounters> counters;
  const std::shared_ptr<ClientCore> client;
  const std::shared_ptr<ServerCore> server;
  std::atomic<bool> stopping{false};
  std::mutex failure_mu;
  std::function<void(const EndpointPtr&, const Status&)> failure_handler;
};

}  // namespace internal

StatusOr<std::unique_ptr<RpcNode>> RpcNode::create(Transport& transport, RpcConfig config) {
  if (config.handler_threads < 0 || config.endpoint_check_interval_ms <= 0) {
    return invalid_argument_error(
        "RpcConfig: handler_threads must be >= 0 and endpoint_check_interval_ms > 0");
  }
  auto core = std::make_shared<internal::NodeCore>(config, transport.awaited_replies());
  auto install = [&]() -> Status {
    HALO_RETURN_IF_ERROR(transport.set_am_handler(kRpcRequestAm, [core](AmMessage& message) {
      if (!core->stopping.load()) core->server->on_request(message);
    }));
    HALO_RETURN_IF_ERROR(transport.set_am_handler(kRpcResponseAm, [core](AmMessage& message) {
      if (!core->stopping.load()) core->client->on_response(message);
    }));
    HALO_RETURN_IF_ERROR(transport.set_am_handler(kRpcCancelAm, [core](AmMessage& message) {
      if (!core->stopping.load()) core->server->on_cancel(message);
    }));
    return Status();
  };
  if (Status installed = install(); !installed.ok()) {
    core->stop();  // Handlers already installed stay, as no-ops.
    return installed.with_context("creating the RPC node (create it before listen/connect)");
  }
  transport.set_failure_handler(
      [core](const EndpointPtr& endpoint, const Status& why) { core->on_failure(endpoint, why); });
  return std::unique_ptr<RpcNode>(new RpcNode(transport, std::move(core)));
}

RpcNode::RpcNode(Transport& transport, std::shared_ptr<internal::NodeCore> core)
    : transport_(transport),
      core_(std::move(core)),
      server_(*core_->server),
      client_(*core_->client) {}

RpcNode::~RpcNode() {
  core_->stopping.store(true);
  // Handlers run on the progress thread; one that started before `stopping` was set may still
  // be inside a user's handler. A round trip through the progress thread waits for it.
  if (!transport_.on_progress_thread()) {
    std::promise<void> drained;
    transport_.run_on_progress_thread([&drained] { drained.set_value(); });
    drained.get_future().wait();
  }
  core_->stop();
}

void RpcNode::set_failure_handler(std::function<void(const EndpointPtr&, const Status&)> handler) {
  std::lock_guard lock(core_->failure_mu);
  core_->failure_handler = std::move(handler);
}

RpcStats RpcNode::stats() const { return core_->counters->snapshot(); }

}  // namespace halo::transport
