// Measurement workloads over halo's transport, shared by the demo (halo-transport-demo), the
// benchmark programs (benchmarks/) and the echo server they talk to (halo-transport-echo).
//
// The echo service answers two active messages: kEchoAm is sent back as kEchoReplyAm with the
// same header and payload, and kRegionAm is answered with kRegionReplyAm carrying the
// descriptor of the server's registered region, the target of bandwidth runs. It also
// answers the RPC method kEchoRpcMethod (echo.proto) with the request.
//
//   auto server = EchoServer::start(cfg, secret, "127.0.0.1", 0, 256 << 20).value();
//   auto client = PingPongClient::connect(cfg, secret, server->address()).value();
//   double us = client->am_latency_us(8, 100000).value();        // half round trip
//   double mbps = client->put_bandwidth_mbps(1 << 20, 2000).value();
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"

namespace halo::transport::tools {

inline constexpr uint16_t kEchoAm = 0x7e01;
inline constexpr uint16_t kEchoReplyAm = 0x7e02;
inline constexpr uint16_t kRegionAm = 0x7e03;
inline constexpr uint16_t kRegionReplyAm = 0x7e04;
// The RPC method the echo server answers (EchoMessage in, the same EchoMessage out).
inline constexpr uint32_t kEchoRpcMethod = 1;

// Encodes a RemoteRegion as bytes (addr, length, rkey) for the echo protocol, and back.
std::string encode_region(const RemoteRegion& region);
StatusOr<RemoteRegion> decode_region(std::span<const std::byte> bytes);

class EchoServer {
 public:
  // Listens on host:port with a registered region of `region_bytes` (pre-faulted).
  static StatusOr<std::unique_ptr<EchoServer>> start(const TransportConfig& config,
                                                     const std::string& secret,
                                                     const std::string& host, uint16_t port,
                                                     size_t region_bytes);
  std::string address() const { return transport_->local_address(); }
  Transport& transport() { return *transport_; }

 private:
  EchoServer() = default;
  std::vector<std::byte> memory_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<RpcNode> rpc_;  // Destroyed before the transport.
  std::unique_ptr<MemoryRegion> region_;

 public:
  ~EchoServer();
};

class PingPongClient {
 public:
  // Connects and fetches the server's region descriptor; registers a local buffer of
  // `buffer_bytes` as the source of puts.
  static StatusOr<std::unique_ptr<PingPongClient>> connect(const TransportConfig& config,
                                                           const std::string& secret,
                                                           const std::string& address,
                                                           size_t buffer_bytes);
  ~PingPongClient();

  // Mean half round trip, in microseconds, of `iterations` echo messages of `payload_bytes`,
  // each sent from the reply handler of the previous one (as ucx_perftest's am_lat does).
  StatusOr<double> am_latency_us(size_t payload_bytes, uint64_t iterations);

  // Mean half round trip, in microseconds, of `iterations` echo RPCs carrying
  // `payload_bytes`, each call issued from the previous call's completion.
  StatusOr<double> rpc_latency_us(size_t payload_bytes, uint64_t iterations);

  // Bandwidth in MB/s (10^6 bytes) of `iterations` puts of `size` bytes into the server's
  // region, at most `window` in flight, ended by a flush: the bulk path the object store uses.
  StatusOr<double> put_bandwidth_mbps(size_t size, uint64_t iterations, unsigned window = 16);

  Transport& transport() { return *transport_; }
  const EndpointPtr& endpoint() const { return endpoint_; }

 private:
  PingPongClient() = default;
  struct LatencyRun;

  std::vector<std::byte> memory_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<RpcNode> rpc_;  // Destroyed before the transport.
  std::unique_ptr<MemoryRegion> region_;
  EndpointPtr endpoint_;
  RemoteRegion server_region_;
  std::shared_ptr<LatencyRun> latency_;  // The run in progress, read by the reply handler.
};

// Allocates `bytes` and touches every page, so first-touch page faults stay out of
// measurements (and the memory lands on the caller's NUMA node).
std::vector<std::byte> prefaulted_buffer(size_t bytes);

}  // namespace halo::transport::tools
