// Creates a transport of each backend through an installed halo and prints what it got.
#include <cstdio>

#include "halo/transport/transport.h"

int main() {
  int failures = 0;
  for (const char* backend : {"ucx", "ofi"}) {
    halo::transport::TransportConfig config;
    config.transport = backend;
    auto transport = halo::transport::Transport::create(config, "consumer-secret-of-32-bytes....");
    if (!transport.ok()) {
      std::printf("%s: %s\n", backend, transport.status().to_string().c_str());
      ++failures;
      continue;
    }
    std::printf("%s: created backend %.*s\n", backend,
                static_cast<int>((*transport)->backend_name().size()),
                (*transport)->backend_name().data());
  }
  return failures;
}
