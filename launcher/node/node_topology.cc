#include "launcher/node/node_topology.h"

#include <hwloc.h>

#include "halo/base/ipv4_interfaces.h"
#include "halo/base/machine_topology.h"

namespace halo::node {
namespace {

// The interface holding IPv4 `address`, or "" (loopback counts: "lo").
std::string interface_of(const std::string& address) {
  for (const Ipv4Interface& i : ipv4_interfaces()) {
    if (i.address == address) return i.name;
  }
  return "";
}

std::string plural(int n, const char* one, const char* many) {
  return str_cat(n, " ", n == 1 ? one : many);
}

}  // namespace

int NodeTopology::progress_pu(pid_t spread) const {
  if (pus_near_nic.empty()) return -1;
  return pus_near_nic[static_cast<size_t>(spread) % pus_near_nic.size()];
}

std::string NodeTopology::summary() const {
  std::string s =
      str_cat(plural(numa_nodes, "NUMA node", "NUMA nodes"), ", ", plural(cores, "core", "cores"),
              ", ", plural(pus, "PU", "PUs"), " (", allowed_pus.size(), " allowed)");
  if (!nic.empty()) {
    s += nic_numa_node >= 0 ? str_cat("; ", nic, " on NUMA node ", nic_numa_node)
                            : str_cat("; ", nic, " (NUMA node unknown)");
  }
  return s;
}

StatusOr<NodeTopology> discover_topology(const std::string& host_address,
                                         const std::string& net_interface) {
  HALO_ASSIGN_OR_RETURN(hwloc_topology_t topology, machine_topology());
  NodeTopology out;
  out.numa_nodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  out.cores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
  out.pus = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU);
  hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(topology);
  for (int i = 0; i < out.pus; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    if (pu != nullptr && hwloc_bitmap_isset(allowed, pu->os_index)) out.allowed_pus.push_back(i);
  }
  out.nic = net_interface.empty() ? interface_of(host_address) : net_interface;
  hwloc_obj_t near = out.nic.empty() ? nullptr : locality_of_interface(topology, out.nic);
  if (near != nullptr) {
    const int os_node = hwloc_bitmap_first(near->nodeset);
    if (hwloc_obj_t numa = os_node < 0 ? nullptr
                                       : hwloc_get_numanode_obj_by_os_index(
                                             topology, static_cast<unsigned>(os_node))) {
      out.nic_numa_node = static_cast<int>(numa->logical_index);
    }
  }
  for (int i : out.allowed_pus) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    if (near == nullptr || hwloc_bitmap_intersects(pu->cpuset, near->cpuset)) {
      out.pus_near_nic.push_back(i);
    }
  }
  if (out.pus_near_nic.empty()) out.pus_near_nic = out.allowed_pus;
  return out;
}

}  // namespace halo::node
