#include "tests/support/test_hosts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

constexpr const char* kNetnsDir = "/run/netns";
constexpr auto kIpTimeout = std::chrono::seconds(20);
constexpr auto kKillTimeout = std::chrono::seconds(5);

std::string netns_path_of(const std::string& name) { return str_cat(kNetnsDir, "/", name); }

// Runs `ip args...`; an error names the command and carries ip's own message.
Status ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  RunOptions options;
  options.timeout = kIpTimeout;
  auto out = check_command(std::move(args), options);
  return out.ok() ? Status() : out.status();
}

// `ip -n NS args...`: the command runs inside namespace NS. ip enters it for itself alone, so
// its /sys remount touches nothing else.
Status ip_in(const std::string& ns, std::vector<std::string> args) {
  args.insert(args.begin(), {"-n", ns});
  return ip(std::move(args));
}

bool pid_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// Processes whose network namespace is the one with this identity, this process excepted.
// Zombies have no namespace left and are not listed.
std::vector<pid_t> pids_in_namespace(dev_t dev, ino_t ino) {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return pids;
  const pid_t self = ::getpid();
  while (dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid <= 0 || pid == self) continue;
    struct stat st {};
    if (::stat(str_cat("/proc/", pid, "/ns/net").c_str(), &st) != 0) continue;
    if (st.st_dev == dev && st.st_ino == ino) pids.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(proc);
  return pids;
}

// SIGKILLs every process in the namespace, again and again (they may be forking), until none
// is left or the timeout passes.
Status kill_all_in_namespace(const std::string& name, dev_t dev, ino_t ino,
                             std::chrono::steady_clock::duration timeout) {
  bool empty = wait_for(
      [&] {
        auto pids = pids_in_namespace(dev, ino);
        for (pid_t pid : pids) ::kill(pid, SIGKILL);
        return pids.empty();
      },
      timeout);
  if (empty) return Status();
  std::string left;
  for (pid_t pid : pids_in_namespace(dev, ino)) left += str_cat(" ", pid);
  return deadline_exceeded_error(str_cat("processes in network namespace ", name,
                                         " survived SIGKILL:", left,
                                         " (stuck in the kernel? see /proc/PID/stack)"));
}

Status delete_namespace(const std::string& name, dev_t dev, ino_t ino) {
  Status killed = kill_all_in_namespace(name, dev, ino, kKillTimeout);
  if (::access(netns_path_of(name).c_str(), F_OK) != 0) return killed;
  Status deleted = ip({"netns", "del", name});
  return killed.ok() ? deleted : killed;
}

// "halo-<pid>-..." -> pid, or 0 for any other name.
pid_t owner_of(const std::string& name) {
  constexpr std::string_view kPrefix = "halo-";
  if (!name.starts_with(kPrefix)) return 0;
  size_t digits_end = name.find('-', kPrefix.size());
  if (digits_end == std::string::npos || digits_end == kPrefix.size() ||
      digits_end - kPrefix.size() > 9) {
    return 0;
  }
  pid_t pid = 0;
  for (size_t i = kPrefix.size(); i < digits_end; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

std::atomic<int> next_seq{0};

}  // namespace

Status TestHosts::usable() {
  static const Status status = [] {
    if (::geteuid() != 0) {
      return permission_denied_error(
          "they need root (CAP_NET_ADMIN and CAP_SYS_ADMIN to make network namespaces); run the "
          "tests as root");
    }
    for (const char* tool : {"ip", "nsenter"}) {
      auto found = run_command({"sh", "-c",
                                str_cat("command -v ", tool, " || test -x /sbin/", tool,
                                        " || test -x /usr/sbin/", tool)});
      if (!found.ok() || !found->exit.success()) {
        return not_found_error(str_cat(tool,
                                       " is not installed (packages iproute2, util-linux); "
                                       "run scripts/install-deps.sh"));
      }
    }
    const std::string probe = str_cat("halo-", ::getpid(), "-probe");
    Status made = ip({"netns", "add", probe});
    if (!made.ok()) return made.with_context("`ip netns add` does not work here");
    Status s = ip_in(probe, {"link", "add", "br0", "type", "bridge"});
    if (s.ok()) s = ip_in(probe, {"link", "add", "v0", "type", "veth", "peer", "name", "v1"});
    if (s.ok()) s = ip_in(probe, {"link", "set", "v0", "master", "br0"});
    if (s.ok()) {
      auto entered = check_command({"nsenter", "--net=" + netns_path_of(probe), "--", "true"});
      if (!entered.ok()) s = entered.status();
    }
    Status removed = ip({"netns", "del", probe});
    if (!s.ok()) return s.with_context("veth or bridge links cannot be made in a namespace");
    return removed;
  }();
  return status;
}

int TestHosts::remove_stale() {
  int removed = 0;
  DIR* dir = ::opendir(kNetnsDir);
  if (dir == nullptr) return 0;
  std::vector<std::string> stale;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    pid_t owner = owner_of(name);
    if (owner > 0 && !pid_alive(owner)) stale.push_back(name);
  }
  ::closedir(dir);
  for (const auto& name : stale) {
    struct stat st {};
    if (::stat(netns_path_of(name).c_str(), &st) != 0) continue;
    Status s = delete_namespace(name, st.st_dev, st.st_ino);
    if (s.ok()) {
      ++removed;
    } else {
      std::fprintf(stderr, "halo test hosts: could not remove stale namespace %s: %s\n",
                   name.c_str(), s.to_string().c_str());
    }
  }
  return removed;
}

StatusOr<std::unique_ptr<TestHosts>> TestHosts::create(int count) {
  TestHostsOptions options;
  options.count = count;
  return create(options);
}

StatusOr<std::unique_ptr<TestHosts>> TestHosts::create(TestHostsOptions options) {
  if (options.count < 1 || options.count > 250) {
    return invalid_argument_error(
        str_cat("TestHosts: count must be 1 to 250, not ", options.count));
  }
  static std::once_flag stale_removed;
  std::call_once(stale_removed, [] { remove_stale(); });
  std::unique_ptr<TestHosts> hosts(new TestHosts());
  // On failure the unique_ptr's destruction removes whatever was made.
  HALO_RETURN_IF_ERROR(hosts->build(options).with_context("making test hosts"));
  return hosts;
}

Status TestHosts::add_namespace(const std::string& name, dev_t* dev, ino_t* ino) {
  HALO_RETURN_IF_ERROR(ip({"netns", "add", name}));
  made_.push_back(name);
  struct stat st {};
  if (::stat(netns_path_of(name).c_str(), &st) != 0) {
    return errno_error(errno, str_cat("stat ", netns_path_of(name)));
  }
  *dev = st.st_dev;
  *ino = st.st_ino;
  return Status();
}

Status TestHosts::ensure_bridge(int index) {
  while (bridges_ <= index) {
    std::string bridge = str_cat("br", bridges_);
    // No spanning tree: a port forwards as soon as it is attached, so heal() takes effect at
    // once.
    HALO_RETURN_IF_ERROR(ip_in(switch_, {"link", "add", bridge, "type", "bridge", "stp_state", "0",
                                         "forward_delay", "0"}));
    HALO_RETURN_IF_ERROR(ip_in(switch_, {"link", "set", bridge, "up"}));
    ++bridges_;
  }
  return Status();
}

Status TestHosts::build(const TestHostsOptions& options) {
  const pid_t pid = ::getpid();
  const int seq = next_seq.fetch_add(1);
  base_ = str_cat("halo-", pid, "-", seq);
  // Any /24 of 198.18.0.0/15 would do, since each set has a network of its own; one derived
  // from the set's id makes the addresses in a log tell which set they belong to.
  const int id = static_cast<int>((static_cast<unsigned>(pid) * 131u + seq) % 512u);
  const std::string prefix = str_cat("198.", 18 + id / 256, ".", id % 256, ".");
  subnet_ = prefix + "0/24";
  switch_ = base_ + "-sw";
  HALO_RETURN_IF_ERROR(add_namespace(switch_, &switch_dev_, &switch_ino_));
  HALO_RETURN_IF_ERROR(ensure_bridge(0));
  const std::string mtu = str_cat(options.mtu);
  for (int i = 0; i < options.count; ++i) {
    Host h;
    h.name = str_cat(base_, "-h", i);
    h.address = str_cat(prefix, i + 1);
    h.port = str_cat("p", i);
    HALO_RETURN_IF_ERROR(add_namespace(h.name, &h.ns_dev, &h.ns_ino));
    hosts_.push_back(h);
    // Both ends are made directly in their namespaces, so no name is ever taken in the
    // machine's own namespace.
    HALO_RETURN_IF_ERROR(ip({"link", "add", kInterface, "netns", h.name, "mtu", mtu, "type", "veth",
                             "peer", "name", h.port, "netns", switch_, "mtu", mtu}));
    HALO_RETURN_IF_ERROR(ip_in(switch_, {"link", "set", h.port, "master", "br0", "up"}));
    HALO_RETURN_IF_ERROR(ip_in(h.name, {"link", "set", "lo", "up"}));
    HALO_RETURN_IF_ERROR(ip_in(h.name, {"addr", "add", h.address + "/24", "dev", kInterface}));
    HALO_RETURN_IF_ERROR(ip_in(h.name, {"link", "set", kInterface, "up"}));
  }
  return wait_until_forwarding();
}

TestHosts::~TestHosts() {
  Status s = destroy();
  if (!s.ok()) {
    std::fprintf(stderr, "halo test hosts %s: teardown failed: %s\n", base_.c_str(),
                 s.to_string().c_str());
  }
}

Status TestHosts::destroy() {
  if (destroyed_) return Status();
  destroyed_ = true;
  Status first_error;
  // Hosts first: their processes die before the switch that carries their traffic goes.
  for (auto it = made_.rbegin(); it != made_.rend(); ++it) {
    dev_t dev = switch_dev_;
    ino_t ino = switch_ino_;
    for (const auto& h : hosts_) {
      if (h.name == *it) {
        dev = h.ns_dev;
        ino = h.ns_ino;
      }
    }
    Status s = delete_namespace(*it, dev, ino);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  made_.clear();
  return first_error;
}

const TestHosts::Host& TestHosts::host(int i) const {
  if (i < 0 || i >= size()) {
    std::fprintf(stderr, "TestHosts: host %d does not exist (the set has %d)\n", i, size());
    std::abort();
  }
  return hosts_[static_cast<size_t>(i)];
}

const std::string& TestHosts::name(int i) const { return host(i).name; }
std::string TestHosts::netns_path(int i) const { return netns_path_of(host(i).name); }
const std::string& TestHosts::address(int i) const { return host(i).address; }

std::vector<std::string> TestHosts::command_in_host(int i, std::vector<std::string> argv) const {
  std::vector<std::string> out = {"nsenter", "--net=" + netns_path(i), "--"};
  out.insert(out.end(), std::make_move_iterator(argv.begin()), std::make_move_iterator(argv.end()));
  return out;
}

StatusOr<CommandResult> TestHosts::run_in_host(int i, std::vector<std::string> argv,
                                               std::chrono::steady_clock::duration timeout) const {
  RunOptions options;
  options.netns = netns_path(i);
  options.timeout = timeout;
  return run_command(std::move(argv), std::move(options));
}

StatusOr<ChildProcess> TestHosts::spawn_in_host(int i, std::vector<std::string> argv,
                                                ChildOptions options) const {
  options.netns = netns_path(i);
  return ChildProcess::spawn(std::move(argv), std::move(options));
}

Status TestHosts::call_in_host(int i, const std::function<void()>& fn) const {
  const std::string path = netns_path(i);
  Status status;
  // setns(CLONE_NEWNET) moves only the calling thread, so a fresh thread keeps the test's
  // own threads where they are.
  std::thread thread([&] {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      status = errno_error(errno, str_cat("open ", path));
      return;
    }
    int rc = ::setns(fd, CLONE_NEWNET);
    int err = errno;
    ::close(fd);
    if (rc != 0) {
      status = errno_error(err, str_cat("setns into ", path));
      return;
    }
    fn();
  });
  thread.join();
  return status;
}

StatusOr<int> TestHosts::socket_in_host(int i, int domain, int type, int protocol) const {
  int fd = -1;
  int err = 0;
  HALO_RETURN_IF_ERROR(call_in_host(i, [&] {
    fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    err = errno;
  }));
  if (fd < 0) return errno_error(err, str_cat("socket in test host ", i));
  return fd;
}

std::vector<pid_t> TestHosts::pids_in_host(int i) const {
  const Host& h = host(i);
  return pids_in_namespace(h.ns_dev, h.ns_ino);
}

StatusOr<int> TestHosts::kill_host(int i, int sig, std::chrono::steady_clock::duration timeout) {
  const Host& h = host(i);
  std::set<pid_t> signalled;
  for (pid_t pid : pids_in_namespace(h.ns_dev, h.ns_ino)) {
    if (::kill(pid, sig) == 0) signalled.insert(pid);
  }
  if (sig == SIGKILL) {
    bool gone = wait_for(
        [&] {
          auto pids = pids_in_namespace(h.ns_dev, h.ns_ino);
          for (pid_t pid : pids) {
            if (::kill(pid, SIGKILL) == 0) signalled.insert(pid);
          }
          return pids.empty();
        },
        timeout);
    if (!gone) {
      return deadline_exceeded_error(
          str_cat("processes in test host ", i, " (", h.name, ") survived SIGKILL"));
    }
  }
  return static_cast<int>(signalled.size());
}

// A port starts forwarding only when the kernel's link watcher has seen its carrier come up,
// which it batches up to a second later; until then ARP requests are dropped and the first
// connection between two hosts stalls for a second. So create() and heal() return only once
// every connected port forwards.
Status TestHosts::wait_until_forwarding() {
  std::string not_ready;
  bool ready = wait_for(
      [&] {
        auto links = check_command({"ip", "-n", switch_, "-d", "-o", "link", "show"});
        if (!links.ok()) return false;
        not_ready.clear();
        for (const Host& h : hosts_) {
          if (h.bridge < 0 || !h.link_up) continue;
          size_t at = links->find(str_cat(": ", h.port, "@"));
          size_t end = links->find('\n', at);
          if (at == std::string::npos ||
              links->substr(at, end - at).find("bridge_slave state forwarding") ==
                  std::string::npos) {
            not_ready += " " + h.port;
          }
        }
        return not_ready.empty();
      },
      std::chrono::seconds(10));
  if (ready) return Status();
  return deadline_exceeded_error(
      str_cat("bridge ports of ", base_, " never started forwarding:", not_ready));
}

Status TestHosts::attach(int i, int bridge) {
  Host& h = hosts_[static_cast<size_t>(i)];
  if (h.bridge == bridge) return Status();
  HALO_RETURN_IF_ERROR(ensure_bridge(bridge));
  HALO_RETURN_IF_ERROR(ip_in(switch_, {"link", "set", h.port, "master", str_cat("br", bridge)}));
  h.bridge = bridge;
  return Status();
}

Status TestHosts::partition(int i, PartitionMode mode) {
  host(i);
  Host& h = hosts_[static_cast<size_t>(i)];
  switch (mode) {
    case PartitionMode::kSilentDrop:
      if (h.bridge >= 0) {
        HALO_RETURN_IF_ERROR(ip_in(switch_, {"link", "set", h.port, "nomaster"}));
        h.bridge = -1;
      }
      return Status();
    case PartitionMode::kLinkDown:
      if (h.link_up) {
        HALO_RETURN_IF_ERROR(ip_in(h.name, {"link", "set", kInterface, "down"}));
        h.link_up = false;
      }
      return Status();
  }
  return invalid_argument_error("TestHosts::partition: unknown mode");
}

Status TestHosts::split(const std::vector<std::vector<int>>& groups) {
  std::vector<int> target(hosts_.size(), 0);
  std::vector<bool> named(hosts_.size(), false);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int i : groups[g]) {
      if (i < 0 || i >= size() || named[static_cast<size_t>(i)]) {
        return invalid_argument_error(
            str_cat("TestHosts::split: host ", i, " does not exist or is in two groups"));
      }
      named[static_cast<size_t>(i)] = true;
      // Unnamed hosts stay on br0; the named groups get br1, br2, ...
      target[static_cast<size_t>(i)] = static_cast<int>(g) + 1;
    }
  }
  for (int i = 0; i < size(); ++i) HALO_RETURN_IF_ERROR(attach(i, target[static_cast<size_t>(i)]));
  return wait_until_forwarding();
}

Status TestHosts::heal(int i) {
  host(i);
  Host& h = hosts_[static_cast<size_t>(i)];
  if (!h.link_up) {
    HALO_RETURN_IF_ERROR(ip_in(h.name, {"link", "set", kInterface, "up"}));
    h.link_up = true;
  }
  HALO_RETURN_IF_ERROR(attach(i, 0));
  return wait_until_forwarding();
}

Status TestHosts::heal_all() {
  for (Host& h : hosts_) {
    if (!h.link_up) {
      HALO_RETURN_IF_ERROR(ip_in(h.name, {"link", "set", kInterface, "up"}));
      h.link_up = true;
    }
  }
  for (int i = 0; i < size(); ++i) HALO_RETURN_IF_ERROR(attach(i, 0));
  return wait_until_forwarding();
}

bool TestHosts::partitioned(int i) const {
  const Host& h = host(i);
  return h.bridge != 0 || !h.link_up;
}

}  // namespace halo::test
