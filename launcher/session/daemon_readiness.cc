#include "launcher/session/daemon_readiness.h"

#include <algorithm>
#include <thread>

#include "launcher/session/daemon_process.h"

namespace halo::launcher {

Status wait_for_daemons(const std::vector<DaemonStart>& daemons,
                        std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  // Checks are a file read each: cheap enough to poll every few milliseconds, which keeps a
  // launch from waiting up to a whole long interval after a daemon became ready.
  auto interval = std::chrono::milliseconds(1);
  std::vector<Status> last(daemons.size(), unavailable_error("not checked yet"));
  while (true) {
    const DaemonStart* not_ready = nullptr;
    Status why;
    for (size_t i = 0; i < daemons.size(); ++i) {
      const DaemonStart& d = daemons[i];
      if (last[i].ok()) continue;
      last[i] = d.ready();
      if (last[i].ok()) continue;
      if (d.running ? !d.running() : !process_running(d.pid)) {
        return unavailable_error(str_cat(d.what, " (pid ", d.pid,
                                         ") exited while starting; the end of ", d.log, ":\n",
                                         tail_file(d.log, 15)));
      }
      if (not_ready == nullptr) {
        not_ready = &d;
        why = last[i];
      }
    }
    if (not_ready == nullptr) return Status();
    if (Clock::now() >= deadline) {
      return deadline_exceeded_error(str_cat(
          not_ready->what, " (pid ", not_ready->pid, ") was not ready within ", timeout.count(),
          " ms: ", why.message(), "; see ", not_ready->log, ":\n", tail_file(not_ready->log, 15)));
    }
    std::this_thread::sleep_for(interval);
    interval = std::min(interval * 2, std::chrono::milliseconds(5));
  }
}

StatusOr<node::NodeStateRecord> node_ready(const std::string& state_file) {
  HALO_ASSIGN_OR_RETURN(node::NodeStateRecord state, node::read_node_state_file(state_file));
  if (state.state == "alive" && state.incarnation > 0) return state;
  return unavailable_error(str_cat("the node is ", state.state,
                                   state.gcs_connected ? "" : " and has not reached the GCS",
                                   state.reason.empty() ? "" : " (" + state.reason + ")"));
}

}  // namespace halo::launcher
