// The IPv4 address a machine's halo daemons listen on when a launcher (the MPI bootstrap)
// starts them there, so that the other machines reach them.
//
//   HALO_ASSIGN_OR_RETURN(std::string host, this_host_address(""));  // "10.1.0.7"
#pragma once

#include <string>

#include "halo/base/status.h"

namespace halo::launcher {

// In order, the first that applies:
//   1. `configured` ($HALO_HOST in the launchers), as given: an IPv4 address or a name that
//      resolves to one of this machine's addresses;
//   2. what this machine's host name resolves to, when that is one of its own addresses and
//      not loopback (the usual cluster setup: the name in the hosts file or DNS);
//   3. the first address of an interface that is up and not loopback;
//   4. 127.0.0.1, when the machine has nothing else (one-machine runs only).
// INVALID_ARGUMENT for a configured name that does not resolve, or that resolves to no
// address of this machine.
StatusOr<std::string> this_host_address(const std::string& configured);

}  // namespace halo::launcher
