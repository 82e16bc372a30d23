// Resources and labels of a node (launcher/node/node_resources.h): hwloc detection, overrides
// and the flag syntax, including malformed input.
#include "launcher/node/node_resources.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace halo::node {
namespace {

TEST(NodeResources, DetectsProcessingUnitsAndMemoryWithHwloc) {
  NodeConfig config;
  auto r = node_resources(config);
  ASSERT_TRUE(r.ok()) << r.status();
  // hwloc's PUs that this process may use (all hardware threads unless a cgroup or Slurm
  // allocation restricts them).
  EXPECT_GE(r->resources.at("CPU"), 1.0);
  EXPECT_LE(r->resources.at("CPU"), static_cast<double>(::sysconf(_SC_NPROCESSORS_CONF)));
  // Memory is what the NUMA nodes hold, as the kernel reports per node (on some VMs less than
  // MemTotal, which also counts memory outside any node).
  double numa_total = 0;
  for (int n = 0;; ++n) {
    std::ifstream meminfo(str_cat("/sys/devices/system/node/node", n, "/meminfo"));
    if (!meminfo) break;
    std::string word;
    while (meminfo >> word && word != "MemTotal:") {
    }
    double kib = 0;
    meminfo >> kib;
    numa_total += kib * 1024;
  }
  const double memory = r->resources.at("memory");
  EXPECT_GT(memory, 0);
  if (numa_total > 0) {
    EXPECT_NEAR(memory, numa_total, 0.01 * numa_total);
  }
}

TEST(NodeResources, FlagsAddCustomResourcesLabelsAndOverrides) {
  NodeConfig config;
  config.resources = "GPU=2, license=0.5";
  config.labels = "failure_domain=rack1,zone=a";
  config.num_cpus = 7;
  config.memory_bytes = 1 << 20;
  auto r = node_resources(config);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resources, (std::map<std::string, double>{
                              {"CPU", 7}, {"memory", 1 << 20}, {"GPU", 2}, {"license", 0.5}}));
  EXPECT_EQ(r->labels,
            (std::map<std::string, std::string>{{"failure_domain", "rack1"}, {"zone", "a"}}));
}

TEST(NodeResources, MalformedListsAreRefusedNamingTheFlag) {
  for (const char* bad : {"GPU", "GPU=two", "GPU=-1", "=3", "GPU=1,GPU=2", "CPU=4", "GPU=inf"}) {
    auto r = parse_resources(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("--resources"), std::string_view::npos) << r.status();
  }
  EXPECT_FALSE(parse_labels("rack").ok());
  EXPECT_FALSE(parse_labels("a=1,a=2").ok());
  EXPECT_TRUE(parse_labels("").ok());
}

}  // namespace
}  // namespace halo::node
