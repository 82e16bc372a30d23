// This machine's hardware topology, read with hwloc once per process.
//
// Reading a topology takes 10-20 ms (hwloc walks sysfs), and a node daemon needs one in four
// places while it starts: its resources, the placement of its progress thread, the NUMA binding
// of its store's memory and the NIC's NUMA node. They share this one, which includes the I/O
// devices that carry a name (network interfaces, so that a NIC's NUMA node is known).
//
// The header names hwloc's topology type without including hwloc.h; callers that use it
// include <hwloc.h> themselves.
#pragma once

#include <string>

#include "halo/base/status.h"

struct hwloc_topology;
struct hwloc_obj;

namespace halo {

// The loaded topology, or why hwloc could not read the machine (the same error on every call).
// Loaded on the first call, under a lock; valid until the process exits. hwloc allows any
// number of threads to read a loaded topology and to bind with it at once; never modify it.
StatusOr<hwloc_topology*> machine_topology();

// Where the network interface named `interface` ("eth0", "ib0") sits: the nearest non-I/O
// object above it, whose cpuset holds the CPUs near the NIC and whose nodeset its NUMA nodes.
// Null when hwloc does not see the interface.
hwloc_obj* locality_of_interface(hwloc_topology* topology, const std::string& interface);

}  // namespace halo
