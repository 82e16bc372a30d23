// halo started with mpirun across three test hosts (tests/support/test_hosts.h), Open MPI's
// real mpirun reaching the other hosts through an rsh agent that enters their network
// namespace (there is no sshd): halo-launch-mpi forms a cluster of one node per host, and an
// MPI program's ranks move plain and HA objects between hosts after
// halo::init(MPI_COMM_WORLD). Nothing is left running afterwards.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/launch/mpi/mpirun_support.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_hosts.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

// Three test hosts; mpirun runs in host 0 and starts its daemons (orted) in the others through
// an rsh agent that enters their network namespace.
class MpiThreeHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    HALO_SKIP_UNLESS_TEST_HOSTS_USABLE();
    auto hosts = TestHosts::create(3);
    ASSERT_TRUE(hosts.ok()) << hosts.status();
    hosts_ = *std::move(hosts);
    std::string agent = "#!/bin/sh\n# mpirun's rsh agent: HOST COMMAND...\nhost=$1\nshift\n";
    agent += "case $host in\n";
    for (int i = 0; i < 3; ++i) {
      agent += "  " + hosts_->address(i) + ") ns=" + hosts_->netns_path(i) + " ;;\n";
    }
    agent += "  *) echo \"no test host $host\" >&2; exit 1 ;;\nesac\n";
    agent += "exec nsenter --net=\"$ns\" -- sh -c \"$*\"\n";
    agent_ = dir_.write("rsh-agent", agent);
    std::filesystem::permissions(agent_, std::filesystem::perms::owner_all);
  }

  // mpirun in host 0 with one rank per host.
  StatusOr<CommandResult> mpirun(std::vector<std::string> program,
                                 std::vector<std::string> extra_env = {}) {
    std::vector<std::string> env = mpirun_env(dir_.path());
    env.push_back("HALO_UCX_TLS=tcp,self");
    env.push_back("HALO_NET_INTERFACE=" + std::string(TestHosts::kInterface));
    for (auto& e : extra_env) env.push_back(std::move(e));
    std::vector<std::string> argv = {
        "mpirun",
        "-np",
        "3",
        "--map-by",
        "ppr:1:node",
        "--host",
        hosts_->address(0) + "," + hosts_->address(1) + "," + hosts_->address(2),
        "--mca",
        "plm_rsh_agent",
        agent_,
        "--mca",
        "oob_tcp_if_include",
        TestHosts::kInterface};
    for (const auto& f : exported(env)) argv.push_back(f);
    for (auto& p : program) argv.push_back(std::move(p));
    return run_command(argv, {.netns = hosts_->netns_path(0), .env = env, .timeout = 180s});
  }

  void expect_nothing_left() {
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(hosts_->pids_in_host(i).empty()) << "processes left in host " << i;
    }
    EXPECT_TRUE(processes_mentioning(dir_.path()).empty()) << "a daemon is still running";
    // Only the agent is left in the folder.
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      EXPECT_EQ(entry.path(), agent_) << "left behind: " << entry.path();
    }
  }

  TempDir dir_;
  std::unique_ptr<TestHosts> hosts_;
  std::string agent_;
};

TEST_F(MpiThreeHosts, HaloLaunchMpiFormsAClusterOfOneNodePerHost) {
  auto run = mpirun({kBinDir + "/halo-launch-mpi", "--", kBinDir + "/halo", "status", "--json"});
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_NE(run->output.find("a halo cluster of 3 node(s) is up"), std::string::npos)
      << run->output;
  EXPECT_EQ(count(run->output, "\"ALIVE\""), 3) << run->output;
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(run->output.find("://" + hosts_->address(i) + ":"), std::string::npos)
        << "no node on host " << i << ":\n"
        << run->output;
  }
  expect_nothing_left();
}

TEST_F(MpiThreeHosts, InitMpiCommWorldMovesPlainAndHaObjectsBetweenHosts) {
  auto run = mpirun({kObjectsProgram, "--ha"});
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_NE(run->output.find("VERIFIED"), std::string::npos) << run->output;
  EXPECT_NE(run->output.find("NODES 3\n"), std::string::npos) << run->output;
  EXPECT_EQ(rank_nodes(run->output).size(), 3u) << "one node daemon per host:\n" << run->output;
  expect_nothing_left();
}

}  // namespace
}  // namespace halo::test
