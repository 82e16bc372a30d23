// halo's transport: the layer every byte between processes travels through.
//
// One interface, two backends chosen by configuration: UCX (UCP) and libfabric (FI_EP_RDM).
// A Transport owns a progress thread that drives the library; an Endpoint is an
// authenticated connection to one peer. Everything is asynchronous: each operation takes a
// completion callback (or returns a future) that runs exactly once, on the progress thread.
//
//   TransportConfig cfg;                                   // transport = "ucx" or "ofi"
//   auto t = Transport::create(cfg, cluster_secret).value();
//   t->set_am_handler(kMyMessage, [](AmMessage& m) { ... });
//   HALO_RETURN_IF_ERROR(t->listen("198.18.0.1", 0));      // 0 picks a free port
//   publish(t->local_address());                           // "ucx://198.18.0.1:40123"
//
//   auto ep = t->connect("ucx://198.18.0.2:40555", std::chrono::seconds(5)).value();
//   auto region = t->register_memory(buf, len).value();    // once, up front
//   ep->put(*region, 0, peer_region, 0, len, [](Status s) { ... });
//   ep->flush([](Status s) { /* every earlier put is complete at the target */ });
//
// Connections authenticate before anything else: both sides prove knowledge of the cluster
// secret (HMAC-SHA256 over fresh nonces, mutual). `connect` completes only for a peer that
// proved it; an inbound peer reaches `set_accept_handler` only after it proved it, and one
// that fails, sends anything else first, or stays silent past `auth_timeout_ms`, is dropped.
//
// Failure: a peer that closes, dies, or stays silent for `peer_timeout_ms` (keep-alives are
// sent while idle) is declared failed; every pending operation on its endpoint completes with
// UNAVAILABLE within that bound, and the failure handler runs once. Operations issued on a
// failed or closed endpoint complete with UNAVAILABLE at once. Nothing hangs, nothing throws.
//
// Thread safety: every method may be called from any thread. Callbacks run on the progress
// thread and must not block; calls made from inside a callback start inline (no hand-off).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "halo/base/status.h"
#include "halo/transport/transport_config.h"

namespace halo::transport {

using Clock = std::chrono::steady_clock;
using Completion = std::function<void(Status)>;

// What a peer needs to reach a registered region with put/get: its address in the owner's
// address space, its length, and the library's packed remote key. Plain bytes, so it can be
// sent in any message (see rpc.proto's RemoteRegionProto).
struct RemoteRegion {
  uint64_t addr = 0;
  uint64_t length = 0;
  std::string rkey;
};

// Memory registered with the transport for RMA. Registration is costly: register large
// regions once (an object store segment), not per transfer. Deregistered on destruction; the
// owner must keep the memory alive and destroy the region only when no operation uses it.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  // The descriptor to hand to peers so they can put into / get from this region.
  virtual const RemoteRegion& remote() const = 0;

 protected:
  MemoryRegion(std::byte* data, size_t size) : data_(data), size_(size) {}

 private:
  std::byte* data_;
  size_t size_;
};

class Endpoint;

// An active message as its handler sees it. `header` and `payload` are valid only while the
// handler runs; copy what must outlive it. Large payloads arrive by rendezvous, so a handler
// sees the whole payload either way.
struct AmMessage {
  uint16_t id;
  std::span<const std::byte> header;
  std::span<const std::byte> payload;
  std::shared_ptr<Endpoint> from;
};
using AmHandler = std::function<void(AmMessage&)>;

// Active-message ids at or above this value are reserved for the transport itself.
inline constexpr uint16_t kFirstReservedAmId = 0xff00;

// An authenticated connection to one peer. Shared: the transport holds a reference until the
// endpoint is closed or fails, callers hold others. Call close() when done with it. An
// endpoint must not be used after its Transport is destroyed.
class Endpoint : public std::enable_shared_from_this<Endpoint> {
 public:
  virtual ~Endpoint() = default;

  // The peer's published address ("ucx://host:port" / "ofi+tcp://host:port"), or for an
  // inbound connection, the address the peer announced during the handshake.
  virtual const std::string& peer_address() const = 0;
  // Unique within this process for the life of the Transport.
  virtual uint64_t id() const = 0;
  // False once closed or failed; a failed endpoint never recovers: connect again.
  virtual bool is_open() const = 0;

  // Sends active message `am_id` (< kFirstReservedAmId). `header` (small: at most
  // max_am_header_bytes) is copied before return; `payload` must stay valid and unchanged
  // until `done` runs. Small payloads go eagerly, large ones by rendezvous (zero copy on the
  // sender side when the payload lies in registered memory).
  virtual void send_am(uint16_t am_id, std::span<const std::byte> header,
                       std::span<const std::byte> payload, Completion done) = 0;

  // Copies `length` bytes from `local` at `local_offset` into the peer's region `remote` at
  // `remote_offset`. `done` runs when the local buffer may be reused; the bytes are visible
  // at the target only after a later flush completes. Out-of-range offsets fail with
  // OUT_OF_RANGE at once.
  virtual void put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                   size_t remote_offset, size_t length, Completion done) = 0;

  // Copies `length` bytes of the peer's region `remote` at `remote_offset` into `local` at
  // `local_offset`; the bytes are in place when `done` runs with OK.
  virtual void get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                   size_t remote_offset, size_t length, Completion done) = 0;

  // Completes when every put issued on this endpoint before it is complete at the target.
  virtual void flush(Completion done) = 0;

  // Closes the connection. Pending operations complete with CANCELLED; idempotent.
  virtual void close() = 0;

  // Future-returning forms of the operations above, for callers that block.
  std::future<Status> send_am(uint16_t am_id, std::span<const std::byte> header,
                              std::span<const std::byte> payload);
  std::future<Status> put(const MemoryRegion& local, size_t local_offset,
                          const RemoteRegion& remote, size_t remote_offset, size_t length);
  std::future<Status> get(const MemoryRegion& local, size_t local_offset,
                          const RemoteRegion& remote, size_t remote_offset, size_t length);
  std::future<Status> flush();
};

using EndpointPtr = std::shared_ptr<Endpoint>;

// Per-transport counters, for tests and `halo status`.
struct TransportStats {
  uint64_t endpoints_open = 0;
  uint64_t peers_authenticated = 0;
  uint64_t peers_rejected = 0;      // Failed or skipped authentication, or sent garbage.
  uint64_t peers_failed = 0;        // Declared failed (closed, died, silent too long).
  uint64_t operations_pending = 0;  // Issued and not yet completed, over all endpoints.
  uint64_t registered_bytes = 0;
};

class Transport {
 public:
  // Creates the backend named by config.transport ("ucx" or "ofi") with its progress thread.
  // `cluster_secret` (at least 16 bytes) authenticates every connection in both directions.
  static StatusOr<std::unique_ptr<Transport>> create(const TransportConfig& config,
                                                     std::string cluster_secret);

  // Stops the progress thread after closing every endpoint; pending operations complete with
  // CANCELLED before the destructor returns.
  virtual ~Transport() = default;

  // "ucx" or "ofi".
  virtual std::string_view backend_name() const = 0;

  // Handlers must be set before listen/connect; handlers for reserved ids are refused.
  virtual Status set_am_handler(uint16_t am_id, AmHandler handler) = 0;
  // Runs for every inbound peer once it has authenticated.
  virtual void set_accept_handler(std::function<void(const EndpointPtr&)> handler) = 0;
  // Runs once for every endpoint declared failed (not for ones closed locally).
  virtual void set_failure_handler(
      std::function<void(const EndpointPtr&, const Status&)> handler) = 0;

  // Listens on host:port (port 0 picks a free one). At most once per transport. For
  // backends without ports (libfabric shm) the host and port name the listener uniquely.
  virtual Status listen(const std::string& host, uint16_t port) = 0;
  // The address peers connect to; empty before listen.
  virtual std::string local_address() const = 0;

  // Connects and authenticates; `done` runs with the endpoint or the reason it failed
  // (UNAVAILABLE, DEADLINE_EXCEEDED after `timeout`, UNAUTHENTICATED).
  virtual void connect(const std::string& address, std::chrono::milliseconds timeout,
                       std::function<void(StatusOr<EndpointPtr>)> done) = 0;
  // Blocking form; must not be called from the progress thread.
  StatusOr<EndpointPtr> connect(const std::string& address, std::chrono::milliseconds timeout);

  // Registers [data, data + size) for put/get by peers and as a local source or target.
  virtual StatusOr<std::unique_ptr<MemoryRegion>> register_memory(void* data, size_t size) = 0;

  // Runs `fn` on the progress thread (inline when already on it).
  virtual void run_on_progress_thread(std::function<void()> fn) = 0;
  virtual bool on_progress_thread() const = 0;

  virtual TransportStats stats() const = 0;

  // Replies awaited over this transport, counted by its RpcNode's client: while the count is
  // above zero, the progress thread spins up to progress_await_spin_us after its last event
  // before it sleeps. Shared, so that either side may outlive the other.
  virtual std::shared_ptr<std::atomic<int64_t>> awaited_replies() = 0;
};

}  // namespace halo::transport
