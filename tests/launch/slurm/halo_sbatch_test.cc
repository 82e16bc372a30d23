// halo under Slurm (slurm/halo.sbatch, slurm/halo-slurm-node.sh, docs/slurm.md) on the local
// Slurm cluster of three nodes: `sbatch slurm/halo.sbatch DRIVER` starts one halo-node per
// allocated node and the GCS on the first, runs the driver once all are ALIVE, and stops
// everything when it ends. The driver (move_objects_driver.sh) sees 3 ALIVE nodes and moves
// objects between every pair of them. Two such jobs at once on the same nodes do not clash
// (free ports and a folder per job). After a job, no halo process and no job folder remain.
// Labels "launch;slurm".
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/launch/slurm/local_slurm.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

class HaloOnSlurm : public ThreeSlurmNodes {
 protected:
  // sbatch --wait of the template with the test driver; "-o" names the job's output file.
  std::vector<std::string> sbatch(const std::string& output,
                                  std::vector<std::string> driver_args = {}) const {
    std::vector<std::string> argv = {"sbatch",
                                     "--wait",
                                     "--nodes=3",
                                     "-o",
                                     output,
                                     HALO_SBATCH_TEMPLATE,
                                     HALO_MOVE_OBJECTS_DRIVER};
    argv.insert(argv.end(), driver_args.begin(), driver_args.end());
    return argv;
  }
  std::vector<std::string> env() const {
    return {"HALO_BIN_DIR=" HALO_BIN_DIR, "HALO_SLURM_NODE=" HALO_SLURM_NODE_TASK,
            "HALO_OBJSTORE_TOOL=" HALO_OBJSTORE_TOOL_PATH,
            // Three stores on one machine: small ones.
            "HALO_OBJECT_STORE_MEMORY=67108864"};
  }
  std::string job_output(const std::string& name) const {
    return read_file(slurm_->work_dir() + "/" + name);
  }
  // Processes whose command line names `text` (pgrep -f), one per line.
  static std::string processes_naming(const std::string& text) {
    auto ps = ChildProcess::spawn({"pgrep", "-a", "-f", text});
    if (!ps.ok()) return ps.status().to_string();
    (void)ps->wait(10s);
    return ps->output_text();
  }
  // Runs a job that must fail, with `e` as its environment: expects it to fail within 60 s
  // and returns its output file.
  std::string failed_job_output(const std::vector<std::string>& e) const {
    const auto started = std::chrono::steady_clock::now();
    auto job = slurm_->run(sbatch("job.out"), 180s, e);
    EXPECT_TRUE(job.ok()) << job.status();
    if (job.ok()) {
      EXPECT_FALSE(job->exit.success()) << job->output;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, 60s);
    return job_output("job.out");
  }
};

TEST_F(HaloOnSlurm, AJobStartsANodeOnEachAllocatedNodeAndItsDriverMovesObjectsBetweenAll) {
  auto job = slurm_->run(sbatch("job.out"), 180s, env());
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string out = job_output("job.out");
  EXPECT_TRUE(job->exit.success()) << job->output << "\n" << out;
  EXPECT_NE(out.find("ALIVE 3"), std::string::npos) << out;
  for (const char* pair : {"n1 -> n2: OK", "n1 -> n3: OK", "n2 -> n1: OK", "n2 -> n3: OK",
                           "n3 -> n1: OK", "n3 -> n2: OK"}) {
    EXPECT_NE(out.find(pair), std::string::npos) << pair << " in:\n" << out;
  }
  EXPECT_NE(out.find("MOVED 3"), std::string::npos) << out;
  // Nothing of the job is left: no daemon, no job folder, no shared memory of its daemons
  // (named with their process ids, as halo's libfabric regions are).
  EXPECT_EQ(processes_naming(slurm_->work_dir() + "/.halo"), "");
  EXPECT_FALSE(std::filesystem::exists(slurm_->work_dir() + "/.halo"));
  const size_t at = out.find("DAEMON_PIDS ");
  ASSERT_NE(at, std::string::npos) << out;
  std::istringstream pids(out.substr(at + 12, out.find('\n', at) - at - 12));
  int count = 0;
  for (std::string pid; pids >> pid; ++count) {
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      const std::string name = entry.path().filename().string();
      EXPECT_EQ(name.find("." + pid + "."), std::string::npos)
          << "/dev/shm/" << name << " left by node daemon " << pid;
    }
  }
  EXPECT_EQ(count, 3) << out;
}

TEST_F(HaloOnSlurm, TwoJobsAtOnceOnTheSameNodesDoNotClash) {
  auto first = slurm_->spawn(sbatch("first.out"), env());
  auto second = slurm_->spawn(sbatch("second.out"), env());
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  for (auto& [job, name] : {std::pair{&*first, std::string("first.out")},
                            std::pair{&*second, std::string("second.out")}}) {
    auto exit = job->wait(180s);
    ASSERT_TRUE(exit.ok()) << exit.status();
    const std::string out = job_output(name);
    EXPECT_TRUE(exit->success()) << job->output_text() << "\n" << out;
    EXPECT_NE(out.find("MOVED 3"), std::string::npos) << name << ":\n" << out;
  }
  EXPECT_EQ(processes_naming(slurm_->work_dir() + "/.halo"), "");
}

// halo's health checks (period 200 ms, 3 misses, 200 ms timeout: DEAD within 800 ms) see a
// halo-node SIGKILLed mid-job long before Slurm would (SlurmdTimeout=5 here, 300 s by
// default), and the job goes on with the other two nodes.
TEST_F(HaloOnSlurm, ANodeDaemonKilledMidJobIsDeclaredDeadFastAndTheJobGoesOn) {
  std::vector<std::string> e = env();
  e.insert(e.end(), {"HALO_HEALTH_CHECK_INITIAL_DELAY_MS=200", "HALO_HEALTH_CHECK_PERIOD_MS=200",
                     "HALO_HEALTH_CHECK_TIMEOUT_MS=200", "HALO_HEALTH_CHECK_FAILURE_THRESHOLD=3"});
  auto job = slurm_->run(sbatch("job.out", {"--kill", "n3"}), 180s, e);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string out = job_output("job.out");
  EXPECT_TRUE(job->exit.success()) << job->output << "\n" << out;
  const size_t at = out.find("DEAD_AFTER_MS ");
  ASSERT_NE(at, std::string::npos) << out;
  std::cerr << out.substr(at, out.find('\n', at) - at) << " (SIGKILL to DEAD in halo status)\n";
  EXPECT_LT(std::stoi(out.substr(at + 14)), 5000) << "slower than Slurm's own detection:\n" << out;
  EXPECT_NE(out.find("n1 -> n2: OK"), std::string::npos) << out;
  EXPECT_NE(out.find("n2 -> n1: OK"), std::string::npos) << out;
  EXPECT_NE(out.find("MOVED 2"), std::string::npos) << out;
  EXPECT_EQ(processes_naming(slurm_->work_dir() + "/.halo"), "");
}

// A launch that cannot work fails at once and says what to fix.
TEST_F(HaloOnSlurm, ALaunchWithoutTheDaemonsFailsFastSayingWhatToSet) {
  std::vector<std::string> e = env();
  for (std::string& var : e) {
    if (var.rfind("HALO_BIN_DIR=", 0) == 0) var = "HALO_BIN_DIR=/nonexistent/halo/bin";
  }
  const std::string out = failed_job_output(e);
  EXPECT_NE(out.find("halo-gcs not found in '/nonexistent/halo/bin': set HALO_BIN_DIR"),
            std::string::npos)
      << out;
  EXPECT_EQ(processes_naming(slurm_->work_dir() + "/.halo"), "");
}

// A GCS that refuses to start (a bad knob) ends the job at once, and the job's output carries
// the GCS's own words, so that the user sees what to fix without opening the logs.
TEST_F(HaloOnSlurm, AGcsThatCannotStartFailsTheJobFastWithItsReason) {
  std::vector<std::string> e = env();
  e.push_back("HALO_HEALTH_CHECK_PERIOD_MS=0");
  const std::string out = failed_job_output(e);
  EXPECT_NE(out.find("halo-gcs exited while starting"), std::string::npos) << out;
  EXPECT_NE(out.find("health_check_period_ms and health_check_timeout_ms must be > 0"),
            std::string::npos)
      << out;
  EXPECT_EQ(processes_naming(slurm_->work_dir() + "/.halo"), "");
}

}  // namespace
}  // namespace halo::test
