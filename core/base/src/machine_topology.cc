#include "halo/base/machine_topology.h"

#include <hwloc.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace halo {

StatusOr<hwloc_topology*> machine_topology() {
  static std::once_flag once;
  static StatusOr<hwloc_topology*> loaded = internal_error("hwloc topology not read");
  std::call_once(once, [] {
    hwloc_topology_t topology = nullptr;
    if (hwloc_topology_init(&topology) != 0) {
      loaded = internal_error("hwloc cannot initialize a topology");
      return;
    }
    hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(topology) != 0) {
      loaded = internal_error(
          str_cat("hwloc cannot read this machine's topology: ", std::strerror(errno)));
      hwloc_topology_destroy(topology);
      return;
    }
    // Never destroyed: threads may still bind with it while the process exits.
    loaded = topology;
  });
  return loaded;
}

hwloc_obj* locality_of_interface(hwloc_topology* topology, const std::string& interface) {
  for (hwloc_obj_t dev = hwloc_get_next_osdev(topology, nullptr); dev != nullptr;
       dev = hwloc_get_next_osdev(topology, dev)) {
    if (dev->name != nullptr && interface == dev->name) {
      return hwloc_get_non_io_ancestor_obj(topology, dev);
    }
  }
  return nullptr;
}

}  // namespace halo
