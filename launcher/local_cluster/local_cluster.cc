#include "launcher/local_cluster/local_cluster.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <thread>

#include "halo/base/logging.h"
#include "launcher/local_cluster/spawner_thread.h"
#include "launcher/session/daemon_process.h"
#include "launcher/session/daemon_readiness.h"
#include "launcher/session/session.h"

namespace halo::launcher {

// A daemon of the cluster and how it ended, which the cluster learns by reaping it.
struct LocalCluster::Daemon {
  std::string name;     // "gcs", "node-1", ...
  std::string program;  // "halo-gcs", "halo-node"
  std::string log;
  pid_t pid = 0;
  bool reaped = false;
  bool status_known = false;  // False when another part of the program reaped it.
  int wait_status = 0;
  bool killed_on_request = false;  // By kill_node().

  std::string what() const { return program == "halo-gcs" ? program : program + " " + name; }

  bool running() {
    if (pid <= 0 || reaped) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == 0) return true;
    if (r == pid) {
      reaped = status_known = true;
      wait_status = status;
      return false;
    }
    // ECHILD: SIGCHLD is ignored, or the program reaps every child itself.
    reaped = !process_running(pid);
    return !reaped;
  }

  // Waits (briefly: it was sent SIGKILL) until it is gone.
  void wait_gone() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    auto interval = std::chrono::microseconds(100);
    while (running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(interval);
      interval = std::min(interval * 2, std::chrono::microseconds(10'000));
    }
  }

  // Ended by a clean exit (0), or by the SIGTERM it was sent.
  bool ended_cleanly(bool sent_sigterm) const {
    if (!status_known) return true;
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status) == 0;
    return sent_sigterm && WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGTERM;
  }

  std::string how_it_ended() const {
    if (!status_known) return "exit status unknown: reaped elsewhere";
    if (WIFEXITED(wait_status)) return str_cat("exit ", WEXITSTATUS(wait_status));
    const int sig = WTERMSIG(wait_status);
    return str_cat("killed by signal ", sig, " (", ::strsignal(sig), ")",
                   killed_on_request ? ", through kill_node()" : "");
  }
};

LocalCluster::LocalCluster(LocalClusterOptions options)
    : options_(std::move(options)), gcs_(std::make_unique<Daemon>()) {}

LocalCluster::~LocalCluster() {
  if (stopped_) return;  // Its caller had the report.
  if (Status s = stop(); !s.ok()) log::warn("stopping the local halo cluster: {}", s.to_string());
}

pid_t LocalCluster::gcs_pid() const { return gcs_->pid; }

StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::start(LocalClusterOptions options) {
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(std::move(options)));
  Status started = cluster->launch();
  if (started.ok()) return cluster;
  cluster->start_failed_ = true;
  (void)cluster->stop();  // What it reports, `started` says already.
  if (cluster->session_dir_.empty()) return started;
  return started.with_context(
      str_cat("could not start a local halo cluster (stopped what had "
              "started; its files are kept in ",
              cluster->session_dir_, ")"));
}

Status LocalCluster::launch() {
  if (options_.num_nodes < 0) {
    return invalid_argument_error(
        str_cat("a local cluster needs num_nodes >= 0, not ", options_.num_nodes));
  }
  HALO_ASSIGN_OR_RETURN(const std::string gcs_program, find_program("halo-gcs", options_.bin_dir));
  HALO_ASSIGN_OR_RETURN(const std::string node_program,
                        find_program("halo-node", options_.bin_dir));
  HALO_ASSIGN_OR_RETURN(
      Session session,
      Session::create_new(options_.temp_dir.empty() ? temp_dir() : options_.temp_dir,
                          Session::Latest::kLeave));
  session_dir_ = session.dir();
  secret_file_ = session.secret_file();
  const bool join = !options_.join_gcs_address.empty();
  if (join) {
    HALO_RETURN_IF_ERROR(write_secret_file(secret_file_, options_.join_secret));
  } else {
    HALO_RETURN_IF_ERROR(write_new_secret_file(secret_file_));
  }
  spawner_ = std::make_unique<internal::SpawnerThread>();
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  const auto time_left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  const auto spawn = [&](Daemon& daemon, const std::vector<std::string>& argv) -> Status {
    HALO_ASSIGN_OR_RETURN(daemon.pid, spawner_->spawn(argv, daemon.log));
    return write_pid_file(session.pid_file(daemon.name), daemon.pid);
  };

  if (join) {
    gcs_address_ = options_.join_gcs_address;
  } else {
    *gcs_ = Daemon{.name = "gcs", .program = "halo-gcs", .log = session.log_file("gcs")};
    std::vector<std::string> gcs_argv = {gcs_program,
                                         "--data-dir=" + session.gcs_data_dir(),
                                         "--secret-file=" + secret_file_,
                                         "--host=" + options_.host,
                                         "--port=0",
                                         "--address-file=" + session.gcs_address_file()};
    gcs_argv.insert(gcs_argv.end(), options_.gcs_flags.begin(), options_.gcs_flags.end());
    HALO_RETURN_IF_ERROR(spawn(*gcs_, gcs_argv));
    HALO_RETURN_IF_ERROR(wait_for_daemons({{.what = gcs_->what(),
                                            .pid = gcs_->pid,
                                            .log = gcs_->log,
                                            .ready = [&]() -> Status {
                                              HALO_ASSIGN_OR_RETURN(gcs_address_,
                                                                    session.gcs_address());
                                              return Status();
                                            },
                                            .running = [&] { return gcs_->running(); }}},
                                          time_left()));
  }

  // Every node starts at once; then all are waited for together, so that one that fails is
  // reported as soon as it does.
  node_daemons_.resize(static_cast<size_t>(options_.num_nodes));
  nodes_.resize(node_daemons_.size());
  std::vector<DaemonStart> waits;
  for (size_t i = 0; i < node_daemons_.size(); ++i) {
    Daemon& daemon = node_daemons_[i];
    LocalNode& node = nodes_[i];
    node.name = str_cat("node-", i + 1);
    node.state_file = session.node_state_file(node.name);
    node.log_file = session.log_file(node.name);
    daemon = Daemon{.name = node.name, .program = "halo-node", .log = node.log_file};
    std::vector<std::string> argv = {node_program,
                                     "--gcs-address=" + gcs_address_,
                                     "--secret-file=" + secret_file_,
                                     "--host=" + options_.host,
                                     "--port=0",
                                     "--state-file=" + node.state_file};
    argv.insert(argv.end(), options_.node_flags.begin(), options_.node_flags.end());
    if (options_.per_node_flags) {
      for (auto& flag : options_.per_node_flags(static_cast<int>(i))) argv.push_back(flag);
    }
    HALO_RETURN_IF_ERROR(spawn(daemon, argv));
    node.pid = daemon.pid;
    waits.push_back({.what = daemon.what(),
                     .pid = daemon.pid,
                     .log = daemon.log,
                     .ready = [&node]() -> Status {
                       HALO_ASSIGN_OR_RETURN(node::NodeStateRecord state,
                                             node_ready(node.state_file));
                       node.address = state.address;
                       node.node_id_hex = state.node_id;
                       return Status();
                     },
                     .running = [&daemon] { return daemon.running(); }});
  }
  if (join) return wait_for_daemons(waits, time_left());
  // The GCS is watched too, last: "ready" once every node is, so that a GCS that dies while
  // the nodes register ends the wait at once rather than at the deadline.
  waits.push_back({.what = gcs_->what(),
                   .pid = gcs_->pid,
                   .log = gcs_->log,
                   .ready = [this]() -> Status {
                     for (const LocalNode& node : nodes_) {
                       if (node.node_id_hex.empty()) return unavailable_error("nodes to join");
                     }
                     return Status();
                   },
                   .running = [this] { return gcs_->running(); }});
  return wait_for_daemons(waits, time_left());
}

Status LocalCluster::check_running() {
  std::vector<Daemon*> daemons;
  if (gcs_->pid > 0) daemons.push_back(gcs_.get());
  for (Daemon& d : node_daemons_) daemons.push_back(&d);
  for (Daemon* d : daemons) {
    if (d->pid > 0 && !d->running()) {
      return unavailable_error(str_cat(d->what(), " (pid ", d->pid, ") has ended (",
                                       d->how_it_ended(), "); see ", d->log));
    }
  }
  return Status();
}

Status LocalCluster::kill_node(int index) {
  if (index < 0 || static_cast<size_t>(index) >= node_daemons_.size()) {
    return out_of_range_error(
        str_cat("no node ", index, " in a local cluster of ", node_daemons_.size(), " nodes"));
  }
  Daemon& daemon = node_daemons_[static_cast<size_t>(index)];
  if (!daemon.running()) {
    return failed_precondition_error(str_cat(daemon.what(), " (pid ", daemon.pid,
                                             ") has already ended (", daemon.how_it_ended(),
                                             "); see ", daemon.log));
  }
  daemon.killed_on_request = true;
  if (::kill(daemon.pid, SIGKILL) != 0) {
    return errno_error(errno, str_cat("cannot kill ", daemon.what(), " (pid ", daemon.pid, ")"));
  }
  daemon.wait_gone();
  return Status();
}

Status LocalCluster::stop() {
  if (stopped_) return stop_status_;
  stopped_ = true;
  std::vector<std::string> problems;
  bool abnormal = start_failed_;
  // The nodes first, so that they unregister from a GCS that still runs; then the GCS.
  std::vector<Daemon*> gcs_group;
  if (gcs_->pid > 0) gcs_group.push_back(gcs_.get());
  std::vector<Daemon*> node_group;
  for (Daemon& d : node_daemons_) {
    if (d.pid > 0) node_group.push_back(&d);
  }
  for (const std::vector<Daemon*>* group : {&node_group, &gcs_group}) {
    std::vector<pid_t> pids;
    for (const Daemon* d : *group) pids.push_back(d->pid);
    const auto running = [&](pid_t pid) {
      for (Daemon* d : *group) {
        if (d->pid == pid) return d->running();
      }
      return false;
    };
    const std::vector<StopResult> results = stop_daemons(pids, options_.stop_grace, running);
    for (size_t i = 0; i < group->size(); ++i) {
      Daemon& d = *(*group)[i];
      const std::string who = str_cat(d.what(), " (pid ", d.pid, ")");
      switch (results[i]) {
        case StopResult::kNotRunning:
          if (!d.killed_on_request && d.ended_cleanly(false)) break;
          problems.push_back(
              str_cat(who, " had ended before stop() (", d.how_it_ended(), "); see ", d.log));
          abnormal = true;
          break;
        case StopResult::kTerminated:
          if (d.ended_cleanly(true)) break;
          problems.push_back(
              str_cat(who, " ended badly when stopped (", d.how_it_ended(), "); see ", d.log));
          abnormal = true;
          break;
        case StopResult::kKilled:
          d.wait_gone();
          problems.push_back(str_cat(who, " ignored SIGTERM for ", options_.stop_grace.count(),
                                     " ms and was killed; see ", d.log));
          abnormal = true;
          break;
      }
    }
  }
  // Only now: its end would SIGKILL any daemon still there.
  spawner_.reset();
  const bool keep = options_.keep_session_dir || abnormal;
  if (!session_dir_.empty() && !keep) {
    std::error_code ec;
    std::filesystem::remove_all(session_dir_, ec);
    if (ec) {
      problems.push_back(
          str_cat("cannot remove the session folder ", session_dir_, ": ", ec.message()));
    }
  }
  if (!problems.empty()) {
    std::string message = "the local halo cluster";
    if (!session_dir_.empty()) {
      message += str_cat(" (session ", session_dir_, keep ? ", kept" : "", ")");
    }
    message += " did not stop cleanly:";
    for (const auto& p : problems) message += "\n  " + p;
    stop_status_ = unavailable_error(message);
  }
  return stop_status_;
}

}  // namespace halo::launcher
