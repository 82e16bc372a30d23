// What the GCS server tests share: a private data directory, fast health-check knobs, an
// in-process GcsServer over UCX on TCP loopback, and peers that talk to it with raw halo RPC
// over their own real Transport (no GcsClient: these tests prove the server alone).
//
//   TempDir dir;
//   auto server = start_server(test_config(dir.path()));
//   auto peer = RpcPeer::connect(server->address());
//   auto reply = peer->call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", request);
//   FakeNode node(server->address());            // answers node.health_check until told not to
//   uint64_t incarnation = node.register_node();
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gcs/proto/gcs.pb.h"
#include "gcs/server/gcs_config.h"
#include "gcs/server/gcs_server.h"
#include "halo/base/ids.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"
#include "tests/support/temp_dir.h"

namespace halo::gcs::testing {

using namespace std::chrono_literals;

inline constexpr char kSecret[] = "gcs-server-test-secret-0123456789abcdef";

using halo::test::TempDir;

// UCX over TCP on loopback; short failure detection so a killed peer is seen quickly.
inline transport::TransportConfig test_transport(const std::string& backend = "ucx") {
  transport::TransportConfig config;
  config.transport = backend;
  if (backend == "ucx") config.ucx_tls = "tcp,self";
  config.ofi_provider = "tcp";
  config.keepalive_interval_ms = 200;
  config.peer_timeout_ms = 1500;
  config.connect_timeout_ms = 5000;
  config.auth_timeout_ms = 1000;
  return config;
}

// Health checks fast enough for tests: death within 100 × 3 + 100 = 400 ms.
inline GcsConfig test_config(const std::string& data_dir) {
  GcsConfig config;
  config.host = "127.0.0.1";
  config.port = 0;
  config.data_dir = data_dir + "/gcs";
  config.health_check_initial_delay_ms = 200;
  config.health_check_period_ms = 100;
  config.health_check_timeout_ms = 100;
  config.health_check_failure_threshold = 3;
  config.poll_max_wait_ms = 2000;
  return config;
}

inline std::chrono::milliseconds death_bound(const GcsConfig& c) {
  return std::chrono::milliseconds(c.health_check_period_ms * c.health_check_failure_threshold +
                                   c.health_check_timeout_ms);
}

inline std::unique_ptr<GcsServer> start_server(const GcsConfig& config,
                                               const std::string& backend = "ucx") {
  auto server = GcsServer::start(config, test_transport(backend), transport::RpcConfig(), kSecret);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

// A process-local client of the GCS: its own Transport and RpcNode, one connection.
class RpcPeer {
 public:
  // `install` runs on the new RpcNode before it connects (a fake node adds its handlers).
  static std::unique_ptr<RpcPeer> connect(
      const std::string& address, const std::string& backend = "ucx",
      const std::function<void(transport::RpcNode&)>& install = {}) {
    auto peer = std::unique_ptr<RpcPeer>(new RpcPeer());
    auto t = transport::Transport::create(test_transport(backend), kSecret);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return nullptr;
    peer->transport_ = std::move(*t);
    auto rpc = transport::RpcNode::create(*peer->transport_);
    EXPECT_TRUE(rpc.ok()) << rpc.status();
    if (!rpc.ok()) return nullptr;
    peer->rpc_ = std::move(*rpc);
    if (install) install(*peer->rpc_);
    auto ep = peer->transport_->connect(address, 5s);
    EXPECT_TRUE(ep.ok()) << ep.status();
    if (!ep.ok()) return nullptr;
    peer->endpoint_ = *ep;
    return peer;
  }

  ~RpcPeer() {
    if (endpoint_) endpoint_->close();
    endpoint_.reset();
    rpc_.reset();
    transport_.reset();
  }

  template <typename Req, typename Resp>
  StatusOr<Resp> call(const std::string& method, const Req& request,
                      std::chrono::milliseconds timeout = 5s) {
    return rpc_->client().call<Req, Resp>(endpoint_, method, request, timeout).get();
  }

  transport::RpcNode& rpc() { return *rpc_; }
  transport::Transport& transport() { return *transport_; }
  const transport::EndpointPtr& endpoint() const { return endpoint_; }

 private:
  RpcPeer() = default;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::RpcNode> rpc_;
  transport::EndpointPtr endpoint_;
};

// A node daemon reduced to what the GCS sees of one: it registers, renews its lease, and
// answers node.health_check over its own connection — or, once told, holds every check
// unanswered (a hung node), until told to answer again.
class FakeNode {
 public:
  explicit FakeNode(const std::string& gcs_address, NodeId id = NodeId::random(),
                    const std::string& backend = "ucx")
      : id_(id), state_(std::make_shared<Shared>()) {
    auto shared = state_;
    peer_ = RpcPeer::connect(gcs_address, backend, [shared](transport::RpcNode& rpc) {
      Status s = rpc.server().handle_async<proto::HealthCheckRequest, proto::HealthCheckResponse>(
          "node.health_check", [shared](const proto::HealthCheckRequest& request,
                                        transport::RpcResponder<proto::HealthCheckResponse> reply) {
            shared->checks.fetch_add(1);
            if (!shared->answering.load()) {
              std::lock_guard lock(shared->mu);
              shared->held.push_back(std::move(reply));  // Never answered: a hung node.
              return;
            }
            proto::HealthCheckResponse response;
            response.set_node_id(request.node_id());
            response.set_incarnation(request.incarnation());
            reply.respond(response);
          });
      EXPECT_TRUE(s.ok()) << s;
    });
  }
  ~FakeNode() {
    {
      std::lock_guard lock(state_->mu);
      state_->held.clear();
    }
    peer_.reset();
  }

  bool connected() const { return peer_ != nullptr; }
  const NodeId& id() const { return id_; }
  uint64_t incarnation() const { return incarnation_; }
  RpcPeer& peer() { return *peer_; }
  int checks_seen() const { return state_->checks.load(); }
  void set_answering(bool answering) { state_->answering = answering; }

  StatusOr<proto::RegisterNodeResponse> register_node() {
    proto::RegisterNodeRequest request;
    proto::NodeInfo* node = request.mutable_node();
    node->set_node_id(id_.binary());
    node->set_address(peer_->transport().local_address().empty()
                          ? "ucx://127.0.0.1:1"
                          : peer_->transport().local_address());
    node->set_hostname("test-host");
    (*node->mutable_resources())["CPU"] = 8;
    (*node->mutable_labels())["failure_domain"] = "rack1";
    node->set_pid(4242);
    auto reply = peer_->call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>(
        "gcs.register_node", request);
    if (reply.ok()) incarnation_ = reply->incarnation();
    return reply;
  }

  StatusOr<proto::RenewLeaseResponse> renew_lease() {
    proto::RenewLeaseRequest request;
    request.set_node_id(id_.binary());
    request.set_incarnation(incarnation_);
    return peer_->call<proto::RenewLeaseRequest, proto::RenewLeaseResponse>("gcs.renew_lease",
                                                                            request);
  }

  // Drops the connection: the process died.
  void crash() {
    {
      std::lock_guard lock(state_->mu);
      state_->held.clear();
    }
    peer_.reset();
  }

 private:
  struct Shared {
    std::atomic<bool> answering{true};
    std::atomic<int> checks{0};
    std::mutex mu;
    std::vector<transport::RpcResponder<proto::HealthCheckResponse>> held;
  };
  NodeId id_;
  std::shared_ptr<Shared> state_;
  std::unique_ptr<RpcPeer> peer_;
  uint64_t incarnation_ = 0;
};

// A subscriber of the NODES channel: a thread long-polling "gcs.poll" from its own peer,
// keeping every response in order, resuming after last_seq as a real subscriber does.
class Subscriber {
 public:
  explicit Subscriber(const std::string& gcs_address)
      : peer_(RpcPeer::connect(gcs_address)), thread_([this] { run(); }) {}
  ~Subscriber() {
    stop_ = true;
    thread_.join();
  }

  // Every node change received so far (resync rows included), in order.
  std::vector<proto::NodeChange> changes() const {
    std::lock_guard lock(mu_);
    return changes_;
  }
  int resyncs() const {
    std::lock_guard lock(mu_);
    return resyncs_;
  }
  // The first change that put `id` into `state`, if any.
  std::optional<proto::NodeChange> first(const NodeId& id, proto::NodeState state) const {
    std::lock_guard lock(mu_);
    for (const auto& change : changes_) {
      if (change.node().node_id() == id.binary() && change.node().state() == state) {
        return change;
      }
    }
    return std::nullopt;
  }
  // When the change that put `id` into `state` arrived (steady clock), if it has.
  std::optional<std::chrono::steady_clock::time_point> arrival(const NodeId& id,
                                                               proto::NodeState state) const {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < changes_.size(); ++i) {
      if (changes_[i].node().node_id() == id.binary() && changes_[i].node().state() == state) {
        return arrivals_[i];
      }
    }
    return std::nullopt;
  }

 private:
  void run() {
    if (peer_ == nullptr) return;
    uint64_t after = 0;
    std::string cluster;
    while (!stop_) {
      proto::PollRequest request;
      request.set_channel(proto::NODES);
      request.set_after(after);
      request.set_max_wait_ms(200);  // Short, so the destructor does not wait long.
      request.set_cluster_id(cluster);
      auto response = peer_->call<proto::PollRequest, proto::PollResponse>("gcs.poll", request);
      if (!response.ok()) {
        std::this_thread::sleep_for(20ms);  // The GCS is restarting; poll again.
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      std::lock_guard lock(mu_);
      if (response->resync()) ++resyncs_;
      for (const auto& change : response->node_changes()) {
        changes_.push_back(change);
        arrivals_.push_back(now);
      }
      after = response->last_seq();
      cluster = response->cluster_id();
    }
  }

  std::unique_ptr<RpcPeer> peer_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<proto::NodeChange> changes_;
  std::vector<std::chrono::steady_clock::time_point> arrivals_;
  int resyncs_ = 0;
  std::thread thread_;
};

// The node's row as get_nodes reports it (include_removed), or nullopt.
inline std::optional<proto::NodeInfo> node_row(RpcPeer& peer, const NodeId& id) {
  proto::GetNodesRequest request;
  request.set_include_removed(true);
  auto nodes = peer.call<proto::GetNodesRequest, proto::GetNodesResponse>("gcs.get_nodes", request);
  if (!nodes.ok()) return std::nullopt;
  for (const auto& row : nodes->nodes()) {
    if (row.node_id() == id.binary()) return row;
  }
  return std::nullopt;
}

inline proto::NodeState node_state(RpcPeer& peer, const NodeId& id) {
  auto row = node_row(peer, id);
  return row ? row->state() : proto::NODE_STATE_UNSPECIFIED;
}

}  // namespace halo::gcs::testing
