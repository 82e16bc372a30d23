// Addresses of the libfabric backend, as text and as the raw bytes libfabric takes.
//
//   ofi+tcp://HOST:PORT   sockaddr providers (tcp;ofi_rxm, verbs;ofi_rxm): HOST is an IPv4
//                         address, a name, or [IPv6]; the raw form is a sockaddr_in/_in6.
//   ofi+shm://NAME        string-addressed providers (shm): NAME is the shm endpoint name
//                         (a file in /dev/shm); the raw form is NAME with its NUL.
//   ofi+PROV://hex:HEX    any other provider: the raw address in hex.
#pragma once

#include <rdma/fabric.h>

#include <cstdint>
#include <span>
#include <string>

#include "halo/transport/transport.h"

namespace halo::transport::internal::ofi {

// Whether the provider's addresses are socket addresses.
bool is_sockaddr_format(uint32_t addr_format);

// "ofi+tcp://127.0.0.1:4000" from a raw address.
std::string format_address(const std::string& scheme, uint32_t addr_format,
                           std::span<const std::byte> raw);

// The raw address of `text`, which must use `scheme`. Host names are resolved.
StatusOr<std::string> parse_address(const std::string& text, const std::string& scheme,
                                    uint32_t addr_format);

// A raw socket address for binding to host:port.
StatusOr<std::string> resolve_socket_address(const std::string& host, uint16_t port);

// The local address (port 0) to bind to for reaching `peer` (a raw socket address): the
// first address of `net_interface` when set, otherwise the one the routing table picks.
StatusOr<std::string> source_address_for(const std::string& peer, const std::string& net_interface);

// Whether `raw`, received from a peer, is a well-formed address of this format. `own_size` is
// the length of this endpoint's own address (formats halo does not parse must match it).
bool valid_raw_address(uint32_t addr_format, std::span<const std::byte> raw, size_t own_size);

// The IP part of a raw socket address, and its port.
std::string socket_host(const std::string& raw);
uint16_t socket_port(const std::string& raw);

}  // namespace halo::transport::internal::ofi
