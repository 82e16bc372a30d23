#include "launcher/session/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <thread>

namespace halo::launcher {

namespace {

// In the child between fork and exec: only async-signal-safe calls (the caller may have other
// threads, whose locks the child inherits held).
void enter_attached_child(pid_t parent) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before prctl: then nobody would ever send the signal.
  if (::getppid() != parent) ::_exit(127);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  // Descriptors the caller opened without O_CLOEXEC (sockets, files) stay with the caller.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
}

}  // namespace

StatusOr<pid_t> spawn_daemon(const std::vector<std::string>& argv, const std::string& log_path,
                             SpawnMode mode) {
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return errno_error(errno, str_cat("cannot open the log file ", log_path));
  // The child reports a failed exec through this pipe; a successful exec closes it.
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(log_fd);
    return errno_error(err, "pipe");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(log_fd);
    ::close(report[0]);
    ::close(report[1]);
    return errno_error(err, "fork");
  }
  if (pid == 0) {
    if (mode == SpawnMode::kAttached) {
      enter_attached_child(parent);
    } else {
      ::setsid();
    }
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(args[0], args.data());
    const int err = errno;
    (void)!::write(report[1], &err, sizeof(err));
    ::_exit(127);
  }
  // Also here, so that the group exists before anyone signals it.
  if (mode == SpawnMode::kAttached) ::setpgid(pid, pid);
  ::close(log_fd);
  ::close(report[1]);
  int err = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof(err))) {
    ::waitpid(pid, nullptr, 0);
    return errno_error(err, str_cat("cannot run ", argv[0]));
  }
  return pid;
}

bool process_running(pid_t pid) {
  if (pid <= 0) return false;
  // Our own child that ended: reap it so it stops counting (a no-op for other processes).
  ::waitpid(pid, nullptr, WNOHANG);
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream stat(str_cat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return false;
  // "pid (comm) S ...": the state follows the last ')'.
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ||
         (line[paren + 2] != 'Z' && line[paren + 2] != 'X');
}

bool process_is(pid_t pid, const std::string& program) {
  std::ifstream in(str_cat("/proc/", pid, "/cmdline"), std::ios::binary);
  std::string argv0;
  if (!std::getline(in, argv0, '\0')) return false;
  const size_t slash = argv0.rfind('/');
  return (slash == std::string::npos ? argv0 : argv0.substr(slash + 1)) == program;
}

Status write_pid_file(const std::string& path, pid_t pid) {
  const std::string tmp = path + ".tmp";
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno_error(errno, str_cat("cannot write the pid file ", tmp));
    const std::string text = str_cat(pid, "\n");
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok) return internal_error(str_cat("cannot write the pid file ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return errno_error(errno, str_cat("cannot rename ", tmp, " to ", path));
  }
  return Status();
}

StatusOr<pid_t> read_pid_file(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) {
    return not_found_error(str_cat("no valid pid in ", path));
  }
  return static_cast<pid_t>(pid);
}

std::vector<StopResult> stop_daemons(const std::vector<pid_t>& pids,
                                     std::chrono::milliseconds grace,
                                     const std::function<bool(pid_t)>& running) {
  std::vector<StopResult> results(pids.size(), StopResult::kNotRunning);
  std::vector<size_t> left;  // Signalled and not yet seen gone.
  for (size_t i = 0; i < pids.size(); ++i) {
    if (!running(pids[i])) continue;
    ::kill(pids[i], SIGTERM);
    results[i] = StopResult::kTerminated;
    left.push_back(i);
  }
  // Polled: a detached daemon is not our child (an earlier `halo` started it), so there is
  // nothing to wait on.
  const auto still_running = [&] {
    std::erase_if(left, [&](size_t i) { return !running(pids[i]); });
    return !left.empty();
  };
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto interval = std::chrono::milliseconds(1);
  while (still_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(interval);
    interval = std::min(interval * 2, std::chrono::milliseconds(50));
  }
  for (size_t i : left) {
    ::kill(pids[i], SIGKILL);
    results[i] = StopResult::kKilled;
  }
  const auto kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (still_running() && std::chrono::steady_clock::now() < kill_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return results;
}

std::string tail_file(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += "    " + l + "\n";
  return out;
}

}  // namespace halo::launcher
