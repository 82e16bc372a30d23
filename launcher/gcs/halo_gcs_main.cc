// halo-gcs: the cluster's control plane (docs/gcs.md, "Running halo-gcs").
//
//   halo-gcs --data-dir=/var/halo/gcs --secret-file=/var/halo/cluster_secret --host=10.0.0.1
//
// Knobs come from defaults, HALO_* environment variables and flags (halo/base/config.h);
// `--help` lists them. Once it serves it prints one line to stdout,
//
//   halo-gcs listening on ucx://10.0.0.1:6380 (cluster 3f..., recovered 1234 records in 12 ms)
//
// and, with --address-file, writes the address there. SIGTERM or SIGINT stop it cleanly
// (everything acknowledged is on disk anyway: a SIGKILL loses nothing acknowledged either).
// Exit codes: 0 after a clean stop, 2 for bad flags, 1 when it cannot start (the reason, e.g.
// a corrupt data directory naming the file, on stderr) or when its storage fails.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <string>

#include "gcs/client/cluster_secret.h"
#include "gcs/server/gcs_config.h"
#include "gcs/server/gcs_server.h"
#include "halo/base/config.h"
#include "halo/base/logging.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport_config.h"

extern char** environ;

namespace {

int run(int argc, char** argv) {
  halo::gcs::GcsConfig config;
  halo::transport::TransportConfig transport;
  // The GCS is a control plane: its progress thread sleeps on the transport's event file
  // descriptor rather than spinning for the lowest latency. Health checks of 2,000 nodes every
  // 100 ms cost 0.87 cores in the transport's default "hybrid" mode, 0.54 in "event" mode.
  // `--progress-mode=hybrid` restores the default.
  transport.progress_mode = "event";
  // Nor does it spin while it awaits answers: checking 2,000 nodes every 100 ms it always
  // awaits some, and the await spin cost 0.61-0.66 cores against 0.50-0.57 without it (two
  // cores, session 12).
  transport.progress_await_spin_us = 0;
  halo::transport::RpcConfig rpc;
  halo::log::LoggingConfig logging;
  halo::ConfigLoader loader;
  loader.add(config);
  loader.add(transport);
  loader.add(rpc);
  loader.add(logging);
  halo::ConfigSources sources;
  sources.env = environ;
  sources.args.assign(argv + 1, argv + argc);
  auto rest = loader.load(sources);
  if (loader.help_requested()) {
    std::cout << "usage: halo-gcs --data-dir=DIR --secret-file=FILE [--host=ADDR] [--port=N] "
                 "[knobs...]\n\n"
              << loader.describe();
    return 0;
  }
  if (!rest.ok()) {
    std::cerr << "halo-gcs: " << rest.status() << "\n";
    return 2;
  }
  if (!rest->empty()) {
    std::cerr << "halo-gcs: unexpected argument \"" << rest->front()
              << "\": every setting is a --flag (see --help)\n";
    return 2;
  }
  if (halo::Status valid = config.validate(); !valid.ok()) {
    std::cerr << "halo-gcs: " << valid << "\n";
    return 2;
  }
  if (config.secret_file.empty()) {
    std::cerr << "halo-gcs: --secret-file is required: the cluster secret file (mode 0600) "
                 "that every client of the cluster also reads\n";
    return 2;
  }
  if (halo::Status s = halo::log::init(logging, "halo-gcs"); !s.ok()) {
    std::cerr << "halo-gcs: " << s << "\n";
    return 2;
  }

  // Signals are taken synchronously by this thread; every thread started later inherits the
  // mask, so none of them is interrupted by them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto secret = halo::gcs::read_secret_file(config.secret_file);
  if (!secret.ok()) {
    std::cerr << "halo-gcs: cannot start: " << secret.status() << "\n";
    return 1;
  }
  auto server = halo::gcs::GcsServer::start(config, transport, rpc, std::move(*secret));
  if (!server.ok()) {
    std::cerr << "halo-gcs: cannot start: " << server.status() << "\n";
    return 1;
  }
  std::atomic<bool> storage_failed{false};
  std::mutex failure_mu;
  halo::Status failure;
  (*server)->on_storage_failure([&](const halo::Status& status) {
    {
      std::lock_guard lock(failure_mu);
      failure = status;
    }
    storage_failed = true;
    kill(getpid(), SIGTERM);  // Wakes the sigwait below.
  });
  const auto& recovery = (*server)->recovery();
  std::printf("halo-gcs listening on %s (cluster %s, recovered %llu records in %lld ms)\n",
              (*server)->address().c_str(), (*server)->cluster_id_hex().c_str(),
              static_cast<unsigned long long>(recovery.last_index),
              static_cast<long long>(recovery.millis));
  std::fflush(stdout);
  halo::log::info("listening on {} (cluster {})", (*server)->address(),
                  (*server)->cluster_id_hex());

  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  halo::log::info("{}: stopping", storage_failed ? "storage failed" : strsignal(sig));
  (*server)->stop();
  if (storage_failed) {
    std::lock_guard lock(failure_mu);
    std::cerr << "halo-gcs: stopped: its write-ahead log failed: " << failure
              << "; restart it once the disk is fixed\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
