// halo's RPC layer: Protocol Buffers requests and responses over a Transport's active messages,
// with request ids, deadlines, cancellation and failure of calls to dead peers.
//
// An RpcNode is the RPC side of one Transport: its server answers requests that arrive on any
// of the transport's endpoints, its client calls methods on peers. Create it right after the
// Transport (it installs the RPC message handlers, which must be in place before listen or
// connect) and destroy it before the Transport.
//
//   auto transport = Transport::create(cfg, secret).value();
//   auto rpc = RpcNode::create(*transport).value();
//
//   // Server: a method is a number or a name; the handler returns the response or an error.
//   Status s = rpc->server().handle<EchoRequest, EchoResponse>(
//       "echo", [](const EchoRequest& req, RpcContext& ctx) -> StatusOr<EchoResponse> {
//         if (ctx.cancelled()) return cancelled_error("caller gave up");
//         EchoResponse resp;
//         resp.set_text(req.text());
//         return resp;
//       });
//   HALO_RETURN_IF_ERROR(transport->listen("198.18.0.1", 0));
//
//   // Client: every call has a deadline; the future always completes by then.
//   EndpointPtr peer = transport->connect(address, std::chrono::seconds(5)).value();
//   std::future<StatusOr<EchoResponse>> f = rpc->client().call<EchoRequest, EchoResponse>(
//       peer, "echo", req, std::chrono::milliseconds(500));
//   StatusOr<EchoResponse> resp = f.get();  // Or the callback form, which returns a call id
//                                           // that cancel() takes.
//
// Wire format (transport/proto/rpc.proto): each frame is one active message whose header is a
// serialized RpcHeader and whose payload is the serialized request or response, serialized
// once into a buffer that lives until the transport completes the send (no other copy on the
// sending side; the receiver parses straight from the transport's buffer). Three
// active-message ids are reserved by convention for RPC; an application must not use them:
// kRpcRequestAm (0xfe00), kRpcResponseAm (0xfe01) and kRpcCancelAm (0xfe02).
//
// Authentication: the transport authenticates every connection with the cluster secret before
// any message reaches a handler, so every Endpoint the RPC layer sees is an authenticated peer;
// the RPC layer does not authenticate again.
//
// Failure semantics, client side: every call completes exactly once, with the response or with
//   - DEADLINE_EXCEEDED when no response arrived within its timeout (a response arriving later
//     is ignored and counted in RpcStats::responses_ignored);
//   - UNAVAILABLE when the peer's endpoint failed or closed (the transport declares a peer
//     failed within peer_timeout_ms; a peer that closes in order is seen at once);
//   - CANCELLED when the caller cancelled it or the RpcNode was destroyed;
//   - the error the server's handler returned, UNIMPLEMENTED for a method the server does not
//     know, INVALID_ARGUMENT for a request it could not parse, INTERNAL for a response that
//     does not parse as the expected type.
// Server side: the caller's remaining time travels with the request, so a handler that has not
// started when the deadline passes is skipped, and a reply that would arrive too late, or to a
// caller that cancelled or failed, is not sent. Malformed frames never crash the node: one
// whose request id is readable gets an error response, any other is dropped and counted.
//
// Bulk data does not travel through RPC messages. A message carries RemoteRegion descriptors
// (rpc.proto's RemoteRegionProto, see to_proto/from_proto) and the other side moves the bytes
// with Endpoint::put / Endpoint::get straight between registered regions, then replies:
//
//   // Client: "fill my buffer" — the region is registered once, up front.
//   FetchRequest req;
//   *req.mutable_into() = to_proto(region->remote());
//   auto resp = rpc->client().call<FetchRequest, FetchResponse>(peer, "fetch", req, 5s).get();
//   // On OK the bytes are in region->data(): the server flushed before replying.
//
//   // Server: put from its own registered memory, flush, then reply.
//   rpc->server().handle_async<FetchRequest, FetchResponse>(
//       "fetch", [&](const FetchRequest& req, RpcResponder<FetchResponse> reply) {
//         const EndpointPtr& peer = reply.context().peer();
//         peer->put(*source, 0, from_proto(req.into()), 0, req.into().length(),
//                   [](Status) {});  // A failed put fails the flush below as well.
//         peer->flush([reply](Status s) {
//           if (!s.ok()) return reply.respond(s);
//           reply.respond(FetchResponse());
//         });
//       });
//
// Threads: every method may be called from any thread. Client callbacks run exactly once on the
// transport's progress thread (responses, peer failures), on the RPC timer thread (deadlines),
// or inline in call() / cancel() (calls that fail before anything is sent, cancellation); they
// must not block. Handlers run on the progress thread unless RpcConfig::handler_threads > 0
// (then on a pool of that many threads); a handler on the progress thread must not block, and
// in particular must not wait for another RPC.
#pragma once

#include <chrono>
#include <climits>
#include <concepts>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "halo/base/status.h"
#include "halo/transport/transport.h"

namespace halo::transport {

namespace proto {
class RemoteRegionProto;  // transport/proto/rpc.pb.h
}  // namespace proto

// The active-message ids the RPC layer uses on its Transport, reserved by convention.
inline constexpr uint16_t kRpcRequestAm = 0xfe00;
inline constexpr uint16_t kRpcResponseAm = 0xfe01;
inline constexpr uint16_t kRpcCancelAm = 0xfe02;

// Bulk descriptors to and from their wire form. Include "transport/proto/rpc.pb.h" (target
// halo_transport_proto) to use them; rpc.proto can be imported by an application's .proto.
proto::RemoteRegionProto to_proto(const RemoteRegion& region);
RemoteRegion from_proto(const proto::RemoteRegionProto& region);

// What the RPC layer needs of a message type: what every generated protobuf class provides.
template <typename M>
concept ProtoMessage = std::default_initializable<M> && std::copy_constructible<M> &&
    requires(M& m, const M& cm, const void* data, int size, std::string* out) {
  { m.ParseFromArray(data, size) } -> std::convertible_to<bool>;
  { cm.SerializeToString(out) } -> std::convertible_to<bool>;
  { cm.GetTypeName() } -> std::convertible_to<std::string>;
};

// A method is named by a non-zero number or a non-empty name; the server registers handlers
// under either, and a caller must use the same form.
class RpcMethod {
 public:
  RpcMethod(uint32_t id) : id_(id) {}                      // NOLINT(google-explicit-constructor)
  RpcMethod(std::string name) : name_(std::move(name)) {}  // NOLINT(google-explicit-constructor)
  RpcMethod(const char* name) : name_(name) {}             // NOLINT(google-explicit-constructor)

  bool by_id() const { return name_.empty(); }
  uint32_t id() const { return id_; }
  const std::string& name() const { return name_; }
  bool valid() const { return by_id() ? id_ != 0 : true; }
  // "#7" or "\"gcs.register\"", for messages.
  std::string to_string() const;

  friend bool operator==(const RpcMethod& a, const RpcMethod& b) {
    return a.id_ == b.id_ && a.name_ == b.name_;
  }

 private:
  uint32_t id_ = 0;
  std::string name_;
};

// Identifies a call started with the callback form of RpcClient::call; 0 is no call.
using RpcCallId = uint64_t;

// Configuration of an RpcNode; every knob documented here, next to its default.
struct RpcConfig {
  // Threads that run server handlers. 0 runs them on the transport's progress thread: lowest
  // latency, but a handler must never block. A GCS-like server whose handlers write to disk
  // sets a few.
  int32_t handler_threads = 0;
  // How often the client looks for outstanding calls whose endpoint was closed without a
  // failure report (closed locally, or dropped by the transport), to fail them with
  // UNAVAILABLE instead of letting them run into their deadline. Only while calls are
  // outstanding.
  int64_t endpoint_check_interval_ms = 100;

  template <typename V>
  void visit(V& v) {
    v("handler_threads", handler_threads, "RPC handler threads; 0 = on the progress thread");
    v("endpoint_check_interval_ms", endpoint_check_interval_ms,
      "period of the check for calls on closed endpoints");
  }
};

// Counters of one RpcNode, for tests and `halo status`. Monotonic.
struct RpcStats {
  // Client.
  uint64_t calls_started = 0;
  uint64_t calls_succeeded = 0;
  uint64_t calls_failed = 0;             // Completed with any error, including the next three.
  uint64_t calls_deadline_exceeded = 0;  // No response in time.
  uint64_t calls_unavailable = 0;        // The peer failed or the endpoint closed.
  uint64_t calls_cancelled = 0;          // By the caller, or the node shut down.
  uint64_t responses_ignored = 0;        // Late (the call had completed), unknown, or foreign.
  // Server.
  uint64_t requests_received = 0;
  uint64_t requests_handled = 0;    // A handler ran.
  uint64_t requests_rejected = 0;   // Answered with an error before any handler ran.
  uint64_t unknown_methods = 0;     // Of those, for a method with no handler (UNIMPLEMENTED).
  uint64_t requests_expired = 0;    // Deadline passed: handler skipped or reply not sent.
  uint64_t requests_cancelled = 0;  // Caller cancelled or failed: reply not sent.
  uint64_t responses_sent = 0;
  // Both.
  uint64_t frames_dropped = 0;  // Unreadable header (no request id to answer to): dropped.
  uint64_t send_failures = 0;   // Frames the transport failed to send.
};

namespace internal {
class ClientCore;
class ServerCore;
class ServerCall;
class NodeCore;

// Parses `bytes` into `message`; false if they are not a valid encoding.
template <ProtoMessage M>
bool parse_message(M& message, std::span<const std::byte> bytes) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) return false;
  return message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// The serialized form of `message` in a buffer the send can keep alive, or the reason not.
StatusOr<std::shared_ptr<const std::string>> serialize_failed(const std::string& type_name);
template <ProtoMessage M>
StatusOr<std::shared_ptr<const std::string>> serialize_message(const M& message) {
  auto bytes = std::make_shared<std::string>();
  if (!message.SerializeToString(bytes.get())) return serialize_failed(message.GetTypeName());
  return std::shared_ptr<const std::string>(std::move(bytes));
}
}  // namespace internal

// What a handler knows about the request it serves. A cheap handle: copies refer to the same
// call, which stays valid as long as any copy (or responder) exists.
class RpcContext {
 public:
  // The authenticated peer that sent the request; reply paths (put/get for bulk) use it.
  const EndpointPtr& peer() const;
  const RpcMethod& method() const;
  uint64_t request_id() const;
  // When the caller stops waiting, by this node's clock (Clock::time_point::max() if never).
  Clock::time_point deadline() const;
  bool expired() const { return Clock::now() >= deadline(); }
  // True once the caller cancelled the call or its endpoint failed: the reply will not be
  // sent, so long-running work may stop.
  bool cancelled() const;

 private:
  friend class RpcServer;
  friend class internal::ServerCore;
  template <ProtoMessage>
  friend class RpcResponder;

  explicit RpcContext(std::shared_ptr<internal::ServerCall> call) : call_(std::move(call)) {}
  // Runs `work` where handlers run, unless the call expired or was cancelled meanwhile.
  void run(std::function<void()> work) const;
  // Sends the reply: `body` is the serialized response when `status` is OK. First call wins.
  void finish(Status status, std::shared_ptr<const std::string> body) const;
  template <ProtoMessage Resp>
  void finish(const StatusOr<Resp>& result) const {
    if (!result.ok()) return finish(result.status(), nullptr);
    auto body = internal::serialize_message(*result);
    if (!body.ok()) return finish(body.status(), nullptr);
    finish(Status(), std::move(*body));
  }
  // Answers a request whose body does not parse as `type_name` with INVALID_ARGUMENT.
  void reject_body(const std::string& type_name) const;

  std::shared_ptr<internal::ServerCall> call_;
};

// The way an asynchronous handler replies, later and from any thread. Copyable; all copies
// answer the same call and only the first respond() counts. If every copy is destroyed
// without a reply, the caller gets INTERNAL at once rather than waiting for its deadline.
template <ProtoMessage Resp>
class RpcResponder {
 public:
  const RpcContext& context() const { return context_; }
  void respond(StatusOr<Resp> result) const { context_.finish(result); }
  void respond(Status error) const { context_.finish(StatusOr<Resp>(std::move(error))); }

 private:
  friend class RpcServer;
  explicit RpcResponder(RpcContext context) : context_(std::move(context)) {}
  RpcContext context_;
};

// The server half of an RpcNode: the table of methods. Obtained from RpcNode::server().
class RpcServer {
 public:
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  // Registers a handler that answers by returning. Fails with INVALID_ARGUMENT for an invalid
  // method and ALREADY_EXISTS for one already registered. Register before the transport
  // listens or connects: until then, requests for the method get UNIMPLEMENTED.
  template <ProtoMessage Req, ProtoMessage Resp>
  Status handle(RpcMethod method,
                std::function<StatusOr<Resp>(const Req& request, RpcContext& context)> handler) {
    auto fn = std::make_shared<decltype(handler)>(std::move(handler));
    return add_handler(std::move(method), [fn](std::span<const std::byte> body, RpcContext ctx) {
      auto request = std::make_shared<Req>();
      if (!internal::parse_message(*request, body)) return ctx.reject_body(request->GetTypeName());
      ctx.run([fn, request, ctx]() mutable { ctx.finish((*fn)(*request, ctx)); });
    });
  }

  // Registers a handler that answers later through its responder, from any thread. The
  // request is valid only during the call: copy what must outlive it.
  template <ProtoMessage Req, ProtoMessage Resp>
  Status handle_async(RpcMethod method,
                      std::function<void(const Req& request, RpcResponder<Resp> reply)> handler) {
    auto fn = std::make_shared<decltype(handler)>(std::move(handler));
    return add_handler(std::move(method), [fn](std::span<const std::byte> body, RpcContext ctx) {
      auto request = std::make_shared<Req>();
      if (!internal::parse_message(*request, body)) return ctx.reject_body(request->GetTypeName());
      ctx.run([fn, request, ctx] { (*fn)(*request, RpcResponder<Resp>(ctx)); });
    });
  }

 private:
  friend class RpcNode;
  using ErasedHandler = std::function<void(std::span<const std::byte> body, RpcContext context)>;

  explicit RpcServer(internal::ServerCore& core) : core_(core) {}
  Status add_handler(RpcMethod method, ErasedHandler handler);

  internal::ServerCore& core_;
};

// The client half of an RpcNode. Obtained from RpcNode::client(). Request ids are unique per
// RpcNode.
class RpcClient {
 public:
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // Calls `method` on `peer` and runs `done` exactly once with the response or the error (see
  // the failure semantics above), at the latest when `timeout` (> 0) has passed. Returns the
  // call's id for cancel(), or 0 if the call failed at once (then `done` has already run:
  // INVALID_ARGUMENT for a null peer, invalid method, non-positive timeout or unserializable
  // request; CANCELLED if the node is shutting down).
  template <ProtoMessage Req, ProtoMessage Resp>
  RpcCallId call(const EndpointPtr& peer, const RpcMethod& method, const Req& request,
                 std::chrono::milliseconds timeout, std::function<void(StatusOr<Resp>)> done) {
    auto body = internal::serialize_message(request);
    if (!body.ok()) {
      done(body.status());
      return 0;
    }
    return start_call(peer, method, std::move(*body), timeout,
                      [done = std::move(done)](Status status, std::span<const std::byte> bytes) {
                        if (!status.ok()) return done(std::move(status));
                        Resp response;
                        if (!internal::parse_message(response, bytes)) {
                          return done(unparsable_response(response.GetTypeName()));
                        }
                        done(std::move(response));
                      });
  }

  // The same, as a future. The future is ready by the deadline at the latest.
  template <ProtoMessage Req, ProtoMessage Resp>
  std::future<StatusOr<Resp>> call(const EndpointPtr& peer, const RpcMethod& method,
                                   const Req& request, std::chrono::milliseconds timeout) {
    auto promise = std::make_shared<std::promise<StatusOr<Resp>>>();
    auto future = promise->get_future();
    call<Req, Resp>(peer, method, request, timeout,
                    [promise](StatusOr<Resp> result) { promise->set_value(std::move(result)); });
    return future;
  }

  // Completes call `id` with CANCELLED (inline) and tells the server, which may stop working
  // on it. False if the call has already completed.
  bool cancel(RpcCallId id);

 private:
  friend class RpcNode;
  using ResponseSink = std::function<void(Status status, std::span<const std::byte> body)>;

  explicit RpcClient(internal::ClientCore& core) : core_(core) {}
  RpcCallId start_call(const EndpointPtr& peer, const RpcMethod& method,
                       std::shared_ptr<const std::string> body, std::chrono::milliseconds timeout,
                       ResponseSink sink);
  static Status unparsable_response(const std::string& type_name);

  internal::ClientCore& core_;
};

// The RPC side of one Transport: a server, a client, and the transport's failure handler.
class RpcNode {
 public:
  // Installs the RPC active-message handlers and the failure handler on `transport`: call it
  // before transport.listen() / connect(). Fails with FAILED_PRECONDITION otherwise. Use
  // RpcNode::set_failure_handler, not Transport::set_failure_handler, from then on.
  static StatusOr<std::unique_ptr<RpcNode>> create(Transport& transport, RpcConfig config = {});

  // Completes outstanding calls with CANCELLED, stops the handler threads (waiting for
  // running handlers) and stops serving; responders still held answer nothing. Must run
  // before the Transport is destroyed, and not from a handler or callback.
  ~RpcNode();
  RpcNode(const RpcNode&) = delete;
  RpcNode& operator=(const RpcNode&) = delete;

  RpcServer& server() { return server_; }
  RpcClient& client() { return client_; }

  // The transport has one failure handler and the RPC layer needs it (to fail calls to a dead
  // peer). `handler` is chained: it runs, on the progress thread, for every failed endpoint,
  // after that endpoint's calls have completed with UNAVAILABLE.
  void set_failure_handler(std::function<void(const EndpointPtr&, const Status&)> handler);

  RpcStats stats() const;

 private:
  RpcNode(Transport& transport, std::shared_ptr<internal::NodeCore> core);

  Transport& transport_;
  std::shared_ptr<internal::NodeCore> core_;
  RpcServer server_;
  RpcClient client_;
};

}  // namespace halo::transport
