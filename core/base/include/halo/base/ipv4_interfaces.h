// This machine's IPv4 interface addresses (getifaddrs), for code that must tell whether an
// address is local, which interface holds it, or which address to listen on.
//
//   for (const Ipv4Interface& i : ipv4_interfaces()) {
//     if (i.up && !i.loopback) return i.address;  // "198.18.0.2" on "eth0"
//   }
#pragma once

#include <string>
#include <vector>

namespace halo {

struct Ipv4Interface {
  std::string name;     // "eth0", "lo"
  std::string address;  // Dotted quad: "198.18.0.2".
  bool up = false;
  bool loopback = false;
};

// Every IPv4 address of every interface, in the kernel's order; empty when getifaddrs fails.
std::vector<Ipv4Interface> ipv4_interfaces();

}  // namespace halo
