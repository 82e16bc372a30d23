// halo_transport_bench: Google Benchmark programs for halo's transport, against an echo
// server (transport/tools/pingpong.h) that it starts itself or that runs elsewhere (--peer,
// e.g. in another test host). benchmarks/compare_transport.sh runs it alternately with the
// peers (ucx_perftest, fi_pingpong) and computes the ratios.
//
//   halo_transport_bench --transport=ucx --ucx_tls=tcp,self --benchmark_filter=AmLatency
//   halo_transport_bench --transport=ofi --ofi_provider=tcp --peer=ofi+tcp://198.18.0.2:4000
//                        --secret_file=build/bench/secret
//
// Counters: `half_rtt_us` (active-message and RPC latency, half a round trip) and `MBps`
// (bulk put bandwidth, 10^6 bytes per second, ended by a flush).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "echo_child.h"
#include "halo/base/config.h"
#include "pingpong.h"
#include "secret_file.h"

extern char** environ;

namespace {

using halo::transport::TransportConfig;
namespace tools = halo::transport::tools;

struct BenchConfig {
  std::string peer = "";                  // Echo server address; empty: start one on this machine.
  std::string secret_file = "";           // The echo server's secret, with --peer.
  std::string listen_host = "127.0.0.1";  // Where a self-started echo server listens.

  template <typename V>
  void visit(V& v) {
    v("peer", peer, "echo server address; empty starts one locally");
    v("secret_file", secret_file, "secret file of the echo server given by --peer");
    v("listen_host", listen_host, "address of a locally started echo server");
  }
};

constexpr size_t kRegionBytes = 256ull << 20;

std::unique_ptr<tools::PingPongClient> g_client;

void BM_AmLatency(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  constexpr uint64_t kBatch = 20000;
  double total_us = 0;
  uint64_t messages = 0;
  for (auto _ : state) {
    auto us = g_client->am_latency_us(size, kBatch);
    if (!us.ok()) {
      state.SkipWithError(us.status().to_string().c_str());
      return;
    }
    state.SetIterationTime(*us * 2 * kBatch / 1e6);
    total_us += *us * kBatch;
    messages += kBatch;
  }
  state.counters["half_rtt_us"] = total_us / static_cast<double>(messages);
}
BENCHMARK(BM_AmLatency)->Arg(8)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_RpcLatency(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  constexpr uint64_t kBatch = 10000;
  double total_us = 0;
  uint64_t calls = 0;
  for (auto _ : state) {
    auto us = g_client->rpc_latency_us(size, kBatch);
    if (!us.ok()) {
      state.SkipWithError(us.status().to_string().c_str());
      return;
    }
    state.SetIterationTime(*us * 2 * kBatch / 1e6);
    total_us += *us * kBatch;
    calls += kBatch;
  }
  state.counters["half_rtt_us"] = total_us / static_cast<double>(calls);
}
BENCHMARK(BM_RpcLatency)->Arg(8)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_Bandwidth(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  // Each iteration moves at least 256 MiB (and at least 8 puts), so that it lasts well above
  // the cost of starting and flushing a run.
  const uint64_t puts = std::max<uint64_t>(8, (256ull << 20) / size);
  double bytes = 0, seconds = 0;
  for (auto _ : state) {
    auto mbps = g_client->put_bandwidth_mbps(size, puts);
    if (!mbps.ok()) {
      state.SkipWithError(mbps.status().to_string().c_str());
      return;
    }
    const double run_bytes = static_cast<double>(size) * static_cast<double>(puts);
    const double run_seconds = run_bytes / (*mbps * 1e6);
    state.SetIterationTime(run_seconds);
    bytes += run_bytes;
    seconds += run_seconds;
  }
  state.counters["MBps"] = bytes / seconds / 1e6;
}
BENCHMARK(BM_Bandwidth)
    ->Arg(4 << 10)
    ->Arg(64 << 10)
    ->Arg(1 << 20)
    ->Arg(16 << 20)
    ->Arg(256 << 20)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  TransportConfig transport_config;
  BenchConfig config;
  halo::ConfigLoader loader;
  loader.add(transport_config);
  loader.add(config);
  // Google Benchmark's own flags pass through.
  auto rest = loader.load({.file = "", .env = environ, .args = {argv + 1, argv + argc}},
                          /*allow_unknown_flags=*/true);
  if (!rest.ok()) {
    std::cerr << "halo_transport_bench: " << rest.status() << "\n" << loader.describe();
    return 2;
  }
  std::string secret;
  std::unique_ptr<tools::EchoChild> echo;
  std::string address = config.peer;
  if (address.empty()) {
    secret = tools::random_secret();
    auto child =
        tools::EchoChild::spawn(transport_config, secret, config.listen_host, kRegionBytes);
    if (!child.ok()) {
      std::cerr << "halo_transport_bench: " << child.status() << "\n";
      return 1;
    }
    echo = std::move(*child);
    address = echo->address();
  } else {
    auto s = tools::read_secret_file(config.secret_file);
    if (!s.ok()) {
      std::cerr << "halo_transport_bench: " << s.status() << "\n";
      return 2;
    }
    secret = *s;
  }
  auto client = tools::PingPongClient::connect(transport_config, secret, address, kRegionBytes);
  if (!client.ok()) {
    std::cerr << "halo_transport_bench: connecting to " << address << ": " << client.status()
              << "\n";
    return 1;
  }
  g_client = std::move(*client);

  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_client.reset();
  return 0;
}
