#include "ucx/ucx_bootstrap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

namespace halo::transport::internal::ucx {
namespace {

constexpr uint32_t kHelloMagic = 0x42555848;  // "HXUB"
constexpr uint16_t kHelloVersion = 1;
constexpr size_t kFrameHeaderBytes = 12;     // magic, version, reserved, body length
constexpr size_t kMaxHelloBody = 64 * 1024;  // Worker addresses are a few hundred bytes.

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(value));
}

void put_bytes(std::string& out, std::string_view bytes) {
  put(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes);
}

// Reads from a frame body, failing (rather than overrunning) on truncated fields.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  bool get(T& value) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(&value, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool get_bytes(std::string& out) {
    uint32_t n = 0;
    if (!get(n) || in_.size() < n) return false;
    out.assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

std::string sockaddr_name(const sockaddr* addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return str_cat(host, ":", port);
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return str_cat("[", host, "]:", port);
  }
  return "?";
}

struct AddrInfoDeleter {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

StatusOr<AddrInfoPtr> resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  const int rc =
      getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    return invalid_argument_error(str_cat("cannot resolve host '", host, "': ", gai_strerror(rc)));
  }
  return AddrInfoPtr(result);
}

void put_fields(std::string& body, const BootstrapHello& hello) {
  put(body, hello.token);
  put(body, hello.refusal_code);
  put_bytes(body, hello.host_id);
  put_bytes(body, hello.worker_address);
  put_bytes(body, hello.refusal);
}

}  // namespace

std::string hello_mac_input(const BootstrapHello& hello) {
  std::string bytes = "halo-ucx-hello-v1";
  put_fields(bytes, hello);
  return bytes;
}

std::string encode_hello(const BootstrapHello& hello) {
  std::string body;
  put_fields(body, hello);
  put_bytes(body, hello.mac);
  std::string frame;
  frame.reserve(kFrameHeaderBytes + body.size());
  put(frame, kHelloMagic);
  put(frame, kHelloVersion);
  put(frame, uint16_t{0});
  put(frame, static_cast<uint32_t>(body.size()));
  frame += body;
  return frame;
}

StatusOr<std::optional<BootstrapHello>> take_hello(std::string& buffer) {
  if (buffer.size() < kFrameHeaderBytes) return std::optional<BootstrapHello>();
  Reader header(std::string_view(buffer).substr(0, kFrameHeaderBytes));
  uint32_t magic = 0, body_size = 0;
  uint16_t version = 0, reserved = 0;
  header.get(magic);
  header.get(version);
  header.get(reserved);
  header.get(body_size);
  if (magic != kHelloMagic) {
    return invalid_argument_error("not a halo UCX peer (bad connection preamble)");
  }
  if (version != kHelloVersion) {
    return invalid_argument_error(str_cat("halo UCX connection protocol version ", version,
                                          " is not supported (this side speaks ", kHelloVersion,
                                          "); upgrade both sides"));
  }
  if (body_size > kMaxHelloBody) {
    return invalid_argument_error(str_cat("connection preamble of ", body_size,
                                          " bytes exceeds the limit of ", kMaxHelloBody));
  }
  if (buffer.size() < kFrameHeaderBytes + body_size) return std::optional<BootstrapHello>();
  Reader body(std::string_view(buffer).substr(kFrameHeaderBytes, body_size));
  BootstrapHello hello;
  if (!body.get(hello.token) || !body.get(hello.refusal_code) || !body.get_bytes(hello.host_id) ||
      !body.get_bytes(hello.worker_address) || !body.get_bytes(hello.refusal) ||
      !body.get_bytes(hello.mac) || !body.done()) {
    return invalid_argument_error("malformed connection preamble");
  }
  buffer.erase(0, kFrameHeaderBytes + body_size);
  return std::optional<BootstrapHello>(std::move(hello));
}

const std::string& local_host_id() {
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string line;
    std::getline(in, line);
    return line;
  }();
  return id;
}

StatusOr<UcxAddress> parse_ucx_address(std::string_view address) {
  constexpr std::string_view kScheme = "ucx://";
  const auto bad = [&](std::string_view why) {
    return invalid_argument_error(
        str_cat("bad UCX address '", address, "': ", why, " (expected ucx://HOST:PORT)"));
  };
  if (address.substr(0, kScheme.size()) != kScheme) return bad("missing the ucx:// scheme");
  std::string_view rest = address.substr(kScheme.size());
  std::string_view host;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return bad("unterminated [IPv6] host");
    }
    host = rest.substr(1, close - 1);
    port_text = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("missing the port");
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  if (host.empty()) return bad("empty host");
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return bad("the port must be a number from 1 to 65535");
  }
  return UcxAddress{std::string(host), static_cast<uint16_t>(port)};
}

std::string format_ucx_address(std::string_view host, uint16_t port) {
  if (host.find(':') != std::string_view::npos) return str_cat("ucx://[", host, "]:", port);
  return str_cat("ucx://", host, ":", port);
}

StatusOr<ListeningSocket> listen_tcp(const std::string& host, uint16_t port) {
  HALO_ASSIGN_OR_RETURN(AddrInfoPtr info, resolve(host, port, /*passive=*/true));
  Status last = unavailable_error(str_cat("no address to listen on for '", host, "'"));
  for (addrinfo* ai = info.get(); ai != nullptr; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = errno_error(errno, "socket");
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = errno_error(errno, str_cat("binding ", host, ":", port));
      ::close(fd);
      continue;
    }
    if (::listen(fd, 1024) != 0) {
      last = errno_error(errno, str_cat("listening on ", host, ":", port));
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    const uint16_t bound_port = bound.ss_family == AF_INET6
                                    ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                    : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return ListeningSocket{fd, bound_port};
  }
  return last;
}

BootstrapSocket::BootstrapSocket(int fd, bool connecting, std::string peer_name)
    : fd_(fd), connecting_(connecting), peer_name_(std::move(peer_name)) {
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

BootstrapSocket::~BootstrapSocket() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<std::unique_ptr<BootstrapSocket>> BootstrapSocket::connect(const UcxAddress& to) {
  HALO_ASSIGN_OR_RETURN(AddrInfoPtr info, resolve(to.host, to.port, /*passive=*/false));
  // The first address only: trying the others would need a connect per address in turn, and
  // halo addresses name one interface.
  const addrinfo* ai = info.get();
  const int fd =
      ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return errno_error(errno, "socket");
  const std::string name = sockaddr_name(ai->ai_addr);
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
    const int err = errno;
    ::close(fd);
    return unavailable_error(str_cat("cannot connect to ", name, ": ", std::strerror(err)));
  }
  return std::unique_ptr<BootstrapSocket>(new BootstrapSocket(fd, /*connecting=*/true, name));
}

std::unique_ptr<BootstrapSocket> BootstrapSocket::adopt(int fd) {
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  std::string name = "?";
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    name = sockaddr_name(reinterpret_cast<sockaddr*>(&peer));
  }
  return std::unique_ptr<BootstrapSocket>(new BootstrapSocket(fd, /*connecting=*/false, name));
}

uint32_t BootstrapSocket::wanted_events() const {
  uint32_t events = EPOLLIN | EPOLLRDHUP;
  if (connecting_ || !outbox_.empty()) events |= EPOLLOUT;
  return events;
}

void BootstrapSocket::send(std::string_view bytes) {
  outbox_.append(bytes);
  if (!connecting_) (void)write_some();  // Errors surface on the next on_ready.
}

Status BootstrapSocket::write_some() {
  while (!outbox_.empty()) {
    const ssize_t n = ::send(fd_, outbox_.data(), outbox_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      outbox_.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status();
    if (n < 0 && errno == EINTR) continue;
    return unavailable_error(
        str_cat("connection to ", peer_name_, " failed: ", std::strerror(errno)));
  }
  return Status();
}

Status BootstrapSocket::on_ready(uint32_t events) {
  if (connecting_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return Status();
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return unavailable_error(
          str_cat("cannot connect to ", peer_name_, ": ", std::strerror(err),
                  err == ECONNREFUSED ? " (is a halo process listening there?)" : ""));
    }
    connecting_ = false;
  }
  HALO_RETURN_IF_ERROR(write_some());
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
    char chunk[4096];
    while (true) {
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n > 0) {
        inbox_.append(chunk, static_cast<size_t>(n));
        // A hello is small; a peer that streams more is not a halo peer. Bound the buffer.
        if (inbox_.size() > 2 * kMaxHelloBody) {
          return invalid_argument_error(str_cat(peer_name_, " sent more than a preamble"));
        }
        continue;
      }
      if (n == 0) {
        return unavailable_error(str_cat("connection to ", peer_name_, " closed by the peer"));
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return unavailable_error(
          str_cat("connection to ", peer_name_, " failed: ", std::strerror(errno)));
    }
  }
  return Status();
}

}  // namespace halo::transport::internal::ucx
