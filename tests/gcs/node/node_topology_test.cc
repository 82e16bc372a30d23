// The node's machine as hwloc sees it and where its progress thread goes
// (launcher/node/node_topology.h), and the --cpu-binding knob.
#include "launcher/node/node_topology.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>

#include "launcher/node/node_daemon.h"

namespace halo::node {
namespace {

TEST(NodeTopology, CountsTheMachineAndFindsTheInterfaceOfTheAddress) {
  auto t = discover_topology("127.0.0.1", "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->pus, ::sysconf(_SC_NPROCESSORS_CONF));
  EXPECT_GE(t->cores, 1);
  EXPECT_LE(t->cores, t->pus);
  EXPECT_GE(t->numa_nodes, 1);
  ASSERT_FALSE(t->allowed_pus.empty());
  EXPECT_LE(t->allowed_pus.size(), static_cast<size_t>(t->pus));
  EXPECT_EQ(t->nic, "lo");
  // Near the NIC when hwloc places it; every allowed PU when it does not (loopback).
  ASSERT_FALSE(t->pus_near_nic.empty());
  for (int pu : t->pus_near_nic) {
    EXPECT_NE(std::find(t->allowed_pus.begin(), t->allowed_pus.end(), pu), t->allowed_pus.end());
  }
  EXPECT_NE(t->summary().find("NUMA node"), std::string::npos) << t->summary();
  EXPECT_NE(t->summary().find("lo"), std::string::npos) << t->summary();
}

TEST(NodeTopology, ProgressThreadsOfSeveralDaemonsSpreadOverTheNearPus) {
  auto t = discover_topology("127.0.0.1", "");
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<int> chosen;
  for (pid_t spread = 0; spread < 2 * static_cast<pid_t>(t->pus_near_nic.size()); ++spread) {
    const int pu = t->progress_pu(spread);
    EXPECT_NE(std::find(t->pus_near_nic.begin(), t->pus_near_nic.end(), pu), t->pus_near_nic.end());
    chosen.push_back(pu);
  }
  std::sort(chosen.begin(), chosen.end());
  chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());
  EXPECT_EQ(chosen.size(), t->pus_near_nic.size()) << "every near PU gets daemons";
}

TEST(NodeTopology, AnInterfaceHwlocDoesNotKnowLeavesEveryAllowedPu) {
  auto t = discover_topology("127.0.0.1", "no-such-nic0");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->nic, "no-such-nic0");
  EXPECT_EQ(t->nic_numa_node, -1);
  EXPECT_EQ(t->pus_near_nic, t->allowed_pus);
  EXPECT_NE(t->summary().find("NUMA node unknown"), std::string::npos) << t->summary();
}

TEST(NodeTopology, AnUnknownCpuBindingIsRefusedNamingTheChoices) {
  NodeConfig config;
  config.gcs_address = "127.0.0.1:1";
  config.secret_file = "/nonexistent";
  config.cpu_binding = "everywhere";
  auto daemon = NodeDaemon::start(config, {}, {}, {});
  ASSERT_FALSE(daemon.ok());
  EXPECT_EQ(daemon.status().code(), StatusCode::kInvalidArgument) << daemon.status();
  EXPECT_NE(daemon.status().message().find("nic or none"), std::string::npos) << daemon.status();
}

}  // namespace
}  // namespace halo::node
