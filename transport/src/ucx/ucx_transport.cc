#include "ucx/ucx_transport.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <sstream>

#include "backends.h"
#include "ucx/ucx_endpoint.h"
#include "ucx/ucx_status.h"
#include "ucx/ucx_tls.h"
#include "ucx/ucx_wire.h"

namespace halo::transport::internal {

StatusOr<std::unique_ptr<Transport>> create_ucx_transport(const TransportConfig& config,
                                                          std::string cluster_secret) {
  return ucx::UcxTransport::create(config, std::move(cluster_secret));
}

namespace ucx {
namespace {

// Sockets (the listener, connection set-up, liveness) are checked every this many progress
// iterations while the thread spins, and after every sleep: often enough for set-up and
// death notices (well under a millisecond), rarely enough to cost the data path nothing.
constexpr unsigned kSocketPollIterations = 1024;
// Accepted connections that have not sent their hello yet; more are refused.
constexpr size_t kMaxPendingInbound = 1024;
// How long the destructor lets UCX finish closing endpoints and cancelling requests.
constexpr auto kShutdownDrain = std::chrono::seconds(2);
// Longest wait of a forced close for UCX's own error report (see UcxEndpoint::do_close).
constexpr int64_t kMaxCloseDelayMs = 500;
// ... and how long it may stay idle while requests are still out before that ends.
constexpr auto kShutdownIdle = std::chrono::milliseconds(50);

// What a UCX print function writes, as a string.
template <typename Print>
std::string capture(Print print) {
  char* buffer = nullptr;
  size_t size = 0;
  FILE* stream = open_memstream(&buffer, &size);
  if (stream == nullptr) return {};
  print(stream);
  std::fclose(stream);
  std::string out(buffer != nullptr ? buffer : "", size);
  std::free(buffer);
  return out;
}

std::string hmac_sha256(const std::string& key, const std::string& message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &mac_len);
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

void add_to_epoll(int epoll_fd, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) {
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
  }
}

void modify_in_epoll(int epoll_fd, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Life cycle

UcxTransport::UcxTransport(const TransportConfig& config, std::string cluster_secret)
    : TransportBase(config, cluster_secret), secret_(std::move(cluster_secret)) {
  region_link_->transport = this;
}

StatusOr<std::unique_ptr<Transport>> UcxTransport::create(const TransportConfig& config,
                                                          std::string cluster_secret) {
  if (config.rma_mechanism != "auto" && config.rma_mechanism != "rma" &&
      config.rma_mechanism != "am") {
    return invalid_argument_error(
        str_cat("rma_mechanism '", config.rma_mechanism, "' is not one of auto, rma, am"));
  }
  std::unique_ptr<UcxTransport> transport(new UcxTransport(config, std::move(cluster_secret)));
  HALO_RETURN_IF_ERROR(transport->init());
  transport->start();
  return std::unique_ptr<Transport>(std::move(transport));
}

Status UcxTransport::init() {
  ucp_config_t* ucp_config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &ucp_config);
  if (status != UCS_OK) return from_ucs(status, "reading the UCX configuration (UCX_* variables)");
  struct ConfigRelease {
    ucp_config_t* c;
    ~ConfigRelease() { ucp_config_release(c); }
  } release{ucp_config};
  // halo's default leaves UCX's shared-memory FIFO transports out (ucx_tls.h says why).
  const TlsChoice tls = choose_tls(config().ucx_tls, std::getenv("UCX_TLS"), host_has_infiniband());
  if (!tls.tls.empty()) {
    status = ucp_config_modify(ucp_config, "TLS", tls.tls.c_str());
    if (status != UCS_OK) {
      return from_ucs(status, str_cat("UCX refused ucx_tls='", tls.tls, "'"));
    }
  }
  if (tls.may_use_shared_memory_fifo) {
    spdlog::warn(
        "transport: UCX transports '{}' include UCX's shared-memory FIFO (posix, sysv, xpmem): a "
        "process killed while sending to another on this host can stall that one for good "
        "(UCX 1.13); halo's default, \"^mm\", leaves them out (docs/transport.md)",
        tls.tls.empty() ? std::getenv("UCX_TLS") : tls.tls);
  }
  if (config().ucx_tcp_copy_messages && tls.may_carry_data_over_tcp) {
    // UCX 1.13's uct_tcp_ep_sendv completes a failed zero-copy message twice: once through
    // uct_tcp_ep_handle_disconnected and once more itself. With UCX's assertions (Debian's
    // build) the process aborts; without, a freed request is completed again. A peer killed
    // while messages stream to it triggers it in ~7% of runs of UcxPeerLoss/tcp_am_kill.
    // Copying messages into segments never takes that path; 256 KiB segments keep TCP
    // bandwidth where zero copy had it (docs/transport.md has the numbers).
    struct Setting {
      const char* key;  // As ucp_config_modify takes it (UCT keys without their prefix).
      const char* env;  // What a user sets instead.
      const char* value;
    };
    for (const Setting& s : {Setting{"ZCOPY_THRESH", "UCX_ZCOPY_THRESH", "inf"},
                             Setting{"TX_SEG_SIZE", "UCX_TCP_TX_SEG_SIZE", "256K"},
                             Setting{"RX_SEG_SIZE", "UCX_TCP_RX_SEG_SIZE", "256K"}}) {
      if (std::getenv(s.env) != nullptr) continue;  // The user's choice wins.
      status = ucp_config_modify(ucp_config, s.key, s.value);
      if (status != UCS_OK) return from_ucs(status, str_cat("UCX refused ", s.env, "=", s.value));
    }
  }
  if (!config().net_interface.empty()) {
    status = ucp_config_modify(ucp_config, "NET_DEVICES", config().net_interface.c_str());
    if (status != UCS_OK) {
      return from_ucs(status, str_cat("UCX refused net_interface='", config().net_interface, "'"));
    }
  }

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  // A thread that only polls never sleeps on the worker's event fd: without the wake-up
  // feature, UCX's shared-memory transports skip their wake-up signalling.
  const bool sleeps = config().progress_mode != "poll";
  params.features = UCP_FEATURE_AM | UCP_FEATURE_RMA | (sleeps ? UCP_FEATURE_WAKEUP : 0);
  params.name = "halo";
  status = ucp_init(&params, ucp_config, &context_);
  if (status != UCS_OK) {
    return from_ucs(status, str_cat("initializing UCX (ucx_tls='", config().ucx_tls,
                                    "'; `ucx_info -d` lists the transports this host has)"));
  }

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;  // Only the progress thread touches it.
  status = ucp_worker_create(context_, &worker_params, &worker_);
  if (status != UCS_OK) return from_ucs(status, "creating the UCX worker");

  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  status = ucp_worker_query(worker_, &attr);
  if (status != UCS_OK) return from_ucs(status, "querying the UCX worker");
  max_ucp_header_ = attr.max_am_header;

  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  status = ucp_worker_get_address(worker_, &address, &address_length);
  if (status != UCS_OK) return from_ucs(status, "getting the UCX worker address");
  worker_address_.assign(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(worker_, address);

  const std::string resources =
      capture([this](FILE* stream) { ucp_context_print_info(context_, stream); });
  has_shared_memory_ = resources.find("-- posix/") != std::string::npos ||
                       resources.find("-- sysv/") != std::string::npos;

  ucp_am_handler_param_t handler{};
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                       UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  handler.id = kUcpAmId;
  handler.cb = &UcxTransport::am_callback;
  handler.arg = this;
  handler.flags = UCP_AM_FLAG_WHOLE_MSG;
  status = ucp_worker_set_am_recv_handler(worker_, &handler);
  if (status != UCS_OK) return from_ucs(status, "installing the UCX active-message handler");

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return errno_error(errno, "epoll_create1");
  if (sleeps) {
    status = ucp_worker_get_efd(worker_, &worker_fd_);
    if (status != UCS_OK) return from_ucs(status, "getting the UCX worker's event fd");
    add_to_epoll(epoll_fd_, worker_fd_, EPOLLIN);
  }
  return Status();
}

UcxTransport::~UcxTransport() {
  {
    // From here on regions deregister through the table below, not through the thread.
    std::lock_guard lock(region_link_->mu);
    region_link_->transport = nullptr;
  }
  stop();  // Takes every endpoint down (closing it in UCX) and joins the progress thread.

  // Only this thread touches UCX now.
  for (auto& [fd, pending] : inbound_) unwatch(fd);
  inbound_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (worker_ != nullptr) {
    run_deferred();
    // Let UCX finish closing endpoints and hand back requests. Endpoints whose forced close
    // waits (defer_close) close as their operations drain. Over shared memory, requests to a
    // dead peer never come back (their operations were completed already): stop waiting for
    // those once UCX has been idle for a moment.
    const auto drain = [this](Clock::duration limit) {
      const auto deadline = Clock::now() + limit;
      auto last_event = Clock::now();
      while ((!closing_.empty() || !lame_ducks_.empty() || ops_.in_use() > 0) &&
             Clock::now() < deadline) {
        const auto now = Clock::now();
        if (worker_progress() > 0) last_event = now;
        while (!completions_.empty()) run_completions();
        close_overdue(/*all=*/false);
        if (closing_.empty() && lame_ducks_.empty() && now - last_event > kShutdownIdle) break;
      }
    };
    drain(kShutdownDrain);
    while (!completions_.empty()) run_completions();
    if (!lame_ducks_.empty()) {
      // Their peers stopped answering: cut them off now.
      close_overdue(/*all=*/true);
      drain(kShutdownDrain / 2);
    }
    if (!closing_.empty()) {
      // Destroying a worker under endpoints UCX is still closing trips its assertions: leak
      // the worker instead (nothing calls into it again, so no callback of it runs).
      spdlog::warn(
          "ucx transport: {} endpoint(s) still closing at shutdown; leaking the UCX worker "
          "rather than destroying it under them",
          closing_.size());
      for (auto& [raw, endpoint] : closing_) endpoint->drop_socket();
      closing_.clear();
      if (epoll_fd_ >= 0) ::close(epoll_fd_);
      return;
    }
  }
  for (auto& [token, region] : regions_) {
    if (region.memh != nullptr) ucp_mem_unmap(context_, region.memh);
  }
  regions_.clear();
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  if (context_ != nullptr) ucp_cleanup(context_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

uint64_t UcxTransport::new_token() {
  while (true) {
    uint64_t token = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&token), sizeof(token)) != 1) {
      // Tokens are capabilities (they route a peer's messages to a connection): a guessable
      // one would let one peer speak for another. Without randomness, refuse to run.
      spdlog::critical("ucx transport: no random source for connection tokens");
      std::abort();
    }
    if (token != 0 && !by_token_.contains(token)) return token;
  }
}

// ---------------------------------------------------------------------------------------------
// Listening and connecting

StatusOr<std::string> UcxTransport::do_listen(const std::string& host, uint16_t port) {
  HALO_ASSIGN_OR_RETURN(ListeningSocket listener, listen_tcp(host, port));
  listen_fd_ = listener.fd;
  add_to_epoll(epoll_fd_, listen_fd_, EPOLLIN);
  return format_ucx_address(host, listener.port);
}

void UcxTransport::do_connect(const std::string& address,
                              std::function<void(StatusOr<std::shared_ptr<EndpointBase>>)> done) {
  StatusOr<UcxAddress> parsed = parse_ucx_address(address);
  if (!parsed.ok()) return done(parsed.status());
  StatusOr<std::unique_ptr<BootstrapSocket>> socket = BootstrapSocket::connect(*parsed);
  if (!socket.ok()) return done(socket.status());
  auto endpoint = std::make_shared<UcxEndpoint>(*this, /*outbound=*/true, address, new_token());
  by_token_[endpoint->local_token()] = endpoint.get();
  (*socket)->send(make_hello(endpoint->local_token()));
  endpoint->set_socket(*std::move(socket));
  watch_socket(*endpoint);
  // The endpoint exists; TransportBase starts the handshake (queued until the worker
  // addresses are exchanged) and enforces the connect timeout from here.
  done(std::shared_ptr<EndpointBase>(endpoint));
}

std::string UcxTransport::make_hello(uint64_t token) const {
  BootstrapHello hello;
  hello.token = token;
  hello.host_id = local_host_id();
  hello.worker_address = worker_address_;
  hello.mac = hmac_sha256(secret_, hello_mac_input(hello));
  return encode_hello(hello);
}

StatusOr<BootstrapHello> UcxTransport::verify_hello(const BootstrapHello& hello) const {
  const std::string expected = hmac_sha256(secret_, hello_mac_input(hello));
  if (expected.size() != hello.mac.size() ||
      CRYPTO_memcmp(expected.data(), hello.mac.data(), expected.size()) != 0) {
    return unauthenticated_error(
        "the peer does not know the cluster secret (wrong cluster or secret file)");
  }
  return hello;
}

StatusOr<UcxTransport::WorkerConnection> UcxTransport::connect_worker(
    const BootstrapHello& peer, const std::string& peer_name) {
  // Shared memory (posix, sysv) has no peer-failure support in UCX, and asking for
  // UCP_ERR_HANDLING_MODE_PEER would rule it out: same-host peers go without, and their death
  // is noticed by the set-up socket and the keep-alives instead.
  const bool same_host = !peer.host_id.empty() && peer.host_id == local_host_id();
  const bool shared_memory = same_host && has_shared_memory_;
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(peer.worker_address.data());
  params.err_mode = shared_memory ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &UcxTransport::ep_error_callback;
  params.err_handler.arg = this;
  ucp_ep_h ep = nullptr;
  const ucs_status_t status = ucp_ep_create(worker_, &params, &ep);
  if (status != UCS_OK) {
    return from_ucs(status, str_cat("no UCX transport reaches ", peer_name, " (ucx_tls='",
                                    config().ucx_tls, "'; both sides need a common one)"));
  }
  return WorkerConnection{ep, shared_memory};
}

void UcxTransport::watch_socket(UcxEndpoint& endpoint) {
  BootstrapSocket* socket = endpoint.socket();
  by_socket_[socket->fd()] = &endpoint;
  add_to_epoll(epoll_fd_, socket->fd(), socket->wanted_events());
}

void UcxTransport::unwatch(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  by_socket_.erase(fd);
}

unsigned UcxTransport::poll_sockets() {
  if (!lame_ducks_.empty()) close_overdue(/*all=*/false);
  epoll_event events[32];
  const int n = epoll_wait(epoll_fd_, events, 32, 0);
  unsigned handled = 0;
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == worker_fd_) continue;  // UCX's own events: ucp_worker_progress handles them.
    ++handled;
    if (fd == listen_fd_) {
      accept_connections();
    } else if (inbound_.contains(fd)) {
      on_inbound_ready(fd, events[i].events);
    } else if (auto it = by_socket_.find(fd); it != by_socket_.end()) {
      on_endpoint_socket_ready(*it->second, events[i].events);
    }
  }
  if (!inbound_.empty()) {
    const auto now = Clock::now();
    for (auto it = inbound_.begin(); it != inbound_.end();) {
      if (now < it->second.deadline) {
        ++it;
        continue;
      }
      std::unique_ptr<BootstrapSocket> socket = std::move(it->second.socket);
      it = inbound_.erase(it);
      reject_inbound(std::move(socket),
                     unauthenticated_error(str_cat("sent no valid connection preamble within ",
                                                   config().auth_timeout_ms, " ms")));
    }
  }
  return handled;
}

void UcxTransport::accept_connections() {
  while (true) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::warn("ucx transport: accept on {} failed: {}", local_address(),
                     std::strerror(errno));
      }
      return;
    }
    if (inbound_.size() >= kMaxPendingInbound) {
      spdlog::warn("ucx transport: {} connections are still setting up; refusing another",
                   inbound_.size());
      ::close(fd);
      continue;
    }
    PendingInbound pending{BootstrapSocket::adopt(fd),
                           Clock::now() + std::chrono::milliseconds(config().auth_timeout_ms)};
    add_to_epoll(epoll_fd_, fd, pending.socket->wanted_events());
    inbound_.emplace(fd, std::move(pending));
  }
}

void UcxTransport::on_inbound_ready(int fd, uint32_t events) {
  auto it = inbound_.find(fd);
  BootstrapSocket& socket = *it->second.socket;
  const auto drop = [&](const Status& why) {
    std::unique_ptr<BootstrapSocket> owned = std::move(it->second.socket);
    inbound_.erase(it);
    reject_inbound(std::move(owned), why);
  };
  const Status read = socket.on_ready(events);
  StatusOr<std::optional<BootstrapHello>> hello = take_hello(socket.inbox());
  if (!hello.ok()) return drop(hello.status());
  if (!hello->has_value()) {
    if (!read.ok()) return drop(read);
    modify_in_epoll(epoll_fd_, fd, socket.wanted_events());
    return;
  }
  // A refusal tells the client why (it carries no worker address), then the socket closes.
  const auto refuse_and_drop = [&](const Status& why) {
    BootstrapHello refusal;
    refusal.refusal_code = static_cast<uint32_t>(why.code());
    refusal.refusal = std::string(why.message());
    refusal.mac = hmac_sha256(secret_, hello_mac_input(refusal));
    socket.send(encode_hello(refusal));
    drop(why);
  };
  StatusOr<BootstrapHello> verified = verify_hello(**hello);
  if (!verified.ok()) return refuse_and_drop(verified.status());

  const std::string peer_name = socket.peer_name();
  StatusOr<WorkerConnection> ucp_ep = connect_worker(*verified, peer_name);
  if (!ucp_ep.ok()) return refuse_and_drop(ucp_ep.status());

  const uint64_t token = new_token();
  // Named by its socket address until its handshake announces its published address.
  auto endpoint =
      std::make_shared<UcxEndpoint>(*this, /*outbound=*/false, str_cat("ucx://", peer_name), token);
  std::unique_ptr<BootstrapSocket> owned = std::move(it->second.socket);
  inbound_.erase(it);
  owned->send(make_hello(token));
  endpoint->set_socket(std::move(owned));
  by_token_[token] = endpoint.get();
  by_ucp_ep_[ucp_ep->ep] = endpoint.get();
  endpoint->attach(ucp_ep->ep, verified->token, ucp_ep->shared_memory);
  watch_socket(*endpoint);
  on_inbound(endpoint);
}

void UcxTransport::reject_inbound(std::unique_ptr<BootstrapSocket> socket, const Status& why) {
  // An endpoint that never reaches UCX, so that TransportBase logs and counts the rejection
  // like any other (stats().peers_rejected).
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, socket->fd(), nullptr);
  auto endpoint = std::make_shared<UcxEndpoint>(*this, /*outbound=*/false,
                                                str_cat("ucx://", socket->peer_name()), 0);
  endpoint->set_socket(std::move(socket));
  refuse(*endpoint, why);
}

void UcxTransport::on_endpoint_socket_ready(UcxEndpoint& ep, uint32_t events) {
  auto keep = std::static_pointer_cast<UcxEndpoint>(ep.shared_from_this());
  BootstrapSocket& socket = *ep.socket();
  const Status read = socket.on_ready(events);
  if (ep.ucp_endpoint() == nullptr) {
    // Outbound, waiting for the listener's hello (which may come right before it closes).
    StatusOr<std::optional<BootstrapHello>> hello = take_hello(socket.inbox());
    if (!hello.ok()) {
      return fail(ep, hello.status().with_context(str_cat("connecting to ", ep.peer_address())));
    }
    if (hello->has_value()) {
      StatusOr<BootstrapHello> verified = verify_hello(**hello);
      if (!verified.ok()) {
        return fail(ep,
                    verified.status().with_context(str_cat("connecting to ", ep.peer_address())));
      }
      if (verified->refusal_code != 0) {
        return fail(ep, Status(static_cast<StatusCode>(verified->refusal_code),
                               str_cat("the peer at ", ep.peer_address(),
                                       " refused the connection: ", verified->refusal)));
      }
      StatusOr<WorkerConnection> ucp_ep = connect_worker(*verified, ep.peer_address());
      if (!ucp_ep.ok()) return fail(ep, ucp_ep.status());
      by_ucp_ep_[ucp_ep->ep] = &ep;
      ep.attach(ucp_ep->ep, verified->token, ucp_ep->shared_memory);
      if (ep.closed()) return;
    }
  } else {
    socket.inbox().clear();  // Nothing is expected after the hello.
  }
  if (!read.ok()) return peer_connection_lost(ep, read);
  modify_in_epoll(epoll_fd_, socket.fd(), socket.wanted_events());
}

void UcxTransport::peer_connection_lost(UcxEndpoint& ep, const Status& why) {
  auto keep = std::static_pointer_cast<UcxEndpoint>(ep.shared_from_this());
  if (ep.ucp_endpoint() == nullptr) {
    return fail(ep, why.with_context(str_cat("connecting to ", ep.peer_address())));
  }
  // The peer closed the set-up connection: its process ended, or it closed the endpoint.
  // What it sent before may still sit in UCX's queues (its close notice among them): deliver
  // that first, so that nothing the peer sent is lost.
  for (int i = 0; i < 256 && !ep.closed(); ++i) {
    if (worker_progress() == 0) break;
  }
  ep.mark_peer_gone();
  if (ep.closed()) return;
  fail(ep, unavailable_error(str_cat("peer ", ep.peer_address(),
                                     " is gone: its connection closed (the process exited or "
                                     "was killed)")));
}

// ---------------------------------------------------------------------------------------------
// Progress

unsigned UcxTransport::worker_progress() {
  in_worker_progress_ = true;
  const unsigned events = ucp_worker_progress(worker_);
  in_worker_progress_ = false;
  if (!deferred_.empty()) run_deferred();
  return events;
}

void UcxTransport::run_deferred() {
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& fn : batch) fn();
  }
}

unsigned UcxTransport::progress_backend() {
  unsigned events = worker_progress();
  if (!completions_.empty()) events += run_completions();
  if (check_sockets_ || ++iterations_since_socket_poll_ >= kSocketPollIterations) {
    check_sockets_ = false;
    iterations_since_socket_poll_ = 0;
    events += poll_sockets();
  }
  return events;
}

bool UcxTransport::arm_backend() {
  if (!completions_.empty()) return false;
  check_sockets_ = true;            // Whatever wakes the thread, look at the sockets next.
  if (worker_fd_ < 0) return true;  // Poll mode: never armed (the thread does not sleep).
  const ucs_status_t status = ucp_worker_arm(worker_);
  if (status == UCS_ERR_BUSY) return false;
  if (status != UCS_OK) {
    spdlog::warn("ucx transport: ucp_worker_arm failed ({}); polling", ucs_status_string(status));
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Operations and callbacks

void UcxTransport::settle(UcxOp* op, ucs_status_ptr_t request, std::string_view what,
                          const std::string& peer) {
  if (request != nullptr && !UCS_PTR_IS_ERR(request)) {  // The callback finishes it.
    if (op->owner != nullptr) op->owner->in_flight(op);
    return;
  }
  const ucs_status_t status = request == nullptr ? UCS_OK : UCS_PTR_STATUS(request);
  Completion done = std::move(op->done);
  std::shared_ptr<UcxEndpoint> endpoint = std::move(op->endpoint);
  const uint64_t seq = op->seq;
  const UcxOp::Kind kind = op->kind;
  release_op(op);
  Status result;
  if (status != UCS_OK) {
    result = from_ucs(status, str_cat("UCX ", what, " to ", peer));
    if (kind == UcxOp::Kind::kInternalSend && seq != 0 && endpoint != nullptr) {
      endpoint->fail_get(seq, result);
    }
  }
  complete(std::move(done), std::move(result));
}

void UcxTransport::complete(Completion done, Status status) {
  if (done) completions_.emplace_back(std::move(done), std::move(status));
}

unsigned UcxTransport::run_completions() {
  // One batch: completions that issue operations which complete at once again queue for the
  // next round, so a caller re-issuing from its completion never recurses.
  std::vector<std::pair<Completion, Status>> batch;
  batch.swap(completions_);
  for (auto& [done, status] : batch) done(std::move(status));
  batch.clear();
  if (completions_.empty()) completions_.swap(batch);  // Keep the capacity.
  return 1;
}

void UcxTransport::send_callback(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<UcxOp*>(user_data);
  ucp_request_free(request);
  UcxTransport* self = op->transport;
  Completion done = std::move(op->done);
  std::shared_ptr<UcxEndpoint> endpoint = std::move(op->endpoint);
  Status error;
  if (status != UCS_OK) {
    error = op->owner != nullptr ? op->owner->failure(status, "operation")
                                 : from_ucs(status, "UCX operation");
  }
  if (op->owner != nullptr) op->owner->landed(op);
  const uint64_t seq = op->seq;
  const UcxOp::Kind kind = op->kind;
  self->release_op(op);
  if (kind == UcxOp::Kind::kInternalSend && seq != 0 && endpoint != nullptr && !error.ok()) {
    endpoint->fail_get(seq, error);
  }
  if (done) done(std::move(error));
}

void UcxTransport::receive_callback(void* request, ucs_status_t status, size_t /*length*/,
                                    void* user_data) {
  auto* op = static_cast<UcxOp*>(user_data);
  ucp_request_free(request);
  std::shared_ptr<UcxEndpoint> endpoint = op->endpoint;
  endpoint->landed(op);
  endpoint->on_receive_done(op, status);
}

void UcxTransport::close_callback(void* request, ucs_status_t /*status*/, void* user_data) {
  auto* op = static_cast<UcxOp*>(user_data);
  ucp_request_free(request);
  UcxTransport* self = op->transport;
  std::shared_ptr<UcxEndpoint> endpoint = std::move(op->endpoint);
  self->release_op(op);
  self->closing_.erase(endpoint.get());
  endpoint->on_close_done();
}

ucs_status_t UcxTransport::am_callback(void* arg, const void* header, size_t header_length,
                                       void* data, size_t length,
                                       const ucp_am_recv_param_t* param) {
  auto* self = static_cast<UcxTransport*>(arg);
  const bool rendezvous = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(header),
                                         header_length > 0 ? header_length : 0);
  WireHeader wire;
  if (!read_wire_header(bytes, wire)) {
    // Too short to name a connection: nobody to reject, only to drop.
    spdlog::warn("ucx transport: dropped a message with a {}-byte header (not a halo peer)",
                 header_length);
    return rendezvous ? UCS_ERR_INVALID_PARAM : UCS_OK;
  }
  // Consecutive messages mostly come from the same connection.
  UcxEndpoint* endpoint = self->last_token_ == wire.token ? self->last_endpoint_ : nullptr;
  if (endpoint == nullptr) {
    auto it = self->by_token_.find(wire.token);
    if (it == self->by_token_.end()) {
      // A connection closed here while the peer was still sending, or a forged token.
      spdlog::debug("ucx transport: dropped message {} for an unknown connection", wire.am_id);
      return rendezvous ? UCS_ERR_NOT_CONNECTED : UCS_OK;
    }
    endpoint = it->second;
    self->last_token_ = wire.token;
    self->last_endpoint_ = endpoint;
  }
  return endpoint->on_message(wire, bytes.subspan(kWireHeaderBytes), data, length, rendezvous);
}

void UcxTransport::ep_error_callback(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* self = static_cast<UcxTransport*>(arg);
  auto it = self->by_ucp_ep_.find(ep);
  if (it == self->by_ucp_ep_.end()) return;  // Already closed here.
  UcxEndpoint& endpoint = *it->second;
  endpoint.mark_failed();
  if (endpoint.closed()) {
    // Closed here already, its UCX close waiting for this report: close it now.
    self->close_ucp_endpoint(std::static_pointer_cast<UcxEndpoint>(endpoint.shared_from_this()),
                             /*force=*/true);
    return;
  }
  self->fail(endpoint,
             unavailable_error(str_cat("UCX lost the connection to ", endpoint.peer_address(), ": ",
                                       ucs_status_string(status))));
}

void UcxTransport::defer_close(const std::shared_ptr<UcxEndpoint>& endpoint) {
  const auto grace = std::min<int64_t>(kMaxCloseDelayMs, config().close_grace_ms / 2);
  lame_ducks_[endpoint.get()] = {endpoint, Clock::now() + std::chrono::milliseconds(grace)};
}

void UcxTransport::close_overdue(bool all) {
  const auto now = Clock::now();
  std::vector<std::shared_ptr<UcxEndpoint>> due;
  for (auto& [raw, entry] : lame_ducks_) {
    if (all || now >= entry.deadline) due.push_back(entry.endpoint);
  }
  for (auto& endpoint : due) close_ucp_endpoint(endpoint, /*force=*/true);
}

void UcxTransport::close_ucp_endpoint(const std::shared_ptr<UcxEndpoint>& endpoint, bool force) {
  // Once per endpoint: a deferred close may be triggered by its deadline, the last operation
  // or a UCX error report, whichever comes first.
  lame_ducks_.erase(endpoint.get());
  if (endpoint->ucp_endpoint() == nullptr || endpoint->ucp_close_started()) return;
  endpoint->set_ucp_close_started();
  auto close = [this, endpoint, force] {
    ucp_ep_h ep = endpoint->ucp_endpoint();
    auto it = by_ucp_ep_.find(ep);
    if (it != by_ucp_ep_.end() && it->second == endpoint.get()) by_ucp_ep_.erase(it);
    ucp_request_param_t param{};
    param.op_attr_mask =
        UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    UcxOp* op = acquire_op(UcxOp::Kind::kClose);
    op->endpoint = endpoint;
    param.cb.send = &UcxTransport::close_callback;
    param.user_data = op;
    const ucs_status_ptr_t request = ucp_ep_close_nbx(ep, &param);
    if (request == nullptr || UCS_PTR_IS_ERR(request)) {
      release_op(op);
      endpoint->on_close_done();
      return;
    }
    closing_.emplace(endpoint.get(), endpoint);
  };
  if (in_worker_progress_) {
    deferred_.push_back(std::move(close));
  } else {
    close();
  }
}

void UcxTransport::forget(UcxEndpoint& endpoint) {
  // The UCX endpoint stays known (by_ucp_ep_) until its close starts: a deferred close waits
  // for UCX's error report on it.
  by_token_.erase(endpoint.local_token());
  if (last_endpoint_ == &endpoint) {
    last_token_ = 0;
    last_endpoint_ = nullptr;
  }
  if (endpoint.socket() != nullptr) unwatch(endpoint.socket()->fd());
}

void UcxTransport::deliver(UcxEndpoint& ep, uint16_t am_id, std::span<const std::byte> header,
                           std::span<const std::byte> payload) {
  on_am(ep, am_id, header, payload);
}

void UcxTransport::heard_from(UcxEndpoint& ep) { on_heard_from(ep); }

void UcxTransport::refuse(UcxEndpoint& ep, const Status& why) { reject(ep, why); }

void UcxTransport::fail(UcxEndpoint& ep, const Status& why) { on_endpoint_error(ep, why); }

// ---------------------------------------------------------------------------------------------
// Memory

StatusOr<std::unique_ptr<MemoryRegion>> UcxTransport::register_memory(void* data, size_t size) {
  if (data == nullptr && size > 0) {
    return invalid_argument_error("register_memory: null address with a non-zero size");
  }
  auto work = [this, data, size]() -> StatusOr<std::unique_ptr<MemoryRegion>> {
    ucp_mem_h memh = nullptr;
    std::string packed;
    if (size > 0) {
      ucp_mem_map_params_t params{};
      params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
      params.address = data;
      params.length = size;
      ucs_status_t status = ucp_mem_map(context_, &params, &memh);
      if (status != UCS_OK) {
        return from_ucs(status, str_cat("registering ", size, " bytes with UCX"));
      }
      void* rkey_buffer = nullptr;
      size_t rkey_size = 0;
      status = ucp_rkey_pack(context_, memh, &rkey_buffer, &rkey_size);
      if (status != UCS_OK) {
        ucp_mem_unmap(context_, memh);
        return from_ucs(status, "packing the UCX remote key");
      }
      packed.assign(static_cast<const char*>(rkey_buffer), rkey_size);
      ucp_rkey_buffer_release(rkey_buffer);
    }
    const uint64_t token = new_token();
    RemoteRegion remote;
    remote.addr = reinterpret_cast<uint64_t>(data);
    remote.length = size;
    remote.rkey = pack_remote_key(
        token, std::span(reinterpret_cast<const std::byte*>(packed.data()), packed.size()));
    regions_[token] = Region{static_cast<std::byte*>(data), size, memh};
    registered_bytes_.fetch_add(size);
    return std::unique_ptr<MemoryRegion>(new UcxMemoryRegion(
        region_link_, static_cast<std::byte*>(data), size, memh, token, std::move(remote)));
  };
  if (on_progress_thread()) return work();
  std::promise<StatusOr<std::unique_ptr<MemoryRegion>>> promise;
  auto result = promise.get_future();
  run_on_progress_thread([&] { promise.set_value(work()); });
  return result.get();
}

const UcxTransport::Region* UcxTransport::find_region(uint64_t token, uint64_t addr,
                                                      uint64_t length) const {
  auto it = regions_.find(token);
  if (it == regions_.end()) return nullptr;
  const Region& region = it->second;
  const auto base = reinterpret_cast<uint64_t>(region.base);
  if (addr < base || length > region.size || addr - base > region.size - length) return nullptr;
  return &region;
}

void UcxTransport::unregister_region(uint64_t token) {
  auto it = regions_.find(token);
  if (it == regions_.end()) return;
  if (it->second.memh != nullptr) ucp_mem_unmap(context_, it->second.memh);
  registered_bytes_.fetch_sub(it->second.size);
  regions_.erase(it);
}

bool UcxTransport::native_rma(ucp_ep_h ep) const {
  // UCX 1.13 offers no query for an endpoint's transports; its lane report does. UCX's put
  // and get on registered (not UCX-allocated) memory are native only through "rma" lanes of
  // an RDMA transport (rc, dc, ...). Without one (TCP; shared memory, where only cma moves
  // bulk data, as "rma_bw"), UCX emulates them with active messages copied through bounce
  // buffers, slower than halo's own put over active messages (rendezvous straight into the
  // target region): docs/transport.md has the measurements.
  const std::string report = capture([ep](FILE* stream) { ucp_ep_print_info(ep, stream); });
  std::istringstream lines(report);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("lane[") == std::string::npos) continue;
    std::istringstream words(line);
    std::string word;
    bool rma_lane = false;
    while (words >> word) rma_lane = rma_lane || word.rfind("rma#", 0) == 0;
    if (!rma_lane) continue;
    // "#  lane[1]:  2:rc_mlx5/mlx5_0:1.0 md[2] -> ... rma#0 rma_bw#0 am"
    const size_t colon = line.find(':', line.find("]:") + 2);
    const size_t slash = line.find('/', colon);
    if (colon == std::string::npos || slash == std::string::npos) continue;
    const std::string tl = line.substr(colon + 1, slash - colon - 1);
    if (tl != "tcp" && tl != "self") return true;
  }
  return false;
}

}  // namespace ucx
}  // namespace halo::transport::internal
