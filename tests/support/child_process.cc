#include "tests/support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "tests/support/wait_for.h"

extern char** environ;

namespace halo::test {
namespace {

constexpr size_t kHistoryLines = 10'000;
constexpr size_t kUnreadLines = 100'000;
constexpr size_t kTailLines = 20;

// An fd closed when it goes out of scope, so that every error path of spawn() leaks nothing.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::string join_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) out += ' ';
    if (arg.empty() || arg.find_first_of(" \t'\"\\$") != std::string::npos) {
      out += '\'';
      for (char c : arg) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    } else {
      out += arg;
    }
  }
  return out;
}

// Finds `name` in PATH, then in the sbin folders (where iproute2 lives, and which a non-login
// PATH may lack). A name with a '/' is taken as a path.
std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) == 0) return name;
    return std::nullopt;
  }
  std::string dirs;
  if (const char* path = std::getenv("PATH")) dirs = path;
  dirs += ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      std::string candidate = dir + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

// The test's environment with `overrides` ("NAME=value") replacing or adding entries.
std::vector<std::string> child_environment(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    bool overridden = false;
    for (const auto& o : overrides) overridden |= name_of(o) == name_of(entry);
    if (!overridden) env.emplace_back(entry);
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

ExitStatus decode_wait_status(int status) {
  ExitStatus e;
  if (WIFEXITED(status)) {
    e.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  }
  return e;
}

// The part of spawn() that runs in the child between fork and exec: only async-signal-safe
// calls, because the test may have other threads whose locks the fork copied mid-use.
[[noreturn]] void exec_child(pid_t parent, const char* path, char* const* argv, char* const* envp,
                             int stdin_fd, int stdout_fd, int stderr_fd, const char* working_dir,
                             int error_fd) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before prctl() took effect; then nobody would kill us.
  if (::getppid() != parent) ::_exit(127);
  // Start with default signal handling: a test that ignores SIGPIPE must not pass that on.
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int err = 0;
  if (::dup2(stdin_fd, 0) < 0 || ::dup2(stdout_fd, 1) < 0 ||
      (stderr_fd >= 0 && ::dup2(stderr_fd, 2) < 0)) {
    err = errno;
  } else if (working_dir != nullptr && ::chdir(working_dir) != 0) {
    err = errno;
  } else {
    // Leave the child none of the test's descriptors (listening sockets, other children's
    // pipes): they would keep ports busy and pipes open after the test closes them.
    ::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
    ::execve(path, argv, envp);
    err = errno;
  }
  ssize_t ignored = ::write(error_fd, &err, sizeof(err));
  (void)ignored;
  ::_exit(127);
}

}  // namespace

std::string ExitStatus::to_string() const {
  if (signal != 0) return str_cat("signal ", signal, " (", ::strsignal(signal), ")");
  if (code >= 0) return str_cat("exit ", code);
  return "not ended";
}

struct ChildProcess::Impl {
  pid_t pid = -1;
  std::string command;
  std::string echo_label;
  Fd stdin_fd;
  Fd stdout_fd;
  Fd wake_fd;  // an eventfd that tells the reader thread to stop
  Fd pidfd;    // readable once the child has ended; -1 where pidfd_open is missing
  std::optional<ExitStatus> exit;
  std::thread reader;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> unread;   // guarded by mu
  std::deque<std::string> history;  // guarded by mu
  bool eof = false;                 // guarded by mu

  ~Impl() {
    if (pid > 0) {
      // Also when the child itself has ended: what it left running in its group goes too. A
      // group id is never reused while the group has members, so this reaches no stranger.
      ::kill(-pid, SIGKILL);
      if (!exit) {
        ::kill(pid, SIGKILL);
        reap(/*block=*/true);
      }
    }
    if (reader.joinable()) {
      uint64_t one = 1;
      ssize_t ignored = ::write(wake_fd.get(), &one, sizeof(one));
      (void)ignored;
      reader.join();
    }
  }

  // Records the exit status if the child has ended; with `block`, waits until it has.
  void reap(bool block) {
    if (exit || pid <= 0) return;
    int status = 0;
    while (true) {
      pid_t r = ::waitpid(pid, &status, block ? 0 : WNOHANG);
      if (r == pid) {
        exit = decode_wait_status(status);
        return;
      }
      if (r == 0) return;
      if (errno == EINTR) continue;
      // ECHILD: someone else reaped it (a SIGCHLD handler set to SIG_IGN). It is gone.
      exit = ExitStatus{};
      return;
    }
  }

  void add_line(std::string line) {
    if (!echo_label.empty()) std::fprintf(stderr, "[%s] %s\n", echo_label.c_str(), line.c_str());
    std::lock_guard lock(mu);
    history.push_back(line);
    if (history.size() > kHistoryLines) history.pop_front();
    unread.push_back(std::move(line));
    if (unread.size() > kUnreadLines) unread.pop_front();
    cv.notify_all();
  }

  void read_loop() {
    std::string partial;
    char buf[16384];
    while (true) {
      pollfd fds[2] = {{stdout_fd.get(), POLLIN, 0}, {wake_fd.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[1].revents != 0) break;
      ssize_t n = ::read(stdout_fd.get(), buf, sizeof(buf));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;
      partial.append(buf, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        add_line(partial.substr(start, nl - start));
      }
      partial.erase(0, start);
    }
    if (!partial.empty()) add_line(std::move(partial));
    std::lock_guard lock(mu);
    eof = true;
    cv.notify_all();
  }

  std::string tail() const {
    std::lock_guard lock(mu);
    std::string out;
    size_t first = history.size() > kTailLines ? history.size() - kTailLines : 0;
    for (size_t i = first; i < history.size(); ++i) out += "\n  | " + history[i];
    return out.empty() ? " (no output)" : out;
  }
};

ChildProcess::ChildProcess(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChildProcess::ChildProcess(ChildProcess&&) noexcept = default;
ChildProcess& ChildProcess::operator=(ChildProcess&&) noexcept = default;
ChildProcess::~ChildProcess() = default;

StatusOr<ChildProcess> ChildProcess::spawn(std::vector<std::string> argv, ChildOptions options) {
  if (argv.empty()) return invalid_argument_error("ChildProcess::spawn: empty command");
  auto program = find_program(argv[0]);
  if (!program) {
    return not_found_error(str_cat("cannot start `", join_command(argv), "`: ", argv[0],
                                   " is not an executable file or in PATH"));
  }
  auto impl = std::make_unique<Impl>();
  impl->command = join_command(argv);
  impl->echo_label = options.echo_label;
  argv[0] = *program;
  if (!options.netns.empty()) {
    auto nsenter = find_program("nsenter");
    if (!nsenter) return not_found_error("nsenter (util-linux) is not installed");
    std::vector<std::string> wrapped = {*nsenter, "--net=" + options.netns, "--"};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    argv = std::move(wrapped);
  }
  std::vector<std::string> env = child_environment(options.env);
  std::vector<char*> c_argv = c_strings(argv);
  std::vector<char*> c_env = c_strings(env);

  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_error(errno, "pipe for a child's stdout");
  Fd out_read(p[0]), out_write(p[1]);
  if (::pipe2(p, O_CLOEXEC) != 0) return errno_error(errno, "pipe for a child's exec error");
  Fd err_read(p[0]), err_write(p[1]);
  Fd in_read, in_write;
  if (options.pipe_stdin) {
    if (::pipe2(p, O_CLOEXEC) != 0) return errno_error(errno, "pipe for a child's stdin");
    in_read.reset(p[0]);
    in_write.reset(p[1]);
  } else {
    in_read.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (in_read.get() < 0) return errno_error(errno, "open /dev/null");
  }
  Fd dev_null_out;
  int stderr_fd = -1;
  switch (options.stderr_mode) {
    case ChildOptions::Stderr::kInherit:
      break;
    case ChildOptions::Stderr::kMergeWithStdout:
      stderr_fd = out_write.get();
      break;
    case ChildOptions::Stderr::kDiscard:
      dev_null_out.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
      if (dev_null_out.get() < 0) return errno_error(errno, "open /dev/null");
      stderr_fd = dev_null_out.get();
      break;
  }
  impl->wake_fd.reset(::eventfd(0, EFD_CLOEXEC));
  if (impl->wake_fd.get() < 0) return errno_error(errno, "eventfd");

  const char* working_dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return errno_error(errno, str_cat("fork for `", impl->command, "`"));
  if (pid == 0) {
    exec_child(parent, c_argv[0], c_argv.data(), c_env.data(), in_read.get(), out_write.get(),
               stderr_fd, working_dir, err_write.get());
  }
  // Also from this side, so that the group exists before spawn() returns (the child may not
  // have run yet); EACCES once the child has exec'd is harmless.
  ::setpgid(pid, pid);
  impl->pid = pid;
  out_write.reset();
  err_write.reset();
  in_read.reset();
  dev_null_out.reset();

  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_read.get(), &exec_errno, sizeof(exec_errno));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    impl->reap(/*block=*/true);
    return errno_error(exec_errno, str_cat("cannot start `", impl->command, "`"));
  }

  if (!options.netns.empty()) {
    // nsenter enters the namespace only after this exec; wait for that, so that a caller who
    // next looks for the host's processes (to kill the host, say) finds this one there.
    struct stat target {};
    if (::stat(options.netns.c_str(), &target) != 0) {
      return errno_error(errno, str_cat("stat ", options.netns));
    }
    bool entered = wait_for(
        [&] {
          struct stat current {};
          if (::stat(str_cat("/proc/", pid, "/ns/net").c_str(), &current) == 0 &&
              current.st_dev == target.st_dev && current.st_ino == target.st_ino) {
            return true;
          }
          impl->reap(/*block=*/false);
          return impl->exit.has_value();
        },
        std::chrono::seconds(10));
    if (!entered) {
      return deadline_exceeded_error(
          str_cat("`", impl->command, "` did not enter network namespace ", options.netns));
    }
  }
  impl->pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  impl->stdin_fd = std::move(in_write);
  impl->stdout_fd = std::move(out_read);
  Impl* raw = impl.get();
  impl->reader = std::thread([raw] { raw->read_loop(); });
  return ChildProcess(std::move(impl));
}

pid_t ChildProcess::pid() const { return impl_->pid; }
const std::string& ChildProcess::command() const { return impl_->command; }

StatusOr<std::string> ChildProcess::read_line(std::chrono::steady_clock::duration timeout) {
  const Deadline deadline(timeout);
  {
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait_until(lock, deadline.at(), [&] { return !impl_->unread.empty() || impl_->eof; });
    if (!impl_->unread.empty()) {
      std::string line = std::move(impl_->unread.front());
      impl_->unread.pop_front();
      return line;
    }
  }
  bool closed = false;
  {
    std::lock_guard lock(impl_->mu);
    closed = impl_->eof;
  }
  if (closed) {
    impl_->reap(/*block=*/false);
    std::string how = impl_->exit ? impl_->exit->to_string() : "still running";
    return unavailable_error(str_cat("`", impl_->command, "` closed its stdout (", how,
                                     "); its last output:", impl_->tail()));
  }
  return deadline_exceeded_error(
      str_cat("no new line from `", impl_->command, "` in time; its last output:", impl_->tail()));
}

StatusOr<std::string> ChildProcess::wait_for_line(std::string_view prefix,
                                                  std::chrono::steady_clock::duration timeout) {
  const Deadline deadline(timeout);
  while (true) {
    auto line = read_line(deadline.remaining());
    if (!line.ok()) {
      return Status(line.status().code(), str_cat("waiting for a line starting with \"", prefix,
                                                  "\": ", line.status().message()));
    }
    if (line->starts_with(prefix)) return line;
  }
}

std::vector<std::string> ChildProcess::output() const {
  std::lock_guard lock(impl_->mu);
  return {impl_->history.begin(), impl_->history.end()};
}

std::string ChildProcess::output_text() const {
  std::string out;
  for (const auto& line : output()) {
    if (!out.empty()) out += '\n';
    out += line;
  }
  return out;
}

Status ChildProcess::wait_for_output_end(std::chrono::steady_clock::duration timeout) {
  std::unique_lock lock(impl_->mu);
  if (impl_->cv.wait_for(lock, timeout, [&] { return impl_->eof; })) return Status();
  return deadline_exceeded_error(
      str_cat("`", impl_->command, "` (or a process it started) still holds its stdout"));
}

Status ChildProcess::write_stdin(std::string_view data) {
  if (impl_->stdin_fd.get() < 0) {
    return failed_precondition_error(
        str_cat("stdin of `", impl_->command, "` is not a pipe (or was closed)"));
  }
  while (!data.empty()) {
    // MSG_NOSIGNAL does not apply to pipes; a child that closed its stdin must not kill the
    // test with SIGPIPE, so block it around the write.
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    ssize_t n = ::write(impl_->stdin_fd.get(), data.data(), data.size());
    int err = errno;
    if (n < 0 && err == EPIPE) {
      timespec zero{};
      sigtimedwait(&pipe_set, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
    if (n < 0) {
      if (err == EINTR) continue;
      return errno_error(err, str_cat("writing to the stdin of `", impl_->command, "`"));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status();
}

void ChildProcess::close_stdin() { impl_->stdin_fd.reset(); }

bool ChildProcess::running() {
  impl_->reap(/*block=*/false);
  return !impl_->exit.has_value();
}

StatusOr<ExitStatus> ChildProcess::wait(std::chrono::steady_clock::duration timeout) {
  const Deadline deadline(timeout);
  auto interval = std::chrono::microseconds(100);
  while (true) {
    impl_->reap(/*block=*/false);
    if (impl_->exit) return *impl_->exit;
    if (deadline.expired()) break;
    if (impl_->pidfd.get() >= 0) {
      pollfd fd{impl_->pidfd.get(), POLLIN, 0};
      ::poll(&fd, 1, deadline.remaining_ms());
    } else {
      std::this_thread::sleep_for(
          std::min<std::chrono::steady_clock::duration>(interval, deadline.remaining()));
      interval = std::min(interval * 2, std::chrono::microseconds(10'000));
    }
  }
  return deadline_exceeded_error(
      str_cat("`", impl_->command, "` (pid ", impl_->pid, ") is still running"));
}

const ExitStatus* ChildProcess::exit_status() const {
  return impl_->exit ? &*impl_->exit : nullptr;
}

Status ChildProcess::signal(int sig) {
  if (impl_->exit) {
    return failed_precondition_error(
        str_cat("`", impl_->command, "` has already ended (", impl_->exit->to_string(), ")"));
  }
  if (::kill(impl_->pid, sig) != 0) {
    return errno_error(errno, str_cat("kill(", impl_->pid, ", ", sig, ")"));
  }
  return Status();
}

StatusOr<ExitStatus> ChildProcess::kill() {
  ::kill(-impl_->pid, SIGKILL);
  if (!impl_->exit) {
    ::kill(impl_->pid, SIGKILL);
    impl_->reap(/*block=*/true);
  }
  return *impl_->exit;
}

Status ChildProcess::stop() {
  if (impl_->exit) return failed_precondition_error(str_cat("`", impl_->command, "` has ended"));
  if (::kill(-impl_->pid, SIGSTOP) != 0) return errno_error(errno, "SIGSTOP to a child's group");
  return Status();
}

Status ChildProcess::resume() {
  if (impl_->exit) return failed_precondition_error(str_cat("`", impl_->command, "` has ended"));
  if (::kill(-impl_->pid, SIGCONT) != 0) return errno_error(errno, "SIGCONT to a child's group");
  return Status();
}

StatusOr<CommandResult> run_command(std::vector<std::string> argv, RunOptions options) {
  const Deadline deadline(options.timeout);
  ChildOptions child_options;
  child_options.netns = std::move(options.netns);
  child_options.env = std::move(options.env);
  child_options.stderr_mode = ChildOptions::Stderr::kMergeWithStdout;
  HALO_ASSIGN_OR_RETURN(ChildProcess child,
                        ChildProcess::spawn(std::move(argv), std::move(child_options)));
  auto exit = child.wait(deadline.remaining());
  if (!exit.ok()) {
    child.kill().value();
    return deadline_exceeded_error(
        str_cat("`", child.command(), "` did not end in time; output:\n", child.output_text()));
  }
  // A process it started in the background may keep the pipe open; its output so far will do.
  (void)child.wait_for_output_end(std::clamp<std::chrono::steady_clock::duration>(
      deadline.remaining(), std::chrono::milliseconds(100), std::chrono::seconds(2)));
  return CommandResult{*exit, child.output_text()};
}

StatusOr<std::string> check_command(std::vector<std::string> argv, RunOptions options) {
  std::string command = join_command(argv);
  HALO_ASSIGN_OR_RETURN(CommandResult result, run_command(std::move(argv), std::move(options)));
  if (!result.exit.success()) {
    return internal_error(
        str_cat("`", command, "` failed (", result.exit.to_string(), "):\n", result.output));
  }
  return std::move(result.output);
}

}  // namespace halo::test
