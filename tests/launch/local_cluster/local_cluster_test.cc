// The embedded local cluster (launcher/local_cluster/local_cluster.h) with real halo-gcs and
// halo-node children: it starts and is seen by the GCS, stops leaving no process and no
// folder, dies with the program that started it, reports daemons that failed or were killed,
// and finds its programs.
#include "launcher/local_cluster/local_cluster.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gcs/client/cluster_secret.h"
#include "gcs/client/gcs_client.h"
#include "launcher/session/daemon_process.h"
#include "tests/gcs/node/local_cluster.h"
#include "tests/support/child_process.h"
#include "tests/support/test_store_size.h"
#include "tests/support/wait_for.h"

namespace halo::launcher {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

// Options every test uses: its own folder for sessions, the build's programs.
LocalClusterOptions options_in(const TempDir& dir, int num_nodes) {
  LocalClusterOptions options;
  options.num_nodes = num_nodes;
  options.temp_dir = dir.path();
  options.start_timeout = 30s;
  return options;
}

// The node table as the GCS sees it.
StatusOr<std::vector<gcs::proto::NodeInfo>> gcs_nodes(const LocalCluster& cluster) {
  gcs::GcsClientOptions options;
  options.address = cluster.gcs_address();
  HALO_ASSIGN_OR_RETURN(options.cluster_secret, gcs::read_secret_file(cluster.secret_file()));
  options.reconnect_timeout = 10s;
  HALO_ASSIGN_OR_RETURN(auto client, gcs::GcsClient::create(options));
  HALO_ASSIGN_OR_RETURN(auto response,
                        (client->call<gcs::proto::GetNodesRequest, gcs::proto::GetNodesResponse>(
                            "gcs.get_nodes", {})));
  return std::vector<gcs::proto::NodeInfo>(response.nodes().begin(), response.nodes().end());
}

std::vector<pid_t> daemon_pids(const LocalCluster& cluster) {
  std::vector<pid_t> pids = {cluster.gcs_pid()};
  for (const auto& node : cluster.nodes()) pids.push_back(node.pid);
  return pids;
}

// Processes whose parent is this test (running or not yet reaped).
std::vector<pid_t> own_children() {
  std::vector<pid_t> children;
  DIR* proc = ::opendir("/proc");
  while (dirent* entry = proc != nullptr ? ::readdir(proc) : nullptr) {
    const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0) continue;
    std::ifstream stat(str_cat("/proc/", pid, "/stat"));
    std::string line;
    if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) continue;
    // "pid (comm) S ppid ...".
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid()) children.push_back(pid);
  }
  if (proc != nullptr) ::closedir(proc);
  return children;
}

int mode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Sets or clears an environment variable for one test and puts it back afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = old;
    had_ = old != nullptr;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(LocalCluster, ThreeNodesJoinTheGcsAndStopLeavesNothing) {
  TempDir dir;
  auto cluster = LocalCluster::start(options_in(dir, 3));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;

  EXPECT_EQ(c.gcs_address().rfind("ucx://127.0.0.1:", 0), 0u) << c.gcs_address();
  EXPECT_EQ(c.session_dir().rfind(dir.path() + "/session_", 0), 0u) << c.session_dir();
  EXPECT_EQ(mode_of(c.session_dir()), 0700);
  EXPECT_EQ(mode_of(c.secret_file()), 0600);
  EXPECT_FALSE(exists(dir.path() + "/session_latest")) << "a local cluster hid session_latest";
  ASSERT_EQ(c.nodes().size(), 3u);
  std::map<std::string, std::string> reported;  // node id -> address
  for (const LocalNode& node : c.nodes()) {
    EXPECT_EQ(node.node_id_hex.size(), 32u) << node.name;
    EXPECT_EQ(mode_of(node.log_file), 0600) << node.log_file;
    EXPECT_TRUE(process_running(node.pid)) << node.name;
    reported[node.node_id_hex] = node.address;
  }
  EXPECT_EQ(c.nodes()[2].name, "node-3");
  EXPECT_EQ(c.nodes()[2].log_file, c.session_dir() + "/logs/node-3.log");

  auto table = gcs_nodes(c);
  ASSERT_TRUE(table.ok()) << table.status();
  std::map<std::string, std::string> seen;
  for (const auto& row : *table) {
    EXPECT_EQ(row.state(), gcs::proto::ALIVE) << test::hex(row.node_id());
    seen[test::hex(row.node_id())] = row.address();
  }
  EXPECT_EQ(seen, reported);

  const std::vector<pid_t> pids = daemon_pids(c);
  const std::string session = c.session_dir();
  Status stopped = c.stop();
  EXPECT_TRUE(stopped.ok()) << stopped;
  for (pid_t pid : pids) EXPECT_FALSE(process_running(pid)) << "pid " << pid << " still runs";
  EXPECT_TRUE(own_children().empty()) << "a daemon was left unreaped";
  EXPECT_FALSE(exists(session)) << "the session folder was not removed";
  EXPECT_TRUE(c.stop().ok()) << "a second stop() is a no-op";
}

// The program the next test kills: starts a cluster, prints the daemons' pids, waits.
int run_starter(const std::string& temp_dir) {
  LocalClusterOptions options;
  options.num_nodes = 2;
  options.temp_dir = temp_dir;
  auto cluster = LocalCluster::start(options);
  if (!cluster.ok()) {
    std::fprintf(stderr, "starter: %s\n", cluster.status().to_string().c_str());
    return 1;
  }
  std::string line = "PIDS";
  for (pid_t pid : daemon_pids(**cluster)) line += str_cat(" ", pid);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  while (true) ::pause();  // Until the test kills it.
}

TEST(LocalCluster, DaemonsDieWhenTheirStarterIsKilled) {
  TempDir dir;
  // A program of its own rather than a fork of this one: the cluster's threads need a clean
  // process (a fork of a threaded test may inherit locks held).
  test::ChildOptions child_options;
  child_options.echo_label = "starter";
  auto starter = test::ChildProcess::spawn(
      {std::filesystem::read_symlink("/proc/self/exe").string(), "--starter", dir.path()},
      child_options);
  ASSERT_TRUE(starter.ok()) << starter.status();
  auto line = starter->wait_for_line("PIDS ", 30s);
  ASSERT_TRUE(line.ok()) << line.status();
  std::istringstream in(line->substr(5));
  std::vector<pid_t> pids;
  for (pid_t pid = 0; in >> pid;) pids.push_back(pid);
  ASSERT_EQ(pids.size(), 3u) << *line;
  for (pid_t pid : pids) ASSERT_TRUE(process_running(pid)) << "pid " << pid;

  // SIGKILL to the starter alone (not its process group): the daemons get no signal from us.
  ASSERT_TRUE(starter->signal(SIGKILL).ok());
  auto ended = starter->wait(10s);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->signal, SIGKILL);
  const bool all_gone = test::wait_for(
      [&] {
        for (pid_t pid : pids) {
          if (process_running(pid)) return false;
        }
        return true;
      },
      10s);
  EXPECT_TRUE(all_gone) << "a daemon outlived the program that started it";
  for (pid_t pid : pids) {
    if (!all_gone && process_running(pid)) ::kill(pid, SIGKILL);  // Leave no orphan behind.
  }
}

TEST(LocalCluster, SurvivesTheThreadThatStartedIt) {
  TempDir dir;
  StatusOr<std::unique_ptr<LocalCluster>> cluster = not_found_error("not started");
  pid_t starter_tid = 0;
  std::thread starter([&] {
    starter_tid = ::gettid();
    cluster = LocalCluster::start(options_in(dir, 1));
  });
  starter.join();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  // The thread is fully gone (past the point where the kernel sends PR_SET_PDEATHSIG signals
  // for children it forked) once its entry in /proc leaves.
  ASSERT_TRUE(
      test::wait_for([&] { return !exists(str_cat("/proc/self/task/", starter_tid)); }, 10s));
  auto table = gcs_nodes(**cluster);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 1u);
  // A daemon killed when the thread ended would be reported here.
  Status stopped = (*cluster)->stop();
  EXPECT_TRUE(stopped.ok()) << stopped;
}

TEST(LocalCluster, NodeThatCannotStartFailsFastWithItsLog) {
  TempDir dir;
  LocalClusterOptions options = options_in(dir, 2);
  options.per_node_flags = [](int index) {
    return index == 1 ? std::vector<std::string>{"--no-such-flag=1"} : std::vector<std::string>{};
  };
  const auto began = std::chrono::steady_clock::now();
  auto cluster = LocalCluster::start(options);
  const auto took = std::chrono::steady_clock::now() - began;
  ASSERT_FALSE(cluster.ok());
  EXPECT_EQ(cluster.status().code(), StatusCode::kUnavailable) << cluster.status();
  const std::string message(cluster.status().message());
  EXPECT_NE(message.find("halo-node node-2"), std::string::npos) << message;
  EXPECT_NE(message.find("exited while starting"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown flag --no-such-flag"), std::string::npos)
      << "the log's end is not in the message: " << message;
  EXPECT_LT(took, 10s) << "it did not fail fast";
  EXPECT_TRUE(own_children().empty()) << "a daemon was left running or unreaped";
  // The folder stays, for the logs the message names.
  DIR* d = ::opendir(dir.path().c_str());
  ASSERT_NE(d, nullptr);
  std::string session;
  while (dirent* e = ::readdir(d)) {
    if (std::string(e->d_name).rfind("session_", 0) == 0) session = dir.path() + "/" + e->d_name;
  }
  ::closedir(d);
  EXPECT_TRUE(exists(session + "/logs/node-2.log")) << session;
}

TEST(LocalCluster, GcsThatDiesWhileNodesJoinFailsTheStartAtOnce) {
  TempDir dir;
  LocalClusterOptions options = options_in(dir, 1);
  // The node looks for its GCS elsewhere (the later flag wins), so it never joins.
  options.node_flags = {"--gcs-address=127.0.0.1:1"};
  // Meanwhile the GCS is killed, found by its pid file.
  std::thread killer([&] {
    pid_t gcs = 0;
    (void)test::wait_for(
        [&] {
          std::error_code ec;
          for (const auto& entry : std::filesystem::directory_iterator(dir.path(), ec)) {
            auto pid = read_pid_file(entry.path().string() + "/pids/gcs.pid");
            if (pid.ok() && exists(entry.path().string() + "/pids/node-1.pid")) gcs = *pid;
          }
          return gcs != 0;
        },
        30s);
    if (gcs != 0) ::kill(gcs, SIGKILL);
  });
  const auto began = std::chrono::steady_clock::now();
  auto cluster = LocalCluster::start(options);
  const auto took = std::chrono::steady_clock::now() - began;
  killer.join();
  ASSERT_FALSE(cluster.ok());
  EXPECT_NE(cluster.status().message().find("halo-gcs (pid"), std::string::npos)
      << cluster.status();
  EXPECT_EQ(cluster.status().code(), StatusCode::kUnavailable) << cluster.status();
  EXPECT_LT(took, 15s) << "it waited for the deadline";
  EXPECT_TRUE(own_children().empty()) << "a daemon was left running or unreaped";
}

TEST(LocalCluster, KilledNodeIsReportedByStopWhichLeavesNothingRunning) {
  TempDir dir;
  auto cluster = LocalCluster::start(options_in(dir, 2));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;
  const std::vector<pid_t> pids = daemon_pids(c);
  const LocalNode killed = c.nodes()[1];

  ASSERT_TRUE(c.kill_node(1).ok());
  EXPECT_FALSE(process_running(killed.pid));
  EXPECT_EQ(c.kill_node(1).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.kill_node(2).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(process_running(c.nodes()[0].pid)) << "the other node died too";

  Status stopped = c.stop();
  ASSERT_FALSE(stopped.ok());
  const std::string message(stopped.message());
  EXPECT_NE(message.find("halo-node node-2 (pid " + std::to_string(killed.pid) + ")"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("kill_node()"), std::string::npos) << message;
  EXPECT_NE(message.find(killed.log_file), std::string::npos) << message;
  EXPECT_EQ(message.find("node-1"), std::string::npos) << "node-1 stopped cleanly: " << message;
  for (pid_t pid : pids) EXPECT_FALSE(process_running(pid)) << "pid " << pid << " still runs";
  EXPECT_TRUE(own_children().empty());
  EXPECT_TRUE(exists(killed.log_file)) << "the session folder is kept for the logs";
}

TEST(LocalCluster, MissingProgramFailsBeforeStartingAnything) {
  TempDir dir;
  LocalClusterOptions options = options_in(dir, 1);
  options.bin_dir = dir.path();  // Holds no program.
  auto cluster = LocalCluster::start(options);
  ASSERT_FALSE(cluster.ok());
  EXPECT_EQ(cluster.status().code(), StatusCode::kNotFound) << cluster.status();
  EXPECT_NE(cluster.status().message().find("halo-gcs"), std::string::npos) << cluster.status();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a session folder was made";
}

TEST(FindProgram, HonoursHaloBinDir) {
  TempDir dir;
  const std::string fake = dir.path() + "/halo-gcs";
  std::ofstream(fake) << "#!/bin/sh\n";
  ASSERT_EQ(::chmod(fake.c_str(), 0700), 0);
  ScopedEnv env("HALO_BIN_DIR", dir.path().c_str());
  auto found = find_program("halo-gcs");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, fake);
  // An explicit folder wins over the variable.
  auto given = find_program("halo-gcs", HALO_TEST_BUILD_BIN_DIR);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(*given, std::string(HALO_TEST_BUILD_BIN_DIR) + "/halo-gcs");
}

TEST(FindProgram, NamesWhereItLookedWhenNotFound) {
  TempDir dir;
  {
    ScopedEnv env("HALO_BIN_DIR", dir.path().c_str());
    auto found = find_program("halo-node");
    ASSERT_FALSE(found.ok());
    EXPECT_EQ(found.status().code(), StatusCode::kNotFound);
    const std::string message(found.status().message());
    EXPECT_NE(message.find(dir.path()), std::string::npos) << message;
    EXPECT_NE(message.find("$HALO_BIN_DIR"), std::string::npos) << message;
  }
  ScopedEnv env("HALO_BIN_DIR", nullptr);
  ScopedEnv path("PATH", dir.path().c_str());
  auto found = find_program("halo-no-such-program");
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), StatusCode::kNotFound);
  const std::string message(found.status().message());
  EXPECT_NE(message.find(HALO_TEST_BUILD_BIN_DIR), std::string::npos) << message;
  EXPECT_NE(message.find(dir.path()), std::string::npos) << "PATH is not named: " << message;
  EXPECT_NE(message.find("HALO_BIN_DIR"), std::string::npos) << message;
}

TEST(FindProgram, FindsTheBuildTreesProgramsWithoutHelp) {
  ScopedEnv env("HALO_BIN_DIR", nullptr);
  auto found = find_program("halo-node");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, std::string(HALO_TEST_BUILD_BIN_DIR) + "/halo-node");
}

}  // namespace
}  // namespace halo::launcher

int main(int argc, char** argv) {
  // Every halo-node of these tests (also the starter's) gets a small object store through the
  // environment: by default each would pre-fault 30% of the machine's memory.
  ::setenv("HALO_OBJECT_STORE_MEMORY", std::to_string(halo::test::kTestStoreBytes).c_str(), 0);
  if (argc == 3 && std::string(argv[1]) == "--starter") {
    return halo::launcher::run_starter(argv[2]);
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
