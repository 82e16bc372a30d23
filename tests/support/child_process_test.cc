// Tests of the test-support pieces that need no namespaces: ChildProcess, run_command() and
// wait_for().
#include "tests/support/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>

#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

// The state letter of /proc/PID/stat ('R', 'S', 'T', 'Z', ...), or 0 when there is no such
// process.
char process_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(stat, content)) return 0;
  size_t paren = content.rfind(')');
  if (paren == std::string::npos || paren + 2 >= content.size()) return 0;
  return content[paren + 2];
}

// Gone, or a zombie waiting for a parent that is not this test.
bool process_gone(pid_t pid) {
  char state = process_state(pid);
  return state == 0 || state == 'Z' || state == 'X';
}

TEST(ChildProcess, WaitForLineReturnsTheAnnouncedAddress) {
  auto child = ChildProcess::spawn(
      {"sh", "-c", "echo starting; echo 'LISTENING 198.18.0.1:7000'; exec sleep 1000"});
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = child->wait_for_line("LISTENING ", 10s);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(*line, "LISTENING 198.18.0.1:7000");
  EXPECT_EQ(child->output(), (std::vector<std::string>{"starting", "LISTENING 198.18.0.1:7000"}));
  auto none = child->read_line(50ms);
  EXPECT_EQ(none.status().code(), StatusCode::kDeadlineExceeded) << none.status();
  EXPECT_TRUE(child->running());
}

TEST(ChildProcess, ReportsExitCodeAndEndOfOutput) {
  auto child = ChildProcess::spawn({"sh", "-c", "echo one; printf 'no newline'; exit 3"});
  ASSERT_TRUE(child.ok()) << child.status();
  auto exit = child->wait(10s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited());
  EXPECT_EQ(exit->code, 3);
  EXPECT_EQ(exit->to_string(), "exit 3");
  EXPECT_EQ(child->read_line(10s).value(), "one");
  EXPECT_EQ(child->read_line(10s).value(), "no newline");
  auto eof = child->read_line(10s);
  EXPECT_EQ(eof.status().code(), StatusCode::kUnavailable) << eof.status();
  EXPECT_NE(eof.status().message().find("exit 3"), std::string_view::npos) << eof.status();
}

TEST(ChildProcess, KillEndsTheChildAndWhatItStarted) {
  auto child = ChildProcess::spawn({"sh", "-c", "sleep 1000 & echo GRANDCHILD $!; wait"});
  ASSERT_TRUE(child.ok()) << child.status();
  auto line = child->wait_for_line("GRANDCHILD ", 10s);
  ASSERT_TRUE(line.ok()) << line.status();
  const pid_t grandchild = std::stoi(line->substr(std::string("GRANDCHILD ").size()));
  ASSERT_FALSE(process_gone(grandchild));

  auto exit = child->kill();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_FALSE(child->running());
  EXPECT_TRUE(wait_for([&] { return process_gone(grandchild); }, 5s))
      << "pid " << grandchild << " survived the kill of its process group";
}

TEST(ChildProcess, StopFreezesTheChildAndResumeWakesIt) {
  // One process that never forks, so its state is that of the whole group. (A shell running
  // `sleep` shows 'D' while its vfork child is stopped before exec.)
  auto child = ChildProcess::spawn(
      {"python3", "-c",
       "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.02)\n"});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->wait_for_line("tick", 10s).ok());

  ASSERT_TRUE(child->stop().ok());
  ASSERT_TRUE(wait_for([&] { return process_state(child->pid()) == 'T'; }, 5s))
      << "state " << process_state(child->pid());
  // Lines written before the stop may still be in the pipe; after them, nothing comes.
  const Deadline drained(10s);
  while (child->read_line(200ms).ok() && !drained.expired()) {
  }
  EXPECT_EQ(child->read_line(300ms).status().code(), StatusCode::kDeadlineExceeded);

  ASSERT_TRUE(child->resume().ok());
  EXPECT_TRUE(child->wait_for_line("tick", 10s).ok());
  EXPECT_TRUE(child->running());
}

TEST(ChildProcess, DestructionKillsARunningChild) {
  pid_t pid = 0;
  {
    auto child = ChildProcess::spawn({"sleep", "1000"});
    ASSERT_TRUE(child.ok()) << child.status();
    pid = child->pid();
    ASSERT_FALSE(process_gone(pid));
  }
  // The destructor reaped it, so the pid no longer exists at all (or was reused, which a
  // freshly freed pid never is this soon).
  EXPECT_EQ(process_state(pid), 0);
}

TEST(ChildProcess, DestructionKillsWhatAnEndedChildLeftRunning) {
  pid_t left = 0;
  {
    auto child = ChildProcess::spawn({"sh", "-c", "sleep 1000 & echo LEFT $!"});
    ASSERT_TRUE(child.ok()) << child.status();
    auto line = child->wait_for_line("LEFT ", 10s);
    ASSERT_TRUE(line.ok()) << line.status();
    left = std::stoi(line->substr(std::string("LEFT ").size()));
    ASSERT_TRUE(child->wait(10s).value().success());
    ASSERT_FALSE(process_gone(left));
  }
  EXPECT_TRUE(wait_for([&] { return process_gone(left); }, 5s))
      << "pid " << left << " outlived the ChildProcess that started it";
}

TEST(ChildProcess, SpawnReportsAProgramThatCannotStart) {
  auto missing = ChildProcess::spawn({"halo-no-such-program-anywhere"});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();

  // Found, but not executable by exec: the failure of execve itself comes back as a status.
  char path[] = "/tmp/halo-not-a-program-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "garbage", 7), 7);
  ::close(fd);
  ::chmod(path, 0700);
  auto bad = ChildProcess::spawn({path});
  ::unlink(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cannot start"), std::string_view::npos) << bad.status();
}

TEST(ChildProcess, PassesEnvironmentAndStdin) {
  ChildOptions options;
  options.env = {"HALO_TEST_VALUE=42"};
  options.pipe_stdin = true;
  auto child =
      ChildProcess::spawn({"sh", "-c", "read line; echo \"$HALO_TEST_VALUE $line\""}, options);
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->write_stdin("hello\n").ok());
  child->close_stdin();
  EXPECT_EQ(child->read_line(10s).value(), "42 hello");
  EXPECT_TRUE(child->wait(10s).value().success());
}

TEST(ChildProcess, StderrCanBeMergedIntoTheLines) {
  ChildOptions options;
  options.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
  auto child = ChildProcess::spawn({"sh", "-c", "echo to-stderr >&2"}, options);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(child->read_line(10s).value(), "to-stderr");
}

TEST(RunCommand, ReturnsOutputAndExitStatus) {
  auto result = run_command({"sh", "-c", "echo out; echo err >&2; exit 2"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 2);
  EXPECT_NE(result->output.find("out"), std::string::npos);
  EXPECT_NE(result->output.find("err"), std::string::npos);

  auto checked = check_command({"sh", "-c", "echo why; exit 1"});
  ASSERT_FALSE(checked.ok());
  EXPECT_NE(checked.status().message().find("why"), std::string_view::npos) << checked.status();
}

TEST(RunCommand, KillsAProgramThatOverrunsItsTimeout) {
  const auto start = std::chrono::steady_clock::now();
  RunOptions options;
  options.timeout = 200ms;
  auto result = run_command({"sleep", "1000"}, options);
  EXPECT_EQ(result.status().code(), StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(WaitFor, ReturnsAsSoonAsTheConditionHolds) {
  int calls = 0;
  EXPECT_TRUE(wait_for([&] { return ++calls == 3; }, 10s));
  EXPECT_EQ(calls, 3);
}

TEST(WaitFor, GivesUpAtTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(wait_for([] { return false; }, 100ms));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 100ms);
  EXPECT_LT(elapsed, 5s);
}

}  // namespace
}  // namespace halo::test
