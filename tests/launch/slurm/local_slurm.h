// The local Slurm cluster of the launch tests, under a test's control: slurm/local-slurm.sh
// started in a private folder, its SLURM_CONF for the client commands, stopped at the end.
//
//   auto slurm = LocalSlurm::start(3);                 // returns once n1..n3 are idle
//   ASSERT_TRUE(slurm.ok()) << slurm.status();
//   auto out = (*slurm)->run({"srun", "-N3", "hostname"}, std::chrono::seconds(30));
//   (*slurm)->stop();                                  // also in the destructor
//
// The test process becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER): the daemons
// Slurm forks into the background are re-parented to it rather than to PID 1, which in a
// container may never reap them; stop() reaps them, so no zombie is left behind either.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "halo/base/status.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"

namespace halo::test {

class LocalSlurm {
 public:
  static StatusOr<std::unique_ptr<LocalSlurm>> start(int nodes);
  ~LocalSlurm();
  LocalSlurm(const LocalSlurm&) = delete;
  LocalSlurm& operator=(const LocalSlurm&) = delete;

  // Runs a Slurm client command (sbatch, srun, sinfo, ...) against this cluster to its end,
  // with `env` ("NAME=value") added to its environment (jobs inherit it): its exit status and
  // everything it printed (standard error included).
  struct Result {
    ExitStatus exit;
    std::string output;
  };
  StatusOr<Result> run(std::vector<std::string> argv, std::chrono::steady_clock::duration timeout,
                       std::vector<std::string> env = {}) const;
  // The same, started and left running: for several jobs at once.
  StatusOr<ChildProcess> spawn(std::vector<std::string> argv,
                               std::vector<std::string> env = {}) const;

  // Stops every daemon and removes the cluster's folder and its /etc/hosts line. Idempotent.
  Status stop();

  const std::string& dir() const { return dir_; }  // The cluster's folder.
  std::string slurm_conf() const { return dir_ + "/slurm.conf"; }
  // A folder for jobs' files (their output, what they write), kept until stop().
  const std::string& work_dir() const { return work_.path(); }

 private:
  LocalSlurm() = default;
  ChildOptions options(std::vector<std::string> env) const;
  TempDir work_;
  std::string dir_;
  bool running_ = false;
};

// A test fixture: each test gets a new local Slurm cluster of three nodes (n1..n3) in slurm_,
// stopped after it.
class ThreeSlurmNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    auto slurm = LocalSlurm::start(3);
    ASSERT_TRUE(slurm.ok()) << slurm.status();
    slurm_ = *std::move(slurm);
  }
  std::unique_ptr<LocalSlurm> slurm_;
};

// Runs slurm/local-slurm.sh with `args` to its end (start or stop).
StatusOr<LocalSlurm::Result> run_local_slurm_script(std::vector<std::string> args,
                                                    std::chrono::steady_clock::duration timeout);

}  // namespace halo::test
