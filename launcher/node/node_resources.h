// What a node offers the cluster: CPUs and memory found with hwloc, custom resources and
// labels from flags, in the form RegisterNodeRequest carries.
//
//   HALO_ASSIGN_OR_RETURN(NodeResources r, node_resources(config));
//   // r.resources == {"CPU": 64, "memory": 2.7e11, "GPU": 2}, r.labels == {"failure_domain": ..}
//
// CPU is the number of processing units (hardware threads, hwloc's PUs) this process may use
// (all of the machine's, unless a Slurm allocation or cgroup restricts it), what Ray counts as
// CPUs too; memory is the total of the machine's NUMA nodes in bytes.
#pragma once

#include <map>
#include <string>

#include "halo/base/status.h"
#include "launcher/node/node_config.h"

namespace halo::node {

struct NodeResources {
  std::map<std::string, double> resources;
  std::map<std::string, std::string> labels;
  std::string topology;  // NodeTopology::summary() and the progress thread's PU, when known.
};

// Detected CPUs and memory (or the config's overrides) plus the parsed custom resources and
// labels. INVALID_ARGUMENT naming the flag and entry for a malformed list, a negative or
// non-numeric amount, or a custom resource that redefines CPU or memory (use --num-cpus /
// --memory-bytes); INTERNAL if hwloc cannot read the topology.
StatusOr<NodeResources> node_resources(const NodeConfig& config);

// "GPU=2,license=1" -> {GPU: 2, license: 1}. Empty text: none.
StatusOr<std::map<std::string, double>> parse_resources(const std::string& text);
// "failure_domain=rack1,zone=a" -> {failure_domain: rack1, zone: a}. Empty text: none.
StatusOr<std::map<std::string, std::string>> parse_labels(const std::string& text);

}  // namespace halo::node
