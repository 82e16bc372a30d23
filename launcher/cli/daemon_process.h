// The daemons `halo start` leaves running (halo-gcs, halo-node): started detached from the
// terminal and from `halo` itself, found again by pid file, and stopped.
//
//   HALO_ASSIGN_OR_RETURN(pid_t pid, spawn_daemon({bin_dir() + "/halo-gcs", ...}, log_path));
//   HALO_RETURN_IF_ERROR(write_pid_file(session.pid_file("gcs"), pid));
//   ...
//   StopResult r = stop_daemon(pid, "halo-gcs", std::chrono::seconds(10));
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "halo/base/status.h"

namespace halo::cli {

// The folder of the running `halo` program; halo-gcs and halo-node are looked up there first.
std::string bin_dir();
// `bin_dir()/name` when it is there and executable, else `name` (found in PATH by exec).
std::string program_path(const std::string& name);

// Starts argv as a daemon: its own session (setsid: no terminal, out of `halo`'s process
// group), stdin from /dev/null, stdout and stderr appended to `log_path` (created 0600). An
// exec failure is reported here, naming the program.
StatusOr<pid_t> spawn_daemon(const std::vector<std::string>& argv, const std::string& log_path);

// True while `pid` runs (a zombie no longer counts).
bool process_running(pid_t pid);
// True when `pid` runs the program named `program` (its executable's base name), so that a
// pid file left from an earlier boot never makes us signal an unrelated process.
bool process_is(pid_t pid, const std::string& program);

Status write_pid_file(const std::string& path, pid_t pid);
StatusOr<pid_t> read_pid_file(const std::string& path);

enum class StopResult { kNotRunning, kTerminated, kKilled };
// SIGTERM, then SIGKILL if it is still running after `grace`; returns once it is gone (or a
// little after SIGKILL).
StopResult stop_daemon(pid_t pid, std::chrono::milliseconds grace);

// The last `lines` lines of a file, for error messages about a daemon that died.
std::string tail_file(const std::string& path, int lines);

}  // namespace halo::cli
