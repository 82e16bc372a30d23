// Bad input never hurts the GCS: random bytes as the request of every method, garbage and
// truncated RPC frames from a raw transport, a client with the wrong secret, raw garbage on the
// listening TCP port. After each the GCS still serves, and nothing was applied. One test runs
// the GCS over libfabric (tcp) rather than UCX.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "tests/gcs/server/gcs_test_env.h"
#include "tests/support/wait_for.h"
#include "transport/proto/rpc.pb.h"

namespace halo::gcs::testing {
namespace {

// Any bytes, sent as a request body as they are, and any response body accepted: lets the test
// put bytes on the wire that no generated message would produce.
struct RawBytes {
  std::string bytes;
  bool ParseFromArray(const void* data, int size) {
    bytes.assign(static_cast<const char*>(data), static_cast<size_t>(size));
    return true;
  }
  bool SerializeToString(std::string* out) const {
    *out = bytes;
    return true;
  }
  std::string GetTypeName() const { return "RawBytes"; }
};

const std::vector<std::string> kMethods = {
    "gcs.register_node",    "gcs.renew_lease",   "gcs.drain_node", "gcs.unregister_node",
    "gcs.get_nodes",        "gcs.add_job",       "gcs.finish_job", "gcs.get_jobs",
    "gcs.put_actor",        "gcs.remove_actor",  "gcs.get_actors", "gcs.put_ha_object",
    "gcs.remove_ha_object", "gcs.get_ha_object", "gcs.kv_put",     "gcs.kv_get",
    "gcs.kv_del",           "gcs.kv_keys",       "gcs.poll",       "gcs.status"};

class GcsFuzz : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test_config(dir_.path());
    config_.health_check_initial_delay_ms = 600000;
    server_ = start_server(config_);
    ASSERT_NE(server_, nullptr);
    peer_ = RpcPeer::connect(server_->address());
    ASSERT_NE(peer_, nullptr);
  }
  // The GCS answers a real request correctly.
  void expect_serving() {
    proto::KvPutRequest put;
    put.set_key("still-here");
    put.set_overwrite(true);
    auto reply = peer_->call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put);
    EXPECT_TRUE(reply.ok()) << "the GCS stopped serving: " << reply.status();
  }

  TempDir dir_;
  GcsConfig config_;
  std::unique_ptr<GcsServer> server_;
  std::unique_ptr<RpcPeer> peer_;
};

TEST_F(GcsFuzz, RandomBytesAsEveryMethodsRequestAreRefusedAndChangeNothing) {
  std::mt19937_64 rng(20261123);
  const uint64_t before = server_->last_index();
  int answered = 0;
  for (const std::string& method : kMethods) {
    for (int i = 0; i < 30; ++i) {
      RawBytes request;
      request.bytes.resize(1 + rng() % 200);
      for (char& c : request.bytes) c = static_cast<char>(rng());
      // Field number 0 is never valid, so no message parses from these bytes: each must be
      // refused, whatever follows.
      request.bytes[0] = static_cast<char>(rng() % 8);
      auto reply = peer_->call<RawBytes, RawBytes>(method, request);
      EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument)
          << method << ": " << reply.status();
      ++answered;
    }
  }
  EXPECT_EQ(answered, static_cast<int>(kMethods.size()) * 30);
  EXPECT_EQ(server_->last_index(), before) << "bytes that are no request changed the tables";
  expect_serving();
}

// Bytes that may well parse (random fields of every type) and truncations of valid requests:
// whatever the GCS makes of them, it answers each one and keeps serving.
TEST_F(GcsFuzz, ParsableGarbageAndTruncatedRequestsAreAnsweredWithoutHarm) {
  std::mt19937_64 rng(7);
  proto::RegisterNodeRequest valid;
  valid.mutable_node()->set_node_id(NodeId::random().binary());
  valid.mutable_node()->set_address("ucx://127.0.0.1:5");
  (*valid.mutable_node()->mutable_labels())["failure_domain"] = "rack";
  const std::string bytes = valid.SerializeAsString();
  for (const std::string& method : kMethods) {
    if (method == "gcs.poll") continue;  // A valid poll may be held open; covered elsewhere.
    for (int i = 0; i < 20; ++i) {
      RawBytes request;
      if (i % 2 == 0) {
        request.bytes = bytes.substr(0, rng() % bytes.size());
      } else {
        request.bytes.resize(rng() % 64);
        for (char& c : request.bytes) c = static_cast<char>(rng());
      }
      auto reply = peer_->call<RawBytes, RawBytes>(method, request);
      EXPECT_NE(reply.status().code(), StatusCode::kDeadlineExceeded) << method;
      EXPECT_NE(reply.status().code(), StatusCode::kUnavailable) << method;
      EXPECT_NE(reply.status().code(), StatusCode::kInternal) << method << ": " << reply.status();
    }
  }
  expect_serving();
}

// Frames from a transport without the RPC layer: headers that do not parse, a truncated valid
// header, a request id of 0, a body that is not the method's type, an unknown method.
TEST_F(GcsFuzz, GarbageAndTruncatedFramesAreDroppedOrRefused) {
  auto raw = transport::Transport::create(test_transport(), kSecret);
  ASSERT_TRUE(raw.ok()) << raw.status();
  std::mutex mu;
  std::vector<transport::proto::RpcHeader> responses;
  ASSERT_TRUE((*raw)
                  ->set_am_handler(transport::kRpcResponseAm,
                                   [&](transport::AmMessage& m) {
                                     transport::proto::RpcHeader h;
                                     if (!h.ParseFromArray(m.header.data(),
                                                           static_cast<int>(m.header.size()))) {
                                       return;
                                     }
                                     std::lock_guard lock(mu);
                                     responses.push_back(h);
                                   })
                  .ok());
  auto ep = (*raw)->connect(server_->address(), 5s);
  ASSERT_TRUE(ep.ok()) << ep.status();
  auto send = [&](const std::string& header, const std::string& body) {
    Status s = (*ep)
                   ->send_am(transport::kRpcRequestAm,
                             std::as_bytes(std::span<const char>(header.data(), header.size())),
                             std::as_bytes(std::span<const char>(body.data(), body.size())))
                   .get();
    EXPECT_TRUE(s.ok()) << s;
  };
  transport::proto::RpcHeader good;
  good.set_request_id(1);
  good.set_kind(transport::proto::RPC_REQUEST);
  good.set_method_name("gcs.kv_put");
  good.set_deadline_ms(5000);
  const std::string good_header = good.SerializeAsString();
  proto::KvPutRequest put;
  put.set_key("from-raw");
  const std::string good_body = put.SerializeAsString();

  send(std::string(32, '\xff'), good_body);                        // Header garbage.
  send(good_header.substr(0, good_header.size() / 2), good_body);  // Truncated header.
  transport::proto::RpcHeader zero = good;
  zero.set_request_id(0);
  send(zero.SerializeAsString(), good_body);  // Request id 0.
  transport::proto::RpcHeader bad_body = good;
  bad_body.set_request_id(2);
  send(bad_body.SerializeAsString(), std::string(16, '\xff'));  // Body garbage.
  transport::proto::RpcHeader unknown = good;
  unknown.set_request_id(3);
  unknown.set_method_name("gcs.drop_all_tables");
  send(unknown.SerializeAsString(), good_body);  // Unknown method.
  transport::proto::RpcHeader truncated_body = good;
  truncated_body.set_request_id(4);
  send(truncated_body.SerializeAsString(), good_body.substr(0, good_body.size() - 1));

  // The answerable ones were answered with errors; the unanswerable dropped.
  ASSERT_TRUE(test::wait_for(
      [&] {
        std::lock_guard lock(mu);
        return responses.size() >= 3;
      },
      5s));
  {
    std::lock_guard lock(mu);
    for (const auto& h : responses) {
      EXPECT_NE(h.status_code(), 0) << "request " << h.request_id() << " was served";
    }
  }
  proto::KvGetRequest get;
  get.set_key("from-raw");
  EXPECT_EQ(
      (peer_->call<proto::KvGetRequest, proto::KvGetResponse>("gcs.kv_get", get).status().code()),
      StatusCode::kNotFound)
      << "a malformed frame was applied";
  EXPECT_GE(server_->rpc_stats().frames_dropped, 2u);
  expect_serving();
  (*ep)->close();
  ep->reset();
  raw->reset();
}

TEST_F(GcsFuzz, ClientWithTheWrongSecretIsRefusedAndOthersAreServed) {
  auto intruder =
      transport::Transport::create(test_transport(), "not-the-cluster-secret-0123456789");
  ASSERT_TRUE(intruder.ok());
  auto ep = (*intruder)->connect(server_->address(), 3s);
  EXPECT_FALSE(ep.ok()) << "a client with the wrong secret was let in";
  ASSERT_TRUE(test::wait_for([&] { return server_->transport_stats().peers_rejected >= 1; }, 5s));
  intruder->reset();
  expect_serving();
}

TEST_F(GcsFuzz, RawGarbageOnTheTcpPortIsDropped) {
  const std::string& address = server_->address();
  const int port = std::stoi(address.substr(address.rfind(':') + 1));
  const uint64_t rejected = server_->transport_stats().peers_rejected;
  for (const std::string& garbage :
       {std::string("GET / HTTP/1.1\r\nHost: gcs\r\n\r\n"), std::string(4096, '\0'),
        std::string("\xff\xff\xff\xff\x00\x00\x00\x40", 8)}) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(garbage.size()));
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char buffer[64];
    EXPECT_LE(::recv(fd, buffer, sizeof(buffer), 0), 0) << "the GCS answered garbage";
    ::close(fd);
  }
  EXPECT_GE(server_->transport_stats().peers_rejected, rejected + 3);
  expect_serving();
}

// The same GCS over libfabric's tcp provider: registration, a health check over the node's own
// connection, and the KV.
TEST(GcsOverOfi, ServesAndChecksNodesOverLibfabricTcp) {
  TempDir dir;
  GcsConfig config = test_config(dir.path());
  auto server = start_server(config, "ofi");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->address().rfind("ofi", 0), 0u) << server->address();
  FakeNode node(server->address(), NodeId::random(), "ofi");
  ASSERT_TRUE(node.connected());
  ASSERT_TRUE(node.register_node().ok());
  ASSERT_TRUE(test::wait_for([&] { return node.checks_seen() >= 2; }, 5s));
  EXPECT_EQ(node_state(node.peer(), node.id()), proto::ALIVE);
  proto::KvPutRequest put;
  put.set_key("ofi");
  put.set_value("works");
  ASSERT_TRUE(
      (node.peer().call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put).ok()));
  node.crash();
  auto peer = RpcPeer::connect(server->address(), "ofi");
  ASSERT_NE(peer, nullptr);
  ASSERT_TRUE(test::wait_for([&] { return node_state(*peer, node.id()) == proto::DEAD; }, 5s));
}

}  // namespace
}  // namespace halo::gcs::testing
