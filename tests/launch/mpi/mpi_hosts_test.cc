// halo started with mpirun across three test hosts (tests/support/test_hosts.h), Open MPI's
// real mpirun reaching the other hosts through an rsh agent that enters their network
// namespace (there is no sshd): halo-launch-mpi forms a cluster of one node per host, and an
// MPI program's ranks move plain and HA objects between hosts after
// halo::init(MPI_COMM_WORLD). Nothing is left running afterwards.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>

#include "tests/launch/mpi/mpirun_support.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_hosts.h"
#include "tests/support/wait_for.h"

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
  // mpirun in host 0 with one rank per host, to its end.
  StatusOr<CommandResult> mpirun(std::vector<std::string> program) {
    return run_command(mpirun_argv(std::move(program)),
                       {.netns = hosts_->netns_path(0), .env = env(), .timeout = 180s});
  }
  // The same, started: its output can be followed line by line.
  StatusOr<ChildProcess> spawn_mpirun(std::vector<std::string> program) {
    ChildOptions options;
    options.netns = hosts_->netns_path(0);
    options.env = env();
    options.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
    return ChildProcess::spawn(mpirun_argv(std::move(program)), options);
  }

  std::vector<std::string> env() const {
    std::vector<std::string> env = mpirun_env(dir_.path());
    env.push_back("HALO_UCX_TLS=tcp,self");
    env.push_back("HALO_NET_INTERFACE=" + std::string(TestHosts::kInterface));
    // MPI's own UCX, too, only on the host's interface: each host has a loopback of its own,
    // which UCX would otherwise take for a way to reach ranks on the same machine.
    env.push_back("UCX_NET_DEVICES=" + std::string(TestHosts::kInterface));
    env.push_back("UCX_TLS=tcp,self");
    return env;
  }

  std::vector<std::string> mpirun_argv(std::vector<std::string> program) const {
    std::vector<std::string> argv = {
        "mpirun", "-np", "3", "--map-by", "ppr:1:node", "--host",
        hosts_->address(0) + "," + hosts_->address(1) + "," + hosts_->address(2), "--mca",
        "plm_rsh_agent", agent_, "--mca", "oob_tcp_if_include", TestHosts::kInterface,
        // Each orted shares the machine's topology through a shared-memory file at a fixed
        // address; several orteds of one machine (the test hosts) clash there and one crashed
        // in hwloc_shmem_topology_write (1 run in 5).
        "--mca", "rtc_hwloc_vmhole", "none"};
    for (const auto& f : exported(env())) argv.push_back(f);
    for (auto& p : program) argv.push_back(std::move(p));
    return argv;
  }

  // No process left; no session folder left but `kept` of daemons that died (kept for their
  // logs).
  void expect_nothing_left(int kept = 0) {
    // mpirun returns once its ranks are gone; the other hosts' orteds end just after.
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(wait_for([&] { return hosts_->pids_in_host(i).empty(); }, 10s))
          << "processes left in host " << i << ": " << names_of(hosts_->pids_in_host(i));
    }
    EXPECT_TRUE(wait_for([&] { return processes_mentioning(dir_.path()).empty(); }, 10s))
        << "a daemon is still running";
    int sessions = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path() == agent_) continue;
      ++sessions;
      EXPECT_TRUE(std::filesystem::exists(entry.path() / "logs")) << entry.path();
    }
    EXPECT_EQ(sessions, kept) << "session folders left in " << dir_.path();
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

// examples/mpi_ha_state: ranks keep their state in HA objects; the node daemon of host 2 is
// SIGKILLed mid-run; rank 0 takes rank 2's slice over from its checkpoint's copy on another
// host, and the final state equals a run without failures.
TEST_F(MpiThreeHosts, MpiHaStateExampleSurvivesTheLossOfANode) {
  auto run = spawn_mpirun({kBinDir + "/halo-mpi-ha-state", "--steps", "40", "--step-ms", "100"});
  ASSERT_TRUE(run.ok()) << run.status();
  auto step = run->wait_for_line("STEP 5 ", 120s);
  ASSERT_TRUE(step.ok()) << step.status() << "\n" << run->output_text();
  int killed = 0;
  for (pid_t pid : hosts_->pids_in_host(2)) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name == "halo-node" && ::kill(pid, SIGKILL) == 0) ++killed;
  }
  ASSERT_EQ(killed, 1) << "host 2 runs one halo-node";
  auto exit = run->wait(180s);
  ASSERT_TRUE(exit.ok()) << exit.status() << "\n" << run->output_text();
  const std::string output = run->output_text();
  EXPECT_EQ(exit->to_string(), "exit 0") << output;
  EXPECT_NE(output.find("rank 2: lost its halo node"), std::string::npos) << output;
  EXPECT_NE(output.find("rank 0: takes slice 2 over"), std::string::npos) << output;
  EXPECT_NE(output.find("STEP 40 rank 0"), std::string::npos) << output;
  EXPECT_NE(output.find("RESULT OK"), std::string::npos) << output;
  expect_nothing_left(/*kept=*/1);  // The killed node's session, with its log.
}

}  // namespace
}  // namespace halo::test
