// The local Slurm cluster the launch tests run on (slurm/local-slurm.sh, docs/slurm.md): three
// slurmd "nodes" on this machine behind one slurmctld. A batch job and an interactive step run
// one task on each node, and each task sees its own node's name; stopping the cluster leaves no
// daemon, no /etc/hosts line and no folder behind. Labels "launch;slurm".
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "tests/launch/slurm/local_slurm.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

using SlurmCluster = ThreeSlurmNodes;

TEST_F(SlurmCluster, ABatchJobRunsOneTaskOnEachNode) {
  auto job = slurm_->run({"sbatch", "--wait", "-N3", "-o", "job.out", "--wrap",
                          "srun hostname | sort; echo \"nodes=$SLURM_JOB_NODELIST\""},
                         120s);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_TRUE(job->exit.success()) << job->output;
  EXPECT_EQ(read_file(slurm_->work_dir() + "/job.out"), "n1\nn2\nn3\nnodes=n[1-3]\n");
}

TEST_F(SlurmCluster, AStepSeesTheAllocationInItsEnvironment) {
  auto step = slurm_->run(
      {"srun", "-N3", "--ntasks-per-node=1", "bash", "-c",
       "echo \"$SLURM_NODEID $SLURMD_NODENAME $(hostname) $SLURM_NNODES $SLURM_STEP_NODELIST\""},
      60s);
  ASSERT_TRUE(step.ok()) << step.status();
  ASSERT_TRUE(step->exit.success()) << step->output;
  for (const char* line : {"0 n1 n1 3 n[1-3]", "1 n2 n2 3 n[1-3]", "2 n3 n3 3 n[1-3]"}) {
    EXPECT_NE(step->output.find(line), std::string::npos) << line << " in:\n" << step->output;
  }
}

TEST_F(SlurmCluster, StoppingLeavesNoDaemonNoHostsLineAndNoFolder) {
  const std::string dir = slurm_->dir();
  ASSERT_TRUE(slurm_->stop().ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_EQ(read_file("/etc/hosts").find("halo local-slurm"), std::string::npos);
  // No process of any kind still names the cluster's folder (zombies have no command line).
  auto ps = ChildProcess::spawn({"pgrep", "-f", dir});
  ASSERT_TRUE(ps.ok()) << ps.status();
  auto exit = ps->wait(10s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code, 1) << "still running:\n" << ps->output_text();
}

TEST(LocalSlurmScript, RefusesASecondClusterWhileOneRuns) {
  auto first = LocalSlurm::start(1);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = LocalSlurm::start(1);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another local Slurm cluster runs"), std::string::npos)
      << second.status();
}

}  // namespace
}  // namespace halo::test
