// Connection set-up of the UCX backend: the exchange of UCX worker addresses.
//
// UCX 1.13's own client-server connections (ucp_listener + sockaddr endpoints) run only over
// network transports and need UCP_ERR_HANDLING_MODE_PEER, which its shared-memory transports
// (posix, sysv) do not support: two processes on one host could never use shared memory, and a
// UCX_TLS without tcp could not connect at all. So halo exchanges worker addresses itself, as
// MPI launchers and ucx_perftest do: the client opens a TCP connection to the listener's
// host:port, each side sends one hello (its UCX worker address, its host identity and the
// token that names its endpoint), and each side creates a UCX endpoint from the other's address.
//
// The TCP connection then stays open and idle: the kernel closes it when the peer process dies,
// the fastest death notice over shared memory, where UCX itself reports nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "halo/base/status.h"

namespace halo::transport::internal::ucx {

struct BootstrapHello {
  uint64_t token = 0;          // The receiver of this hello puts it in every message it sends.
  std::string host_id;         // The sender's kernel boot id: equal ids share a host.
  std::string worker_address;  // From ucp_worker_get_address.
  uint32_t refusal_code = 0;   // Server to client: a StatusCode when it cannot accept ...
  std::string refusal;         // ... and why.
  // HMAC-SHA256 under the cluster secret over the fields above: a peer's worker address is
  // handed to UCX only when it comes from a holder of the secret (TransportBase's handshake
  // then authenticates the connection itself, with fresh nonces).
  std::string mac;
};

// The bytes BootstrapHello::mac covers.
std::string hello_mac_input(const BootstrapHello& hello);

// The hello framed for the socket.
std::string encode_hello(const BootstrapHello& hello);
// Removes and returns the hello at the front of `buffer`; nullopt while it is incomplete. A
// malformed or oversized frame is an error (the peer is not a halo UCX peer).
StatusOr<std::optional<BootstrapHello>> take_hello(std::string& buffer);

// This host's identity for BootstrapHello::host_id (the kernel's boot id; empty if unknown).
const std::string& local_host_id();

// "ucx://host:port" (host may be a name, IPv4, or [IPv6]).
struct UcxAddress {
  std::string host;
  uint16_t port = 0;
};
StatusOr<UcxAddress> parse_ucx_address(std::string_view address);
std::string format_ucx_address(std::string_view host, uint16_t port);

// A listening TCP socket (non-blocking, close-on-exec) on host:port; port 0 picks one.
struct ListeningSocket {
  int fd = -1;
  uint16_t port = 0;
};
StatusOr<ListeningSocket> listen_tcp(const std::string& host, uint16_t port);

// One non-blocking TCP connection carrying a hello each way, then idling as a liveness signal.
class BootstrapSocket {
 public:
  // Starts connecting to host:port. Fails at once only for a bad host or an immediate refusal.
  static StatusOr<std::unique_ptr<BootstrapSocket>> connect(const UcxAddress& to);
  // Takes over an accepted connection.
  static std::unique_ptr<BootstrapSocket> adopt(int fd);
  ~BootstrapSocket();
  BootstrapSocket(const BootstrapSocket&) = delete;
  BootstrapSocket& operator=(const BootstrapSocket&) = delete;

  int fd() const { return fd_; }
  // The peer as "ip:port", for messages.
  const std::string& peer_name() const { return peer_name_; }
  // The epoll events this socket waits for now.
  uint32_t wanted_events() const;
  // Queues bytes to write.
  void send(std::string_view bytes);
  // Handles readiness: completes the connect, writes what is queued, reads into inbox().
  // Errors: the connect failed, or the peer closed the connection (UNAVAILABLE).
  Status on_ready(uint32_t events);
  std::string& inbox() { return inbox_; }
  bool idle() const { return !connecting_ && outbox_.empty(); }

 private:
  BootstrapSocket(int fd, bool connecting, std::string peer_name);
  Status write_some();

  int fd_;
  bool connecting_;
  std::string peer_name_;
  std::string outbox_;
  std::string inbox_;
};

}  // namespace halo::transport::internal::ucx
