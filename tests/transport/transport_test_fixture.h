// What the transport test binaries share: the backends × transports they run over, the
// configuration they use, a peer process to talk to, and a fixture that owns the test's own
// Transport and tears everything down in a safe order (endpoints closed, operations drained,
// regions deregistered, transport stopped, peer killed), also when a test fails halfway.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "halo/base/status.h"
#include "halo/transport/transport.h"
#include "page_buffer.h"
#include "peer_client.h"
#include "peer_service.h"
#include "tests/support/child_process.h"

namespace halo {
// Status codes print by name in test failures ("UNAVAILABLE", not "4-byte object").
void PrintTo(StatusCode code, std::ostream* os);
}  // namespace halo

namespace halo::transport::testing {

using namespace std::chrono_literals;

// One way of carrying bytes: a backend and the transport it runs over.
struct Backend {
  std::string_view name;  // The test-name suffix: "Ucx_Shm", ...
  std::string_view transport;
  std::string_view ucx_tls;
  std::string_view ofi_provider;
  bool tcp;  // Runs over TCP sockets (raw-socket tests apply).
};

inline constexpr Backend kUcxShm{"Ucx_Shm", "ucx", "posix,sysv,cma,self", "", false};
inline constexpr Backend kUcxTcp{"Ucx_Tcp", "ucx", "tcp,self", "", true};
inline constexpr Backend kOfiShm{"Ofi_Shm", "ofi", "", "shm", false};
inline constexpr Backend kOfiTcp{"Ofi_Tcp", "ofi", "", "tcp", true};

// Parameters print by name in test listings and failures.
void PrintTo(const Backend& backend, std::ostream* os);

inline constexpr Backend kAllBackends[] = {kUcxShm, kUcxTcp, kOfiShm, kOfiTcp};
inline constexpr Backend kTcpBackends[] = {kUcxTcp, kOfiTcp};

// For INSTANTIATE_TEST_SUITE_P: names parameters "Ucx_Shm", "Ofi_Tcp", ...
std::string backend_test_name(const ::testing::TestParamInfo<Backend>& info);

// Short failure-detection times, so that failure tests finish quickly.
inline constexpr std::chrono::milliseconds kPeerTimeout = 1500ms;
inline constexpr std::chrono::milliseconds kKeepaliveInterval = 300ms;
inline constexpr std::chrono::milliseconds kAuthTimeout = 2000ms;
// Allowed on top of kPeerTimeout for a failure to reach every pending operation: scheduling
// on a loaded two-core machine, and the transport's timer period.
inline constexpr std::chrono::milliseconds kFailureMargin = 2500ms;
// Limit of one step that should succeed (a round trip, a transfer up to a few MiB).
inline constexpr std::chrono::milliseconds kStepTimeout = 30s;

// The result of an operation, or DEADLINE_EXCEEDED when it has not completed in time.
Status await(std::future<Status> done, std::chrono::milliseconds limit);

// The configuration tests use for `backend` (its transport, kPeerTimeout, ...).
TransportConfig test_config(const Backend& backend);
// The same configuration as halo_transport_peer flags.
std::vector<std::string> config_flags(const TransportConfig& config);

// A fresh random secret, and a 0600 file holding it in a private temporary directory that
// goes away with the object.
class SecretFile {
 public:
  static StatusOr<std::unique_ptr<SecretFile>> create();
  ~SecretFile();
  const std::string& secret() const { return secret_; }
  const std::string& path() const { return path_; }

 private:
  SecretFile(std::string dir, std::string path, std::string secret)
      : dir_(std::move(dir)), path_(std::move(path)), secret_(std::move(secret)) {}
  std::string dir_;
  std::string path_;
  std::string secret_;
};

std::string random_secret();

// Path of the halo_transport_peer program (built next to the tests).
std::string peer_program();

// A halo_transport_peer in server mode, killed when the object goes.
class PeerProcess {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    size_t region_bytes = 8 << 20;
    std::vector<std::string> extra_flags;
    test::ChildOptions child;
  };
  // Starts the peer and waits until it listens.
  static StatusOr<PeerProcess> start(const TransportConfig& config, const std::string& secret_path,
                                     Options options);

  const std::string& address() const { return address_; }
  test::ChildProcess& process() { return process_; }

 private:
  PeerProcess(test::ChildProcess process, std::string address)
      : process_(std::move(process)), address_(std::move(address)) {}
  test::ChildProcess process_;
  std::string address_;
};

// "ucx://127.0.0.1:40123" -> {"127.0.0.1", 40123}; fails for addresses without a port.
struct HostPort {
  std::string host;
  uint16_t port;
};
StatusOr<HostPort> parse_host_port(std::string_view address);

// Buffer and registration of a local region; the region is released first.
struct LocalRegion {
  PageBuffer buffer;
  std::unique_ptr<MemoryRegion> region;
  std::span<std::byte> bytes() const { return buffer.span(); }
};

// Fixture of tests that run once per Backend. SetUp makes `transport_` (test_config of the
// parameter, with a PeerClient attached) and the secret; the helpers keep what they make so
// that TearDown releases it in order.
class TransportTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts a halo_transport_peer with this test's backend and secret; killed at teardown.
  StatusOr<PeerProcess*> start_peer(size_t region_bytes = 8 << 20);
  // Connects transport_ to `address`; the endpoint is closed at teardown.
  StatusOr<EndpointPtr> connect_to(const std::string& address,
                                   std::chrono::milliseconds timeout = kStepTimeout);
  // Options of an in-process PeerService with `config` and this test's secret, on loopback.
  PeerService::Options service_options(const TransportConfig& config) const;
  // A page buffer of `size` bytes registered with transport_, pre-faulted with zeros.
  StatusOr<LocalRegion*> register_local(size_t size);

  TransportConfig config_;
  std::unique_ptr<SecretFile> secret_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<PeerClient> client_;

 private:
  std::vector<EndpointPtr> endpoints_;
  std::vector<std::unique_ptr<LocalRegion>> locals_;
  std::vector<std::unique_ptr<PeerProcess>> peers_;
};

}  // namespace halo::transport::testing
