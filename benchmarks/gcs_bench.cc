// halo_gcs_bench: the client side of the GCS benchmarks. benchmarks/compare_gcs.sh starts
// halo-gcs (and redis-server, the peer), runs this program in one mode at a time, and times,
// kills and restarts the servers itself (docs/benchmarks.md, "GCS"). Every mode prints JSON
// objects, one per line, on stdout; times are steady-clock (CLOCK_MONOTONIC) microseconds, the
// clock Python's time.monotonic() reads too.
//
//   --mode=writes    `clients` connections, one gcs.kv_put in flight on each (the next one is
//                    sent from the previous reply), keys "key:<12 digits>" drawn from
//                    `keyspace`, values of `value_bytes`: what `redis-benchmark -t set -c 8
//                    -r 100000 -d 64` does. Prints {"puts_per_s": ...} over `seconds` after
//                    `warmup_seconds`.
//   --mode=populate  registers `nodes` nodes and writes `kv_entries` entries, `window` calls in
//                    flight: the state a restart must recover.
//   --mode=probe     connects and calls gcs.status until the GCS answers (retrying every
//                    millisecond or so), prints when it answered, then what it recovered.
//                    With --probe_wait_for_go it first waits for a line on stdin.
//   --mode=watch     prints every node change, with the time it arrived.
//   --mode=simulate  `nodes` simulated node daemons on one Transport + RpcNode: one connection
//                    to the GCS each, each registered as its own node, all answering
//                    node.health_check; prints the count of checks answered every second.
//
//   halo_gcs_bench --mode=writes --gcs_address=ucx://127.0.0.1:6380
//                  --secret_file=build/bench/gcs/cluster.secret --ucx_tls=tcp,self
//
// Exit code 0 on success, 1 when the measurement failed (the message says why), 2 for bad
// flags. simulate and watch run until SIGTERM or SIGINT.
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gcs/client/cluster_secret.h"
#include "gcs/proto/gcs.pb.h"
#include "halo/base/config.h"
#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"
#include "halo/transport/transport_config.h"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using halo::Status;
using halo::StatusOr;
using halo::str_cat;
using halo::transport::EndpointPtr;
using halo::transport::RpcNode;
using halo::transport::Transport;
namespace proto = halo::gcs::proto;
using Clock = std::chrono::steady_clock;

struct BenchConfig {
  // writes, populate, probe, watch or simulate (see above).
  std::string mode = "writes";
  // The GCS's transport address and the cluster secret file.
  std::string gcs_address = "";
  std::string secret_file = "";
  // writes: connections, each with one put in flight.
  int32_t clients = 8;
  // writes: measured time, after the warm-up.
  double seconds = 2.0;
  double warmup_seconds = 0.5;
  // writes and populate: value size; writes: keys drawn from this many.
  uint32_t value_bytes = 64;
  uint32_t keyspace = 100000;
  // populate and simulate: nodes to register; populate: KV entries to write.
  uint32_t nodes = 2000;
  uint32_t kv_entries = 100000;
  // populate: calls in flight; simulate: connections being set up at once.
  int32_t window = 64;
  // probe: give up after this long without an answer.
  int64_t probe_timeout_ms = 60000;
  // probe: print {"event":"ready"} and wait for a line on stdin before probing, so that the
  // caller can start the probe (and its transport) before it kills the GCS.
  bool probe_wait_for_go = false;
  // populate, simulate: where this program's transport listens (registered as the nodes'
  // address).
  std::string listen_host = "127.0.0.1";

  template <typename V>
  void visit(V& v) {
    v("mode", mode, "writes, populate, probe, watch or simulate");
    v("gcs_address", gcs_address, "the GCS's transport address");
    v("secret_file", secret_file, "cluster secret file (mode 0600)");
    v("clients", clients, "writes: connections, one put in flight each");
    v("seconds", seconds, "writes: measured seconds");
    v("warmup_seconds", warmup_seconds, "writes: seconds before measuring");
    v("value_bytes", value_bytes, "bytes per value");
    v("keyspace", keyspace, "writes: distinct keys drawn from");
    v("nodes", nodes, "populate, simulate: nodes registered");
    v("kv_entries", kv_entries, "populate: KV entries written");
    v("window", window, "populate: calls in flight; simulate: concurrent connects");
    v("probe_timeout_ms", probe_timeout_ms, "probe: time limit");
    v("probe_wait_for_go", probe_wait_for_go, "probe: wait for a line on stdin first");
    v("listen_host", listen_host, "populate, simulate: address registered nodes listen on");
  }
};

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

void print_line(const std::string& line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Blocks SIGTERM and SIGINT in this thread and every thread made after: main waits for them.
sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// True when a stop signal arrived within `timeout`.
bool stop_signal_within(const sigset_t& signals, std::chrono::milliseconds timeout) {
  timespec wait{};
  wait.tv_sec = timeout.count() / 1000;
  wait.tv_nsec = (timeout.count() % 1000) * 1'000'000;
  return sigtimedwait(&signals, nullptr, &wait) > 0;
}

// One Transport with its RpcNode.
struct Rpc {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<RpcNode> node;

  ~Rpc() {
    node.reset();  // Before the transport (rpc.h).
    transport.reset();
  }
};

StatusOr<std::unique_ptr<Rpc>> make_rpc(const halo::transport::TransportConfig& config,
                                        const std::string& secret) {
  auto rpc = std::make_unique<Rpc>();
  HALO_ASSIGN_OR_RETURN(rpc->transport, Transport::create(config, secret));
  HALO_ASSIGN_OR_RETURN(rpc->node, RpcNode::create(*rpc->transport));
  return rpc;
}

// Answers node.health_check for any node id: what a node daemon says when it is fine.
Status answer_health_checks(RpcNode& node, std::atomic<uint64_t>* answered) {
  return node.server().handle<proto::HealthCheckRequest, proto::HealthCheckResponse>(
      "node.health_check",
      [answered](const proto::HealthCheckRequest& request,
                 halo::transport::RpcContext&) -> StatusOr<proto::HealthCheckResponse> {
        answered->fetch_add(1, std::memory_order_relaxed);
        proto::HealthCheckResponse response;
        response.set_node_id(request.node_id());
        response.set_incarnation(request.incarnation());
        return response;
      });
}

std::string random_key(std::mt19937_64& rng, uint32_t keyspace) {
  char key[32];
  std::snprintf(key, sizeof(key), "key:%012llu",
                static_cast<unsigned long long>(rng() % std::max<uint32_t>(keyspace, 1)));
  return key;
}

// Runs `total` asynchronous calls, `window` in flight: start(i, done) issues call i and runs
// done(status) when it completes. A failed call ends its chain; returns the first error.
Status run_windowed(uint64_t total, int window,
                    const std::function<void(uint64_t, std::function<void(Status)>)>& start) {
  std::atomic<uint64_t> next{0};
  std::mutex mu;
  std::condition_variable cv;
  int64_t in_flight = 0;  // Guarded by mu.
  Status first_error;
  std::function<void()> issue = [&] {
    const uint64_t i = next.fetch_add(1);
    if (i >= total) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      ++in_flight;
    }
    start(i, [&](Status s) {
      // The successor is counted before this call stops counting, so in_flight reaches 0
      // only when every chain has ended.
      if (s.ok()) issue();
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok() && first_error.ok()) first_error = s;
      --in_flight;
      cv.notify_all();
    });
  };
  for (int w = 0; w < window; ++w) issue();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  return first_error;
}

// --- writes -----------------------------------------------------------------------------

int run_writes(const BenchConfig& config, Rpc& rpc) {
  std::vector<EndpointPtr> endpoints;
  for (int c = 0; c < config.clients; ++c) {
    auto ep = rpc.transport->connect(config.gcs_address, 10s);
    if (!ep.ok()) {
      std::cerr << "halo_gcs_bench: connecting client " << c << " to " << config.gcs_address << ": "
                << ep.status() << "\n";
      return 1;
    }
    endpoints.push_back(*ep);
  }
  const std::string value(config.value_bytes, 'x');
  std::atomic<uint64_t> puts{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
  int active = config.clients;
  Status first_error;

  struct Chain {
    EndpointPtr endpoint;
    std::mt19937_64 rng;
  };
  std::vector<Chain> chains;
  for (int c = 0; c < config.clients; ++c) chains.push_back({endpoints[c], std::mt19937_64(c)});
  std::function<void(Chain&)> put_next = [&](Chain& chain) {
    if (stop.load()) {
      std::lock_guard<std::mutex> lock(mu);
      --active;
      cv.notify_all();
      return;
    }
    proto::KvPutRequest request;
    request.set_namespace_("bench");
    request.set_key(random_key(chain.rng, config.keyspace));
    request.set_value(value);
    request.set_overwrite(true);
    // The next put goes out from this one's completion, on the progress thread.
    rpc.node->client().call<proto::KvPutRequest, proto::KvPutResponse>(
        chain.endpoint, "gcs.kv_put", request, 10s,
        [&, chain_ptr = &chain](StatusOr<proto::KvPutResponse> reply) {
          if (!reply.ok()) {
            std::lock_guard<std::mutex> lock(mu);
            if (first_error.ok()) first_error = reply.status();
            --active;
            cv.notify_all();
            return;
          }
          puts.fetch_add(1, std::memory_order_relaxed);
          put_next(*chain_ptr);
        });
  };
  for (auto& chain : chains) put_next(chain);

  std::this_thread::sleep_for(std::chrono::duration<double>(config.warmup_seconds));
  const uint64_t puts_before = puts.load();
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(config.seconds));
  const uint64_t puts_after = puts.load();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  std::unique_lock<std::mutex> lock(mu);
  if (!cv.wait_for(lock, 30s, [&] { return active == 0; })) {
    std::cerr << "halo_gcs_bench: puts still outstanding 30 s after the end\n";
    return 1;
  }
  if (!first_error.ok()) {
    std::cerr << "halo_gcs_bench: a put failed: " << first_error << "\n";
    return 1;
  }
  const uint64_t measured = puts_after - puts_before;
  print_line(str_cat(R"({"mode":"writes","clients":)", config.clients, R"(,"puts":)", measured,
                     R"(,"seconds":)", elapsed, R"(,"puts_per_s":)",
                     static_cast<double>(measured) / elapsed, "}"));
  return 0;
}

// --- populate ---------------------------------------------------------------------------

int run_populate(const BenchConfig& config, Rpc& rpc) {
  auto ep = rpc.transport->connect(config.gcs_address, 10s);
  if (!ep.ok()) {
    std::cerr << "halo_gcs_bench: connecting to " << config.gcs_address << ": " << ep.status()
              << "\n";
    return 1;
  }
  const EndpointPtr endpoint = *ep;
  const auto start = Clock::now();
  const std::string address = rpc.transport->local_address();
  Status nodes = run_windowed(config.nodes, config.window, [&](uint64_t i, auto done) {
    proto::RegisterNodeRequest request;
    proto::NodeInfo* node = request.mutable_node();
    node->set_node_id(halo::NodeId::random().binary());
    node->set_address(address);
    node->set_hostname(str_cat("sim", i));
    (*node->mutable_resources())["CPU"] = 64;
    (*node->mutable_resources())["memory"] = 256e9;
    (*node->mutable_labels())["failure_domain"] = str_cat("rack", i % 100);
    rpc.node->client().call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>(
        endpoint, "gcs.register_node", request, 30s,
        [done](StatusOr<proto::RegisterNodeResponse> r) { done(r.status()); });
  });
  if (!nodes.ok()) {
    std::cerr << "halo_gcs_bench: registering " << config.nodes << " nodes: " << nodes << "\n";
    return 1;
  }
  const std::string value(config.value_bytes, 'x');
  Status entries = run_windowed(config.kv_entries, config.window, [&](uint64_t i, auto done) {
    proto::KvPutRequest request;
    request.set_namespace_("bench-state");
    char key[32];
    std::snprintf(key, sizeof(key), "state:%010llu", static_cast<unsigned long long>(i));
    request.set_key(key);
    request.set_value(value);
    request.set_overwrite(true);
    rpc.node->client().call<proto::KvPutRequest, proto::KvPutResponse>(
        endpoint, "gcs.kv_put", request, 30s,
        [done](StatusOr<proto::KvPutResponse> r) { done(r.status()); });
  });
  if (!entries.ok()) {
    std::cerr << "halo_gcs_bench: writing " << config.kv_entries << " KV entries: " << entries
              << "\n";
    return 1;
  }
  print_line(str_cat(R"({"mode":"populate","nodes":)", config.nodes, R"(,"kv_entries":)",
                     config.kv_entries, R"(,"seconds":)",
                     std::chrono::duration<double>(Clock::now() - start).count(), "}"));
  return 0;
}

// --- probe ------------------------------------------------------------------------------

int run_probe(const BenchConfig& config, Rpc& rpc) {
  if (config.probe_wait_for_go) {
    print_line(R"({"event":"ready"})");
    std::string go;
    std::getline(std::cin, go);
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(config.probe_timeout_ms);
  int attempts = 0;
  Status last;
  while (Clock::now() < deadline) {
    ++attempts;
    auto ep = rpc.transport->connect(config.gcs_address, 2s);
    if (ep.ok()) {
      auto status = rpc.node->client()
                        .call<proto::GcsStatusRequest, proto::GcsStatusResponse>(
                            *ep, "gcs.status", proto::GcsStatusRequest(), 5s)
                        .get();
      if (status.ok()) {
        const int64_t serving_us = now_us();
        auto nodes = rpc.node->client()
                         .call<proto::GetNodesRequest, proto::GetNodesResponse>(
                             *ep, "gcs.get_nodes", proto::GetNodesRequest(), 30s)
                         .get();
        print_line(str_cat(R"({"mode":"probe","serving_mono_us":)", serving_us, R"(,"attempts":)",
                           attempts, R"(,"recovered_in_ms":)", status->recovered_in_ms(),
                           R"(,"kv_entries":)", status->kv_entries(), R"(,"last_index":)",
                           status->last_index(), R"(,"snapshot_index":)", status->snapshot_index(),
                           R"(,"nodes":)", nodes.ok() ? nodes->nodes_size() : -1, "}"));
        return 0;
      }
      last = status.status();
      (*ep)->close();
    } else {
      last = ep.status();
    }
    // Refused connections come back at once: pace the attempts.
    std::this_thread::sleep_for(1ms);
  }
  std::cerr << "halo_gcs_bench: the GCS at " << config.gcs_address << " did not answer within "
            << config.probe_timeout_ms << " ms (" << attempts << " attempts); last: " << last
            << "\n";
  return 1;
}

// --- watch ------------------------------------------------------------------------------

int run_watch(const BenchConfig& config, Rpc& rpc, const sigset_t& stop_signals) {
  std::atomic<bool> stop{false};
  std::thread poller([&] {
    uint64_t after = 0;
    std::string cluster_id;
    EndpointPtr endpoint;
    while (!stop.load()) {
      if (!endpoint || !endpoint->is_open()) {
        auto ep = rpc.transport->connect(config.gcs_address, 2s);
        if (!ep.ok()) {
          std::this_thread::sleep_for(10ms);
          continue;
        }
        endpoint = *ep;
      }
      proto::PollRequest request;
      request.set_channel(proto::NODES);
      request.set_after(after);
      request.set_max_wait_ms(500);
      request.set_cluster_id(cluster_id);
      auto reply =
          rpc.node->client()
              .call<proto::PollRequest, proto::PollResponse>(endpoint, "gcs.poll", request, 5s)
              .get();
      if (!reply.ok()) {
        endpoint.reset();
        continue;
      }
      const int64_t arrived_us = now_us();
      for (const auto& change : reply->node_changes()) {
        auto id = halo::NodeId::from_binary(change.node().node_id());
        print_line(str_cat(R"({"event":"node","seq":)", change.seq(), R"(,"resync":)",
                           reply->resync() ? "true" : "false", R"(,"node_id":")",
                           id.ok() ? id->to_hex() : std::string("?"), R"(","incarnation":)",
                           change.node().incarnation(), R"(,"state":")",
                           proto::NodeState_Name(change.node().state()), R"(","mono_us":)",
                           arrived_us, "}"));
      }
      after = reply->last_seq();
      cluster_id = reply->cluster_id();
    }
  });
  print_line(R"({"event":"watching"})");
  while (!stop_signal_within(stop_signals, 1000ms)) {
  }
  stop = true;
  poller.join();
  return 0;
}

// --- simulate ---------------------------------------------------------------------------

// Raises the open-file limit to its hard limit: a few descriptors per connection.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int run_simulate(const BenchConfig& config, Rpc& rpc, std::atomic<uint64_t>& answered,
                 const sigset_t& stop_signals) {
  const auto start = Clock::now();
  std::vector<EndpointPtr> endpoints(config.nodes);
  Status connected = run_windowed(config.nodes, config.window, [&](uint64_t i, auto done) {
    rpc.transport->connect(config.gcs_address, 30s,
                           [&endpoints, i, done](StatusOr<EndpointPtr> ep) {
                             if (ep.ok()) endpoints[i] = *ep;
                             done(ep.status());
                           });
  });
  if (!connected.ok()) {
    std::cerr << "halo_gcs_bench: opening " << config.nodes << " connections to "
              << config.gcs_address << ": " << connected << "\n";
    return 1;
  }
  const auto connected_at = Clock::now();
  const std::string address = rpc.transport->local_address();
  Status registered = run_windowed(config.nodes, config.window, [&](uint64_t i, auto done) {
    proto::RegisterNodeRequest request;
    proto::NodeInfo* node = request.mutable_node();
    node->set_node_id(halo::NodeId::random().binary());
    node->set_address(address);
    node->set_hostname(str_cat("sim", i));
    (*node->mutable_resources())["CPU"] = 64;
    rpc.node->client().call<proto::RegisterNodeRequest, proto::RegisterNodeResponse>(
        endpoints[i], "gcs.register_node", request, 30s,
        [done](StatusOr<proto::RegisterNodeResponse> r) { done(r.status()); });
  });
  if (!registered.ok()) {
    std::cerr << "halo_gcs_bench: registering " << config.nodes
              << " simulated nodes: " << registered << "\n";
    return 1;
  }
  const auto registered_at = Clock::now();
  print_line(str_cat(R"({"event":"ready","nodes":)", config.nodes, R"(,"connect_s":)",
                     std::chrono::duration<double>(connected_at - start).count(),
                     R"(,"register_s":)",
                     std::chrono::duration<double>(registered_at - connected_at).count(), "}"));
  do {
    print_line(str_cat(R"({"event":"checks","answered":)", answered.load(), R"(,"mono_us":)",
                       now_us(), R"(,"open":)", rpc.transport->stats().endpoints_open, "}"));
  } while (!stop_signal_within(stop_signals, 1000ms));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  BenchConfig config;
  halo::transport::TransportConfig transport_config;
  halo::ConfigLoader loader;
  loader.add(config);
  loader.add(transport_config);
  halo::ConfigSources sources;
  sources.env = environ;
  sources.args = {argv + 1, argv + argc};
  auto rest = loader.load(sources);
  if (loader.help_requested()) {
    std::cout << loader.describe();
    return 0;
  }
  if (!rest.ok()) {
    std::cerr << "halo_gcs_bench: " << rest.status() << "\n";
    return 2;
  }
  if (config.gcs_address.empty() || config.secret_file.empty()) {
    std::cerr << "halo_gcs_bench: --gcs_address and --secret_file are required\n";
    return 2;
  }
  auto secret = halo::gcs::read_secret_file(config.secret_file);
  if (!secret.ok()) {
    std::cerr << "halo_gcs_bench: " << secret.status() << "\n";
    return 2;
  }
  const sigset_t stop_signals = block_stop_signals();
  if (config.mode == "simulate") raise_open_file_limit();

  auto rpc = make_rpc(transport_config, *secret);
  if (!rpc.ok()) {
    std::cerr << "halo_gcs_bench: " << rpc.status() << "\n";
    return 1;
  }
  // Health checks are answered in every mode: nodes registered by populate stay alive while
  // it runs, and simulate is nothing else.
  std::atomic<uint64_t> answered{0};
  if (Status s = answer_health_checks(*(*rpc)->node, &answered); !s.ok()) {
    std::cerr << "halo_gcs_bench: " << s << "\n";
    return 1;
  }
  // Registered nodes give the GCS an address their peers could connect to.
  if (config.mode == "simulate" || config.mode == "populate") {
    if (Status s = (*rpc)->transport->listen(config.listen_host, 0); !s.ok()) {
      std::cerr << "halo_gcs_bench: listening on " << config.listen_host << ": " << s << "\n";
      return 1;
    }
  }

  if (config.mode == "writes") return run_writes(config, **rpc);
  if (config.mode == "populate") return run_populate(config, **rpc);
  if (config.mode == "probe") return run_probe(config, **rpc);
  if (config.mode == "watch") return run_watch(config, **rpc, stop_signals);
  if (config.mode == "simulate") return run_simulate(config, **rpc, answered, stop_signals);
  std::cerr << "halo_gcs_bench: unknown --mode=" << config.mode
            << "; use writes, populate, probe, watch or simulate\n";
  return 2;
}
