// halo_transport_peer: the other end of the transport tests, in a process of its own (so a
// test can kill it, or run it inside another test host's network namespace).
//
// Server mode serves the peer protocol (peer_protocol.h) until SIGTERM or SIGINT:
//
//   halo_transport_peer --transport=ucx --ucx_tls=tcp,self --listen 127.0.0.1
//                       --secret-file /tmp/s --region_bytes=268435456
//   LISTENING ucx://127.0.0.1:40123
//
// Client mode connects to a server and runs a script, printing one line per result:
//
//   --connect ADDR --script=check          AM round trips, then put and get of each of
//                                          --check_sizes with content checks:
//                                          "CHECK <name> OK" / "CHECK <name> FAIL <why>",
//                                          then "DONE failures=<n>" (exit 0 iff n == 0).
//   --connect ADDR --script=transfer_loop  put/flush and get of --loop_op_bytes back to back:
//                                          "FLOWING" once transfers complete, then, when the
//                                          connection breaks and every operation has ended,
//                                          "OP_FAILED <kind> <status>" per failed operation and
//                                          "LOOP_ENDED ok=<n> failed=<n> unclear=<n>
//                                          ok_after_down=<n> extra=<n> open=<0|1>
//                                          handler=<0|1>" (whether the failure handler ran,
//                                          printing "ENDPOINT_FAILED <status>" first).
//
// Every TransportConfig knob is a flag too (--peer_timeout_ms=1500, --ofi_provider=shm, ...).
// Flags only: HALO_* environment variables are ignored, so a test controls the peer fully.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "halo/base/config.h"
#include "halo/transport/transport.h"
#include "page_buffer.h"
#include "peer_client.h"
#include "peer_protocol.h"
#include "peer_service.h"
#include "transfer_loop.h"

namespace halo::transport::testing {
namespace {

using std::chrono::milliseconds;

struct PeerOptions {
  std::string listen;
  uint16_t port = 0;
  std::string secret_file;
  uint64_t region_bytes = 8 << 20;
  uint64_t pattern_seed = kDefaultPatternSeed;
  std::string connect;
  std::string script = "check";
  std::string check_sizes = "0,1,4096,1048576";
  uint64_t loop_op_bytes = 256 << 20;
  int64_t step_timeout_ms = 60000;

  template <typename V>
  void visit(V& v) {
    v("listen", listen, "server mode: host (or address) to listen on");
    v("port", port, "server mode: port to listen on; 0 picks a free one");
    v("secret_file", secret_file, "file holding the cluster secret (at least 16 bytes)");
    v("region_bytes", region_bytes, "server mode: size of the registered region");
    v("pattern_seed", pattern_seed, "server mode: seed of the region's initial pattern");
    v("connect", connect, "client mode: address of the server to connect to");
    v("script", script, "client mode: check or transfer_loop");
    v("check_sizes", check_sizes, "client mode, check: comma-separated put/get sizes");
    v("loop_op_bytes", loop_op_bytes, "client mode, transfer_loop: bytes per operation");
    v("step_timeout_ms", step_timeout_ms, "client mode: time limit of each step");
  }
};

// Lines come from the main thread and the progress thread; each is written whole and flushed,
// since the test reads them as they come.
void say(const std::string& line) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::cout << line << std::endl;
}

StatusOr<std::string> read_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found_error(str_cat("cannot read the secret file '", path, "'"));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  std::string secret = bytes.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  return secret;
}

StatusOr<std::vector<uint64_t>> parse_sizes(const std::string& text) {
  std::vector<uint64_t> sizes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      sizes.push_back(std::stoull(item));
    } catch (const std::exception&) {
      return invalid_argument_error(str_cat("--check_sizes: '", item, "' is not a size"));
    }
  }
  return sizes;
}

// Waits for SIGTERM or SIGINT, which main() blocked in every thread before starting any.
void wait_for_termination() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
}

int serve(const TransportConfig& config, const PeerOptions& options, const std::string& secret) {
  PeerService::Options service_options{.config = config,
                                       .secret = secret,
                                       .host = options.listen,
                                       .port = options.port,
                                       .region_bytes = options.region_bytes,
                                       .pattern_seed = options.pattern_seed};
  auto service = PeerService::start(service_options);
  if (!service.ok()) {
    std::cerr << "halo_transport_peer: " << service.status() << "\n";
    return 1;
  }
  say("LISTENING " + (*service)->address());
  wait_for_termination();
  return 0;
}

// One step of the check script: prints its result and counts failures.
class Checker {
 public:
  void record(const std::string& name, const Status& result) {
    if (result.ok()) {
      say("CHECK " + name + " OK");
    } else {
      failures_++;
      say("CHECK " + name + " FAIL " + result.to_string());
    }
  }
  int failures() const { return failures_; }

 private:
  int failures_ = 0;
};

Status check_echo(PeerClient& client, Endpoint& ep, size_t payload_bytes, milliseconds limit) {
  std::string header = "echo check of " + std::to_string(payload_bytes) + " bytes";
  std::vector<std::byte> payload(payload_bytes);
  fill_pattern(payload, 42, 0);
  HALO_ASSIGN_OR_RETURN(PeerReply reply, client.echo(ep, as_bytes(header), payload, limit));
  if (reply.header != header) return data_loss_error("echoed header differs");
  if (reply.payload != payload) return data_loss_error("echoed payload differs");
  return Status();
}

Status check_put(PeerClient& client, Endpoint& ep, const MemoryRegion& local,
                 const RemoteRegion& remote, size_t size, milliseconds limit) {
  fill_pattern({local.data(), size}, 1000 + size, 0);
  HALO_RETURN_IF_ERROR(ep.put(local, 0, remote, 0, size).get());
  HALO_RETURN_IF_ERROR(ep.flush().get());
  HALO_ASSIGN_OR_RETURN(uint64_t remote_sum, client.checksum(ep, 0, size, limit));
  if (remote_sum != checksum({local.data(), size})) {
    return data_loss_error("the peer's region does not hold the bytes put");
  }
  return Status();
}

Status check_get(PeerClient& client, Endpoint& ep, const MemoryRegion& local,
                 const RemoteRegion& remote, size_t size, milliseconds limit) {
  const uint64_t seed = 2000 + size;
  HALO_RETURN_IF_ERROR(client.fill(ep, 0, size, seed, limit));
  std::fill_n(local.data(), size, std::byte{0});
  HALO_RETURN_IF_ERROR(ep.get(local, 0, remote, 0, size).get());
  const size_t bad = find_pattern_mismatch({local.data(), size}, seed, 0);
  if (bad != size) return data_loss_error(str_cat("bytes got differ from offset ", bad));
  return Status();
}

int run_check(Transport& transport, PeerClient& client, const PeerOptions& options) {
  const milliseconds limit(options.step_timeout_ms);
  auto sizes = parse_sizes(options.check_sizes);
  if (!sizes.ok()) {
    std::cerr << sizes.status() << "\n";
    return 2;
  }
  Checker checker;
  auto ep = transport.connect(options.connect, limit);
  checker.record("connect", ep.status());
  if (!ep.ok()) {
    say("DONE failures=" + std::to_string(checker.failures()));
    return 1;
  }
  checker.record("am_small", check_echo(client, **ep, 64, limit));
  checker.record("am_64KiB", check_echo(client, **ep, 64 << 10, limit));
  auto remote = client.describe(**ep, limit);
  checker.record("describe", remote.status());
  const uint64_t largest = sizes->empty() ? 0 : *std::max_element(sizes->begin(), sizes->end());
  auto buffer = PageBuffer::allocate(largest);
  auto local = buffer.ok() ? transport.register_memory(buffer->data(), largest)
                           : StatusOr<std::unique_ptr<MemoryRegion>>(buffer.status());
  checker.record("register", local.status());
  if (remote.ok() && local.ok()) {
    for (uint64_t size : *sizes) {
      checker.record("put_" + std::to_string(size),
                     check_put(client, **ep, **local, *remote, size, limit));
      checker.record("get_" + std::to_string(size),
                     check_get(client, **ep, **local, *remote, size, limit));
    }
  }
  (*ep)->close();
  say("DONE failures=" + std::to_string(checker.failures()));
  return checker.failures() == 0 ? 0 : 1;
}

int run_transfer_loop(Transport& transport, PeerClient& client, const PeerOptions& options) {
  const milliseconds limit(options.step_timeout_ms);
  std::atomic<int64_t> down_at_ns{0};
  transport.set_failure_handler([&down_at_ns](const EndpointPtr&, const Status& why) {
    const int64_t now = Clock::now().time_since_epoch().count();
    say("ENDPOINT_FAILED " + why.to_string());
    down_at_ns = now;
  });
  auto ep = transport.connect(options.connect, limit);
  if (!ep.ok()) {
    say("ERROR connect " + ep.status().to_string());
    return 1;
  }
  auto remote = client.describe(**ep, limit);
  if (!remote.ok()) {
    say("ERROR describe " + remote.status().to_string());
    return 1;
  }
  const size_t n = std::min<uint64_t>(options.loop_op_bytes, remote->length);
  auto source_buffer = PageBuffer::allocate(n);
  auto target_buffer = PageBuffer::allocate(n);
  if (!source_buffer.ok() || !target_buffer.ok()) {
    say("ERROR allocate");
    return 1;
  }
  fill_pattern(source_buffer->span(), 7, 0);
  fill_pattern(target_buffer->span(), 8, 0);
  auto source = transport.register_memory(source_buffer->data(), n);
  auto target = transport.register_memory(target_buffer->data(), n);
  if (!source.ok() || !target.ok()) {
    say("ERROR register");
    return 1;
  }
  TransferLoop::Options loop_options;
  loop_options.op_bytes = n;
  TransferLoop loop(*ep, **source, **target, *remote, loop_options);
  loop.start();
  const auto flowing_deadline = Clock::now() + limit;
  while (loop.completed_ok() < 2 && loop.pending() > 0 && Clock::now() < flowing_deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  if (loop.completed_ok() < 2) {
    say("ERROR transfers did not flow");
    loop.stop_issuing();
    loop.wait_until_idle(limit);
    return 1;
  }
  say("FLOWING");
  // Runs until the connection breaks: a chain stops at its first failure, and once every
  // chain has stopped nothing is pending. The test bounds how long that may take; the limit
  // here only keeps a stuck peer from running forever.
  if (!loop.wait_until_idle(limit)) {
    say(str_cat("LOOP_STUCK pending=", loop.pending()));
    return 1;
  }
  loop.stop_issuing();
  // The failure handler runs after the failed operations completed; give it a moment.
  const auto handler_deadline = Clock::now() + std::chrono::seconds(5);
  while (down_at_ns.load() == 0 && Clock::now() < handler_deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  size_t ok = 0;
  size_t failed = 0;
  size_t unclear = 0;
  size_t ok_after_down = 0;
  const int64_t down = down_at_ns.load();
  for (const auto& outcome : loop.outcomes()) {
    if (outcome.status.ok()) {
      ok++;
      if (down != 0 && outcome.completed.time_since_epoch().count() > down) ok_after_down++;
      continue;
    }
    failed++;
    const auto code = outcome.status.code();
    if (code != StatusCode::kUnavailable && code != StatusCode::kCancelled) unclear++;
    say(str_cat("OP_FAILED ", TransferLoop::kind_name(outcome.kind), " ",
                outcome.status.to_string()));
  }
  say(str_cat("LOOP_ENDED ok=", ok, " failed=", failed, " unclear=", unclear,
              " ok_after_down=", ok_after_down, " extra=", loop.extra_completions(),
              " open=", (*ep)->is_open() ? 1 : 0, " handler=", down != 0 ? 1 : 0));
  return 0;
}

int run_client(const TransportConfig& config, const PeerOptions& options,
               const std::string& secret) {
  auto transport = Transport::create(config, secret);
  if (!transport.ok()) {
    say("ERROR create " + transport.status().to_string());
    return 1;
  }
  auto client = PeerClient::attach(**transport);
  if (!client.ok()) {
    say("ERROR attach " + client.status().to_string());
    return 1;
  }
  if (options.script == "check") return run_check(**transport, **client, options);
  if (options.script == "transfer_loop") return run_transfer_loop(**transport, **client, options);
  std::cerr << "halo_transport_peer: unknown --script '" << options.script
            << "' (check or transfer_loop)\n";
  return 2;
}

int peer_main(int argc, char** argv) {
  // Blocked before any thread starts, so every thread inherits the mask and sigwait() in the
  // main thread is the only receiver.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  TransportConfig config;
  PeerOptions options;
  ConfigLoader loader;
  loader.add(config);
  loader.add(options);
  ConfigSources sources;
  sources.args.assign(argv + 1, argv + argc);
  auto rest = loader.load(sources);
  if (loader.help_requested()) {
    std::cout << loader.describe();
    return 0;
  }
  if (!rest.ok()) {
    std::cerr << "halo_transport_peer: " << rest.status() << "\n";
    return 2;
  }
  if (!rest->empty() || options.listen.empty() == options.connect.empty()) {
    std::cerr << "halo_transport_peer: give exactly one of --listen HOST or --connect ADDR\n";
    return 2;
  }
  auto secret = read_secret(options.secret_file);
  if (!secret.ok()) {
    std::cerr << "halo_transport_peer: " << secret.status() << "\n";
    return 2;
  }
  if (!options.listen.empty()) return serve(config, options, *secret);
  return run_client(config, options, *secret);
}

}  // namespace
}  // namespace halo::transport::testing

int main(int argc, char** argv) { return halo::transport::testing::peer_main(argc, argv); }
