#include "launcher/cli/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
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

namespace halo::cli {

std::string bin_dir() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return ".";
  std::string exe(path, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/'));
}

std::string program_path(const std::string& name) {
  const std::string local = bin_dir() + "/" + name;
  return ::access(local.c_str(), X_OK) == 0 ? local : name;
}

StatusOr<pid_t> spawn_daemon(const std::vector<std::string>& argv, const std::string& log_path) {
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
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(log_fd);
    ::close(report[0]);
    ::close(report[1]);
    return errno_error(err, "fork");
  }
  if (pid == 0) {
    ::setsid();
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

StopResult stop_daemon(pid_t pid, std::chrono::milliseconds grace) {
  if (!process_running(pid)) return StopResult::kNotRunning;
  ::kill(pid, SIGTERM);
  // Polled: the daemon is not our child (it was started by an earlier `halo`), so there is
  // nothing to wait on.
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto interval = std::chrono::milliseconds(1);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_running(pid)) return StopResult::kTerminated;
    std::this_thread::sleep_for(interval);
    interval = std::min(interval * 2, std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  const auto kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (process_running(pid) && std::chrono::steady_clock::now() < kill_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return StopResult::kKilled;
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

}  // namespace halo::cli
