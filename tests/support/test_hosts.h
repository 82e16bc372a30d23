// Test hosts: several "machines" on one Linux box, for tests of halo across nodes.
//
// Each host is a network namespace with one interface, `eth0`, whose other end is a port of a
// bridge in a namespace of its own (the switch). Host i has the address 198.18.X.(i+1)/24,
// where X comes from the set's unique id; 198.18.0.0/15 is the range set aside for network
// benchmarks (RFC 2544), and nothing else on the machine routes to it. Loopback is up in
// every host. Namespaces are named "halo-<pid>-<seq>-h<i>" (and "...-sw"), so two test
// binaries, or two sets in one binary, never collide.
//
//   TEST(GcsFailover, NodeOnTheFarSideOfAPartitionFencesItself) {
//     HALO_SKIP_UNLESS_TEST_HOSTS_USABLE();
//     auto hosts = TestHosts::create(3);
//     ASSERT_TRUE(hosts.ok()) << hosts.status();
//     auto gcs = (*hosts)->spawn_in_host(0, {gcs_binary, "--address", (*hosts)->address(0)});
//     ...
//     ASSERT_TRUE((*hosts)->partition(2).ok());  // host 2 can reach nobody, nobody reaches it
//     ...
//     ASSERT_TRUE((*hosts)->heal(2).ok());
//   }  // every process, namespace and link the set made is gone here, pass or fail
//
// Programs run in a host through `nsenter --net=/run/netns/NAME` (never `ip netns exec`,
// which remounts /sys and breaks programs that read it, such as slurmd). They share the
// file system, users and PIDs of the test; only the network differs.
//
// Cleanup: the destructor kills every process inside the set's namespaces (found through
// /proc/PID/ns/net, so also what those processes started) and deletes the namespaces, which
// removes their links. A test binary that crashed leaves its namespaces behind; the first
// create() of a later run removes every "halo-<pid>-..." namespace whose pid is dead.
//
// Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and util-linux's nsenter; usable()
// says whether they are here. Not thread-safe: use a set from one thread.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "tests/support/child_process.h"

namespace halo::test {

enum class PartitionMode {
  // The host's switch port is unplugged from the bridge while its own link stays up: every
  // frame to or from the host is lost without a word, as when a switch or a cable further away
  // fails. Both sides see only time-outs.
  kSilentDrop,
  // `ip link set eth0 down` inside the host: its own sends fail at once (ENETUNREACH); the
  // other hosts see time-outs.
  kLinkDown,
};

struct TestHostsOptions {
  int count = 2;   // 1 to 250 hosts
  int mtu = 1500;  // of every link
};

class TestHosts {
 public:
  // The name of each host's interface, inside its namespace (for UCX_NET_DEVICES,
  // FI_TCP_IFACE and the like).
  static constexpr const char* kInterface = "eth0";

  // OK when this machine can make test hosts (root, iproute2, nsenter, and `ip netns add`,
  // veth and bridge links actually work); else why not. Probed once per process.
  static Status usable();

  // Makes the hosts, connected and addressed, loopback up, and returns once every link
  // forwards. Fails with a message naming the `ip` command that failed; whatever was made
  // before is removed then. Takes some 50 ms for two hosts.
  static StatusOr<std::unique_ptr<TestHosts>> create(TestHostsOptions options);
  static StatusOr<std::unique_ptr<TestHosts>> create(int count);

  TestHosts(const TestHosts&) = delete;
  TestHosts& operator=(const TestHosts&) = delete;
  // Same as destroy(); problems are printed to stderr.
  ~TestHosts();

  // Kills every process in the set's namespaces and deletes the namespaces (and so their
  // links). Idempotent. Sockets from socket_in_host() still open keep a namespace alive in the
  // kernel (not in /run/netns) until they are closed.
  Status destroy();

  int size() const { return static_cast<int>(hosts_.size()); }
  // The namespace name of host i ("halo-1234-0-h1") and its path ("/run/netns/halo-1234-0-h1").
  const std::string& name(int i) const;
  std::string netns_path(int i) const;
  // The IPv4 address of host i ("198.18.37.2") and the hosts' subnet ("198.18.37.0/24").
  const std::string& address(int i) const;
  const std::string& subnet() const { return subnet_; }

  // argv prefixed so that it runs inside host i: {"nsenter", "--net=PATH", "--", argv...}.
  // For programs that take a command to run remotely (mpirun's plm_rsh_agent and the like).
  std::vector<std::string> command_in_host(int i, std::vector<std::string> argv) const;

  // Runs a program inside host i to its end (see run_command()).
  StatusOr<CommandResult> run_in_host(
      int i, std::vector<std::string> argv,
      std::chrono::steady_clock::duration timeout = std::chrono::seconds(30)) const;
  // Starts a program inside host i (see ChildProcess); options.netns is set here.
  StatusOr<ChildProcess> spawn_in_host(int i, std::vector<std::string> argv,
                                       ChildOptions options = {}) const;

  // Calls fn on a new thread that has entered host i's network namespace, and waits for it.
  // Sockets made there stay in host i's network, whichever thread uses them later. Fails only
  // if the namespace cannot be entered (fn is not called then).
  Status call_in_host(int i, const std::function<void()>& fn) const;
  // A socket (close-on-exec) in host i's network, e.g. socket_in_host(0, AF_INET, SOCK_STREAM).
  // The caller owns the descriptor.
  StatusOr<int> socket_in_host(int i, int domain, int type, int protocol = 0) const;

  // The processes (not zombies, never this test process) inside host i's network namespace.
  std::vector<pid_t> pids_in_host(int i) const;
  // Sends `sig` to every process inside host i. With SIGKILL, also waits (up to `timeout`)
  // until none is left: the host has crashed. Returns how many processes were signalled.
  // A ChildProcess for a killed process still reaps it (its exit shows signal 9).
  StatusOr<int> kill_host(int i, int sig = SIGKILL,
                          std::chrono::steady_clock::duration timeout = std::chrono::seconds(5));

  // Cuts host i off from every other host (see PartitionMode), until heal(i).
  Status partition(int i, PartitionMode mode = PartitionMode::kSilentDrop);
  // Splits the hosts into groups that reach only each other, e.g. split({{0, 1}, {2}}). Hosts
  // named in no group form one more group. Undone by heal_all() (or heal() host by host).
  Status split(const std::vector<std::vector<int>>& groups);
  // Reconnects host i to the main bridge with its link up, and returns once its port forwards.
  // TCP connections that backed off resume at their next retransmission.
  Status heal(int i);
  Status heal_all();
  // Whether host i is cut off from the main bridge or has its link down.
  bool partitioned(int i) const;

  // Removes the namespaces "halo-<pid>-..." whose pid is no longer alive, after killing any
  // processes in them. Returns how many were removed. create() calls it once per process.
  static int remove_stale();

 private:
  struct Host {
    std::string name;
    std::string address;
    std::string port;  // its bridge port, in the switch namespace
    int bridge = 0;    // index of the bridge its port is attached to; -1 when detached
    bool link_up = true;
    dev_t ns_dev = 0;  // identity of its namespace, to find its processes in /proc
    ino_t ns_ino = 0;
  };

  TestHosts() = default;
  Status build(const TestHostsOptions& options);
  Status add_namespace(const std::string& name, dev_t* dev, ino_t* ino);
  Status ensure_bridge(int index);
  Status attach(int i, int bridge);
  Status wait_until_forwarding();
  const Host& host(int i) const;

  std::string base_;    // "halo-<pid>-<seq>"
  std::string switch_;  // the switch namespace's name
  dev_t switch_dev_ = 0;
  ino_t switch_ino_ = 0;
  std::string subnet_;
  std::vector<Host> hosts_;
  int bridges_ = 0;                // br0 .. br<bridges_-1> exist in the switch namespace
  std::vector<std::string> made_;  // namespaces created, in order
  bool destroyed_ = false;
};

}  // namespace halo::test

// First statement of a test that needs test hosts: skips it, with the reason, on a machine
// where network namespaces cannot be made (not root, no iproute2, a restricted container).
#define HALO_SKIP_UNLESS_TEST_HOSTS_USABLE()                                             \
  do {                                                                                   \
    if (::halo::Status halo_hosts_status_ = ::halo::test::TestHosts::usable();           \
        !halo_hosts_status_.ok()) {                                                      \
      GTEST_SKIP() << "test hosts (network namespaces) cannot be made on this machine: " \
                   << halo_hosts_status_;                                                \
    }                                                                                    \
  } while (0)
