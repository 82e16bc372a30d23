#include "echo_child.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "halo/base/config.h"

extern char** environ;

namespace halo::transport::tools {
namespace {

StatusOr<std::string> find_echo_binary() {
  if (const char* env = std::getenv("HALO_ECHO_BIN"); env != nullptr && *env)
    return std::string(env);
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return internal_error("cannot resolve /proc/self/exe: " + ec.message());
  for (const auto& candidate :
       {self.parent_path() / "halo-transport-echo",
        self.parent_path().parent_path() / "transport" / "halo-transport-echo"}) {
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  return not_found_error(str_cat("halo-transport-echo not found next to ", self.string(),
                                 " or in ../transport/; build it or set HALO_ECHO_BIN"));
}

StatusOr<std::string> write_secret(const std::string& secret) {
  char path[] = "/tmp/halo-echo-secret-XXXXXX";
  const int fd = mkstemp(path);  // Created with mode 0600.
  if (fd < 0) return errno_error(errno, "creating the echo server's secret file");
  const bool ok = write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size());
  close(fd);
  if (!ok) return internal_error("writing the echo server's secret file");
  return std::string(path);
}

}  // namespace

StatusOr<std::unique_ptr<EchoChild>> EchoChild::spawn(const TransportConfig& config,
                                                      const std::string& secret,
                                                      const std::string& host,
                                                      size_t region_bytes) {
  HALO_ASSIGN_OR_RETURN(std::string binary, find_echo_binary());
  std::unique_ptr<EchoChild> child(new EchoChild());
  HALO_ASSIGN_OR_RETURN(child->secret_path_, write_secret(secret));

  std::vector<std::string> args = {binary};
  TransportConfig copy = config;
  ConfigLoader knobs;
  knobs.add(copy);
  for (const ConfigKnob& knob : knobs.knobs()) {
    args.push_back(str_cat("--", knob.name, "=", knob.current()));
  }
  args.push_back("--listen_host=" + host);
  args.push_back(str_cat("--region_bytes=", region_bytes));
  args.push_back("--secret_file=" + child->secret_path_);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno_error(errno, "creating the echo child's pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return errno_error(rc, "starting " + binary);
  }
  child->pid_ = pid;

  // It prints "LISTENING <address>" once it listens; EOF first means the child failed (its
  // reason is on its stderr, which the caller shares). UCX prints its warnings on standard
  // output too: those lines are passed on to this process's standard error.
  const std::string prefix = "LISTENING ";
  std::string line;
  for (bool eof = false; !eof && line.rfind(prefix, 0) != 0;) {
    line.clear();
    char c;
    while (!(eof = read(fds[0], &c, 1) != 1) && c != '\n') line += c;
    if (!line.empty() && line.rfind(prefix, 0) != 0) std::fprintf(stderr, "%s\n", line.c_str());
  }
  close(fds[0]);
  if (line.rfind(prefix, 0) != 0) {
    return unavailable_error(str_cat(binary, " did not start listening (see its error above)"));
  }
  child->address_ = line.substr(prefix.size());
  return child;
}

EchoChild::~EchoChild() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (!secret_path_.empty()) unlink(secret_path_.c_str());
}

}  // namespace halo::transport::tools
