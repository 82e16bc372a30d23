// halo-transport-demo: two processes exchange messages and bulk data over each transport
// halo supports on this machine, and print latency and bandwidth. The child process runs the
// echo server (pingpong.h); the parent connects, measures, and stops it.
//
// Which transports run: all of ucx/ofi x shm/tcp by default, or the one chosen by
// HALO_TRANSPORT (ucx|ofi) and HALO_DEMO_LINK (shm|tcp).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "echo_child.h"
#include "pingpong.h"
#include "secret_file.h"

namespace {

using halo::Status;
using halo::StatusOr;
using halo::transport::TransportConfig;
namespace tools = halo::transport::tools;

struct Link {
  std::string backend;  // ucx | ofi
  std::string link;     // shm | tcp
};

TransportConfig config_for(const Link& l) {
  TransportConfig c;
  c.transport = l.backend;
  if (l.backend == "ucx") c.ucx_tls = l.link == "shm" ? "posix,sysv,cma,self" : "tcp,self";
  if (l.backend == "ofi") c.ofi_provider = l.link;
  return c;
}

constexpr size_t kRegionBytes = 64ull << 20;

Status run(const Link& link) {
  const std::string secret = tools::random_secret();
  const TransportConfig config = config_for(link);
  HALO_ASSIGN_OR_RETURN(auto server,
                        tools::EchoChild::spawn(config, secret, "127.0.0.1", kRegionBytes));
  const std::string& address = server->address();
  {
    HALO_ASSIGN_OR_RETURN(auto client,
                          tools::PingPongClient::connect(config, secret, address, kRegionBytes));
    HALO_ASSIGN_OR_RETURN(double warm, client->am_latency_us(8, 2000));
    (void)warm;
    HALO_ASSIGN_OR_RETURN(double latency, client->am_latency_us(8, 20000));
    std::printf("%-4s %-4s  %-28s  latency %7.2f us", link.backend.c_str(), link.link.c_str(),
                address.c_str(), latency);
    for (size_t size : {size_t{64} << 10, size_t{1} << 20, size_t{16} << 20}) {
      const uint64_t iterations = std::max<uint64_t>(8, (256ull << 20) / size);
      HALO_ASSIGN_OR_RETURN(double mbps, client->put_bandwidth_mbps(size, iterations));
      std::printf("  %5zu KiB %8.0f MB/s", size >> 10, mbps);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return Status();
}

}  // namespace

int main() {
  std::vector<Link> links;
  const char* backend = std::getenv("HALO_TRANSPORT");
  const char* link = std::getenv("HALO_DEMO_LINK");
  for (std::string b : {"ucx", "ofi"}) {
    for (std::string l : {"shm", "tcp"}) {
      if (backend && *backend && b != backend) continue;
      if (link && *link && l != link) continue;
      links.push_back({b, l});
    }
  }
  std::printf(
      "halo transport demo: two processes, 8 B active-message ping-pong (half round "
      "trip) and bulk puts into registered memory\n");
  int failures = 0;
  for (const Link& l : links) {
    Status s = run(l);
    if (!s.ok()) {
      std::printf("%-4s %-4s  FAILED: %s\n", l.backend.c_str(), l.link.c_str(),
                  s.to_string().c_str());
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
}
