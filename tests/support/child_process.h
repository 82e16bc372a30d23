// A child program under a test's control: spawned (optionally inside a test host's network
// namespace), its stdout read line by line, waited for with a deadline, signalled, and killed
// for sure when the test is done with it, also when the test fails.
//
//   ChildOptions options;
//   options.netns = hosts->netns_path(0);  // or hosts->spawn_in_host(0, argv)
//   auto server = ChildProcess::spawn({"build/transport/halo-echo-server", "--port=0"}, options);
//   ASSERT_TRUE(server.ok()) << server.status();
//   auto line = server->wait_for_line("LISTENING ", 10s);  // "LISTENING 198.18.7.1:41234"
//   ASSERT_TRUE(line.ok()) << line.status() << "\n" << server->output_text();
//   ...
//   server->stop();    // SIGSTOP: a frozen peer
//   server->resume();  // SIGCONT
//   server->kill();    // SIGKILL: a crashed peer
//
// The child runs in its own process group, so kill(), stop() and resume() reach everything it
// started too (unless a grandchild leaves the group on purpose). The child also gets SIGKILL if
// the thread that spawned it exits (PR_SET_PDEATHSIG), so a crashed test leaves no orphans:
// spawn children from a thread that lives as long as they should (a test's main thread does).
//
// Its stdout is read continuously by a thread of this object, so a chatty child never blocks
// on a full pipe; lines wait in a queue for read_line()/wait_for_line(). Its stderr goes to the
// test's stderr unless chosen otherwise. Not thread-safe: use one object from one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "halo/base/status.h"

namespace halo::test {

// How a child ended.
struct ExitStatus {
  int code = -1;   // exit code when the child exited, else -1
  int signal = 0;  // the signal that ended it, else 0

  bool exited() const { return signal == 0 && code >= 0; }
  bool success() const { return exited() && code == 0; }
  std::string to_string() const;  // "exit 0", "exit 3", "signal 9 (Killed)"
};

struct ChildOptions {
  // Path of a network namespace to run in (e.g. TestHosts::netns_path(i)); empty for the
  // test's own. The child is started through `nsenter --net=PATH`, which, unlike
  // `ip netns exec`, leaves the mount namespace and /sys alone.
  std::string netns;
  // Extra "NAME=value" entries, added to (and overriding) the test's own environment.
  std::vector<std::string> env;
  // Where the child's stderr goes.
  enum class Stderr { kInherit, kMergeWithStdout, kDiscard };
  Stderr stderr_mode = Stderr::kInherit;
  // When true, write_stdin()/close_stdin() feed the child's stdin; else it reads /dev/null.
  bool pipe_stdin = false;
  // Working directory of the child; empty for the test's own.
  std::string working_dir;
  // When non-empty, each stdout line is also copied to the test's stderr as "[label] line",
  // so that the child's output appears in the test log as it happens.
  std::string echo_label;
};

class ChildProcess {
 public:
  // Starts argv[0] (looked up in PATH, then /usr/sbin and /sbin) with the given arguments.
  // Fails if the program cannot be found or executed; the failure of exec itself is reported
  // here, not as an exit code.
  static StatusOr<ChildProcess> spawn(std::vector<std::string> argv, ChildOptions options = {});

  ChildProcess(ChildProcess&&) noexcept;
  ChildProcess& operator=(ChildProcess&&) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Kills the child's process group with SIGKILL (also what the child left running there after
  // it ended), reaps the child and stops the reader thread.
  ~ChildProcess();

  pid_t pid() const;
  // The command line, for messages.
  const std::string& command() const;

  // The next stdout line not yet returned (without its '\n'). kDeadlineExceeded when none
  // arrives in time; kUnavailable when the child closed its stdout and every line was read.
  StatusOr<std::string> read_line(std::chrono::steady_clock::duration timeout);
  // Reads lines until one starts with `prefix` and returns that whole line; lines before it
  // are consumed. Same errors as read_line().
  StatusOr<std::string> wait_for_line(std::string_view prefix,
                                      std::chrono::steady_clock::duration timeout);
  // Every stdout line seen so far (the last 10,000), read or not, for failure messages.
  std::vector<std::string> output() const;
  std::string output_text() const;  // the same, joined with '\n'
  // Waits until the child's stdout is closed (all its output has been read into this object).
  Status wait_for_output_end(std::chrono::steady_clock::duration timeout);

  // Feed the child's stdin (only with ChildOptions::pipe_stdin).
  Status write_stdin(std::string_view data);
  void close_stdin();

  // Whether the child has not yet ended (reaps it if it has).
  bool running();
  // Waits for the child to end. kDeadlineExceeded if it is still running at the deadline (the
  // child is left alone then).
  StatusOr<ExitStatus> wait(std::chrono::steady_clock::duration timeout);
  // The exit status once the child has been reaped (by running(), wait() or kill()).
  const ExitStatus* exit_status() const;

  // Sends `sig` to the child alone (not its group).
  Status signal(int sig);
  // SIGKILL to the child's process group (even if the child itself has ended), then reaps the
  // child. Returns its exit status (the earlier one if it had already ended).
  StatusOr<ExitStatus> kill();
  // SIGSTOP / SIGCONT to the child's process group.
  Status stop();
  Status resume();

 private:
  struct Impl;
  explicit ChildProcess(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What run_command() returns: how the program ended and its output.
struct CommandResult {
  ExitStatus exit;
  std::string output;  // stdout and stderr, interleaved as written
};

struct RunOptions {
  std::string netns;  // as in ChildOptions
  std::vector<std::string> env;
  std::chrono::steady_clock::duration timeout = std::chrono::seconds(30);
};

// Runs a program to its end and returns its exit status and output. kDeadlineExceeded (and
// the program is killed) if it runs longer than the timeout. A non-zero exit is not an error
// here: look at `exit`. Use check_command() when only success is acceptable.
StatusOr<CommandResult> run_command(std::vector<std::string> argv, RunOptions options = {});

// Like run_command(), but any exit other than 0 is an error whose message holds the command
// line and its output.
StatusOr<std::string> check_command(std::vector<std::string> argv, RunOptions options = {});

}  // namespace halo::test
