// The machine a node daemon runs on, as hwloc sees it, and where the daemon puts its transport
// progress thread: on a processing unit (PU) near the NIC it talks through, among the PUs this
// process may use (a Slurm allocation or cgroup restricts them).
//
//   HALO_ASSIGN_OR_RETURN(NodeTopology t, discover_topology("10.0.0.7", ""));
//   t.summary();  // "2 NUMA nodes, 32 cores, 64 PUs (16 allowed); ib0 on NUMA node 1"
//   transport.progress_core = t.progress_pu(getpid());  // -1 when it cannot tell
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::node {

struct NodeTopology {
  int numa_nodes = 0;
  int cores = 0;
  int pus = 0;
  // hwloc logical indexes of the PUs this process may run on.
  std::vector<int> allowed_pus;
  // The network interface the node's address is on ("eth0", "ib0"), and the NUMA node it
  // hangs off (hwloc logical index), -1 when hwloc does not say (virtual NICs, one NUMA node).
  std::string nic;
  int nic_numa_node = -1;
  // The allowed PUs on that NUMA node; all allowed PUs when it is unknown.
  std::vector<int> pus_near_nic;

  // A PU for a progress thread: one of pus_near_nic, chosen by `spread` (e.g. the pid), so
  // that several daemons of one machine do not all land on the same PU; -1 when none.
  int progress_pu(pid_t spread) const;
  // One line for logs and `halo status --verbose`.
  std::string summary() const;
};

// Reads the topology with hwloc (I/O devices included, to place the NIC). `net_interface`
// names the NIC when set; else it is the interface holding `host_address`. INTERNAL when hwloc
// cannot read the topology.
StatusOr<NodeTopology> discover_topology(const std::string& host_address,
                                         const std::string& net_interface);

}  // namespace halo::node
