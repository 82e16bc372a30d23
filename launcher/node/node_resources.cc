#include "launcher/node/node_resources.h"

#include <hwloc.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "halo/base/machine_topology.h"

namespace halo::node {
namespace {

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const size_t end = s.find_last_not_of(" \t");
  return s.substr(begin, end - begin + 1);
}

// Splits "a=1,b=2" into (key, value) pairs; `flag` names the source in errors.
StatusOr<std::vector<std::pair<std::string, std::string>>> split_pairs(const std::string& text,
                                                                       const char* flag) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string entry = trim(text.substr(start, comma - start));
    start = comma + 1;
    if (entry.empty()) continue;
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || trim(entry.substr(0, eq)).empty()) {
      return invalid_argument_error(str_cat("--", flag, ": entry '", entry,
                                            "' is not NAME=VALUE (e.g. --", flag,
                                            " \"GPU=2,license=1\")"));
    }
    pairs.emplace_back(trim(entry.substr(0, eq)), trim(entry.substr(eq + 1)));
  }
  return pairs;
}

}  // namespace

StatusOr<std::map<std::string, double>> parse_resources(const std::string& text) {
  HALO_ASSIGN_OR_RETURN(auto pairs, split_pairs(text, "resources"));
  std::map<std::string, double> out;
  for (const auto& [name, value] : pairs) {
    char* end = nullptr;
    const double amount = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(amount) ||
        amount < 0) {
      return invalid_argument_error(str_cat("--resources: the amount of '", name, "' is '", value,
                                            "'; expected a number >= 0"));
    }
    if (name == "CPU" || name == "memory") {
      return invalid_argument_error(str_cat("--resources: '", name,
                                            "' is detected; override it with --num-cpus or "
                                            "--memory-bytes instead"));
    }
    if (!out.emplace(name, amount).second) {
      return invalid_argument_error(str_cat("--resources: '", name, "' is given twice"));
    }
  }
  return out;
}

StatusOr<std::map<std::string, std::string>> parse_labels(const std::string& text) {
  HALO_ASSIGN_OR_RETURN(auto pairs, split_pairs(text, "labels"));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : pairs) {
    if (!out.emplace(key, value).second) {
      return invalid_argument_error(str_cat("--labels: '", key, "' is given twice"));
    }
  }
  return out;
}

StatusOr<NodeResources> node_resources(const NodeConfig& config) {
  NodeResources out;
  HALO_ASSIGN_OR_RETURN(out.resources, parse_resources(config.resources));
  HALO_ASSIGN_OR_RETURN(out.labels, parse_labels(config.labels));
  double cpus = config.num_cpus;
  double memory = static_cast<double>(config.memory_bytes);
  if (config.num_cpus < 0 || config.memory_bytes < 0) {
    StatusOr<hwloc_topology_t> topology = machine_topology();
    if (!topology.ok()) {
      return internal_error(
          str_cat(topology.status().message(), "; pass --num-cpus and --memory-bytes"));
    }
    if (config.num_cpus < 0) {
      cpus = hwloc_bitmap_weight(hwloc_topology_get_allowed_cpuset(*topology));
      if (cpus <= 0) cpus = hwloc_get_nbobjs_by_type(*topology, HWLOC_OBJ_PU);
    }
    if (config.memory_bytes < 0) {
      memory = static_cast<double>(hwloc_get_root_obj(*topology)->total_memory);
    }
  }
  out.resources["CPU"] = cpus;
  out.resources["memory"] = memory;
  return out;
}

}  // namespace halo::node
