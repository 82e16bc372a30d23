// An embedded local cluster: what `halo::init()` with no address starts. A GCS and N node
// daemons (halo-gcs, halo-node) as child processes of the calling program, on one machine,
// with their files in a fresh session folder; stopped, and the folder removed, at stop().
//
//   LocalClusterOptions options;
//   options.num_nodes = 2;
//   options.node_flags = {"--num-cpus=4"};
//   HALO_ASSIGN_OR_RETURN(std::unique_ptr<LocalCluster> cluster,
//                         LocalCluster::start(std::move(options)));
//   connect_to(cluster->gcs_address(), cluster->secret_file());  // "ucx://127.0.0.1:40123"
//   ...
//   HALO_RETURN_IF_ERROR(cluster->stop());  // Or let the destructor stop it.
//
// Lifetime: the daemons never outlive the process that started them, even when it is
// SIGKILLed: each gets SIGKILL from the kernel (PR_SET_PDEATHSIG) when the thread that forked
// it ends. That thread is one the cluster owns and keeps until stop(), so whichever thread
// calls start() may end before the cluster does.
//
// Terminal signals: each daemon runs in a process group of its own (in the caller's terminal
// session), so a Ctrl-C at the terminal reaches the driver alone. A driver that handles SIGINT
// can still use its cluster and stop it in order; a driver that dies of it takes the daemons
// with it through PR_SET_PDEATHSIG. stop() copes with daemons that ended before it, however.
//
// Session folder: <temp_dir>/session_<date>_<time>_<pid>[_N] (docs/cli.md has the layout),
// owner-only, with a new cluster secret (mode 0600); logs/<name>.log holds each daemon's
// stdout and stderr (0600), <name>.json each node's state file, pids/ their pids (so that
// `halo status --session-dir` and `halo stop --session-dir` work on it too). It does not
// become <temp_dir>/session_latest. If the process dies without stop(), the folder stays.
//
// Children: the cluster reaps its daemons itself (waitpid on each pid), to tell how each
// ended. A program that sets SIGCHLD to SIG_IGN, or reaps every child (waitpid(-1)), still
// works, but stop() cannot say then how a daemon that died had ended.
//
// Threads: a LocalCluster may be used from any thread, one at a time. It keeps no global
// state: several clusters can run in one process, each with its own folder and ports.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::launcher {

namespace internal {
class SpawnerThread;
}

struct LocalClusterOptions {
  int num_nodes = 1;                   // Node daemons to start, each its own process (0: GCS only).
  std::string host = "127.0.0.1";      // Where the GCS and the nodes listen, on free ports.
  std::vector<std::string> gcs_flags;  // Extra flags for halo-gcs (docs/gcs.md).
  std::vector<std::string> node_flags;  // Extra flags for every halo-node (docs/node.md).
  // Optional: more flags for the node of index 0 .. num_nodes - 1 (after node_flags; a flag
  // given twice takes its last value).
  std::function<std::vector<std::string>(int node_index)> per_node_flags;
  std::string bin_dir;   // Where halo-gcs and halo-node are; empty: find_program()'s search.
  std::string temp_dir;  // Where the session folder goes; empty: $HALO_TEMP_DIR, else /tmp/halo.
  // For the whole start: the GCS serving and every node a member.
  std::chrono::milliseconds start_timeout{30'000};
  // How long stop() waits after SIGTERM (nodes unregister: up to 2 s) before SIGKILL.
  std::chrono::milliseconds stop_grace{5'000};
  // Join the GCS at this transport address instead of starting one: only the nodes start, in
  // a session folder of their own with `join_secret` (the cluster's secret) written to its
  // cluster_secret. How the MPI bootstrap starts the node daemons of the nodes other than the
  // GCS's (launcher/mpi/mpi_cluster.h).
  std::string join_gcs_address;
  std::string join_secret;
  // Keep the session folder after stop(). It is also kept when a daemon ended abnormally
  // (crashed, killed, or failed to start), for its log.
  bool keep_session_dir = false;
};

struct LocalNode {
  std::string name;  // "node-1" .. "node-N": its files are logs/<name>.log, <name>.json.
  pid_t pid = 0;
  std::string address;      // Its transport address, as registered with the GCS.
  std::string node_id_hex;  // 32 hex digits.
  std::string state_file;
  std::string log_file;
};

class LocalCluster {
 public:
  // Creates the session folder with a new cluster secret, starts halo-gcs (data in
  // <session>/gcs_data) and waits until it serves, then starts the nodes and returns once
  // every node's state file says it is a member ("alive"). Fails with what went wrong: a
  // program not found (naming where it was looked for), a daemon that exited while starting
  // (UNAVAILABLE, with the end of its log), or not ready within start_timeout
  // (DEADLINE_EXCEEDED, with the end of its log); everything it started is stopped then, and
  // the session folder kept for the logs.
  static StatusOr<std::unique_ptr<LocalCluster>> start(LocalClusterOptions options);

  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;
  // stop() unless it was called, logging a warning if it reports a problem.
  ~LocalCluster();

  // SIGTERM to the nodes (they unregister), then to the GCS; SIGKILL to whatever still runs
  // after stop_grace; reaps every daemon; removes the session folder unless it is kept.
  // Returns OK when every daemon was running and ended cleanly; else UNAVAILABLE listing each
  // that ended before (how, and its log) or had to be killed. Idempotent: later calls return
  // the first one's result.
  Status stop();

  // OK while every daemon it started runs; else UNAVAILABLE naming the first that ended, how,
  // and its log.
  Status check_running();

  // The GCS's transport address, e.g. "ucx://127.0.0.1:40123".
  const std::string& gcs_address() const { return gcs_address_; }
  const std::string& secret_file() const { return secret_file_; }
  const std::string& session_dir() const { return session_dir_; }
  pid_t gcs_pid() const;
  // The nodes as they were when start() returned.
  const std::vector<LocalNode>& nodes() const { return nodes_; }

  // For tests: SIGKILL to the daemon of nodes()[index], which is reaped and stays dead (the
  // GCS notices by its health checks); stop() then reports it. OUT_OF_RANGE for a bad index,
  // FAILED_PRECONDITION when it had already ended.
  Status kill_node(int index);

 private:
  struct Daemon;

  explicit LocalCluster(LocalClusterOptions options);
  Status launch();

  LocalClusterOptions options_;
  std::string gcs_address_;
  std::string secret_file_;
  std::string session_dir_;
  std::vector<LocalNode> nodes_;
  std::unique_ptr<internal::SpawnerThread> spawner_;
  std::unique_ptr<Daemon> gcs_;
  std::vector<Daemon> node_daemons_;
  bool start_failed_ = false;
  bool stopped_ = false;
  Status stop_status_;
};

// Where halo's program `name` (halo-gcs, halo-node) is, as a path:
//   1. `bin_dir`/name, when bin_dir is given (only there);
//   2. else $HALO_BIN_DIR/name, when HALO_BIN_DIR is set (only there);
//   3. else next to the binary that holds this code (found with dladdr, so that it works
//      from an application or from libhalo.so alike): <its folder>/../bin, then its folder
//      (an installed <prefix>/lib/libhalo.so finds <prefix>/bin; a program in build/bin
//      finds its neighbours);
//   4. else the bin folder of the build tree this code was built in (a test binary elsewhere
//      in the build tree finds build/bin);
//   5. else the folders of PATH.
// The first executable file wins. NOT_FOUND names every place looked in.
StatusOr<std::string> find_program(const std::string& name, const std::string& bin_dir = "");

}  // namespace halo::launcher
