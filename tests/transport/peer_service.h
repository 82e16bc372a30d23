// The serving side of the transport tests' peer protocol (peer_protocol.h): a Transport that
// listens, a registered region filled with a known pattern, and handlers for echo, describe,
// checksum and fill requests. halo_transport_peer runs one in its own process; tests that
// need to look at the server's counters run one in-process.
//
//   PeerService::Options options;
//   options.config = cfg;
//   options.secret = secret;
//   auto peer = PeerService::start(options).value();
//   connect_to(peer->address());
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "halo/base/status.h"
#include "halo/transport/transport.h"
#include "page_buffer.h"
#include "peer_protocol.h"

namespace halo::transport::testing {

class PeerService {
 public:
  struct Options {
    TransportConfig config;
    std::string secret;
    std::string host = "127.0.0.1";
    uint16_t port = 0;
    // Size of the region peers may put into and get from; filled with `pattern_seed`'s pattern.
    size_t region_bytes = 8 << 20;
    uint64_t pattern_seed = kDefaultPatternSeed;
  };

  static StatusOr<std::unique_ptr<PeerService>> start(const Options& options);
  // Deregisters the region, then stops the transport (closing every endpoint).
  ~PeerService();

  std::string address() const { return transport_->local_address(); }
  Transport& transport() { return *transport_; }
  const RemoteRegion& region() const { return region_->remote(); }
  std::span<std::byte> region_bytes() const { return memory_.span(); }
  // How often the accept handler ran: inbound peers that authenticated.
  uint64_t accepted() const { return counters_->accepted.load(); }
  // Requests answered, of every kind.
  uint64_t requests_served() const { return counters_->served.load(); }

 private:
  struct Counters {
    std::atomic<uint64_t> accepted{0};
    std::atomic<uint64_t> served{0};
  };

  PeerService(PageBuffer memory) : memory_(std::move(memory)) {}
  Status install_handlers();

  PageBuffer memory_;
  bool stopping_ = false;  // Progress thread only: handlers ignore requests once set.
  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<MemoryRegion> region_;
};

}  // namespace halo::transport::testing
