// The backend-independent half of every Transport: the progress thread and its hand-off
// queue, the authentication handshake, keep-alives and failure detection, and the table of
// pending operations that guarantees every operation completes exactly once.
//
// A backend (UCX, libfabric) subclasses TransportBase and EndpointBase and implements only
// the `do_*` / `*_backend` hooks: moving bytes with its library. All hooks run on the progress
// thread, so backends need no locks of their own for per-endpoint state.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "halo/transport/transport.h"

namespace halo::transport::internal {

class TransportBase;

// Reserved active-message ids used by TransportBase itself (backends never see them as
// user messages; they pass them to on_am like any other).
enum ReservedAm : uint16_t {
  kAmHello = 0xff00,      // client -> server: HelloMsg
  kAmChallenge = 0xff01,  // server -> client: ChallengeMsg
  kAmAuth = 0xff02,       // client -> server: AuthMsg
  kAmWelcome = 0xff03,    // server -> client: empty; the connection is open
  kAmPing = 0xff04,       // keep-alive request, empty
  kAmPong = 0xff05,       // keep-alive reply, empty
  kAmClose = 0xff06,      // orderly close notice, empty
  // 0xff10 and above: free for backends' internal protocols (e.g. put over active messages).
  kFirstBackendAm = 0xff10,
};

class EndpointBase : public Endpoint {
 public:
  enum class State { kConnecting, kAuthenticating, kOpen, kClosed, kFailed };

  ~EndpointBase() override;

  // Endpoint: validates, tracks the operation, hands it to the progress thread, calls do_*.
  void send_am(uint16_t am_id, std::span<const std::byte> header,
               std::span<const std::byte> payload, Completion done) final;
  void put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
           size_t remote_offset, size_t length, Completion done) final;
  void get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
           size_t remote_offset, size_t length, Completion done) final;
  void flush(Completion done) final;
  void close() final;
  using Endpoint::flush;
  using Endpoint::get;
  using Endpoint::put;
  using Endpoint::send_am;

  const std::string& peer_address() const final { return peer_address_; }
  uint64_t id() const final { return id_; }
  bool is_open() const final { return state_.load() == State::kOpen; }
  State state() const { return state_.load(); }
  bool outbound() const { return outbound_; }

 protected:
  EndpointBase(TransportBase& transport, bool outbound, std::string peer_address);

  // Backend hooks. Called on the progress thread, only while the endpoint is not closed or
  // failed. Each must run `done` exactly once, on the progress thread (possibly inline).
  // Offsets and lengths have been checked against the regions already. `header` is valid
  // only during the call (copy it if the library needs it later); `payload` until `done`.
  virtual void do_send_am(uint16_t am_id, std::span<const std::byte> header,
                          std::span<const std::byte> payload, Completion done) = 0;
  virtual void do_put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                      size_t remote_offset, size_t length, Completion done) = 0;
  virtual void do_get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                      size_t remote_offset, size_t length, Completion done) = 0;
  virtual void do_flush(Completion done) = 0;
  // Tears the library-level connection down. Called once. With `force`, outstanding
  // operations are cancelled. Either way the backend must then complete every outstanding
  // operation (with an error where it did not finish), and only once the library no longer
  // touches its buffers: a completion tells the caller the buffer is free. As a safety net
  // against a library that never answers, TransportBase completes whatever is still pending
  // `close_grace_ms` later itself, with the endpoint's failure status, and logs it.
  virtual void do_close(bool force) = 0;

  TransportBase& transport() { return transport_; }

 private:
  friend class TransportBase;

  // Wraps `done` so that it runs once, and records it as pending until then.
  Completion track(Completion done);
  // Runs `op` with a tracked completion on the progress thread, unless the endpoint is down
  // (then `done` gets the reason). `op` returns a non-OK status to fail before issuing.
  void submit(std::function<Status(Completion)> op, Completion done);
  void finish_all_pending(const Status& why);
  Status down_status() const;

  TransportBase& transport_;
  const uint64_t id_;
  const bool outbound_;
  std::string peer_address_;
  std::atomic<State> state_{State::kConnecting};
  Status down_status_;  // Why the endpoint closed or failed; progress thread only.

  // Progress thread only.
  std::unordered_map<uint64_t, Completion> pending_;
  uint64_t next_op_ = 1;
  Clock::time_point created_ = Clock::now();
  Clock::time_point last_heard_ = Clock::now();
  Clock::time_point last_ping_ = Clock::now();
  std::string my_nonce_;
  std::string peer_nonce_;
  std::function<void(StatusOr<EndpointPtr>)> connect_done_;  // Outbound, until open.
  Clock::time_point connect_deadline_;
};

class TransportBase : public Transport {
 public:
  TransportBase(const TransportConfig& config, std::string cluster_secret);
  ~TransportBase() override;

  Status set_am_handler(uint16_t am_id, AmHandler handler) final;
  void set_accept_handler(std::function<void(const EndpointPtr&)> handler) final;
  void set_failure_handler(std::function<void(const EndpointPtr&, const Status&)> handler) final;
  Status listen(const std::string& host, uint16_t port) final;
  std::string local_address() const final;
  void connect(const std::string& address, std::chrono::milliseconds timeout,
               std::function<void(StatusOr<EndpointPtr>)> done) final;
  using Transport::connect;
  void run_on_progress_thread(std::function<void()> fn) final;
  bool on_progress_thread() const final;
  TransportStats stats() const final;
  std::shared_ptr<std::atomic<int64_t>> awaited_replies() final { return awaited_replies_; }

  const TransportConfig& config() const { return config_; }

 protected:
  // Backend hooks (progress thread unless noted).
  // Binds and returns the address to publish, e.g. "ucx://198.18.0.1:40123".
  virtual StatusOr<std::string> do_listen(const std::string& host, uint16_t port) = 0;
  // Starts a library-level connection to `address`; runs `done` with the endpoint once bytes
  // can flow (the handshake follows), or with an error.
  virtual void do_connect(const std::string& address,
                          std::function<void(StatusOr<std::shared_ptr<EndpointBase>>)> done) = 0;
  // Drives the library once without blocking; returns how many events it handled.
  virtual unsigned progress_backend() = 0;
  // A file descriptor that becomes readable when the library has work, or -1 if the
  // library cannot sleep (then the progress thread polls with short naps).
  virtual int backend_event_fd() = 0;
  // Prepares the library for sleeping on backend_event_fd(); false if events are pending.
  virtual bool arm_backend() = 0;

  // Called by backends on the progress thread:
  // A peer connected at the library level; it must authenticate before anything else.
  void on_inbound(std::shared_ptr<EndpointBase> ep);
  // An active message arrived on `ep`.
  void on_am(EndpointBase& ep, uint16_t am_id, std::span<const std::byte> header,
             std::span<const std::byte> payload);
  // The library reports `ep`'s peer unreachable or gone.
  void on_endpoint_error(EndpointBase& ep, const Status& why);
  // Bytes moved to or from `ep`'s peer by a backend-internal protocol: counts as liveness.
  void on_heard_from(EndpointBase& ep);
  // Rejects a peer that sent something malformed: counted, logged, endpoint dropped.
  void reject(EndpointBase& ep, const Status& why);

  // The backend calls start() at the end of its constructor and stop() at the start of its
  // destructor (so hooks never run on a half-destroyed backend).
  void start();
  void stop();

  std::atomic<uint64_t> registered_bytes_{0};

 private:
  friend class EndpointBase;

  void progress_loop();
  unsigned drain_posted();
  void run_timers(Clock::time_point now);
  // Completes the operations of taken-down endpoints whose library missed close_grace_ms.
  void finish_closing(Clock::time_point now);
  void wake();

  void begin_client_handshake(const std::shared_ptr<EndpointBase>& ep);
  void handle_handshake(EndpointBase& ep, uint16_t am_id, std::span<const std::byte> header);
  void open_endpoint(EndpointBase& ep);
  // Declares `ep` down: closes it in the backend (which then completes its operations), and
  // runs the failure handler unless the local side closed it.
  void take_down(EndpointBase& ep, const Status& why, bool closed_locally);
  void send_control(EndpointBase& ep, uint16_t am_id, std::string bytes);
  std::string proof(std::string_view role, std::string_view first_nonce,
                    std::string_view second_nonce) const;

  const TransportConfig config_;
  const std::string secret_;

  std::unordered_map<uint16_t, AmHandler> handlers_;  // Set before listen/connect.
  std::atomic<bool> connections_started_{false};      // listen() or connect() was called.
  std::function<void(const EndpointPtr&)> accept_handler_;
  std::function<void(const EndpointPtr&, const Status&)> failure_handler_;

  mutable std::mutex address_mu_;
  std::string local_address_;

  // Endpoints the transport keeps alive (connecting, authenticating, open). Progress thread.
  std::map<uint64_t, std::shared_ptr<EndpointBase>> endpoints_;
  // Endpoints taken down whose backend has not completed every operation yet, with the time
  // after which TransportBase completes them itself. Progress thread.
  std::vector<std::pair<std::shared_ptr<EndpointBase>, Clock::time_point>> closing_;
  std::atomic<uint64_t> next_endpoint_id_{1};

  // Hand-off queue from other threads to the progress thread.
  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> has_posted_{false};
  std::atomic<bool> sleeping_{false};
  int wake_fd_ = -1;
  int epoll_fd_ = -1;

  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  bool draining_ = false;  // stop() has closed every endpoint; progress thread only.
  bool started_ = false;
  Clock::time_point next_timer_run_ = Clock::now();
  // The loop's last clock reading (at most kClockEvery passes old in "poll" mode): liveness
  // stamps use it instead of reading the clock once per message.
  Clock::time_point coarse_now_ = Clock::now();

  std::atomic<uint64_t> peers_authenticated_{0};
  std::atomic<uint64_t> peers_rejected_{0};
  std::atomic<uint64_t> peers_failed_{0};
  std::atomic<uint64_t> endpoints_open_{0};
  std::atomic<uint64_t> operations_pending_{0};
  const std::shared_ptr<std::atomic<int64_t>> awaited_replies_ =
      std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace halo::transport::internal
