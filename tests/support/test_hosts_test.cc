// Test hosts (network namespaces on a bridge) do what multi-node tests rely on: hosts reach
// each other over TCP, a partition stops traffic and a heal restores it, a killed host's
// processes are all gone, and nothing made is left behind.
#include "tests/support/test_hosts.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

sockaddr_in ipv4(const std::string& address, int port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  return sa;
}

struct Listener {
  Socket socket;
  int port = 0;
};

// A TCP listener on host i's address, on a port the kernel picks.
Listener listen_in(const TestHosts& hosts, int i) {
  auto fd = hosts.socket_in_host(i, AF_INET, SOCK_STREAM);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return {};
  Listener l{Socket(*fd), 0};
  sockaddr_in sa = ipv4(hosts.address(i), 0);
  EXPECT_EQ(::bind(l.socket.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0)
      << std::strerror(errno);
  EXPECT_EQ(::listen(l.socket.get(), 16), 0) << std::strerror(errno);
  socklen_t len = sizeof(sa);
  ::getsockname(l.socket.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  l.port = ntohs(sa.sin_port);
  return l;
}

// Connects from host i to address:port. kDeadlineExceeded when nothing answers in time (the
// mark of a silent partition); an errno status when the connection is refused or unroutable.
StatusOr<Socket> connect_from(const TestHosts& hosts, int i, const std::string& address, int port,
                              std::chrono::milliseconds timeout) {
  HALO_ASSIGN_OR_RETURN(int fd, hosts.socket_in_host(i, AF_INET, SOCK_STREAM | SOCK_NONBLOCK));
  Socket s(fd);
  sockaddr_in sa = ipv4(address, port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) return s;
  if (errno != EINPROGRESS) return errno_error(errno, "connect");
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) == 0) {
    return deadline_exceeded_error(str_cat("no answer from ", address, ":", port));
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return errno_error(err, "connect");
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return s;
}

// Whether host `from` can open a TCP connection to `listener` on host `to` right now.
// `timeout` bounds a wait for an answer that a partition withholds.
bool reaches(const TestHosts& hosts, int from, int to, const Listener& listener,
             std::chrono::milliseconds timeout = 3000ms) {
  return connect_from(hosts, from, hosts.address(to), listener.port, timeout).ok();
}

Socket accept_within(const Listener& l, std::chrono::milliseconds timeout) {
  pollfd p{l.socket.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return Socket();
  return Socket(::accept4(l.socket.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

// Reads up to `size` bytes within the timeout; "" when none arrive.
std::string receive(const Socket& s, size_t size, std::chrono::milliseconds timeout) {
  pollfd p{s.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
  std::string buf(size, '\0');
  ssize_t n = ::recv(s.get(), buf.data(), size, 0);
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

bool namespace_exists(const std::string& name) {
  return std::filesystem::exists("/run/netns/" + name);
}

std::vector<std::string> namespaces_starting_with(const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix)) out.push_back(name);
  }
  return out;
}

// "halo-<pid>-<seq>-" from a host's namespace name "halo-<pid>-<seq>-h0".
std::string set_prefix(const TestHosts& hosts) {
  const std::string& n = hosts.name(0);
  return n.substr(0, n.rfind('-') + 1);
}

char process_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content;
  if (!std::getline(stat, content)) return 0;
  size_t paren = content.rfind(')');
  return paren == std::string::npos || paren + 2 >= content.size() ? 0 : content[paren + 2];
}

bool process_gone(pid_t pid) {
  char state = process_state(pid);
  return state == 0 || state == 'Z' || state == 'X';
}

std::string root_links() {
  auto out = check_command({"ip", "-o", "link", "show"});
  return out.ok() ? *out : out.status().to_string();
}

class TestHostsTest : public ::testing::Test {
 protected:
  void SetUp() override { HALO_SKIP_UNLESS_TEST_HOSTS_USABLE(); }

  std::unique_ptr<TestHosts> make(int count) {
    auto hosts = TestHosts::create(count);
    EXPECT_TRUE(hosts.ok()) << hosts.status();
    return hosts.ok() ? std::move(*hosts) : nullptr;
  }
};

TEST_F(TestHostsTest, EachHostHasItsOwnAddressInTheBenchmarkRange) {
  auto hosts = make(2);
  ASSERT_NE(hosts, nullptr);
  ASSERT_EQ(hosts->size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(hosts->address(i).starts_with("198.18.") ||
                hosts->address(i).starts_with("198.19."))
        << hosts->address(i);
    auto addrs = hosts->run_in_host(i, {"ip", "-o", "addr", "show"});
    ASSERT_TRUE(addrs.ok()) << addrs.status();
    EXPECT_TRUE(addrs->exit.success()) << addrs->output;
    EXPECT_NE(addrs->output.find("inet " + hosts->address(i) + "/24"), std::string::npos)
        << addrs->output;
    EXPECT_NE(addrs->output.find("inet 127.0.0.1/8"), std::string::npos) << addrs->output;
    EXPECT_EQ(addrs->output.find(hosts->address(1 - i) + "/"), std::string::npos) << addrs->output;
  }
  EXPECT_NE(hosts->address(0), hosts->address(1));
  auto root = check_command({"ip", "-o", "addr", "show"});
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->find(hosts->address(0) + "/"), std::string::npos)
      << "a test host's address leaked into the machine's own namespace:\n"
      << *root;
}

TEST_F(TestHostsTest, TwoHostsExchangeBytesOverTcp) {
  auto hosts = make(2);
  ASSERT_NE(hosts, nullptr);
  Listener listener = listen_in(*hosts, 0);
  auto client = connect_from(*hosts, 1, hosts->address(0), listener.port, 5000ms);
  ASSERT_TRUE(client.ok()) << client.status();
  Socket server = accept_within(listener, 5000ms);
  ASSERT_GE(server.get(), 0);

  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  ASSERT_EQ(::getpeername(server.get(), reinterpret_cast<sockaddr*>(&peer), &len), 0);
  char text[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
  EXPECT_EQ(std::string(text), hosts->address(1)) << "the connection did not come from host 1";

  ASSERT_EQ(::send(client->get(), "ping", 4, MSG_NOSIGNAL), 4);
  EXPECT_EQ(receive(server, 4, 5000ms), "ping");
  ASSERT_EQ(::send(server.get(), "pong", 4, MSG_NOSIGNAL), 4);
  EXPECT_EQ(receive(*client, 4, 5000ms), "pong");
}

TEST_F(TestHostsTest, ChildInAHostServesPeersInAnotherHost) {
  auto hosts = make(2);
  ASSERT_NE(hosts, nullptr);
  // A server program in host 0 announces its address the way halo's daemons do.
  const std::string server_code =
      "import socket, sys\n"
      "s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen()\n"
      "print('LISTENING %s:%d' % s.getsockname(), flush=True)\n"
      "c, a = s.accept(); c.sendall(('HELLO ' + a[0]).encode()); c.close()\n";
  auto server = hosts->spawn_in_host(0, {"python3", "-c", server_code, hosts->address(0)});
  ASSERT_TRUE(server.ok()) << server.status();
  auto line = server->wait_for_line("LISTENING ", 20s);
  ASSERT_TRUE(line.ok()) << line.status();
  const std::string endpoint = line->substr(std::string("LISTENING ").size());
  ASSERT_EQ(endpoint.substr(0, endpoint.find(':')), hosts->address(0));
  const int port = std::stoi(endpoint.substr(endpoint.find(':') + 1));

  auto client = connect_from(*hosts, 1, hosts->address(0), port, 5000ms);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(receive(*client, 64, 5000ms), "HELLO " + hosts->address(1));
  auto exit = server->wait(10s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->to_string() << "\n" << server->output_text();
}

TEST_F(TestHostsTest, SilentPartitionStopsTrafficAndHealRestoresIt) {
  auto hosts = make(2);
  ASSERT_NE(hosts, nullptr);
  Listener on0 = listen_in(*hosts, 0);
  Listener on1 = listen_in(*hosts, 1);
  auto client = connect_from(*hosts, 1, hosts->address(0), on0.port, 5000ms);
  ASSERT_TRUE(client.ok()) << client.status();
  Socket server = accept_within(on0, 5000ms);
  ASSERT_GE(server.get(), 0);
  ASSERT_EQ(::send(client->get(), "a", 1, MSG_NOSIGNAL), 1);
  ASSERT_EQ(receive(server, 1, 5000ms), "a");

  ASSERT_TRUE(hosts->partition(1).ok());
  EXPECT_TRUE(hosts->partitioned(1));
  EXPECT_FALSE(hosts->partitioned(0));
  // Nothing answers either way: no refusal, no error, only silence.
  auto from1 = connect_from(*hosts, 1, hosts->address(0), on0.port, 300ms);
  EXPECT_EQ(from1.status().code(), StatusCode::kDeadlineExceeded) << from1.status();
  auto from0 = connect_from(*hosts, 0, hosts->address(1), on1.port, 300ms);
  EXPECT_EQ(from0.status().code(), StatusCode::kDeadlineExceeded) << from0.status();
  // The established connection carries nothing either.
  ASSERT_EQ(::send(client->get(), "b", 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(receive(server, 1, 300ms), "");

  ASSERT_TRUE(hosts->heal(1).ok());
  EXPECT_FALSE(hosts->partitioned(1));
  EXPECT_TRUE(wait_for([&] { return reaches(*hosts, 1, 0, on0); }, 10s));
  EXPECT_TRUE(wait_for([&] { return reaches(*hosts, 0, 1, on1); }, 10s));
  // TCP's retransmission delivers what was sent during the partition.
  EXPECT_EQ(receive(server, 1, 15000ms), "b");
}

TEST_F(TestHostsTest, LinkDownPartitionFailsTheHostsOwnSendsAtOnce) {
  auto hosts = make(2);
  ASSERT_NE(hosts, nullptr);
  Listener on0 = listen_in(*hosts, 0);
  Listener on1 = listen_in(*hosts, 1);
  ASSERT_TRUE(reaches(*hosts, 1, 0, on0));

  ASSERT_TRUE(hosts->partition(1, PartitionMode::kLinkDown).ok());
  EXPECT_TRUE(hosts->partitioned(1));
  auto from1 = connect_from(*hosts, 1, hosts->address(0), on0.port, 2000ms);
  ASSERT_FALSE(from1.ok());
  EXPECT_NE(from1.status().message().find("unreachable"), std::string_view::npos) << from1.status();
  auto from0 = connect_from(*hosts, 0, hosts->address(1), on1.port, 300ms);
  EXPECT_FALSE(from0.ok()) << "host 0 reached host 1 through a link that is down";

  ASSERT_TRUE(hosts->heal(1).ok());
  EXPECT_TRUE(wait_for([&] { return reaches(*hosts, 1, 0, on0); }, 10s));
  EXPECT_TRUE(wait_for([&] { return reaches(*hosts, 0, 1, on1); }, 10s));
}

TEST_F(TestHostsTest, SplitKeepsEachGroupTogetherAndApart) {
  auto hosts = make(3);
  ASSERT_NE(hosts, nullptr);
  std::vector<Listener> listeners;
  for (int i = 0; i < 3; ++i) listeners.push_back(listen_in(*hosts, i));

  ASSERT_TRUE(hosts->split({{0, 1}, {2}}).ok());
  EXPECT_TRUE(reaches(*hosts, 0, 1, listeners[1]));
  EXPECT_TRUE(reaches(*hosts, 1, 0, listeners[0]));
  EXPECT_FALSE(reaches(*hosts, 2, 0, listeners[0], 300ms));
  EXPECT_FALSE(reaches(*hosts, 1, 2, listeners[2], 300ms));

  ASSERT_TRUE(hosts->heal_all().ok());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(hosts->partitioned(i));
  EXPECT_TRUE(wait_for([&] { return reaches(*hosts, 2, 0, listeners[0]); }, 10s));
  EXPECT_TRUE(wait_for([&] { return reaches(*hosts, 1, 2, listeners[2]); }, 10s));
}

TEST_F(TestHostsTest, KillHostKillsEveryProcessInItAndNoOther) {
  auto hosts = make(2);
  ASSERT_NE(hosts, nullptr);
  auto bystander = hosts->spawn_in_host(0, {"sleep", "1000"});
  ASSERT_TRUE(bystander.ok()) << bystander.status();
  // The victim starts a process in a session of its own, out of reach of a group kill.
  auto victim =
      hosts->spawn_in_host(1, {"sh", "-c", "setsid sleep 1000 & echo ESCAPED $!; exec sleep 1000"});
  ASSERT_TRUE(victim.ok()) << victim.status();
  auto line = victim->wait_for_line("ESCAPED ", 10s);
  ASSERT_TRUE(line.ok()) << line.status();
  const pid_t escaped = std::stoi(line->substr(std::string("ESCAPED ").size()));
  ASSERT_TRUE(wait_for([&] { return hosts->pids_in_host(1).size() == 2; }, 5s))
      << hosts->pids_in_host(1).size() << " processes in host 1";

  auto killed = hosts->kill_host(1);
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(*killed, 2);
  EXPECT_TRUE(hosts->pids_in_host(1).empty());
  auto exit = victim->wait(5s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_TRUE(wait_for([&] { return process_gone(escaped); }, 5s));
  EXPECT_TRUE(bystander->running()) << "killing host 1 touched host 0";
  EXPECT_EQ(hosts->pids_in_host(0), std::vector<pid_t>{bystander->pid()});
}

TEST_F(TestHostsTest, DestroyRemovesNamespacesLinksAndProcesses) {
  const std::string links_before = root_links();
  auto hosts = make(3);
  ASSERT_NE(hosts, nullptr);
  const std::string prefix = set_prefix(*hosts);
  ASSERT_EQ(namespaces_starting_with(prefix).size(), 4u) << "3 hosts and a switch";
  auto escaper = hosts->spawn_in_host(2, {"sh", "-c", "setsid sleep 1000 & echo ESCAPED $!; wait"});
  ASSERT_TRUE(escaper.ok()) << escaper.status();
  auto line = escaper->wait_for_line("ESCAPED ", 10s);
  ASSERT_TRUE(line.ok()) << line.status();
  const pid_t escaped = std::stoi(line->substr(std::string("ESCAPED ").size()));

  ASSERT_TRUE(hosts->destroy().ok());
  EXPECT_TRUE(namespaces_starting_with(prefix).empty());
  EXPECT_TRUE(wait_for([&] { return process_gone(escaped); }, 5s));
  EXPECT_TRUE(hosts->destroy().ok()) << "a second destroy() must be harmless";
  EXPECT_EQ(root_links(), links_before) << "the machine's own links changed";
}

TEST_F(TestHostsTest, TeardownHappensWhenATestBailsOut) {
  std::string prefix;
  try {
    auto hosts = make(2);
    ASSERT_NE(hosts, nullptr);
    prefix = set_prefix(*hosts);
    ASSERT_FALSE(namespaces_starting_with(prefix).empty());
    throw std::runtime_error("the test failed half way");
  } catch (const std::runtime_error&) {
  }
  ASSERT_FALSE(prefix.empty());
  EXPECT_TRUE(namespaces_starting_with(prefix).empty());
}

TEST_F(TestHostsTest, TwoSetsAtOnceHaveDistinctNamesAndSeparateNetworks) {
  auto a = make(2);
  auto b = make(2);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->name(0), b->name(0));
  EXPECT_NE(a->subnet(), b->subnet());
  Listener on_a = listen_in(*a, 0);
  Listener on_b = listen_in(*b, 0);
  EXPECT_TRUE(reaches(*a, 1, 0, on_a));
  EXPECT_TRUE(reaches(*b, 1, 0, on_b));
  EXPECT_FALSE(connect_from(*a, 1, b->address(0), on_b.port, 300ms).ok())
      << "set a reached a host of set b";
}

TEST_F(TestHostsTest, StaleNamespacesOfDeadRunsAreRemoved) {
  // A stand-in for a test binary that will crash: while it lives, its namespace is not stale,
  // so no other test process starting meanwhile removes it.
  auto owner = ChildProcess::spawn({"sleep", "1000"});
  ASSERT_TRUE(owner.ok()) << owner.status();
  const std::string stale = str_cat("halo-", owner->pid(), "-0-h0");
  const std::string alive = str_cat("halo-", ::getpid(), "-9999-h0");
  ASSERT_TRUE(check_command({"ip", "netns", "add", stale}).ok());
  ASSERT_TRUE(check_command({"ip", "netns", "add", alive}).ok());
  ChildOptions in_stale;
  in_stale.netns = "/run/netns/" + stale;
  auto left_running = ChildProcess::spawn({"sleep", "1000"}, in_stale);
  ASSERT_TRUE(left_running.ok()) << left_running.status();
  ASSERT_TRUE(owner->kill().ok());  // the crash

  // Another test process starting now may remove it first; either way it must be gone.
  TestHosts::remove_stale();
  EXPECT_FALSE(namespace_exists(stale));
  EXPECT_TRUE(namespace_exists(alive)) << "a namespace of a live process was removed";
  auto exit = left_running->wait(5s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_TRUE(check_command({"ip", "netns", "del", alive}).ok());
}

}  // namespace
}  // namespace halo::test
