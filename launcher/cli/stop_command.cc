// `halo stop`: stops the daemons this machine started for a session (its pid files): nodes
// first, so that they unregister from a GCS that still runs, then the GCS.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "launcher/cli/commands.h"
#include "launcher/session/daemon_process.h"
#include "launcher/session/session.h"

namespace halo::launcher::cli {

Status run_stop(const StopOptions& options) {
  HALO_ASSIGN_OR_RETURN(Session session, Session::open(options.session_dir));
  const auto grace = std::chrono::milliseconds(
      static_cast<int64_t>(std::ceil(std::max(options.grace_s, 0.0) * 1000)));
  int stopped = 0;
  // Nodes together, then the GCS: each group gets SIGTERM at once and the grace in parallel.
  for (const bool gcs_turn : {false, true}) {
    std::vector<std::pair<std::string, pid_t>> targets;
    for (const std::string& name : session.daemons()) {
      if ((name == "gcs") != gcs_turn) continue;
      const std::string program = gcs_turn ? "halo-gcs" : "halo-node";
      auto pid = read_pid_file(session.pid_file(name));
      if (pid.ok() && process_running(*pid) && process_is(*pid, program)) {
        targets.emplace_back(name, *pid);
      } else {
        ::unlink(session.pid_file(name).c_str());  // Ended earlier: nothing to stop.
      }
    }
    std::vector<pid_t> pids;
    for (const auto& target : targets) pids.push_back(target.second);
    const std::vector<StopResult> results = stop_daemons(pids, grace);
    for (size_t i = 0; i < targets.size(); ++i) {
      const auto& [name, pid] = targets[i];
      const std::string what = gcs_turn ? std::string("halo-gcs") : "halo-node " + name;
      std::printf("stopped %s (pid %d)%s\n", what.c_str(), pid,
                  results[i] == StopResult::kKilled
                      ? str_cat(": it ignored SIGTERM for ", options.grace_s, " s, killed").c_str()
                      : "");
      ::unlink(session.pid_file(name).c_str());
      ++stopped;
    }
  }
  if (stopped == 0) {
    std::printf("no halo daemon of session %s was running\n", session.dir().c_str());
  }
  std::fflush(stdout);
  return Status();
}

}  // namespace halo::launcher::cli
