#include "ofi/ofi_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace halo::transport::internal::ofi {
namespace {

constexpr char kHexPrefix[] = "hex:";

std::string to_hex(std::span<const std::byte> raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (std::byte b : raw) {
    out.push_back(kDigits[static_cast<uint8_t>(b) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(b) & 0xf]);
  }
  return out;
}

StatusOr<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return invalid_argument_error("odd number of hex digits");
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(hex.data() + 2 * i, hex.data() + 2 * i + 2, value, 16);
    if (ec != std::errc() || end != hex.data() + 2 * i + 2) {
      return invalid_argument_error("bad hex digit");
    }
    out[i] = static_cast<char>(value);
  }
  return out;
}

std::string sockaddr_bytes(const sockaddr* sa) {
  const size_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return std::string(reinterpret_cast<const char*>(sa), len);
}

// Sets the port of a raw sockaddr_in/_in6 to 0 (bind to any free port).
void clear_port(std::string& raw) {
  static_assert(offsetof(sockaddr_in, sin_port) == offsetof(sockaddr_in6, sin6_port));
  std::memset(raw.data() + offsetof(sockaddr_in, sin_port), 0, sizeof(in_port_t));
}

}  // namespace

bool is_sockaddr_format(uint32_t addr_format) {
  return addr_format == FI_SOCKADDR || addr_format == FI_SOCKADDR_IN ||
         addr_format == FI_SOCKADDR_IN6;
}

std::string socket_host(const std::string& raw) {
  char text[INET6_ADDRSTRLEN] = {};
  sockaddr_storage ss{};
  std::memcpy(&ss, raw.data(), std::min(raw.size(), sizeof(ss)));
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, &ss, sizeof(sin6));
    inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof(text));
  } else {
    sockaddr_in sin;
    std::memcpy(&sin, &ss, sizeof(sin));
    inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text));
  }
  return text;
}

uint16_t socket_port(const std::string& raw) {
  sockaddr_storage ss{};
  std::memcpy(&ss, raw.data(), std::min(raw.size(), sizeof(ss)));
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, &ss, sizeof(sin6));
    return ntohs(sin6.sin6_port);
  }
  sockaddr_in sin;
  std::memcpy(&sin, &ss, sizeof(sin));
  return ntohs(sin.sin_port);
}

std::string format_address(const std::string& scheme, uint32_t addr_format,
                           std::span<const std::byte> raw) {
  std::string out = scheme + "://";
  if (is_sockaddr_format(addr_format)) {
    std::string bytes(reinterpret_cast<const char*>(raw.data()), raw.size());
    sockaddr_storage ss{};
    std::memcpy(&ss, bytes.data(), std::min(bytes.size(), sizeof(ss)));
    const std::string host = socket_host(bytes);
    if (ss.ss_family == AF_INET6) {
      out += "[" + host + "]";
    } else {
      out += host;
    }
    return out + ":" + std::to_string(socket_port(bytes));
  }
  if (addr_format == FI_ADDR_STR) {
    std::string name(reinterpret_cast<const char*>(raw.data()), raw.size());
    name.resize(std::strlen(name.c_str()));
    return out + name;
  }
  return out + kHexPrefix + to_hex(raw);
}

StatusOr<std::string> resolve_socket_address(const std::string& host, uint16_t port) {
  std::string name = host;
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  int rc = getaddrinfo(name.c_str(), service.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return unavailable_error(str_cat("cannot resolve host '", host, "': ", gai_strerror(rc)));
  }
  // Prefer IPv4: what halo's test hosts and most clusters' management networks use.
  const addrinfo* pick = result;
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
  }
  std::string raw = sockaddr_bytes(pick->ai_addr);
  freeaddrinfo(result);
  return raw;
}

StatusOr<std::string> parse_address(const std::string& text, const std::string& scheme,
                                    uint32_t addr_format) {
  const std::string prefix = scheme + "://";
  if (text.compare(0, prefix.size(), prefix) != 0) {
    return invalid_argument_error(str_cat("address '", text, "' is not of the form ", prefix,
                                          "...; this transport uses libfabric provider ",
                                          scheme.substr(4), " (ofi_provider)"));
  }
  std::string rest = text.substr(prefix.size());
  if (rest.empty()) return invalid_argument_error(str_cat("address '", text, "' names no peer"));
  if (rest.compare(0, sizeof(kHexPrefix) - 1, kHexPrefix) == 0) {
    auto raw = from_hex(std::string_view(rest).substr(sizeof(kHexPrefix) - 1));
    if (!raw.ok()) return raw.status().with_context(str_cat("address '", text, "'"));
    return raw;
  }
  if (is_sockaddr_format(addr_format)) {
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
      return invalid_argument_error(str_cat("address '", text, "' lacks a :PORT"));
    }
    unsigned port = 0;
    auto [end, ec] = std::from_chars(rest.data() + colon + 1, rest.data() + rest.size(), port);
    if (ec != std::errc() || end != rest.data() + rest.size() || port == 0 || port > 65535) {
      return invalid_argument_error(str_cat("address '", text, "' has a bad port"));
    }
    return resolve_socket_address(rest.substr(0, colon), static_cast<uint16_t>(port));
  }
  if (addr_format == FI_ADDR_STR) {
    if (rest.size() >= 256) return invalid_argument_error(str_cat("address '", text, "' too long"));
    rest.push_back('\0');
    return rest;
  }
  return invalid_argument_error(
      str_cat("address '", text, "': this provider's addresses are written ", prefix, "hex:..."));
}

StatusOr<std::string> source_address_for(const std::string& peer,
                                         const std::string& net_interface) {
  sockaddr_storage peer_ss{};
  std::memcpy(&peer_ss, peer.data(), std::min(peer.size(), sizeof(peer_ss)));
  const int family = peer_ss.ss_family == AF_INET6 ? AF_INET6 : AF_INET;
  if (!net_interface.empty()) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return errno_error(errno, "getifaddrs");
    std::string found;
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || net_interface != i->ifa_name) continue;
      if (i->ifa_addr->sa_family != family) continue;
      found = sockaddr_bytes(i->ifa_addr);
      break;
    }
    freeifaddrs(list);
    if (found.empty()) {
      return unavailable_error(str_cat("network interface '", net_interface,
                                       "' (net_interface) has no address of the peer's family"));
    }
    clear_port(found);
    return found;
  }
  // Ask the routing table: a connected UDP socket learns its source address, no packet sent.
  int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error(errno, "socket");
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&peer_ss),
                static_cast<socklen_t>(peer.size())) == 0) {
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      out = sockaddr_bytes(reinterpret_cast<const sockaddr*>(&local));
    }
  }
  const int err = errno;
  ::close(fd);
  if (out.empty()) return errno_error(err, "finding the local address that reaches the peer");
  clear_port(out);
  return out;
}

bool valid_raw_address(uint32_t addr_format, std::span<const std::byte> raw, size_t own_size) {
  if (raw.empty()) return false;
  if (is_sockaddr_format(addr_format)) {
    sockaddr_storage ss{};
    if (raw.size() > sizeof(ss)) return false;
    std::memcpy(&ss, raw.data(), raw.size());
    if (ss.ss_family == AF_INET) return raw.size() == sizeof(sockaddr_in);
    if (ss.ss_family == AF_INET6) return raw.size() == sizeof(sockaddr_in6);
    return false;
  }
  if (addr_format == FI_ADDR_STR) {
    // One NUL, at the end, and a name with no path separator.
    if (raw.back() != std::byte{0} || raw.size() < 2) return false;
    for (size_t i = 0; i + 1 < raw.size(); ++i) {
      if (raw[i] == std::byte{0} || raw[i] == std::byte{'/'}) return false;
    }
    return true;
  }
  return raw.size() == own_size;
}

}  // namespace halo::transport::internal::ofi
