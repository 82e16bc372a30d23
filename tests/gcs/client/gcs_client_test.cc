// GcsClient (gcs/client/gcs_client.h) against a small GCS stand-in: a real Transport + RpcNode
// in the test process (UCX over TCP on 127.0.0.1) that implements the few methods these tests
// need. A "restart" destroys it and starts another on the same port, as a restarted halo-gcs
// would be.
#include "gcs/client/gcs_client.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_address.h"
#include "gcs/client/raw_message.h"
#include "tests/support/wait_for.h"

namespace halo::gcs {
namespace {

using namespace std::chrono_literals;
using test::wait_for;

constexpr char kSecret[] = "gcs-client-test-secret-0123456789abcdef";

transport::TransportConfig tcp_config() {
  transport::TransportConfig config;
  config.transport = "ucx";
  config.ucx_tls = "tcp,self";
  return config;
}

uint16_t port_of(const std::string& address) {
  return static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

// The stand-in. "gcs.kv_get" answers key "hold" never (it keeps the call open until the server
// goes away) and every other key with "<generation>:<key>", or NOT_FOUND for "missing".
// "gcs.poll" serves a node feed with GCS semantics: changes after `after`, or a resync (the
// whole table) when `after` precedes the history this instance has (first poll, or the
// history lost by a restart).
class FakeGcs {
 public:
  struct Feed {
    std::string cluster_id = "cluster-1";
    uint64_t seq = 0;
    std::map<std::string, proto::NodeInfo> table;
  };

  static std::unique_ptr<FakeGcs> start(int generation, uint16_t port) {
    return start(generation, port, Feed());
  }
  static std::unique_ptr<FakeGcs> start(int generation, uint16_t port, Feed feed) {
    auto gcs = std::unique_ptr<FakeGcs>(new FakeGcs(generation, std::move(feed)));
    Status s = gcs->init(port);
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? std::move(gcs) : nullptr;
  }

  ~FakeGcs() {
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    // RPC node and transport first: held calls must see their connection close (what a dead
    // GCS looks like), not an error reply from a dropped responder.
    rpc_.reset();
    transport_.reset();
    held_.clear();
  }

  const std::string& address() const { return address_; }
  int held() {
    std::lock_guard lock(mu_);
    return static_cast<int>(held_.size());
  }
  int kv_requests() const { return kv_requests_.load(); }
  Feed feed() {
    std::lock_guard lock(mu_);
    return feed_;
  }

  // A node row changes: the next sequence number.
  void publish(const proto::NodeInfo& node) {
    {
      std::lock_guard lock(mu_);
      proto::NodeChange change;
      change.set_seq(++feed_.seq);
      *change.mutable_node() = node;
      feed_.table[node.node_id()] = node;
      history_.push_back(change);
    }
    cv_.notify_all();
  }

 private:
  FakeGcs(int generation, Feed feed)
      : generation_(generation), feed_(std::move(feed)), first_seq_(feed_.seq + 1) {}

  Status init(uint16_t port) {
    HALO_ASSIGN_OR_RETURN(transport_, transport::Transport::create(tcp_config(), kSecret));
    transport::RpcConfig rpc_config;
    rpc_config.handler_threads = 4;  // The poll handler blocks while it waits for changes.
    HALO_ASSIGN_OR_RETURN(rpc_, transport::RpcNode::create(*transport_, rpc_config));
    Status s = rpc_->server().handle_async<proto::KvGetRequest, proto::KvGetResponse>(
        "gcs.kv_get", [this](const proto::KvGetRequest& request,
                             transport::RpcResponder<proto::KvGetResponse> reply) {
          ++kv_requests_;
          if (request.key() == "hold" && generation_ == 1) {
            std::lock_guard lock(mu_);
            held_.push_back(reply);
            return;
          }
          if (request.key() == "missing") return reply.respond(not_found_error("no such key"));
          proto::KvGetResponse response;
          response.set_value(str_cat(generation_, ":", request.key()));
          reply.respond(response);
        });
    HALO_RETURN_IF_ERROR(s);
    s = rpc_->server().handle<proto::PollRequest, proto::PollResponse>(
        "gcs.poll",
        [this](const proto::PollRequest& request,
               transport::RpcContext&) -> StatusOr<proto::PollResponse> { return poll(request); });
    HALO_RETURN_IF_ERROR(s);
    // A broken GCS: its answer to get_nodes is bytes that parse as no message.
    s = rpc_->server().handle<internal::RawMessage, internal::RawMessage>(
        "gcs.get_nodes", [](const internal::RawMessage&, transport::RpcContext&) {
          return StatusOr<internal::RawMessage>(internal::RawMessage{std::string(16, '\xff')});
        });
    HALO_RETURN_IF_ERROR(s);
    HALO_RETURN_IF_ERROR(transport_->listen("127.0.0.1", port));
    address_ = transport_->local_address();
    return Status();
  }

  proto::PollResponse poll(const proto::PollRequest& request) {
    std::unique_lock lock(mu_);
    proto::PollResponse response;
    response.set_cluster_id(feed_.cluster_id);
    if (request.after() < first_seq_ || request.cluster_id() != feed_.cluster_id) {
      response.set_resync(true);
      for (const auto& [id, node] : feed_.table) {
        proto::NodeChange* change = response.add_node_changes();
        change->set_seq(feed_.seq);
        *change->mutable_node() = node;
      }
      response.set_last_seq(feed_.seq);
      return response;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(request.max_wait_ms()),
                 [&] { return shutdown_ || feed_.seq > request.after(); });
    for (const auto& change : history_) {
      if (change.seq() > request.after()) *response.add_node_changes() = change;
    }
    response.set_last_seq(std::max(request.after(), feed_.seq));
    return response;
  }

  const int generation_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  Feed feed_;
  const uint64_t first_seq_;
  std::vector<proto::NodeChange> history_;
  std::vector<transport::RpcResponder<proto::KvGetResponse>> held_;
  std::atomic<int> kv_requests_{0};
  std::string address_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::RpcNode> rpc_;
};

std::unique_ptr<GcsClient> make_client(const std::string& address,
                                       std::chrono::milliseconds reconnect_timeout = 20s) {
  GcsClientOptions options;
  options.address = address;
  options.cluster_secret = kSecret;
  options.transport = tcp_config();
  options.reconnect_timeout = reconnect_timeout;
  auto client = GcsClient::create(options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

StatusOr<std::string> kv_get(GcsClient& client, const std::string& key,
                             std::chrono::milliseconds timeout = 0ms) {
  proto::KvGetRequest request;
  request.set_key(key);
  auto response =
      client.call<proto::KvGetRequest, proto::KvGetResponse>("gcs.kv_get", request, timeout);
  if (!response.ok()) return response.status();
  return response->value();
}

proto::NodeInfo node_row(int n, proto::NodeState state, uint64_t incarnation = 1) {
  proto::NodeInfo node;
  node.set_node_id(str_cat("node-", n));
  node.set_incarnation(incarnation);
  node.set_state(state);
  node.set_address(str_cat("ucx://10.0.0.", n, ":7000"));
  return node;
}

TEST(GcsClient, CallInFlightIsRetriedOnTheRestartedServer) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  const uint16_t port = port_of(server->address());
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  std::atomic<int> reconnects{0};
  client->on_reconnect([&] { ++reconnects; });
  ASSERT_TRUE(client->connect().ok());
  ASSERT_EQ(kv_get(*client, "a").value(), "1:a");

  // A call the first server receives and never answers; the server then dies under it.
  StatusOr<std::string> held = internal_error("not done");
  std::thread caller([&] { held = kv_get(*client, "hold", 20s); });
  ASSERT_TRUE(wait_for([&] { return server->held() == 1; }, 10s)) << "the call never arrived";
  server.reset();
  server = FakeGcs::start(2, port);
  ASSERT_NE(server, nullptr);
  caller.join();

  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(*held, "2:hold") << "the call was not sent again to the restarted server";
  EXPECT_EQ(server->kv_requests(), 1);
  EXPECT_TRUE(wait_for([&] { return reconnects.load() == 1; }, 5s))
      << "on_reconnect ran " << reconnects.load() << " times";
  EXPECT_EQ(kv_get(*client, "b").value(), "2:b");
  EXPECT_NE(client->endpoint(), nullptr);
}

TEST(GcsClient, IdleClientReconnectsOnItsNextCallAfterARestart) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  const uint16_t port = port_of(server->address());
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(kv_get(*client, "x").value(), "1:x");
  server.reset();
  server = FakeGcs::start(2, port);
  ASSERT_NE(server, nullptr);
  auto value = kv_get(*client, "x", 10s);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "2:x");
}

TEST(GcsClient, ErrorFromTheGcsIsReturnedNotRetried) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  auto value = kv_get(*client, "missing");
  EXPECT_EQ(value.status().code(), StatusCode::kNotFound) << value.status();
  EXPECT_EQ(server->kv_requests(), 1);
}

TEST(GcsClient, CallToAHungGcsEndsAtItsDeadlineAndTheConnectionStaysUsable) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  const auto start = std::chrono::steady_clock::now();
  auto held = kv_get(*client, "hold", 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(held.status().code(), StatusCode::kDeadlineExceeded) << held.status();
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(kv_get(*client, "a").value(), "1:a");
}

TEST(GcsClient, GarbageAnswerIsAnErrorNotACrash) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  auto nodes = client->call<proto::GetNodesRequest, proto::GetNodesResponse>("gcs.get_nodes", {});
  EXPECT_EQ(nodes.status().code(), StatusCode::kInternal) << nodes.status();
  EXPECT_NE(nodes.status().message().find("does not parse"), std::string_view::npos)
      << nodes.status();
  EXPECT_EQ(kv_get(*client, "a").value(), "1:a");
}

TEST(GcsClient, ConnectGivesUpAfterReconnectTimeoutNamingTheAddress) {
  // A port nobody listens on: the one a server had before it went away for good.
  std::string address;
  {
    auto server = FakeGcs::start(1, 0);
    ASSERT_NE(server, nullptr);
    address = server->address();
  }
  auto client = make_client(address, 600ms);
  ASSERT_NE(client, nullptr);
  const auto start = std::chrono::steady_clock::now();
  Status s = client->connect();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(address), std::string_view::npos) << s;
  EXPECT_GE(took, 550ms);
  EXPECT_LT(took, 5s);
  // A call gives up at its own deadline too, with the same kind of error.
  auto value = kv_get(*client, "a", 300ms);
  EXPECT_EQ(value.status().code(), StatusCode::kUnavailable) << value.status();
}

TEST(GcsClient, WrongSecretIsRefused) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  GcsClientOptions options;
  options.address = server->address();
  options.cluster_secret = "another-clusters-secret-0123456789";
  options.transport = tcp_config();
  options.reconnect_timeout = 1s;
  auto client = GcsClient::create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  Status s = (*client)->connect();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(server->kv_requests(), 0);
}

// Applies poll answers to a table the way a subscriber does.
struct Subscriber {
  std::mutex mu;
  std::vector<proto::PollResponse> responses;
  std::map<std::string, proto::NodeInfo> table;
  int resyncs = 0;

  void on_change(const proto::PollResponse& response) {
    std::lock_guard lock(mu);
    responses.push_back(response);
    if (response.resync()) {
      ++resyncs;
      table.clear();
    }
    for (const auto& change : response.node_changes())
      table[change.node().node_id()] = change.node();
  }
  int resync_count() {
    std::lock_guard lock(mu);
    return resyncs;
  }
};

TEST(GcsClient, SubscriptionSeesEveryChangeInOrderAndResyncsAfterRestart) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  const uint16_t port = port_of(server->address());
  for (int n = 1; n <= 3; ++n) server->publish(node_row(n, proto::ALIVE));
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  Subscriber subscriber;
  auto subscription =
      client->subscribe_nodes([&](const proto::PollResponse& r) { subscriber.on_change(r); });
  ASSERT_TRUE(wait_for([&] { return subscription->last_seq() == 3; }, 10s));

  // 60 changes while subscribed, several per poll at times.
  for (int i = 0; i < 60; ++i) {
    server->publish(node_row(1 + i % 3, i % 2 == 0 ? proto::SUSPECTED : proto::ALIVE));
  }
  ASSERT_TRUE(wait_for([&] { return subscription->last_seq() == 63; }, 10s))
      << "last seq " << subscription->last_seq();
  {
    std::lock_guard lock(subscriber.mu);
    ASSERT_FALSE(subscriber.responses.empty());
    EXPECT_TRUE(subscriber.responses.front().resync()) << "the first answer must be a resync";
    EXPECT_EQ(subscriber.resyncs, 1);
    uint64_t expected = 4;
    for (size_t i = 1; i < subscriber.responses.size(); ++i) {
      for (const auto& change : subscriber.responses[i].node_changes()) {
        EXPECT_EQ(change.seq(), expected) << "a change was lost, repeated or reordered";
        expected = change.seq() + 1;
      }
    }
    EXPECT_EQ(expected, 64u);
  }

  // The GCS restarts and has lost its in-memory history: the subscriber must resync and then
  // carry on with changes made after the restart.
  FakeGcs::Feed feed = server->feed();
  server.reset();
  server = FakeGcs::start(2, port, feed);
  ASSERT_NE(server, nullptr);
  server->publish(node_row(4, proto::ALIVE));
  server->publish(node_row(2, proto::DEAD));
  ASSERT_TRUE(wait_for([&] { return subscription->last_seq() == 65; }, 15s))
      << "last seq " << subscription->last_seq();
  EXPECT_EQ(subscriber.resync_count(), 2);
  server->publish(node_row(3, proto::DRAINING));
  ASSERT_TRUE(wait_for([&] { return subscription->last_seq() == 66; }, 10s));
  std::lock_guard lock(subscriber.mu);
  const auto expected = server->feed().table;
  ASSERT_EQ(subscriber.table.size(), expected.size());
  for (const auto& [id, node] : expected) {
    EXPECT_EQ(subscriber.table[id].SerializeAsString(), node.SerializeAsString()) << id;
  }
}

TEST(GcsClient, DestroyingASubscriptionEndsItsHeldPollAtOnce) {
  auto server = FakeGcs::start(1, 0);
  ASSERT_NE(server, nullptr);
  server->publish(node_row(1, proto::ALIVE));
  auto client = make_client(server->address());
  ASSERT_NE(client, nullptr);
  Subscriber subscriber;
  auto subscription =
      client->subscribe_nodes([&](const proto::PollResponse& r) { subscriber.on_change(r); });
  ASSERT_TRUE(wait_for([&] { return subscriber.resync_count() == 1; }, 10s));
  // Its next poll is now held by the server (up to 5 s with nothing to report).
  const auto start = std::chrono::steady_clock::now();
  subscription.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

class SecretFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/halo-secret-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/secret";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  void write(const std::string& content, mode_t mode) {
    std::ofstream(path_) << content;
    ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
  }
  std::string dir_;
  std::string path_;
};

TEST_F(SecretFile, OwnerOnlyFileIsRead) {
  write("0123456789abcdef0123456789abcdef", 0600);
  auto secret = read_secret_file(path_);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_EQ(*secret, "0123456789abcdef0123456789abcdef");
}

TEST_F(SecretFile, GroupReadableFileIsRefusedWithTheFix) {
  write("0123456789abcdef0123456789abcdef", 0640);
  auto secret = read_secret_file(path_);
  EXPECT_EQ(secret.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(secret.status().message().find("chmod 600 " + path_), std::string_view::npos)
      << secret.status();
}

TEST_F(SecretFile, ShortOrMissingFileIsRefused) {
  write("short", 0600);
  EXPECT_EQ(read_secret_file(path_).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(read_secret_file(dir_ + "/none").status().code(), StatusCode::kNotFound);
}

TEST(GcsAddress, HostPortGetsTheTransportsScheme) {
  transport::TransportConfig config;
  EXPECT_EQ(gcs_transport_address("10.0.0.1:6380", config).value(), "ucx://10.0.0.1:6380");
  EXPECT_EQ(gcs_transport_address("ucx://h:1", config).value(), "ucx://h:1");
  config.transport = "ofi";
  config.ofi_provider = "tcp";
  EXPECT_EQ(gcs_transport_address("h:7", config).value(), "ofi+tcp://h:7");
  EXPECT_FALSE(gcs_transport_address("h", config).ok());
  EXPECT_FALSE(gcs_transport_address("h:99999", config).ok());
  EXPECT_FALSE(gcs_transport_address("", config).ok());
}

}  // namespace
}  // namespace halo::gcs
