// halo-transport-echo: the echo server of the transport benchmarks (see pingpong.h). Prints
// "LISTENING <address>" once it accepts connections, then serves until SIGTERM or SIGINT.
//
//   halo-transport-echo --transport=ofi --ofi_provider=tcp --listen_host=198.18.0.2
//                       --secret_file=build/bench/secret
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "halo/base/config.h"
#include "pingpong.h"
#include "secret_file.h"

namespace {

struct EchoConfig {
  std::string listen_host = "127.0.0.1";  // Address to listen on.
  uint16_t listen_port = 0;               // 0 picks a free port.
  uint64_t region_bytes = 256ull << 20;   // Registered region that puts land in.
  std::string secret_file = "";           // Cluster secret (mode 0600).

  template <typename V>
  void visit(V& v) {
    v("listen_host", listen_host, "address to listen on");
    v("listen_port", listen_port, "port to listen on; 0 picks a free one");
    v("region_bytes", region_bytes, "size of the registered region puts land in");
    v("secret_file", secret_file, "file holding the cluster secret (mode 0600)");
  }
};

}  // namespace

extern char** environ;

int main(int argc, char** argv) {
  using namespace halo::transport;
  TransportConfig transport_config;
  EchoConfig config;
  halo::ConfigLoader loader;
  loader.add(transport_config);
  loader.add(config);
  auto loaded = loader.load({.file = "", .env = environ, .args = {argv + 1, argv + argc}});
  if (!loaded.ok()) {
    std::cerr << "halo-transport-echo: " << loaded.status() << "\n" << loader.describe();
    return 2;
  }
  auto secret = tools::read_secret_file(config.secret_file);
  if (!secret.ok()) {
    std::cerr << "halo-transport-echo: " << secret.status() << "\n";
    return 2;
  }
  // Block the stop signals before any thread exists so that only sigwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto server = tools::EchoServer::start(transport_config, *secret, config.listen_host,
                                         config.listen_port, config.region_bytes);
  if (!server.ok()) {
    std::cerr << "halo-transport-echo: " << server.status() << "\n";
    return 1;
  }
  std::printf("LISTENING %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  return 0;
}
