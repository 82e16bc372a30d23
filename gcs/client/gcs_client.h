// The GCS client: what node daemons, drivers, the `halo` command line, tests and benchmarks use
// to talk to halo-gcs. One client owns one Transport and one RpcNode, and one connection to the
// GCS, which it re-establishes on its own after a failure or a GCS restart.
//
//   GcsClientOptions options;
//   options.address = "ucx://198.18.0.1:6379";  // What halo-gcs printed / wrote.
//   options.cluster_secret = read_secret_file(path).value();  // gcs/client/cluster_secret.h
//   auto client = GcsClient::create(options).value();
//   // Optional: methods the GCS calls on this client (node daemons answer health checks).
//   client->rpc().server().handle<proto::HealthCheckRequest, proto::HealthCheckResponse>(...);
//   HALO_RETURN_IF_ERROR(client->connect());
//   auto nodes = client->call<proto::GetNodesRequest, proto::GetNodesResponse>(
//       "gcs.get_nodes", {});
//
// Reconnection: a call that finds no connection, or whose connection fails (UNAVAILABLE), makes
// the client reconnect — with backoff from 50 ms doubling to 1 s — and retries the call on the
// new connection, until the call's timeout. A retried call may reach the GCS twice; every GCS
// method tolerates that (a repeated registration just gives a newer incarnation, and the node
// uses the last one it heard). connect() and reconnection
// give up after reconnect_timeout (Ray's gcs_rpc_server_reconnect_timeout_s) with UNAVAILABLE;
// the next call starts trying again. on_reconnect callbacks run (on an internal thread) after
// every reconnection, so that a node re-announces itself and a subscriber resyncs.
//
// Threads: every method is thread-safe. Callbacks run on internal threads and must not block
// for long.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "gcs/proto/gcs.pb.h"
#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"
#include "halo/transport/transport_config.h"

namespace halo::gcs {

struct GcsClientOptions {
  std::string address;         // The GCS's transport address ("ucx://host:port", ...).
  std::string cluster_secret;  // The cluster secret (>= 16 bytes).
  transport::TransportConfig transport;
  transport::RpcConfig rpc;
  std::chrono::milliseconds call_timeout{5000};         // Default per call.
  std::chrono::milliseconds reconnect_timeout{60'000};  // gcs_rpc_server_reconnect_timeout_s.
};

class NodeSubscription;

class GcsClient {
 public:
  static StatusOr<std::unique_ptr<GcsClient>> create(GcsClientOptions options);
  ~GcsClient();

  // Connects (retrying until reconnect_timeout). Handlers on rpc().server() must be installed
  // before.
  Status connect();

  // The RPC node, to install handlers for methods the GCS calls on this client.
  transport::RpcNode& rpc();
  transport::Transport& transport();

  // The current connection (null while disconnected).
  transport::EndpointPtr endpoint() const;

  // Runs after every successful reconnection (not the first connect).
  void on_reconnect(std::function<void()> callback);

  // The client's transport has one failure handler, which the client needs; other users of
  // the transport (the object store service in a node daemon) add theirs here. Each runs on the
  // progress thread for every endpoint declared failed, whoever it belongs to. Add before
  // connect().
  void on_endpoint_failure(
      std::function<void(const transport::EndpointPtr&, const Status&)> handler);

  // A call to the GCS with reconnection and retry as described above; timeout 0 = default.
  template <transport::ProtoMessage Req, transport::ProtoMessage Resp>
  StatusOr<Resp> call(const transport::RpcMethod& method, const Req& request,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  // Subscribes to node changes: `on_change` gets every PollResponse in order (resyncs
  // included), from a thread of the subscription, until the subscription is destroyed.
  // Destroying it cancels the poll in flight at once. Destroy it before the client.
  std::unique_ptr<NodeSubscription> subscribe_nodes(
      std::function<void(const proto::PollResponse&)> on_change);

 private:
  class Impl;
  explicit GcsClient(std::unique_ptr<Impl> impl);
  // Type-erased call: serialized request in, serialized response out.
  StatusOr<std::string> call_bytes(const transport::RpcMethod& method, std::string request,
                                   std::chrono::milliseconds timeout);
  std::unique_ptr<Impl> impl_;
};

// A running node subscription; destroying it stops polling.
class NodeSubscription {
 public:
  virtual ~NodeSubscription() = default;
  // The last sequence number delivered.
  virtual uint64_t last_seq() const = 0;
};

template <transport::ProtoMessage Req, transport::ProtoMessage Resp>
StatusOr<Resp> GcsClient::call(const transport::RpcMethod& method, const Req& request,
                               std::chrono::milliseconds timeout) {
  std::string bytes;
  if (!request.SerializeToString(&bytes)) {
    return internal_error(str_cat("cannot serialize ", request.GetTypeName()));
  }
  HALO_ASSIGN_OR_RETURN(std::string response_bytes, call_bytes(method, std::move(bytes), timeout));
  Resp response;
  if (!response.ParseFromString(response_bytes)) {
    return internal_error(str_cat("the GCS's response to ", method.to_string(),
                                  " does not parse as ", response.GetTypeName()));
  }
  return response;
}

}  // namespace halo::gcs
