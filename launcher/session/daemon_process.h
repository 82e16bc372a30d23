// The daemons halo's launchers start (halo-gcs, halo-node), as processes: started with their
// output in a log file, recognised again by pid, and stopped.
//
// Two kinds. Detached daemons are what `halo start` leaves running: out of `halo`'s session
// and process group, found again by pid file by a later `halo stop`. Attached daemons are an
// embedded local cluster's (launcher/local_cluster/local_cluster.h): they die with the thread
// that started them and are stopped by their owner.
//
//   HALO_ASSIGN_OR_RETURN(pid_t pid, spawn_daemon({"/usr/bin/halo-gcs", ...}, log_path));
//   HALO_RETURN_IF_ERROR(write_pid_file(session.pid_file("gcs"), pid));
//   ...
//   std::vector<StopResult> r = stop_daemons({pid}, std::chrono::seconds(10));
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::launcher {

enum class SpawnMode {
  // Its own session (setsid: no terminal, out of the caller's process group): it outlives the
  // caller, as `halo start`'s daemons must.
  kDetached,
  // Stays in the caller's session, but in a process group of its own (so that a Ctrl-C at the
  // terminal reaches the caller alone, which then stops it in order); gets SIGKILL when the
  // *thread* that spawned it exits (PR_SET_PDEATHSIG), which also covers the caller's process
  // being killed. Signal dispositions are reset to their defaults (a driver that ignores
  // SIGTERM or SIGPIPE does not pass that on), and no other descriptor of the caller survives
  // the exec.
  kAttached,
};

// Starts argv (argv[0] a path, or a name looked up in PATH) with stdin from /dev/null and
// stdout and stderr appended to `log_path` (created 0600). An exec failure is reported here,
// naming the program. Thread-safe, but see kAttached about which thread should call it.
StatusOr<pid_t> spawn_daemon(const std::vector<std::string>& argv, const std::string& log_path,
                             SpawnMode mode = SpawnMode::kDetached);

// True while `pid` runs (a zombie no longer counts). Reaps `pid` when it is an ended child of
// this process, discarding its exit status.
bool process_running(pid_t pid);
// True when `pid` runs the program named `program` (its executable's base name), so that a
// pid file left from an earlier boot never makes us signal an unrelated process.
bool process_is(pid_t pid, const std::string& program);

Status write_pid_file(const std::string& path, pid_t pid);
StatusOr<pid_t> read_pid_file(const std::string& path);

enum class StopResult { kNotRunning, kTerminated, kKilled };
// Stops several daemons together: SIGTERM to each that runs, one grace for all, then SIGKILL
// to those still running; returns once they are gone (or a little after SIGKILL), with what
// happened to each, in order. `running` tells whether a pid still runs; an owner that reaps
// its children itself (to keep their exit status) passes its own.
std::vector<StopResult> stop_daemons(const std::vector<pid_t>& pids,
                                     std::chrono::milliseconds grace,
                                     const std::function<bool(pid_t)>& running = process_running);

// The last `lines` lines of a file, each indented, for error messages about a daemon that died.
std::string tail_file(const std::string& path, int lines);

}  // namespace halo::launcher
