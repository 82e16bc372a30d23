#include "tests/launch/slurm/local_slurm.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace halo::test {
namespace {

using namespace std::chrono_literals;

StatusOr<LocalSlurm::Result> run_to_end(std::vector<std::string> argv, ChildOptions options,
                                        std::chrono::steady_clock::duration timeout) {
  options.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
  const std::string command = argv.front();
  auto child = ChildProcess::spawn(std::move(argv), std::move(options));
  if (!child.ok()) return child.status();
  auto exit = child->wait(timeout);
  if (!exit.ok()) {
    (void)child->kill();
    return exit.status().with_context(
        str_cat(command, " did not finish; its output:\n", child->output_text()));
  }
  (void)child->wait_for_output_end(5s);
  return LocalSlurm::Result{*exit, child->output_text()};
}

// Reaps every child that has exited (the daemons re-parented to this process).
void reap_orphans() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace

StatusOr<LocalSlurm::Result> run_local_slurm_script(std::vector<std::string> args,
                                                    std::chrono::steady_clock::duration timeout) {
  std::vector<std::string> argv = {"bash", HALO_LOCAL_SLURM_SCRIPT};
  for (auto& a : args) argv.push_back(std::move(a));
  return run_to_end(std::move(argv), {}, timeout);
}

StatusOr<std::unique_ptr<LocalSlurm>> LocalSlurm::start(int nodes) {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return internal_error(str_cat("prctl(PR_SET_CHILD_SUBREAPER): ", std::strerror(errno)));
  }
  auto slurm = std::unique_ptr<LocalSlurm>(new LocalSlurm());
  if (slurm->work_.path().empty()) return internal_error("cannot make a temporary folder");
  slurm->dir_ = slurm->work_.file("cluster");
  auto started = run_local_slurm_script({"start", slurm->dir_, std::to_string(nodes)}, 120s);
  if (!started.ok()) return started.status();
  slurm->running_ = true;  // Whatever started is stopped, also after a failed start.
  if (!started->exit.success()) {
    (void)slurm->stop();
    return unavailable_error(str_cat("slurm/local-slurm.sh start ", slurm->dir_, " failed (",
                                     started->exit.to_string(), "):\n", started->output));
  }
  return slurm;
}

LocalSlurm::~LocalSlurm() { (void)stop(); }

ChildOptions LocalSlurm::options(std::vector<std::string> env) const {
  ChildOptions options;
  options.env = std::move(env);
  options.env.push_back("SLURM_CONF=" + slurm_conf());
  options.working_dir = work_.path();
  return options;
}

StatusOr<LocalSlurm::Result> LocalSlurm::run(std::vector<std::string> argv,
                                             std::chrono::steady_clock::duration timeout,
                                             std::vector<std::string> env) const {
  return run_to_end(std::move(argv), options(std::move(env)), timeout);
}

StatusOr<ChildProcess> LocalSlurm::spawn(std::vector<std::string> argv,
                                         std::vector<std::string> env) const {
  ChildOptions o = options(std::move(env));
  o.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
  return ChildProcess::spawn(std::move(argv), std::move(o));
}

Status LocalSlurm::stop() {
  if (!running_) return Status();
  running_ = false;
  auto stopped = run_local_slurm_script({"stop", dir_}, 60s);
  reap_orphans();
  if (!stopped.ok()) return stopped.status();
  if (!stopped->exit.success()) {
    return internal_error(str_cat("slurm/local-slurm.sh stop ", dir_, " failed (",
                                  stopped->exit.to_string(), "):\n", stopped->output));
  }
  return Status();
}

}  // namespace halo::test
