// The UCX backend alone, over shared memory (UCX_TLS=posix,sysv,cma,self) and TCP
// (UCX_TLS=tcp,self), with both put/get mechanisms: UCX's one-sided operations ("rma") and
// active messages landing in the target's region ("am"). Two Transports in one process, plus a
// child process (this binary re-run as a peer) for deaths by SIGKILL.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "halo/transport/transport.h"
#include "tests/support/child_process.h"
#include "tests/support/wait_for.h"

namespace halo::transport {
namespace {

using namespace std::chrono_literals;

constexpr char kSecret[] = "ucx-backend-test-cluster-secret";
constexpr uint16_t kEcho = 1;  // Replies with kEchoReply carrying the same header and payload.
constexpr uint16_t kEchoReply = 2;
constexpr uint16_t kSink = 3;  // Counts and drops.

struct Setting {
  const char* name;
  const char* tls;
  const char* mechanism;
};

TransportConfig make_config(const Setting& setting) {
  TransportConfig config;
  config.transport = "ucx";
  config.ucx_tls = setting.tls;
  config.rma_mechanism = setting.mechanism;
  config.connect_timeout_ms = 5000;
  config.peer_timeout_ms = 3000;
  config.keepalive_interval_ms = 300;
  return config;
}

std::span<const std::byte> bytes_of(const std::vector<std::byte>& v) {
  return {v.data(), v.size()};
}

std::vector<std::byte> pattern(size_t size, uint32_t seed) {
  std::vector<std::byte> out(size);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<std::byte>(x >> 24);
  }
  return out;
}

// A listening transport and a connected one, with an echo service on the listener.
class UcxPair {
 public:
  explicit UcxPair(const TransportConfig& server_config, const TransportConfig& client_config,
                   std::string client_secret = kSecret) {
    auto server = Transport::create(server_config, kSecret);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    EXPECT_TRUE(server_
                    ->set_am_handler(kEcho,
                                     [](AmMessage& m) {
                                       auto header = std::make_shared<std::vector<std::byte>>(
                                           m.header.begin(), m.header.end());
                                       auto payload = std::make_shared<std::vector<std::byte>>(
                                           m.payload.begin(), m.payload.end());
                                       m.from->send_am(kEchoReply, *header, *payload,
                                                       [header, payload](Status) {});
                                     })
                    .ok());
    EXPECT_TRUE(server_->set_am_handler(kSink, [this](AmMessage&) { ++sunk_; }).ok());
    server_->set_accept_handler([this](const EndpointPtr& ep) {
      std::lock_guard lock(mu_);
      accepted_.push_back(ep);
    });
    const Status listening = server_->listen("127.0.0.1", 0);
    EXPECT_TRUE(listening.ok()) << listening;
    auto client = Transport::create(client_config, client_secret);
    EXPECT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    EXPECT_TRUE(client_
                    ->set_am_handler(kEchoReply,
                                     [this](AmMessage& m) {
                                       std::lock_guard lock(mu_);
                                       replies_.emplace_back(m.payload.begin(), m.payload.end());
                                       reply_headers_.emplace_back(m.header.begin(),
                                                                   m.header.end());
                                     })
                    .ok());
  }

  StatusOr<EndpointPtr> connect(std::chrono::milliseconds timeout = 5s) {
    return client_->connect(server_->local_address(), timeout);
  }

  EndpointPtr accepted(size_t i = 0) {
    EndpointPtr ep;
    EXPECT_TRUE(test::wait_for(
        [&] {
          std::lock_guard lock(mu_);
          if (accepted_.size() <= i) return false;
          ep = accepted_[i];
          return true;
        },
        5s));
    return ep;
  }

  size_t reply_count() {
    std::lock_guard lock(mu_);
    return replies_.size();
  }
  std::vector<std::byte> reply(size_t i) {
    std::lock_guard lock(mu_);
    return replies_.at(i);
  }
  std::vector<std::byte> reply_header(size_t i) {
    std::lock_guard lock(mu_);
    return reply_headers_.at(i);
  }

  std::unique_ptr<Transport> server_;
  std::unique_ptr<Transport> client_;
  std::atomic<int> sunk_{0};

 private:
  std::mutex mu_;
  std::vector<EndpointPtr> accepted_;
  std::vector<std::vector<std::byte>> replies_;
  std::vector<std::vector<std::byte>> reply_headers_;
};

class UcxBackend : public ::testing::TestWithParam<Setting> {};

TEST_P(UcxBackend, ListenConnectAndAuthenticate) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  ASSERT_EQ(pair.server_->backend_name(), "ucx");
  EXPECT_EQ(pair.server_->local_address().rfind("ucx://127.0.0.1:", 0), 0u)
      << pair.server_->local_address();
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_TRUE((*ep)->is_open());
  EXPECT_EQ((*ep)->peer_address(), pair.server_->local_address());
  EndpointPtr inbound = pair.accepted();
  ASSERT_NE(inbound, nullptr);
  EXPECT_TRUE(inbound->is_open());
  EXPECT_EQ(pair.client_->stats().peers_authenticated, 1u);
  EXPECT_EQ(pair.server_->stats().peers_authenticated, 1u);
  EXPECT_EQ(pair.server_->stats().endpoints_open, 1u);
}

TEST_P(UcxBackend, WrongSecretIsRefused) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config, "a-different-secret-of-enough-length");
  auto ep = pair.connect(3s);
  ASSERT_FALSE(ep.ok());
  EXPECT_EQ(ep.status().code(), StatusCode::kUnauthenticated) << ep.status();
  EXPECT_EQ(pair.server_->stats().peers_authenticated, 0u);
  // The client may find out first and leave: the server counts the peer when it sees it go.
  EXPECT_TRUE(test::wait_for([&] { return pair.server_->stats().peers_rejected == 1; }, 10s))
      << pair.server_->stats().peers_rejected << " peers rejected";
}

TEST_P(UcxBackend, ActiveMessageRoundTripsSmallAndLarge) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  const std::vector<size_t> sizes = {0, 8, 4096, 64 * 1024, 4 << 20};
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto header = pattern(16 + i, 100 + i);
    const auto payload = pattern(sizes[i], static_cast<uint32_t>(i));
    ASSERT_TRUE((*ep)->send_am(kEcho, bytes_of(header), bytes_of(payload)).get().ok());
    ASSERT_TRUE(test::wait_for([&] { return pair.reply_count() == i + 1; }, 10s))
        << "no echo of " << sizes[i] << " bytes";
    EXPECT_EQ(pair.reply(i), payload) << sizes[i] << " bytes";
    EXPECT_EQ(pair.reply_header(i), header);
  }
}

TEST_P(UcxBackend, HeaderLargerThanUcxHeaderLimitArrivesWhole) {
  TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  const auto header = pattern(60 * 1024, 7);  // UCX takes about 8 KiB of header.
  const auto payload = pattern(100000, 8);
  ASSERT_TRUE((*ep)->send_am(kEcho, bytes_of(header), bytes_of(payload)).get().ok());
  ASSERT_TRUE(test::wait_for([&] { return pair.reply_count() == 1; }, 10s));
  EXPECT_EQ(pair.reply_header(0), header);
  EXPECT_EQ(pair.reply(0), payload);
}

// Puts into the server's region then gets back into a fresh client buffer, checking bytes.
TEST_P(UcxBackend, PutAndGetMoveExactBytes) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  constexpr size_t kRegion = 64 << 20;
  std::vector<std::byte> server_memory(kRegion + 64);
  std::vector<std::byte> client_memory(kRegion + 64);
  auto server_region = pair.server_->register_memory(server_memory.data(), server_memory.size());
  ASSERT_TRUE(server_region.ok()) << server_region.status();
  auto client_region = pair.client_->register_memory(client_memory.data(), client_memory.size());
  ASSERT_TRUE(client_region.ok()) << client_region.status();
  EXPECT_GE(pair.client_->stats().registered_bytes, client_memory.size());
  const RemoteRegion remote = (*server_region)->remote();

  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 20, kRegion}) {
    SCOPED_TRACE(testing::Message() << size << " bytes");
    const size_t offset = size == kRegion ? 0 : 17;  // Unaligned where there is room.
    const auto data = pattern(size, static_cast<uint32_t>(size));
    std::memcpy(client_memory.data() + offset, data.data(), size);
    ASSERT_TRUE((*ep)->put(**client_region, offset, remote, offset + 3, size).get().ok());
    ASSERT_TRUE((*ep)->flush().get().ok());
    ASSERT_EQ(std::memcmp(server_memory.data() + offset + 3, data.data(), size), 0);

    std::memset(client_memory.data(), 0, client_memory.size());
    ASSERT_TRUE((*ep)->get(**client_region, 5, remote, offset + 3, size).get().ok());
    ASSERT_EQ(std::memcmp(client_memory.data() + 5, data.data(), size), 0);
  }
}

TEST_P(UcxBackend, FlushCoversEveryEarlierPut) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  constexpr size_t kChunk = 256 * 1024;
  constexpr size_t kChunks = 64;
  std::vector<std::byte> server_memory(kChunk * kChunks);
  const auto data = pattern(kChunk * kChunks, 42);
  std::vector<std::byte> client_memory = data;
  auto server_region = pair.server_->register_memory(server_memory.data(), server_memory.size());
  auto client_region = pair.client_->register_memory(client_memory.data(), client_memory.size());
  ASSERT_TRUE(server_region.ok() && client_region.ok());
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  for (size_t i = 0; i < kChunks; ++i) {
    (*ep)->put(**client_region, i * kChunk, (*server_region)->remote(), i * kChunk, kChunk,
               [&](Status s) {
                 if (!s.ok()) ++failed;
                 ++completed;
               });
  }
  ASSERT_TRUE((*ep)->flush().get().ok());
  ASSERT_TRUE(test::wait_for([&] { return completed.load() == int{kChunks}; }, 10s));
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(server_memory, data);
}

TEST_P(UcxBackend, ConnectToAClosedPortFailsWithinTheTimeout) {
  const TransportConfig config = make_config(GetParam());
  auto client = Transport::create(config, kSecret);
  ASSERT_TRUE(client.ok()) << client.status();
  // A port that was free a moment ago: bound, then released.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  const auto start = std::chrono::steady_clock::now();
  auto ep = (*client)->connect("ucx://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), 2s);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(ep.ok());
  EXPECT_TRUE(ep.status().code() == StatusCode::kUnavailable ||
              ep.status().code() == StatusCode::kDeadlineExceeded)
      << ep.status();
  EXPECT_LT(elapsed, 2500ms);
}

TEST_P(UcxBackend, MalformedAddressIsAnInvalidArgument) {
  const TransportConfig config = make_config(GetParam());
  auto client = Transport::create(config, kSecret);
  ASSERT_TRUE(client.ok()) << client.status();
  for (const char* address : {"tcp://127.0.0.1:5", "ucx://127.0.0.1", "ucx://:80",
                              "ucx://127.0.0.1:99999", "ucx://[::1:5"}) {
    auto ep = (*client)->connect(address, 1s);
    ASSERT_FALSE(ep.ok()) << address;
    EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument) << address << ": " << ep.status();
  }
}

TEST_P(UcxBackend, ThousandsOfConcurrentOperationsAllComplete) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  std::vector<std::byte> server_memory(4 << 20);
  std::vector<std::byte> client_memory = pattern(4 << 20, 9);
  auto server_region = pair.server_->register_memory(server_memory.data(), server_memory.size());
  auto client_region = pair.client_->register_memory(client_memory.data(), client_memory.size());
  ASSERT_TRUE(server_region.ok() && client_region.ok());
  constexpr int kEach = 2000;
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  const auto count = [&](Status s) {
    if (!s.ok()) ++failed;
    ++completed;
  };
  const auto payload = pattern(100, 1);
  for (int i = 0; i < kEach; ++i) {
    const size_t offset = static_cast<size_t>(i) * 2048;
    (*ep)->send_am(kSink, {}, bytes_of(payload), count);
    (*ep)->put(**client_region, offset, (*server_region)->remote(), offset, 2048, count);
  }
  ASSERT_TRUE(test::wait_for([&] { return completed.load() == 2 * kEach; }, 30s))
      << completed.load() << " of " << 2 * kEach << " completed";
  ASSERT_TRUE((*ep)->flush().get().ok());
  EXPECT_EQ(failed.load(), 0);
  EXPECT_TRUE(test::wait_for([&] { return pair.sunk_.load() == kEach; }, 10s));
  EXPECT_EQ(std::memcmp(server_memory.data(), client_memory.data(), kEach * 2048), 0);
  EXPECT_EQ(pair.client_->stats().operations_pending, 0u);
}

TEST_P(UcxBackend, PeerTransportDestroyedMidTransferFailsPendingOperations) {
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  // Set before connecting: handlers are installed on the progress thread, asynchronously.
  std::atomic<bool> failure_reported{false};
  pair.client_->set_failure_handler(
      [&](const EndpointPtr&, const Status&) { failure_reported = true; });
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  constexpr size_t kSize = 32 << 20;
  std::vector<std::byte> server_memory(kSize);
  std::vector<std::byte> client_memory(kSize);
  auto server_region = pair.server_->register_memory(server_memory.data(), server_memory.size());
  auto client_region = pair.client_->register_memory(client_memory.data(), client_memory.size());
  ASSERT_TRUE(server_region.ok() && client_region.ok());
  const RemoteRegion remote = (*server_region)->remote();
  std::atomic<int> issued{0};
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  const auto count = [&](Status s) {
    if (!s.ok()) ++failed;
    ++completed;
  };
  constexpr size_t kChunk = 1 << 20;
  for (size_t i = 0; i < kSize / kChunk; ++i) {
    issued += 3;
    (*ep)->put(**client_region, i * kChunk, remote, i * kChunk, kChunk, count);
    (*ep)->get(**client_region, i * kChunk, remote, i * kChunk, kChunk, count);
    (*ep)->send_am(kSink, {}, {client_memory.data() + i * kChunk, kChunk}, count);
  }
  ++issued;
  (*ep)->flush(count);
  server_region->reset();
  pair.server_.reset();  // Mid-transfer: most operations are still in flight.
  const auto bound = std::chrono::milliseconds(config.peer_timeout_ms) + 2s;
  ASSERT_TRUE(test::wait_for([&] { return completed.load() == issued.load(); }, bound))
      << completed.load() << " of " << issued.load() << " operations completed";
  EXPECT_TRUE(test::wait_for([&] { return failure_reported.load(); }, bound));
  EXPECT_FALSE((*ep)->is_open());
  const Status late = (*ep)->put(**client_region, 0, remote, 0, 4096).get();
  EXPECT_EQ(late.code(), StatusCode::kUnavailable) << late;
  EXPECT_EQ(pair.client_->stats().operations_pending, 0u);
}

TEST_P(UcxBackend, PeerSendingMoreThanTheLimitsIsDropped) {
  TransportConfig server_config = make_config(GetParam());
  server_config.max_am_header_bytes = 1024;
  server_config.max_am_payload_bytes = 64 * 1024;
  const TransportConfig client_config = make_config(GetParam());
  UcxPair pair(server_config, client_config);
  for (const bool big_header : {false, true}) {
    auto ep = pair.connect();
    ASSERT_TRUE(ep.ok()) << ep.status();
    const auto header = pattern(big_header ? 4096 : 8, 1);
    const auto payload = pattern(big_header ? 8 : 1 << 20, 2);
    (*ep)->send_am(kSink, bytes_of(header), bytes_of(payload), [](Status) {});
    EXPECT_TRUE(test::wait_for([&] { return !(*ep)->is_open(); }, 5s))
        << "the server kept a peer that sent a " << (big_header ? "header" : "payload")
        << " over its limit";
  }
  EXPECT_EQ(pair.server_->stats().peers_rejected, 2u);
  EXPECT_EQ(pair.sunk_.load(), 0);
  // Within the limits the server still serves.
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  const auto payload = pattern(60 * 1024, 3);
  ASSERT_TRUE((*ep)->send_am(kSink, {}, bytes_of(payload)).get().ok());
  EXPECT_TRUE(test::wait_for([&] { return pair.sunk_.load() == 1; }, 5s));
}

// Over active messages the target checks every address against its own registrations: a
// forged address or key writes and reads nothing.
TEST_P(UcxBackend, ActiveMessagePutOutsideRegisteredMemoryIsRefused) {
  // "auto" is "am" over shared memory and TCP alike (docs/transport.md).
  if (std::string(GetParam().mechanism) == "rma") GTEST_SKIP() << "only active-message puts check";
  const TransportConfig config = make_config(GetParam());
  UcxPair pair(config, config);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  std::vector<std::byte> server_memory(3 << 20);  // [guard | region | guard]
  const size_t region_size = 1 << 20;
  auto server_region =
      pair.server_->register_memory(server_memory.data() + region_size, region_size);
  std::vector<std::byte> client_memory = pattern(region_size, 5);
  auto client_region = pair.client_->register_memory(client_memory.data(), client_memory.size());
  ASSERT_TRUE(server_region.ok() && client_region.ok());
  RemoteRegion outside = (*server_region)->remote();
  outside.addr += region_size;  // The guard after the region.
  RemoteRegion wrong_token = (*server_region)->remote();
  wrong_token.rkey[5] = static_cast<char>(wrong_token.rkey[5] ^ 0x5a);
  for (const RemoteRegion& forged : {outside, wrong_token}) {
    for (size_t size : {size_t{4096}, region_size}) {  // Eager and rendezvous.
      const Status put = (*ep)->put(**client_region, 0, forged, 0, size).get();
      const Status flush = (*ep)->flush().get();
      EXPECT_TRUE(!put.ok() || !flush.ok()) << "a put outside registered memory was accepted";
      EXPECT_EQ((put.ok() ? flush : put).code(), StatusCode::kOutOfRange) << put << " " << flush;
      const Status get = (*ep)->get(**client_region, 0, forged, 0, size).get();
      EXPECT_EQ(get.code(), StatusCode::kOutOfRange) << get;
    }
  }
  EXPECT_TRUE(std::all_of(server_memory.begin(), server_memory.end(),
                          [](std::byte b) { return b == std::byte{0}; }));
  EXPECT_TRUE((*ep)->is_open());  // A refused put is an error, not a reason to drop the peer.
}

// The set-up port belongs to halo: bytes from anything else are dropped without harm.
TEST_P(UcxBackend, GarbageOnTheListeningPortIsDropped) {
  TransportConfig config = make_config(GetParam());
  config.auth_timeout_ms = 500;
  UcxPair pair(config, config);
  const std::string address = pair.server_->local_address();
  const uint16_t port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  const auto raw_connection = [&](std::string_view bytes) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    if (!bytes.empty()) {
      EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), 0), ssize_t(bytes.size()));
    }
    timeval timeout{3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char buffer[64];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    ::close(fd);
    return n;
  };
  // Garbage, a valid preamble header announcing a huge body, and silence: all closed.
  EXPECT_EQ(raw_connection("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  std::string huge(12, '\0');
  const uint32_t magic = 0x42555848, body = 1u << 30;
  const uint16_t version = 1;
  std::memcpy(huge.data(), &magic, 4);
  std::memcpy(huge.data() + 4, &version, 2);
  std::memcpy(huge.data() + 8, &body, 4);
  EXPECT_EQ(raw_connection(huge), 0);
  EXPECT_EQ(raw_connection(""), 0);
  EXPECT_EQ(pair.server_->stats().peers_rejected, 3u);
  auto ep = pair.connect();
  ASSERT_TRUE(ep.ok()) << ep.status();
  // The client's connect completes once it has verified the server; the server counts the
  // peer when the client's proof reaches it, a moment later.
  EXPECT_TRUE(test::wait_for([&] { return pair.server_->stats().peers_authenticated == 1; }, 10s))
      << "the server authenticated " << pair.server_->stats().peers_authenticated
      << " peers after the garbage, not 1";
}

INSTANTIATE_TEST_SUITE_P(ShmAndTcp, UcxBackend,
                         ::testing::Values(Setting{"shm_rma", "posix,sysv,cma,self", "rma"},
                                           Setting{"shm_am", "posix,sysv,cma,self", "am"},
                                           Setting{"tcp_rma", "tcp,self", "rma"},
                                           Setting{"tcp_am", "tcp,self", "am"},
                                           Setting{"tcp_auto", "tcp,self", "auto"}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// ---- A peer in another process, killed with SIGKILL ----

constexpr uint16_t kWantRegion = 10;  // Replies kRegionInfo: addr, length, rkey.
constexpr uint16_t kRegionInfo = 11;

std::string encode_region(const RemoteRegion& region) {
  std::string out(16, '\0');
  std::memcpy(out.data(), &region.addr, 8);
  std::memcpy(out.data() + 8, &region.length, 8);
  return out + region.rkey;
}

RemoteRegion decode_region(std::span<const std::byte> bytes) {
  RemoteRegion region;
  std::memcpy(&region.addr, bytes.data(), 8);
  std::memcpy(&region.length, bytes.data() + 8, 8);
  region.rkey.assign(reinterpret_cast<const char*>(bytes.data()) + 16, bytes.size() - 16);
  return region;
}

// The peer process: run by PeerKilledWithSigkill as this binary with
// --gtest_also_run_disabled_tests; serves a registered region until it is killed.
TEST(UcxPeerProcess, DISABLED_Serve) {
  const char* tls = std::getenv("HALO_UCX_TEST_PEER_TLS");
  const char* mechanism = std::getenv("HALO_UCX_TEST_PEER_MECHANISM");
  ASSERT_NE(tls, nullptr);
  ASSERT_NE(mechanism, nullptr);
  const TransportConfig config = make_config(Setting{"peer", tls, mechanism});
  auto transport = Transport::create(config, kSecret);
  ASSERT_TRUE(transport.ok()) << transport.status();
  std::vector<std::byte> memory(64 << 20);
  auto region = (*transport)->register_memory(memory.data(), memory.size());
  ASSERT_TRUE(region.ok()) << region.status();
  const auto info = std::make_shared<std::string>(encode_region((*region)->remote()));
  ASSERT_TRUE(
      (*transport)
          ->set_am_handler(kWantRegion,
                           [info](AmMessage& m) {
                             m.from->send_am(
                                 kRegionInfo,
                                 {reinterpret_cast<const std::byte*>(info->data()), info->size()},
                                 {}, [info](Status) {});
                           })
          .ok());
  ASSERT_TRUE((*transport)->set_am_handler(kSink, [](AmMessage&) {}).ok());
  ASSERT_TRUE((*transport)->listen("127.0.0.1", 0).ok());
  std::printf("LISTENING %s\n", (*transport)->local_address().c_str());
  std::fflush(stdout);
  // "destroy" on stdin: destroy the transport mid-transfer, and stay alive.
  std::string command;
  while (std::getline(std::cin, command) && command != "destroy") {
  }
  transport->reset();
  region->reset();
  std::printf("DESTROYED\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::minutes(5));
}

// How the peer process goes away mid-transfer.
struct PeerLoss {
  Setting setting;
  bool kill;  // SIGKILL; else it destroys its Transport and lives on.
  const char* name;
};

class UcxPeerLoss : public ::testing::TestWithParam<PeerLoss> {};

TEST_P(UcxPeerLoss, PendingOperationsFailSoonAfterThePeerIsGone) {
  const Setting setting = GetParam().setting;
  test::ChildOptions options;
  options.pipe_stdin = true;
  options.env = {std::string("HALO_UCX_TEST_PEER_TLS=") + setting.tls,
                 std::string("HALO_UCX_TEST_PEER_MECHANISM=") + setting.mechanism};
  auto peer = test::ChildProcess::spawn({"/proc/self/exe", "--gtest_also_run_disabled_tests",
                                         "--gtest_filter=UcxPeerProcess.DISABLED_Serve"},
                                        options);
  ASSERT_TRUE(peer.ok()) << peer.status();
  auto line = peer->wait_for_line("LISTENING ", 30s);
  ASSERT_TRUE(line.ok()) << line.status() << "\n" << peer->output_text();
  const std::string address = line->substr(std::string("LISTENING ").size());

  const TransportConfig config = make_config(setting);
  auto transport = Transport::create(config, kSecret);
  ASSERT_TRUE(transport.ok()) << transport.status();
  std::promise<RemoteRegion> region_promise;
  ASSERT_TRUE(
      (*transport)
          ->set_am_handler(kRegionInfo,
                           [&](AmMessage& m) { region_promise.set_value(decode_region(m.header)); })
          .ok());
  std::atomic<int64_t> failed_at_us{-1};
  const auto start = std::chrono::steady_clock::now();
  const auto micros_since_start = [start] {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                 start)
        .count();
  };
  (*transport)->set_failure_handler([&](const EndpointPtr&, const Status&) {
    failed_at_us = micros_since_start();
  });
  auto ep = (*transport)->connect(address, 5s);
  ASSERT_TRUE(ep.ok()) << ep.status();
  ASSERT_TRUE((*ep)->send_am(kWantRegion, {}, {}).get().ok());
  auto region_future = region_promise.get_future();
  ASSERT_EQ(region_future.wait_for(5s), std::future_status::ready);
  const RemoteRegion remote = region_future.get();

  // A steady stream of 4 MiB puts, gets and messages, re-issued as each completes.
  constexpr size_t kChunk = 4 << 20;
  std::vector<std::byte> memory(16 * kChunk);
  auto local = (*transport)->register_memory(memory.data(), memory.size());
  ASSERT_TRUE(local.ok()) << local.status();
  std::atomic<bool> stop{false};
  std::atomic<int> outstanding{0};
  std::atomic<int> succeeded{0};
  std::atomic<int> failed{0};
  std::atomic<int> unexpected_code{0};
  std::function<void(int)> issue = [&](int slot) {
    ++outstanding;
    const size_t offset = static_cast<size_t>(slot) * kChunk;
    auto done = [&, slot](Status s) {
      if (s.ok()) {
        ++succeeded;
      } else {
        ++failed;
        if (s.code() != StatusCode::kUnavailable && s.code() != StatusCode::kCancelled) {
          ++unexpected_code;
          std::fprintf(stderr, "unexpected failure: %s\n", s.to_string().c_str());
        }
      }
      if (!stop.load() && s.ok()) issue(slot);
      --outstanding;
    };
    switch (slot % 3) {
      case 0:
        (*ep)->put(**local, offset, remote, offset, kChunk, done);
        break;
      case 1:
        (*ep)->get(**local, offset, remote, offset, kChunk, done);
        break;
      default:
        (*ep)->send_am(kSink, {}, {memory.data() + offset, kChunk}, done);
        break;
    }
  };
  for (int slot = 0; slot < 12; ++slot) issue(slot);
  ASSERT_TRUE(test::wait_for([&] { return succeeded.load() >= 24; }, 20s))
      << "the stream never got going: " << succeeded.load() << " succeeded";

  const int64_t killed_at_us = micros_since_start();
  if (GetParam().kill) {
    ASSERT_TRUE(peer->kill().ok());
  } else {
    ASSERT_TRUE(peer->write_stdin("destroy\n").ok());
  }
  // Detection: the kernel closes the set-up connection of a killed process, so this is fast
  // over both transports; peer_timeout_ms is the bound the contract promises.
  const auto bound = std::chrono::milliseconds(config.peer_timeout_ms) + 1s;
  ASSERT_TRUE(test::wait_for([&] { return failed_at_us.load() >= 0; }, bound))
      << "no failure reported within " << bound.count() << " ms of the peer's end";
  stop = true;
  ASSERT_TRUE(test::wait_for([&] { return outstanding.load() == 0; }, 5s))
      << outstanding.load() << " operations never completed";
  // A killed peer leaves operations in flight that fail; a peer destroying its transport may
  // first finish what it was doing.
  if (GetParam().kill) {
    EXPECT_GT(failed.load(), 0);
  }
  EXPECT_EQ(unexpected_code.load(), 0);
  EXPECT_FALSE((*ep)->is_open());
  EXPECT_EQ((*ep)->flush().get().code(), StatusCode::kUnavailable);
  EXPECT_EQ((*transport)->stats().operations_pending, 0u);
  std::fprintf(stderr, "[ %s ] failure reported %.1f ms after the peer's end\n", GetParam().name,
               (failed_at_us.load() - killed_at_us) / 1000.0);
  // The transport goes before the buffers its operations used: UCX 1.13's shared-memory
  // transport was seen (about 1 run in 30) to copy from a pending send's source after the
  // operation had completed with an error, while the transport shut down.
  ep->reset();
  local->reset();
  transport->reset();
}

INSTANTIATE_TEST_SUITE_P(
    ShmAndTcp, UcxPeerLoss,
    ::testing::Values(PeerLoss{{"", "posix,sysv,cma,self", "rma"}, true, "shm_rma_kill"},
                      PeerLoss{{"", "posix,sysv,cma,self", "am"}, true, "shm_am_kill"},
                      PeerLoss{{"", "tcp,self", "rma"}, true, "tcp_rma_kill"},
                      PeerLoss{{"", "tcp,self", "am"}, true, "tcp_am_kill"},
                      PeerLoss{{"", "posix,sysv,cma,self", "rma"}, false, "shm_rma_destroy"},
                      PeerLoss{{"", "posix,sysv,cma,self", "am"}, false, "shm_am_destroy"},
                      PeerLoss{{"", "tcp,self", "rma"}, false, "tcp_rma_destroy"},
                      PeerLoss{{"", "tcp,self", "am"}, false, "tcp_am_destroy"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace halo::transport
