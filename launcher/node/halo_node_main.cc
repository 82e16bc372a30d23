// halo-node: the node daemon (node_daemon.h; docs/node.md). Joins the GCS at --gcs-address,
// answers its health checks and holds a lease until SIGTERM/SIGINT (unregisters, exit 0), a
// drain (exit 0), or until no GCS was reachable for --gcs-rpc-server-reconnect-timeout-s
// (exit 1, saying so). Exit 2: bad flags.
//
//   halo-node --gcs-address=10.0.0.1:6379 --secret-file=/tmp/halo/session_latest/cluster_secret
//             --host=10.0.0.2 --resources="GPU=2" --labels="failure_domain=rack1"
//             --state-file=/tmp/halo/session_latest/node-1.json
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "halo/base/config.h"
#include "halo/base/logging.h"
#include "launcher/node/node_daemon.h"

extern char** environ;

int main(int argc, char** argv) {
  using namespace halo;
  node::NodeConfig config;
  objstore::StoreConfig store_config;
  transport::TransportConfig transport_config;
  // The node's cores belong to the application (an MPI job runs a rank on each): the daemon's
  // progress thread sleeps on the transport's event descriptor instead of spinning. On a
  // two-core machine, 64-byte puts ran at 1,600/s with a spinning daemon and client (each
  // wake-up waited for a core) and at 17,800/s with both in "event" mode (docs/objstore.md).
  // `--progress-mode=hybrid` (and `--progress-core`) give a daemon with a core of its own the
  // lowest latency.
  transport_config.progress_mode = "event";
  transport::RpcConfig rpc_config;
  log::LoggingConfig log_config;
  ConfigLoader loader;
  loader.add(config);
  loader.add(store_config);
  loader.add(transport_config);
  loader.add(rpc_config);
  loader.add(log_config);
  auto loaded = loader.load({.file = "", .env = environ, .args = {argv + 1, argv + argc}});
  if (loader.help_requested()) {
    std::cout << "halo-node: the node daemon of a halo cluster (docs/node.md)\n\n"
              << loader.describe();
    return 0;
  }
  if (!loaded.ok()) {
    std::cerr << "halo-node: " << loaded.status() << "\n(halo-node --help lists the flags)\n";
    return 2;
  }
  if (!loaded->empty()) {
    std::cerr << "halo-node: unexpected argument '" << loaded->front()
              << "' (flags are --name=value; halo-node --help lists them)\n";
    return 2;
  }
  if (config.gcs_address.empty() || config.secret_file.empty()) {
    std::cerr << "halo-node: --gcs-address and --secret-file are required\n";
    return 2;
  }
  if (Status s = log::init(log_config, "halo-node"); !s.ok()) {
    std::cerr << "halo-node: " << s << "\n";
    return 2;
  }
  // Blocked before any thread exists, so that only the sigwait below receives them. SIGUSR1 is
  // how the waiter thread says the daemon ended on its own.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto daemon = node::NodeDaemon::start(config, store_config, transport_config, rpc_config);
  if (!daemon.ok()) {
    log::error("halo-node cannot start: {}", daemon.status());
    std::cerr << "halo-node: " << daemon.status() << "\n";
    return 1;
  }
  std::printf("halo-node %s listening on %s, joining the GCS at %s\n",
              (*daemon)->node_id().to_hex().c_str(), (*daemon)->address().c_str(),
              config.gcs_address.c_str());
  std::fflush(stdout);

  Status result;
  std::thread waiter([&] {
    result = (*daemon)->wait();
    ::kill(::getpid(), SIGUSR1);
  });
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  if (signal_number != SIGUSR1) {
    log::info("halo-node stopping on signal {}", signal_number);
    (*daemon)->request_stop();
  }
  waiter.join();
  daemon->reset();
  if (!result.ok()) {
    log::error("halo-node exits: {}", result);
    std::cerr << "halo-node: " << result << "\n";
    return 1;
  }
  return 0;
}
