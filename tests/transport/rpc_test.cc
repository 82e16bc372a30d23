// The RPC layer (halo/transport/rpc.h) over every backend: round trips, many calls at once,
// deadlines on both sides, peer failure, cancellation, malformed frames, and bulk data moved by
// put into a region the request describes.
//
// Each test runs over the in-process loopback transport (the RPC logic alone) and over UCX and
// libfabric on shared memory and TCP. A backend whose Transport::create answers UNIMPLEMENTED
// is skipped with its message.
#include "halo/transport/rpc.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "loopback_transport.h"
#include "tests/support/wait_for.h"
#include "tests/transport/rpc_test.pb.h"
#include "transport/proto/rpc.pb.h"

namespace halo::transport {
namespace {

using namespace std::chrono_literals;
using rpctest::EchoRequest;
using rpctest::EchoResponse;
using rpctest::FillRequest;
using rpctest::FillResponse;

struct BackendParam {
  const char* name;
  const char* transport;  // "loopback", "ucx" or "ofi".
  const char* ucx_tls;
  const char* ofi_provider;
};

constexpr BackendParam kBackends[] = {
    {"Loopback", "loopback", "", ""},   {"Ucx_Shm", "ucx", "posix,sysv,cma,self", ""},
    {"Ucx_Tcp", "ucx", "tcp,self", ""}, {"Ofi_Shm", "ofi", "", "shm"},
    {"Ofi_Tcp", "ofi", "", "tcp"},
};

constexpr char kSecret[] = "rpc-test-cluster-secret-0123456789abcdef";
// Short failure detection, so the peer-failure test finishes quickly.
constexpr auto kPeerTimeout = 1500ms;
// Allowed on top of a bound for scheduling on a loaded machine.
constexpr auto kMargin = 2500ms;
// Limit of one step that should succeed.
constexpr auto kStep = 30s;

constexpr uint32_t kEchoId = 7;

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string serialized(const google::protobuf::MessageLite& message) {
  return message.SerializeAsString();
}

// Bytes that parse as no protobuf message: a varint longer than ten bytes.
const std::string kGarbage(16, '\xff');

void PrintTo(const BackendParam& backend, std::ostream* os) { *os << backend.name; }

std::string describe(const RpcStats& s) {
  std::ostringstream out;
  out << "calls started " << s.calls_started << " succeeded " << s.calls_succeeded << " failed "
      << s.calls_failed << " (deadline " << s.calls_deadline_exceeded << ", unavailable "
      << s.calls_unavailable << ", cancelled " << s.calls_cancelled << "), responses ignored "
      << s.responses_ignored << "; requests received " << s.requests_received << " handled "
      << s.requests_handled << " rejected " << s.requests_rejected << " (unknown method "
      << s.unknown_methods << ") expired " << s.requests_expired << " cancelled "
      << s.requests_cancelled << ", responses sent " << s.responses_sent << "; frames dropped "
      << s.frames_dropped << ", send failures " << s.send_failures;
  return out.str();
}

StatusOr<std::unique_ptr<Transport>> make_transport(const BackendParam& backend) {
  if (std::string_view(backend.transport) == "loopback") {
    return std::unique_ptr<Transport>(std::make_unique<testing::LoopbackTransport>());
  }
  TransportConfig config;
  config.transport = backend.transport;
  config.ucx_tls = backend.ucx_tls;
  config.ofi_provider = backend.ofi_provider;
  config.peer_timeout_ms = kPeerTimeout.count();
  config.keepalive_interval_ms = 300;
  return Transport::create(config, kSecret);
}

// A transport with an RpcNode. Members in this order so the node goes before its transport.
struct Node {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<RpcNode> rpc;
};

// A transport without the RPC layer that sends and receives RPC frames byte by byte, to play a
// broken client or a slow server.
class RawPeer {
 public:
  struct Frame {
    proto::RpcHeader header;
    std::string body;
    EndpointPtr from;
  };

  static StatusOr<std::unique_ptr<RawPeer>> create(const BackendParam& backend) {
    HALO_ASSIGN_OR_RETURN(auto transport, make_transport(backend));
    auto peer = std::unique_ptr<RawPeer>(new RawPeer());
    for (uint16_t id : {kRpcRequestAm, kRpcResponseAm}) {
      HALO_RETURN_IF_ERROR(transport->set_am_handler(id, [raw = peer.get()](AmMessage& m) {
        Frame frame;
        if (!frame.header.ParseFromArray(m.header.data(), static_cast<int>(m.header.size()))) {
          return;
        }
        frame.body.assign(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
        frame.from = m.from;
        {
          std::lock_guard lock(raw->mu_);
          if (raw->closing_) return;
          raw->frames_[m.id].push_back(std::move(frame));
        }
        raw->cv_.notify_all();
      }));
    }
    peer->transport = std::move(transport);
    return peer;
  }

  // The next frame that arrived on `am_id`, waiting up to `within`.
  std::optional<Frame> next(uint16_t am_id, std::chrono::milliseconds within = kStep) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, within, [&] { return !frames_[am_id].empty(); })) return std::nullopt;
    Frame frame = std::move(frames_[am_id].front());
    frames_[am_id].pop_front();
    return frame;
  }

  static Status send(const EndpointPtr& to, uint16_t am_id, const std::string& header,
                     const std::string& body) {
    return to->send_am(am_id, bytes_of(header), bytes_of(body)).get();
  }

  ~RawPeer() {
    // Frames hold endpoints: release them, and take no more, before the transport goes; the
    // transport goes before the members its handlers use.
    {
      std::lock_guard lock(mu_);
      closing_ = true;
      frames_.clear();
    }
    transport.reset();
  }

  std::unique_ptr<Transport> transport;

 private:
  RawPeer() = default;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint16_t, std::deque<Frame>> frames_;
  bool closing_ = false;
};

proto::RpcHeader request_header(uint64_t id, const RpcMethod& method) {
  proto::RpcHeader header;
  header.set_request_id(id);
  header.set_kind(proto::RPC_REQUEST);
  if (method.by_id()) {
    header.set_method_id(method.id());
  } else {
    header.set_method_name(method.name());
  }
  header.set_deadline_ms(30000);
  return header;
}

// Responders an asynchronous "hold" handler keeps until the test lets them go.
class HeldCalls {
 public:
  void add(RpcResponder<EchoResponse> responder) {
    {
      std::lock_guard lock(mu_);
      held_.push_back(std::move(responder));
    }
    cv_.notify_all();
  }
  bool wait_for_count(size_t n, std::chrono::milliseconds within = kStep) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, within, [&] { return held_.size() >= n; });
  }
  std::vector<RpcResponder<EchoResponse>> take() {
    std::lock_guard lock(mu_);
    return std::move(held_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RpcResponder<EchoResponse>> held_;
};

class RpcTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    auto server = make_node(RpcConfig{}, /*listen=*/true);
    if (!server.ok() && server.status().code() == StatusCode::kUnimplemented) {
      GTEST_SKIP() << "backend " << GetParam().name << ": " << server.status();
    }
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    register_methods(*server_.rpc, held_);

    auto client = make_node(RpcConfig{}, /*listen=*/false);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    auto peer = client_.transport->connect(server_.transport->local_address(), kStep);
    ASSERT_TRUE(peer.ok()) << peer.status();
    peer_ = *peer;
  }

  void TearDown() override {
    // Calls and responders first, then the nodes, then the transports.
    held_.take();
    peer_.reset();
    client_.rpc.reset();
    server_.rpc.reset();
    held_.take();
  }

  StatusOr<Node> make_node(const RpcConfig& config, bool listen) {
    HALO_ASSIGN_OR_RETURN(auto transport, make_transport(GetParam()));
    HALO_ASSIGN_OR_RETURN(auto rpc, RpcNode::create(*transport, config));
    if (listen) HALO_RETURN_IF_ERROR(transport->listen("127.0.0.1", 0));
    return Node{std::move(transport), std::move(rpc)};
  }

  // "echo" (also as method #7) answers with the text; "fail" with FAILED_PRECONDITION;
  // "hold" answers only when the test says; "drop" drops its responder.
  void register_methods(RpcNode& node, HeldCalls& held) {
    auto echo = [this](const EchoRequest& req, RpcContext& ctx) -> StatusOr<EchoResponse> {
      echo_calls_.fetch_add(1);
      EchoResponse resp;
      resp.set_text(req.text());
      resp.set_request_id(ctx.request_id());
      return resp;
    };
    ASSERT_TRUE((node.server().handle<EchoRequest, EchoResponse>("echo", echo)).ok());
    ASSERT_TRUE((node.server().handle<EchoRequest, EchoResponse>(kEchoId, echo)).ok());
    ASSERT_TRUE((node.server().handle<EchoRequest, EchoResponse>(
                     "fail",
                     [](const EchoRequest&, RpcContext&) -> StatusOr<EchoResponse> {
                       return failed_precondition_error("told to fail");
                     }))
                    .ok());
    ASSERT_TRUE(
        (node.server().handle_async<EchoRequest, EchoResponse>(
             "hold", [&held](const EchoRequest&,
                             RpcResponder<EchoResponse> reply) { held.add(std::move(reply)); }))
            .ok());
    ASSERT_TRUE((node.server().handle_async<EchoRequest, EchoResponse>(
                     "drop", [](const EchoRequest&, RpcResponder<EchoResponse>) {}))
                    .ok());
  }

  std::future<StatusOr<EchoResponse>> call(const RpcMethod& method, const std::string& text,
                                           std::chrono::milliseconds timeout = kStep) {
    EchoRequest req;
    req.set_text(text);
    return client_.rpc->client().call<EchoRequest, EchoResponse>(peer_, method, req, timeout);
  }

  static StatusOr<EchoResponse> get(std::future<StatusOr<EchoResponse>>& f,
                                    std::chrono::milliseconds within = kStep + kMargin) {
    if (f.wait_for(within) != std::future_status::ready) {
      return internal_error("the call did not complete in time");
    }
    return f.get();
  }

  Node server_;
  Node client_;
  EndpointPtr peer_;
  HeldCalls held_;
  std::atomic<int> echo_calls_{0};
};

TEST_P(RpcTest, EchoRoundTripsByNameAndById) {
  auto by_name = call("echo", "hello");
  auto response = get(by_name);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->text(), "hello");

  std::promise<StatusOr<EchoResponse>> done;
  EchoRequest req;
  req.set_text("by id");
  RpcCallId id = client_.rpc->client().call<EchoRequest, EchoResponse>(
      peer_, kEchoId, req, kStep,
      [&done](StatusOr<EchoResponse> r) { done.set_value(std::move(r)); });
  EXPECT_NE(id, 0u);
  auto by_id = done.get_future();
  response = get(by_id);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->text(), "by id");

  // A handler's error reaches the caller with its code and message.
  auto failing = call("fail", "x");
  response = get(failing);
  EXPECT_EQ(response.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(response.status().message().find("told to fail"), std::string_view::npos)
      << response.status();

  RpcStats client = client_.rpc->stats();
  EXPECT_EQ(client.calls_started, 3u);
  EXPECT_EQ(client.calls_succeeded, 2u);
  EXPECT_EQ(client.calls_failed, 1u);
  RpcStats server = server_.rpc->stats();
  EXPECT_EQ(server.requests_handled, 3u);
  EXPECT_EQ(server.responses_sent, 3u);
}

TEST_P(RpcTest, RegisteringAMethodTwiceOrAnInvalidOneFails) {
  auto again = server_.rpc->server().handle<EchoRequest, EchoResponse>(
      "echo",
      [](const EchoRequest&, RpcContext&) -> StatusOr<EchoResponse> { return EchoResponse(); });
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists) << again;
  auto invalid = server_.rpc->server().handle<EchoRequest, EchoResponse>(
      0u, [](const EchoRequest&, RpcContext&) -> StatusOr<EchoResponse> { return EchoResponse(); });
  EXPECT_EQ(invalid.code(), StatusCode::kInvalidArgument) << invalid;
}

TEST_P(RpcTest, ThousandsOfConcurrentCallsAllComplete) {
  constexpr int kCalls = 5000;
  std::vector<std::future<StatusOr<EchoResponse>>> futures;
  futures.reserve(kCalls);
  for (int i = 0; i < kCalls; ++i) futures.push_back(call("echo", std::to_string(i)));
  std::set<uint64_t> request_ids;
  for (int i = 0; i < kCalls; ++i) {
    auto response = get(futures[i]);
    ASSERT_TRUE(response.ok()) << "call " << i << ": " << response.status();
    EXPECT_EQ(response->text(), std::to_string(i));
    request_ids.insert(response->request_id());
  }
  EXPECT_EQ(request_ids.size(), static_cast<size_t>(kCalls)) << "request ids must be unique";
  EXPECT_EQ(client_.rpc->stats().calls_succeeded, static_cast<uint64_t>(kCalls));
}

TEST_P(RpcTest, DeadlineExceededOnTimeAndTheServerSendsNoLateReply) {
  constexpr auto kTimeout = 300ms;
  const auto start = Clock::now();
  auto held_call = call("hold", "slow", kTimeout);
  ASSERT_TRUE(held_.wait_for_count(1));
  ASSERT_EQ(held_call.wait_for(kTimeout + kMargin), std::future_status::ready)
      << "the deadline was not enforced";
  const auto elapsed = Clock::now() - start;
  auto response = held_call.get();
  EXPECT_EQ(response.status().code(), StatusCode::kDeadlineExceeded) << response.status();
  EXPECT_GE(elapsed, kTimeout);
  EXPECT_LT(elapsed, kTimeout + 1000ms) << "the deadline fired late";

  // The server knows the deadline too: a reply after it is not sent.
  auto held = held_.take();
  ASSERT_EQ(held.size(), 1u);
  // The server's deadline is the caller's plus the transit time.
  ASSERT_TRUE(halo::test::wait_for([&] { return held[0].context().expired(); }, kStep));
  held[0].respond(EchoResponse());
  ASSERT_TRUE(
      halo::test::wait_for([&] { return server_.rpc->stats().requests_expired == 1; }, kStep));
  EXPECT_EQ(server_.rpc->stats().responses_sent, 0u);
  EXPECT_EQ(client_.rpc->stats().calls_deadline_exceeded, 1u);
}

TEST_P(RpcTest, TheTransportCountsTheRepliesAwaitedWhicheverWayACallEnds) {
  // The progress thread spins a while before sleeping only while this count is above zero.
  const auto awaited = client_.transport->awaited_replies();
  EXPECT_EQ(awaited->load(), 0);
  auto answered = call("hold", "answered");
  auto timed_out = call("hold", "times out", 300ms);
  ASSERT_TRUE(held_.wait_for_count(2));
  EXPECT_EQ(awaited->load(), 2);
  ASSERT_EQ(timed_out.wait_for(300ms + kMargin), std::future_status::ready);
  EXPECT_EQ(awaited->load(), 1);
  auto held = held_.take();
  ASSERT_EQ(held.size(), 2u);
  for (auto& responder : held) responder.respond(EchoResponse());  // One is past its deadline.
  auto response = get(answered);
  EXPECT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(awaited->load(), 0);
  // Calls still outstanding when the RPC node goes end as CANCELLED, and count no more.
  auto cancelled = call("hold", "cancelled");
  ASSERT_TRUE(held_.wait_for_count(1));
  EXPECT_EQ(awaited->load(), 1);
  client_.rpc.reset();
  EXPECT_EQ(get(cancelled).status().code(), StatusCode::kCancelled);
  EXPECT_EQ(awaited->load(), 0);
}

TEST_P(RpcTest, LateResponseIsIgnored) {
  // A raw server that answers only when told, ignoring the deadline.
  auto raw = RawPeer::create(GetParam());
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE((*raw)->transport->listen("127.0.0.1", 0).ok());
  auto to_raw = client_.transport->connect((*raw)->transport->local_address(), kStep);
  ASSERT_TRUE(to_raw.ok()) << to_raw.status();

  EchoRequest req;
  req.set_text("late");
  auto late = client_.rpc->client().call<EchoRequest, EchoResponse>(*to_raw, "echo", req, 200ms);
  auto request = (*raw)->next(kRpcRequestAm);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->header.method_name(), "echo");
  EXPECT_GT(request->header.deadline_ms(), 0u);
  EXPECT_LE(request->header.deadline_ms(), 200u);
  ASSERT_EQ(late.wait_for(200ms + kMargin), std::future_status::ready);
  EXPECT_EQ(late.get().status().code(), StatusCode::kDeadlineExceeded);

  proto::RpcHeader header;
  header.set_request_id(request->header.request_id());
  header.set_kind(proto::RPC_RESPONSE);
  EchoResponse body;
  body.set_text("too late");
  ASSERT_TRUE(
      RawPeer::send(request->from, kRpcResponseAm, serialized(header), serialized(body)).ok());
  ASSERT_TRUE(
      halo::test::wait_for([&] { return client_.rpc->stats().responses_ignored == 1; }, kStep));
  EXPECT_EQ(client_.rpc->stats().calls_succeeded, 0u);

  // The client still matches a timely response.
  auto timely = client_.rpc->client().call<EchoRequest, EchoResponse>(*to_raw, "echo", req, kStep);
  request = (*raw)->next(kRpcRequestAm);
  ASSERT_TRUE(request.has_value());
  header.set_request_id(request->header.request_id());
  ASSERT_TRUE(
      RawPeer::send(request->from, kRpcResponseAm, serialized(header), serialized(body)).ok());
  auto response = get(timely);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->text(), "too late");
  (*to_raw)->close();
  request.reset();
}

TEST_P(RpcTest, ServerSkipsWorkWhoseDeadlinePassedWhileQueued) {
  // One handler thread, kept busy by "block", so that the next request waits in the queue.
  RpcConfig config;
  config.handler_threads = 1;
  auto pooled = make_node(config, /*listen=*/true);
  ASSERT_TRUE(pooled.ok()) << pooled.status();
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> echoes{0};
  ASSERT_TRUE((pooled->rpc->server().handle<EchoRequest, EchoResponse>(
                   "block",
                   [&](const EchoRequest&, RpcContext&) -> StatusOr<EchoResponse> {
                     entered.set_value();
                     released.wait();
                     return EchoResponse();
                   }))
                  .ok());
  ASSERT_TRUE((pooled->rpc->server().handle<EchoRequest, EchoResponse>(
                   "echo",
                   [&](const EchoRequest&, RpcContext&) -> StatusOr<EchoResponse> {
                     echoes.fetch_add(1);
                     return EchoResponse();
                   }))
                  .ok());
  auto to_pooled = client_.transport->connect(pooled->transport->local_address(), kStep);
  ASSERT_TRUE(to_pooled.ok()) << to_pooled.status();

  EchoRequest req;
  auto& client = client_.rpc->client();
  auto blocking = client.call<EchoRequest, EchoResponse>(*to_pooled, "block", req, kStep);
  ASSERT_EQ(entered.get_future().wait_for(kStep), std::future_status::ready);
  auto queued = client.call<EchoRequest, EchoResponse>(*to_pooled, "echo", req, 100ms);
  ASSERT_TRUE(
      halo::test::wait_for([&] { return pooled->rpc->stats().requests_received == 2; }, kStep));
  // The server's deadline is arrival + 100 ms, arrival was before now: by `expired` it has
  // passed for sure (the caller's, earlier by the transit time, has passed too).
  const auto expired = Clock::now() + 100ms;
  ASSERT_EQ(queued.wait_for(100ms + kMargin), std::future_status::ready);
  EXPECT_EQ(queued.get().status().code(), StatusCode::kDeadlineExceeded);
  std::this_thread::sleep_until(expired);  // Waiting for a time is the condition here.
  release.set_value();
  auto response = get(blocking);
  EXPECT_TRUE(response.ok()) << response.status();

  ASSERT_TRUE(
      halo::test::wait_for([&] { return pooled->rpc->stats().requests_expired == 1; }, kStep))
      << describe(pooled->rpc->stats());
  EXPECT_EQ(echoes.load(), 0) << "a handler ran for a caller that had given up";
  EXPECT_EQ(pooled->rpc->stats().requests_handled, 1u);
  (*to_pooled)->close();
  // Joins the handler thread before the promises its handlers use go away.
  pooled->rpc.reset();
}

TEST_P(RpcTest, ServerDestroyedFailsOutstandingCallsWithUnavailable) {
  std::promise<Status> failure_seen;
  client_.rpc->set_failure_handler([&failure_seen, once = std::make_shared<std::once_flag>()](
                                       const EndpointPtr&, const Status& why) {
    std::call_once(*once, [&] { failure_seen.set_value(why); });
  });
  constexpr int kCalls = 10;
  std::vector<std::future<StatusOr<EchoResponse>>> calls;
  for (int i = 0; i < kCalls; ++i) calls.push_back(call("hold", "x", 60s));
  ASSERT_TRUE(held_.wait_for_count(kCalls));

  const auto start = Clock::now();
  server_.rpc.reset();
  held_.take();
  server_.transport.reset();
  for (auto& f : calls) {
    ASSERT_EQ(f.wait_until(start + kPeerTimeout + kMargin), std::future_status::ready)
        << "an outstanding call outlived the peer by more than peer_timeout_ms + margin";
    auto response = f.get();
    EXPECT_EQ(response.status().code(), StatusCode::kUnavailable) << response.status();
  }
  // The application's own failure handler, chained through the RPC node, ran as well.
  auto seen = failure_seen.get_future();
  ASSERT_EQ(seen.wait_for(kMargin), std::future_status::ready);
  EXPECT_FALSE(seen.get().ok());
  EXPECT_EQ(client_.rpc->stats().calls_unavailable, static_cast<uint64_t>(kCalls));

  // A new call to the dead peer fails at once.
  auto after = call("echo", "x");
  EXPECT_EQ(get(after, kMargin).status().code(), StatusCode::kUnavailable);
}

TEST_P(RpcTest, CallOnALocallyClosedEndpointFailsPromptly) {
  auto pending = call("hold", "x", 60s);
  ASSERT_TRUE(held_.wait_for_count(1));
  peer_->close();
  ASSERT_EQ(pending.wait_for(kMargin), std::future_status::ready);
  const StatusCode code = pending.get().status().code();
  // UNAVAILABLE from the RPC layer's check of closed endpoints; CANCELLED if the transport
  // was still completing the request's send when the endpoint closed.
  EXPECT_TRUE(code == StatusCode::kUnavailable || code == StatusCode::kCancelled)
      << status_code_name(code);
}

TEST_P(RpcTest, UnknownMethodIsUnimplemented) {
  auto by_name = call("no.such.method", "x");
  auto response = get(by_name);
  EXPECT_EQ(response.status().code(), StatusCode::kUnimplemented) << response.status();
  EXPECT_NE(response.status().message().find("no.such.method"), std::string_view::npos);
  auto by_id = call(999u, "x");
  EXPECT_EQ(get(by_id).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(server_.rpc->stats().unknown_methods, 2u);
}

TEST_P(RpcTest, InvalidCallsFailAtOnce) {
  EchoRequest req;
  auto& client = client_.rpc->client();
  auto null_peer = client.call<EchoRequest, EchoResponse>(nullptr, "echo", req, kStep);
  EXPECT_EQ(get(null_peer, 0ms).status().code(), StatusCode::kInvalidArgument);
  auto no_timeout = client.call<EchoRequest, EchoResponse>(peer_, "echo", req, 0ms);
  EXPECT_EQ(get(no_timeout, 0ms).status().code(), StatusCode::kInvalidArgument);
  auto no_method = client.call<EchoRequest, EchoResponse>(peer_, 0u, req, kStep);
  EXPECT_EQ(get(no_method, 0ms).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client_.rpc->stats().calls_started, 0u);
}

TEST_P(RpcTest, CancelCompletesTheCallAndReachesTheServer) {
  std::promise<StatusOr<EchoResponse>> done;
  EchoRequest req;
  RpcCallId id = client_.rpc->client().call<EchoRequest, EchoResponse>(
      peer_, "hold", req, kStep,
      [&done](StatusOr<EchoResponse> r) { done.set_value(std::move(r)); });
  ASSERT_NE(id, 0u);
  ASSERT_TRUE(held_.wait_for_count(1));
  EXPECT_TRUE(client_.rpc->client().cancel(id));
  auto result = done.get_future();
  // Completed inline by cancel().
  ASSERT_EQ(result.wait_for(0ms), std::future_status::ready);
  EXPECT_EQ(result.get().status().code(), StatusCode::kCancelled);
  EXPECT_FALSE(client_.rpc->client().cancel(id)) << "a call completes only once";

  auto held = held_.take();
  ASSERT_EQ(held.size(), 1u);
  ASSERT_TRUE(halo::test::wait_for([&] { return held[0].context().cancelled(); }, kStep))
      << "the cancel frame did not reach the handler";
  held[0].respond(EchoResponse());
  ASSERT_TRUE(
      halo::test::wait_for([&] { return server_.rpc->stats().requests_cancelled == 1; }, kStep));
  EXPECT_EQ(server_.rpc->stats().responses_sent, 0u);
  EXPECT_EQ(client_.rpc->stats().responses_ignored, 0u);
}

TEST_P(RpcTest, DroppedResponderAnswersInternalAtOnce) {
  auto dropped = call("drop", "x");
  auto response = get(dropped, kMargin);
  EXPECT_EQ(response.status().code(), StatusCode::kInternal) << response.status();
}

TEST_P(RpcTest, MalformedFramesGetAnErrorOrAreDroppedAndTheServerKeepsServing) {
  auto raw = RawPeer::create(GetParam());
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto ep = (*raw)->transport->connect(server_.transport->local_address(), kStep);
  ASSERT_TRUE(ep.ok()) << ep.status();

  // Unreadable headers on each RPC id: nothing to answer to, so dropped and counted.
  ASSERT_TRUE(RawPeer::send(*ep, kRpcRequestAm, kGarbage, "").ok());
  ASSERT_TRUE(RawPeer::send(*ep, kRpcCancelAm, kGarbage, "").ok());
  ASSERT_TRUE(RawPeer::send(*ep, kRpcResponseAm, kGarbage, kGarbage).ok());
  ASSERT_TRUE(halo::test::wait_for([&] { return server_.rpc->stats().frames_dropped == 3; }, kStep))
      << server_.rpc->stats().frames_dropped;

  // A readable header with a body that is not an EchoRequest: INVALID_ARGUMENT.
  ASSERT_TRUE(
      RawPeer::send(*ep, kRpcRequestAm, serialized(request_header(41, "echo")), kGarbage).ok());
  auto reply = (*raw)->next(kRpcResponseAm);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->header.request_id(), 41u);
  EXPECT_EQ(reply->header.status_code(), static_cast<int>(StatusCode::kInvalidArgument))
      << reply->header.status_message();
  EXPECT_TRUE(reply->body.empty());

  // A request frame of the wrong kind, and one naming no method: INVALID_ARGUMENT.
  proto::RpcHeader wrong_kind = request_header(42, "echo");
  wrong_kind.set_kind(proto::RPC_RESPONSE);
  ASSERT_TRUE(RawPeer::send(*ep, kRpcRequestAm, serialized(wrong_kind), "").ok());
  reply = (*raw)->next(kRpcResponseAm);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->header.request_id(), 42u);
  EXPECT_EQ(reply->header.status_code(), static_cast<int>(StatusCode::kInvalidArgument));
  proto::RpcHeader no_method = request_header(43, "echo");
  no_method.clear_method_name();
  ASSERT_TRUE(RawPeer::send(*ep, kRpcRequestAm, serialized(no_method), "").ok());
  reply = (*raw)->next(kRpcResponseAm);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->header.request_id(), 43u);
  EXPECT_EQ(reply->header.status_code(), static_cast<int>(StatusCode::kInvalidArgument));

  // The same peer, then an ordinary client, are still served.
  EchoRequest req;
  req.set_text("still here");
  ASSERT_TRUE(
      RawPeer::send(*ep, kRpcRequestAm, serialized(request_header(44, kEchoId)), serialized(req))
          .ok());
  reply = (*raw)->next(kRpcResponseAm);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->header.request_id(), 44u);
  EXPECT_EQ(reply->header.status_code(), 0);
  EchoResponse echoed;
  ASSERT_TRUE(echoed.ParseFromString(reply->body));
  EXPECT_EQ(echoed.text(), "still here");
  auto ordinary = call("echo", "ok");
  auto response = get(ordinary);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->text(), "ok");

  RpcStats stats = server_.rpc->stats();
  EXPECT_EQ(stats.requests_rejected, 3u);
  EXPECT_EQ(stats.frames_dropped, 3u);
  reply.reset();
  (*ep)->close();
}

TEST_P(RpcTest, BulkBytesArriveByPutIntoTheRegionTheRequestDescribes) {
  constexpr size_t kBytes = 1 << 20;
  auto pattern = [](uint32_t seed, size_t i) {
    return static_cast<std::byte>((i * 131 + seed) & 0xff);
  };
  // The server's source: registered once, filled with the pattern of seed 5.
  std::vector<std::byte> source(kBytes);
  for (size_t i = 0; i < kBytes; ++i) source[i] = pattern(5, i);
  auto source_region = server_.transport->register_memory(source.data(), source.size());
  ASSERT_TRUE(source_region.ok()) << source_region.status();
  const MemoryRegion& src = **source_region;
  ASSERT_TRUE((server_.rpc->server().handle_async<FillRequest, FillResponse>(
                   "fill",
                   [&src](const FillRequest& req, RpcResponder<FillResponse> reply) {
                     const EndpointPtr& peer = reply.context().peer();
                     const uint64_t length = std::min<uint64_t>(req.into().length(), src.size());
                     peer->put(src, 0, from_proto(req.into()), 0, length, [](Status) {});
                     peer->flush([reply, length](Status flushed) {
                       if (!flushed.ok()) return reply.respond(flushed);
                       FillResponse resp;
                       resp.set_bytes_written(length);
                       reply.respond(resp);
                     });
                   }))
                  .ok());

  std::vector<std::byte> target(kBytes);
  auto target_region = client_.transport->register_memory(target.data(), target.size());
  ASSERT_TRUE(target_region.ok()) << target_region.status();
  FillRequest req;
  *req.mutable_into() = to_proto((*target_region)->remote());
  req.set_seed(5);
  EXPECT_EQ(from_proto(req.into()).addr, (*target_region)->remote().addr);
  auto filled = client_.rpc->client().call<FillRequest, FillResponse>(peer_, "fill", req, kStep);
  ASSERT_EQ(filled.wait_for(kStep), std::future_status::ready);
  auto response = filled.get();
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->bytes_written(), kBytes);
  size_t mismatches = 0;
  for (size_t i = 0; i < kBytes; ++i) mismatches += target[i] != pattern(5, i);
  EXPECT_EQ(mismatches, 0u) << "the put did not land in the described region";
  // Regions go before the transports (TearDown), with no operation using them any more.
  target_region->reset();
  server_.rpc.reset();
  source_region->reset();
}

std::string backend_name(const ::testing::TestParamInfo<BackendParam>& param) {
  return param.param.name;
}

INSTANTIATE_TEST_SUITE_P(Backends, RpcTest, ::testing::ValuesIn(kBackends), backend_name);

}  // namespace
}  // namespace halo::transport
