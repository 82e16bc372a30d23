#include "transport_base.h"

#include <hwloc.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "halo/base/machine_topology.h"
#include "transport/proto/handshake.pb.h"

namespace halo::transport::internal {
namespace {

constexpr uint32_t kHandshakeVersion = 1;
constexpr size_t kNonceBytes = 32;
// How often connection timers (keep-alives, authentication and connect deadlines) are
// checked. Small against every timeout they enforce.
constexpr auto kTimerPeriod = std::chrono::milliseconds(2);
// Longest sleep of an idle progress thread whose backend offers no event fd.
constexpr int kNoFdNapMs = 1;
// Longest sleep of an idle progress thread, so that timers run.
constexpr int kMaxSleepMs = 10;

std::string random_nonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), kNonceBytes) != 1) {
    // RAND_bytes fails only when the system has no entropy source; a connection without a
    // fresh nonce could be replayed, so refuse to run rather than continue weakened.
    spdlog::critical("halo transport: no random source for authentication nonces");
    std::abort();
  }
  return nonce;
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

template <typename Message>
bool parse(Message& message, std::span<const std::byte> bytes) {
  return message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

void pin_current_thread(int core) {
  StatusOr<hwloc_topology_t> loaded = machine_topology();
  if (!loaded.ok()) {
    spdlog::warn("transport progress thread: {}; not pinned to core {}",
                 loaded.status().to_string(), core);
    return;
  }
  hwloc_topology_t topology = *loaded;
  hwloc_obj_t pu = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, static_cast<unsigned>(core));
  if (pu == nullptr) {
    spdlog::warn("transport progress thread: no core {} on this machine (it has {}); not pinned",
                 core, hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU));
  } else if (hwloc_set_cpubind(topology, pu->cpuset, HWLOC_CPUBIND_THREAD) != 0) {
    spdlog::warn("transport progress thread: binding to core {} refused ({}); not pinned", core,
                 std::strerror(errno));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// EndpointBase

EndpointBase::EndpointBase(TransportBase& transport, bool outbound, std::string peer_address)
    : transport_(transport),
      id_(transport.next_endpoint_id_.fetch_add(1)),
      outbound_(outbound),
      peer_address_(std::move(peer_address)) {}

EndpointBase::~EndpointBase() = default;

Completion EndpointBase::track(Completion done) {
  const uint64_t op = next_op_++;
  pending_.emplace(op, std::move(done));
  transport_.operations_pending_.fetch_add(1, std::memory_order_relaxed);
  auto self = std::static_pointer_cast<EndpointBase>(shared_from_this());
  return [self = std::move(self), op](Status status) {
    auto it = self->pending_.find(op);
    if (it == self->pending_.end()) return;  // Already completed when the endpoint went down.
    const auto state = self->state_.load();
    if (!status.ok() && (state == State::kClosed || state == State::kFailed) &&
        !self->down_status_.ok()) {
      // The library's own reason ("request cancelled") says less than why the endpoint went
      // down; report both, with the code of the latter.
      status = Status(self->down_status_.code(),
                      str_cat(self->down_status_.message(), " (", status.message(), ")"));
    }
    Completion user_done = std::move(it->second);
    self->pending_.erase(it);
    self->transport_.operations_pending_.fetch_sub(1, std::memory_order_relaxed);
    user_done(std::move(status));
  };
}

Status EndpointBase::down_status() const {
  if (down_status_.ok()) {
    return unavailable_error(str_cat("connection to ", peer_address_, " is not open"));
  }
  return unavailable_error(
      str_cat("connection to ", peer_address_, " is down (", down_status_.message(), ")"));
}

void EndpointBase::submit(std::function<Status(Completion)> op, Completion done) {
  auto run = [self = std::static_pointer_cast<EndpointBase>(shared_from_this()), op = std::move(op),
              done = std::move(done)]() mutable {
    if (self->state_.load() != State::kOpen) {
      done(self->down_status());
      return;
    }
    Completion tracked = self->track(std::move(done));
    Status issued = op(tracked);
    if (!issued.ok()) tracked(std::move(issued));
  };
  transport_.run_on_progress_thread(std::move(run));
}

void EndpointBase::send_am(uint16_t am_id, std::span<const std::byte> header,
                           std::span<const std::byte> payload, Completion done) {
  const TransportConfig& config = transport_.config();
  Status invalid;
  if (am_id >= kFirstReservedAmId) {
    invalid = invalid_argument_error(
        str_cat("active-message id ", am_id,
                " is reserved for the transport (ids >= ", kFirstReservedAmId, ")"));
  } else if (header.size() > config.max_am_header_bytes) {
    invalid = invalid_argument_error(str_cat("message header of ", header.size(),
                                             " bytes exceeds max_am_header_bytes (",
                                             config.max_am_header_bytes, ")"));
  } else if (payload.size() > config.max_am_payload_bytes) {
    invalid = invalid_argument_error(str_cat("message payload of ", payload.size(),
                                             " bytes exceeds max_am_payload_bytes (",
                                             config.max_am_payload_bytes, ")"));
  }
  // Fast path: from the progress thread (typically inside a handler) issue inline, with no
  // copy of the header and no hand-off.
  if (transport_.on_progress_thread()) {
    if (!invalid.ok()) return done(invalid);
    if (state_.load() != State::kOpen) return done(down_status());
    do_send_am(am_id, header, payload, track(std::move(done)));
    return;
  }
  submit(
      [this, am_id, invalid,
       header_copy = std::string(reinterpret_cast<const char*>(header.data()), header.size()),
       payload](Completion tracked) {
        if (!invalid.ok()) return invalid;
        do_send_am(am_id, as_bytes(header_copy), payload, std::move(tracked));
        return Status();
      },
      std::move(done));
}

namespace {

Status check_range(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                   size_t remote_offset, size_t length) {
  if (local_offset > local.size() || length > local.size() - local_offset) {
    return out_of_range_error(str_cat("local range [", local_offset, ", +", length,
                                      ") exceeds the registered region of ", local.size(),
                                      " bytes"));
  }
  if (remote_offset > remote.length || length > remote.length - remote_offset) {
    return out_of_range_error(str_cat("remote range [", remote_offset, ", +", length,
                                      ") exceeds the peer's region of ", remote.length, " bytes"));
  }
  return Status();
}

}  // namespace

void EndpointBase::put(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                       size_t remote_offset, size_t length, Completion done) {
  if (transport_.on_progress_thread()) {
    Status range = check_range(local, local_offset, remote, remote_offset, length);
    if (!range.ok()) return done(range);
    if (state_.load() != State::kOpen) return done(down_status());
    do_put(local, local_offset, remote, remote_offset, length, track(std::move(done)));
    return;
  }
  submit(
      [this, &local, local_offset, remote, remote_offset, length](Completion tracked) {
        HALO_RETURN_IF_ERROR(check_range(local, local_offset, remote, remote_offset, length));
        do_put(local, local_offset, remote, remote_offset, length, std::move(tracked));
        return Status();
      },
      std::move(done));
}

void EndpointBase::get(const MemoryRegion& local, size_t local_offset, const RemoteRegion& remote,
                       size_t remote_offset, size_t length, Completion done) {
  if (transport_.on_progress_thread()) {
    Status range = check_range(local, local_offset, remote, remote_offset, length);
    if (!range.ok()) return done(range);
    if (state_.load() != State::kOpen) return done(down_status());
    do_get(local, local_offset, remote, remote_offset, length, track(std::move(done)));
    return;
  }
  submit(
      [this, &local, local_offset, remote, remote_offset, length](Completion tracked) {
        HALO_RETURN_IF_ERROR(check_range(local, local_offset, remote, remote_offset, length));
        do_get(local, local_offset, remote, remote_offset, length, std::move(tracked));
        return Status();
      },
      std::move(done));
}

void EndpointBase::flush(Completion done) {
  submit(
      [this](Completion tracked) {
        do_flush(std::move(tracked));
        return Status();
      },
      std::move(done));
}

void EndpointBase::close() {
  transport_.run_on_progress_thread(
      [self = std::static_pointer_cast<EndpointBase>(shared_from_this())] {
        self->transport_.take_down(
            *self,
            cancelled_error(str_cat("connection to ", self->peer_address_, " was closed locally")),
            /*closed_locally=*/true);
      });
}

void EndpointBase::finish_all_pending(const Status& why) {
  auto pending = std::move(pending_);
  pending_.clear();
  transport_.operations_pending_.fetch_sub(pending.size(), std::memory_order_relaxed);
  for (auto& [op, done] : pending) done(why);
}

// ---------------------------------------------------------------------------------------------
// TransportBase

TransportBase::TransportBase(const TransportConfig& config, std::string cluster_secret)
    : config_(config), secret_(std::move(cluster_secret)) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (wake_fd_ >= 0 && epoll_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  }
}

TransportBase::~TransportBase() {
  // The backend must have called stop(); doing it here would run hooks of a destroyed object.
  if (started_ && thread_.joinable()) {
    spdlog::critical("halo transport destroyed without stop(); this is a backend bug");
    std::abort();
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

Status TransportBase::set_am_handler(uint16_t am_id, AmHandler handler) {
  if (am_id >= kFirstReservedAmId) {
    return invalid_argument_error(
        str_cat("active-message id ", am_id, " is reserved for the transport"));
  }
  if (connections_started_.load()) {
    return failed_precondition_error("set active-message handlers before listen() or connect()");
  }
  handlers_[am_id] = std::move(handler);
  return Status();
}

void TransportBase::set_accept_handler(std::function<void(const EndpointPtr&)> handler) {
  run_on_progress_thread(
      [this, handler = std::move(handler)]() mutable { accept_handler_ = std::move(handler); });
}

void TransportBase::set_failure_handler(
    std::function<void(const EndpointPtr&, const Status&)> handler) {
  run_on_progress_thread(
      [this, handler = std::move(handler)]() mutable { failure_handler_ = std::move(handler); });
}

Status TransportBase::listen(const std::string& host, uint16_t port) {
  connections_started_.store(true);
  auto work = [this, &host, port]() -> Status {
    if (!local_address().empty()) {
      return failed_precondition_error(str_cat("already listening on ", local_address()));
    }
    HALO_ASSIGN_OR_RETURN(std::string address, do_listen(host, port));
    std::lock_guard lock(address_mu_);
    local_address_ = std::move(address);
    return Status();
  };
  if (on_progress_thread()) return work();
  std::promise<Status> promise;
  auto result = promise.get_future();
  run_on_progress_thread([&] { promise.set_value(work()); });
  return result.get();
}

std::string TransportBase::local_address() const {
  std::lock_guard lock(address_mu_);
  return local_address_;
}

void TransportBase::connect(const std::string& address, std::chrono::milliseconds timeout,
                            std::function<void(StatusOr<EndpointPtr>)> done) {
  connections_started_.store(true);
  run_on_progress_thread([this, address, timeout, done = std::move(done)]() mutable {
    const auto deadline = Clock::now() + timeout;
    do_connect(address, [this, address, deadline,
                         done = std::move(done)](StatusOr<std::shared_ptr<EndpointBase>> ep) {
      if (!ep.ok()) {
        done(ep.status().with_context(str_cat("connecting to ", address)));
        return;
      }
      std::shared_ptr<EndpointBase> endpoint = *std::move(ep);
      endpoint->connect_done_ = std::move(done);
      endpoint->connect_deadline_ = deadline;
      endpoint->state_ = EndpointBase::State::kAuthenticating;
      endpoints_[endpoint->id()] = endpoint;
      begin_client_handshake(endpoint);
    });
  });
}

bool TransportBase::on_progress_thread() const {
  return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

void TransportBase::run_on_progress_thread(std::function<void()> fn) {
  if (on_progress_thread()) {
    fn();
    return;
  }
  {
    std::lock_guard lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  has_posted_.store(true);
  // Pairs with the progress thread's store to sleeping_ then load of has_posted_: at least one
  // side sees the other, so a posted function never waits for a sleeping thread.
  if (sleeping_.load()) wake();
}

void TransportBase::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

TransportStats TransportBase::stats() const {
  TransportStats s;
  s.endpoints_open = endpoints_open_.load();
  s.peers_authenticated = peers_authenticated_.load();
  s.peers_rejected = peers_rejected_.load();
  s.peers_failed = peers_failed_.load();
  s.operations_pending = operations_pending_.load();
  s.registered_bytes = registered_bytes_.load();
  return s;
}

void TransportBase::start() {
  started_ = true;
  thread_ = std::thread([this] { progress_loop(); });
}

void TransportBase::stop() {
  if (!started_ || !thread_.joinable()) return;
  run_on_progress_thread([this] {
    auto endpoints = endpoints_;
    for (auto& [id, ep] : endpoints) {
      take_down(*ep, cancelled_error("the transport is shutting down"), /*closed_locally=*/true);
    }
    // The loop keeps progressing until the library has completed the closed endpoints'
    // operations (or close_grace_ms ran out), then stops.
    draining_ = true;
  });
  thread_.join();
  // Anything posted after the thread's last drain still runs, here, as the progress thread.
  thread_id_.store(std::this_thread::get_id());
  drain_posted();
  thread_id_.store(std::thread::id());
}

unsigned TransportBase::drain_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(post_mu_);
    batch.swap(posted_);
    has_posted_.store(false);
  }
  for (auto& fn : batch) fn();
  return static_cast<unsigned>(batch.size());
}

void TransportBase::progress_loop() {
  thread_id_.store(std::this_thread::get_id());
  if (config_.progress_core >= 0) pin_current_thread(config_.progress_core);
  const int backend_fd = backend_event_fd();
  if (backend_fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = backend_fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, backend_fd, &ev) != 0) {
      spdlog::warn("transport: cannot wait on the {} event fd ({}); polling instead",
                   backend_name(), std::strerror(errno));
    }
  }
  const bool may_sleep = config_.progress_mode != "poll";
  const auto spin = config_.progress_mode == "event"
                        ? std::chrono::microseconds(0)
                        : std::chrono::microseconds(config_.progress_spin_us);
  const auto await_spin = std::max(spin, std::chrono::microseconds(config_.progress_await_spin_us));
  auto last_activity = Clock::now();
  // A loop that may sleep reads the clock (~30 ns) after every pass, so that it sleeps as soon
  // as its spin window is over: an idle pass of the library over TCP is a syscall (~1 us), and
  // every pass spent past the window is a core taken from the application on a small machine.
  // A polling loop reads it every kClockEvery passes (timers are coarse by design).
  constexpr unsigned kClockEvery = 64;
  const unsigned clock_every = may_sleep ? 1 : kClockEvery;
  unsigned passes = 0;
  bool active = false;
  for (;;) {
    if (draining_ && closing_.empty()) break;
    unsigned events = progress_backend();
    if (has_posted_.load(std::memory_order_relaxed)) events += drain_posted();
    active |= events > 0;
    if (++passes % clock_every != 0) continue;
    const auto now = Clock::now();
    coarse_now_ = now;
    if (now >= next_timer_run_) {
      run_timers(now);
      next_timer_run_ = now + kTimerPeriod;
    }
    if (active) {
      last_activity = now;
      active = false;
      continue;
    }
    if (!may_sleep) continue;
    const bool awaiting = awaited_replies_->load(std::memory_order_relaxed) > 0 ||
                          operations_pending_.load(std::memory_order_relaxed) > 0;
    if (now - last_activity < (awaiting ? await_spin : spin)) continue;

    sleeping_.store(true);
    if (!has_posted_.load() && !draining_ && arm_backend()) {
      const int timeout_ms = backend_fd >= 0 ? kMaxSleepMs : kNoFdNapMs;
      epoll_event ready[4];
      int n = epoll_wait(epoll_fd_, ready, 4, timeout_ms);
      for (int i = 0; i < n; ++i) {
        if (ready[i].data.fd == wake_fd_) {
          uint64_t count;
          [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof(count));
        }
      }
    }
    sleeping_.store(false);
    last_activity = coarse_now_ = Clock::now();
  }
  // Final drain so nothing posted before stop() is lost.
  drain_posted();
}

void TransportBase::run_timers(Clock::time_point now) {
  if (!closing_.empty()) finish_closing(now);
  if (endpoints_.empty()) return;
  const auto keepalive = std::chrono::milliseconds(config_.keepalive_interval_ms);
  const auto peer_timeout = std::chrono::milliseconds(config_.peer_timeout_ms);
  const auto idle_peer_timeout = std::chrono::milliseconds(config_.idle_peer_timeout_ms);
  const auto auth_timeout = std::chrono::milliseconds(config_.auth_timeout_ms);
  std::vector<std::shared_ptr<EndpointBase>> endpoints;
  endpoints.reserve(endpoints_.size());
  for (auto& [id, ep] : endpoints_) endpoints.push_back(ep);
  for (auto& ep : endpoints) {
    switch (ep->state_.load()) {
      case EndpointBase::State::kConnecting:
      case EndpointBase::State::kAuthenticating:
        if (ep->outbound_ && now >= ep->connect_deadline_) {
          take_down(*ep,
                    deadline_exceeded_error(str_cat(
                        "no authenticated connection to ", ep->peer_address_, " within ",
                        config_.connect_timeout_ms, " ms; is a halo process listening there?")),
                    /*closed_locally=*/false);
        } else if (!ep->outbound_ && now - ep->created_ >= auth_timeout) {
          reject(*ep, unauthenticated_error(str_cat("peer did not authenticate within ",
                                                    config_.auth_timeout_ms, " ms")));
        }
        break;
      case EndpointBase::State::kOpen:
        if (now - ep->last_heard_ >= (ep->pending_.empty() ? idle_peer_timeout : peer_timeout)) {
          const bool busy = !ep->pending_.empty();
          take_down(*ep,
                    unavailable_error(
                        str_cat("peer ", ep->peer_address_, " silent for ",
                                busy ? config_.peer_timeout_ms : config_.idle_peer_timeout_ms,
                                " ms (", busy ? "peer_timeout_ms" : "idle_peer_timeout_ms",
                                "): presumed dead or cut off")),
                    /*closed_locally=*/false);
        } else if (now - ep->last_heard_ >= keepalive && now - ep->last_ping_ >= keepalive) {
          ep->last_ping_ = now;
          send_control(*ep, kAmPing, "");
        }
        break;
      case EndpointBase::State::kClosed:
      case EndpointBase::State::kFailed:
        break;
    }
  }
}

void TransportBase::on_inbound(std::shared_ptr<EndpointBase> ep) {
  ep->state_ = EndpointBase::State::kAuthenticating;
  ep->created_ = Clock::now();
  ep->last_heard_ = ep->created_;
  endpoints_[ep->id()] = std::move(ep);
}

void TransportBase::on_heard_from(EndpointBase& ep) { ep.last_heard_ = coarse_now_; }

void TransportBase::on_am(EndpointBase& ep, uint16_t am_id, std::span<const std::byte> header,
                          std::span<const std::byte> payload) {
  const auto state = ep.state_.load();
  if (state == EndpointBase::State::kClosed || state == EndpointBase::State::kFailed) return;
  ep.last_heard_ = coarse_now_;
  if (am_id >= kFirstReservedAmId) {
    if (am_id >= kFirstBackendAm) {
      reject(ep, invalid_argument_error(str_cat("unexpected transport message id ", am_id)));
      return;
    }
    if (!payload.empty()) {
      reject(ep, invalid_argument_error("transport control message with a payload"));
      return;
    }
    handle_handshake(ep, am_id, header);
    return;
  }
  if (state != EndpointBase::State::kOpen) {
    reject(ep, unauthenticated_error(
                   str_cat("peer sent message id ", am_id, " before authenticating")));
    return;
  }
  auto it = handlers_.find(am_id);
  if (it == handlers_.end()) {
    spdlog::debug("transport: no handler for message id {} from {}; dropped", am_id,
                  ep.peer_address_);
    return;
  }
  AmMessage message{am_id, header, payload, ep.shared_from_this()};
  it->second(message);
}

void TransportBase::begin_client_handshake(const std::shared_ptr<EndpointBase>& ep) {
  ep->my_nonce_ = random_nonce();
  proto::Hello hello;
  hello.set_version(kHandshakeVersion);
  hello.set_client_nonce(ep->my_nonce_);
  hello.set_client_address(local_address());
  send_control(*ep, kAmHello, hello.SerializeAsString());
}

std::string TransportBase::proof(std::string_view role, std::string_view first_nonce,
                                 std::string_view second_nonce) const {
  std::string message;
  message.reserve(role.size() + first_nonce.size() + second_nonce.size());
  message.append(role).append(first_nonce).append(second_nonce);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &mac_len);
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

namespace {

bool same_secret_proof(const std::string& expected, const std::string& got) {
  return expected.size() == got.size() &&
         CRYPTO_memcmp(expected.data(), got.data(), expected.size()) == 0;
}

}  // namespace

void TransportBase::handle_handshake(EndpointBase& ep, uint16_t am_id,
                                     std::span<const std::byte> header) {
  using State = EndpointBase::State;
  const bool authenticating = ep.state_.load() == State::kAuthenticating;
  const auto out_of_order = [&] {
    reject(ep, unauthenticated_error(
                   str_cat("handshake message ", am_id, " out of order from ", ep.peer_address_)));
  };
  switch (am_id) {
    case kAmHello: {
      proto::Hello hello;
      if (ep.outbound_ || !authenticating || !ep.peer_nonce_.empty()) return out_of_order();
      if (!parse(hello, header) || hello.version() != kHandshakeVersion ||
          hello.client_nonce().size() != kNonceBytes) {
        return reject(ep, unauthenticated_error("malformed or incompatible handshake hello"));
      }
      ep.peer_nonce_ = hello.client_nonce();
      if (!hello.client_address().empty()) ep.peer_address_ = hello.client_address();
      ep.my_nonce_ = random_nonce();
      proto::Challenge challenge;
      challenge.set_server_nonce(ep.my_nonce_);
      challenge.set_server_proof(proof("server", ep.peer_nonce_, ep.my_nonce_));
      send_control(ep, kAmChallenge, challenge.SerializeAsString());
      return;
    }
    case kAmChallenge: {
      proto::Challenge challenge;
      if (!ep.outbound_ || !authenticating || !ep.peer_nonce_.empty()) return out_of_order();
      if (!parse(challenge, header) || challenge.server_nonce().size() != kNonceBytes) {
        return reject(ep, unauthenticated_error("malformed handshake challenge"));
      }
      if (!same_secret_proof(proof("server", ep.my_nonce_, challenge.server_nonce()),
                             challenge.server_proof())) {
        return reject(ep, unauthenticated_error(str_cat(
                              "the peer at ", ep.peer_address_,
                              " does not know the cluster secret (wrong cluster or secret file)")));
      }
      ep.peer_nonce_ = challenge.server_nonce();
      proto::Auth auth;
      auth.set_client_proof(proof("client", ep.peer_nonce_, ep.my_nonce_));
      send_control(ep, kAmAuth, auth.SerializeAsString());
      return;
    }
    case kAmAuth: {
      proto::Auth auth;
      if (ep.outbound_ || !authenticating || ep.peer_nonce_.empty()) return out_of_order();
      if (!parse(auth, header) ||
          !same_secret_proof(proof("client", ep.my_nonce_, ep.peer_nonce_), auth.client_proof())) {
        return reject(ep, unauthenticated_error(
                              str_cat("peer ", ep.peer_address_,
                                      " failed to prove the cluster secret; connection dropped")));
      }
      send_control(ep, kAmWelcome, "");
      open_endpoint(ep);
      if (accept_handler_) accept_handler_(ep.shared_from_this());
      return;
    }
    case kAmWelcome: {
      if (!ep.outbound_ || !authenticating || ep.peer_nonce_.empty()) return out_of_order();
      open_endpoint(ep);
      if (ep.connect_done_) {
        auto done = std::move(ep.connect_done_);
        ep.connect_done_ = nullptr;
        done(ep.shared_from_this());
      }
      return;
    }
    case kAmPing:
      if (ep.state_.load() != State::kOpen) return out_of_order();
      send_control(ep, kAmPong, "");
      return;
    case kAmPong:
      if (ep.state_.load() != State::kOpen) return out_of_order();
      return;
    case kAmClose:
      take_down(ep, unavailable_error(str_cat("peer ", ep.peer_address_, " closed the connection")),
                /*closed_locally=*/false);
      return;
    default:
      reject(ep, invalid_argument_error(str_cat("unknown transport message id ", am_id)));
      return;
  }
}

void TransportBase::open_endpoint(EndpointBase& ep) {
  ep.state_ = EndpointBase::State::kOpen;
  ep.last_heard_ = Clock::now();
  ep.last_ping_ = ep.last_heard_;
  peers_authenticated_.fetch_add(1);
  endpoints_open_.fetch_add(1);
}

void TransportBase::send_control(EndpointBase& ep, uint16_t am_id, std::string bytes) {
  // The header is copied by the backend during the call; failures of control messages are
  // failures of the connection.
  std::weak_ptr<Endpoint> weak = ep.weak_from_this();
  ep.do_send_am(am_id, as_bytes(bytes), {}, [this, weak, am_id](Status status) {
    if (status.ok()) return;
    auto self = weak.lock();
    if (!self) return;
    auto& endpoint = static_cast<EndpointBase&>(*self);
    take_down(endpoint,
              status.with_context(
                  str_cat("sending transport message ", am_id, " to ", endpoint.peer_address_)),
              /*closed_locally=*/false);
  });
}

void TransportBase::reject(EndpointBase& ep, const Status& why) {
  peers_rejected_.fetch_add(1);
  spdlog::warn("transport: dropping peer {}: {}", ep.peer_address_, why.to_string());
  take_down(ep, why, /*closed_locally=*/false);
}

void TransportBase::on_endpoint_error(EndpointBase& ep, const Status& why) {
  // An inbound peer that leaves before authenticating (for instance a client that found out
  // we do not share its secret) counts as rejected.
  if (!ep.outbound_ && ep.state_.load() == EndpointBase::State::kAuthenticating) {
    return reject(ep, why);
  }
  take_down(ep, why, /*closed_locally=*/false);
}

void TransportBase::finish_closing(Clock::time_point now) {
  std::erase_if(closing_, [&](auto& entry) {
    auto& [ep, deadline] = entry;
    if (ep->pending_.empty()) return true;
    if (now < deadline) return false;
    spdlog::error(
        "transport: the {} library did not complete {} operation(s) to {} within "
        "close_grace_ms ({} ms) of closing; completing them with an error",
        backend_name(), ep->pending_.size(), ep->peer_address_, config_.close_grace_ms);
    ep->finish_all_pending(ep->down_status_);
    return true;
  });
}

void TransportBase::take_down(EndpointBase& ep, const Status& why, bool closed_locally) {
  using State = EndpointBase::State;
  const State state = ep.state_.load();
  if (state == State::kClosed || state == State::kFailed) return;
  auto keep_alive = std::static_pointer_cast<EndpointBase>(ep.shared_from_this());
  const bool was_open = state == State::kOpen;
  ep.state_ = closed_locally ? State::kClosed : State::kFailed;
  ep.down_status_ = why;
  bool force = !ep.pending_.empty();
  if (closed_locally && was_open) {
    // An orderly goodbye lets the peer fail its operations at once instead of after
    // peer_timeout_ms. Best effort: with operations pending the close is forced and the
    // notice may not leave.
    ep.do_send_am(kAmClose, {}, {}, [](Status) {});
  }
  ep.do_close(force);
  if (!ep.pending_.empty()) {
    closing_.emplace_back(keep_alive,
                          Clock::now() + std::chrono::milliseconds(config_.close_grace_ms));
  }
  endpoints_.erase(ep.id());
  if (was_open) endpoints_open_.fetch_sub(1);
  if (!closed_locally) peers_failed_.fetch_add(was_open ? 1 : 0);
  if (ep.connect_done_) {
    auto done = std::move(ep.connect_done_);
    ep.connect_done_ = nullptr;
    done(why);
  }
  if (was_open && !closed_locally && failure_handler_) failure_handler_(keep_alive, why);
}

}  // namespace halo::transport::internal
