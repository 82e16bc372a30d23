// The `halo` command line end to end on loopback, with real halo-gcs and halo-node daemons:
// start --head, status --json, a second node joining with start --address, drain, stop, the
// session's file modes; and its errors (no cluster, too open secret, unreachable GCS).
// Each test has its own HALO_TEMP_DIR, so it never touches /tmp/halo.
#include <dirent.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>

#include "tests/gcs/node/local_cluster.h"
#include "tests/support/test_store_size.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;
using google::protobuf::Struct;
using google::protobuf::Value;

class HaloCliTest : public ::testing::Test {
 protected:
  void TearDown() override {
    // Whatever a failed test left running: `halo stop`, then SIGKILL to the session's daemons.
    if (!session_.empty()) {
      (void)run({"stop", "--grace-s=2"});
      for (pid_t pid : session_processes()) ::kill(pid, SIGKILL);
    }
  }

  StatusOr<CommandResult> run(std::vector<std::string> args) {
    args.insert(args.begin(), program("halo"));
    RunOptions options;
    // The node daemons `halo start` runs inherit a small store (see test_store_size.h).
    options.env = {"HALO_TEMP_DIR=" + dir_.path(),
                   "HALO_OBJECT_STORE_MEMORY=" + std::to_string(kTestStoreBytes)};
    options.timeout = 60s;
    return run_command(args, options);
  }

  // Processes (not zombies) whose command line mentions the session folder: the daemons.
  std::vector<pid_t> session_processes() const {
    std::vector<pid_t> pids;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return pids;
    while (dirent* e = ::readdir(proc)) {
      const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
      if (pid <= 0) continue;
      std::ifstream cmdline(str_cat("/proc/", pid, "/cmdline"), std::ios::binary);
      std::string text((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
      std::ifstream stat(str_cat("/proc/", pid, "/stat"));
      std::string line;
      std::getline(stat, line);
      const size_t paren = line.rfind(')');
      const bool zombie =
          paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
      if (!zombie && text.find(dir_.path()) != std::string::npos) pids.push_back(pid);
    }
    ::closedir(proc);
    return pids;
  }

  static mode_t mode_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return 07777;
    return st.st_mode & 0777;
  }

  static StatusOr<Struct> parse_json(const std::string& text) {
    Struct s;
    auto status = google::protobuf::util::JsonStringToMessage(text, &s);
    if (!status.ok()) return invalid_argument_error(str_cat("not JSON: ", text));
    return s;
  }

  // The nodes `halo status --json [--all]` lists, as (node_id -> state).
  std::map<std::string, std::string> status_nodes(bool all = false) {
    std::vector<std::string> args = {"status", "--json"};
    if (all) args.push_back("--all");
    auto result = run(args);
    EXPECT_TRUE(result.ok() && result->exit.success())
        << (result.ok() ? result->output : result.status().to_string());
    std::map<std::string, std::string> nodes;
    if (!result.ok()) return nodes;
    auto json = parse_json(result->output);
    EXPECT_TRUE(json.ok()) << json.status();
    if (!json.ok()) return nodes;
    for (const Value& n : json->fields().at("nodes").list_value().values()) {
      nodes[n.struct_value().fields().at("node_id").string_value()] =
          n.struct_value().fields().at("state").string_value();
    }
    return nodes;
  }

  TempDir dir_;
  std::string session_;
};

TEST_F(HaloCliTest, StartStatusJoinDrainStopOnLoopback) {
  const uint16_t port = free_port();
  std::vector<std::string> start = {"start", "--head", str_cat("--port=", port), "--timeout-s=30"};
  for (const auto& flag : fast_health_checks()) start.push_back("--gcs-flag=" + flag);
  auto started = run(start);
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_TRUE(started->exit.success()) << started->output;
  char target[4096] = {};
  ASSERT_GT(::readlink((dir_.path() + "/session_latest").c_str(), target, sizeof(target) - 1), 0);
  session_ = target;
  EXPECT_NE(started->output.find(str_cat("ucx://127.0.0.1:", port)), std::string::npos)
      << started->output;
  EXPECT_NE(started->output.find(session_ + "/cluster_secret"), std::string::npos)
      << started->output;
  EXPECT_NE(started->output.find(str_cat("halo start --address 127.0.0.1:", port)),
            std::string::npos)
      << started->output;

  // Session files are owner-only.
  EXPECT_EQ(mode_of(session_), 0700u);
  EXPECT_EQ(mode_of(session_ + "/logs"), 0700u);
  EXPECT_EQ(mode_of(session_ + "/pids"), 0700u);
  EXPECT_EQ(mode_of(session_ + "/cluster_secret"), 0600u);
  EXPECT_EQ(mode_of(session_ + "/logs/gcs.log"), 0600u);
  EXPECT_EQ(mode_of(session_ + "/logs/node-1.log"), 0600u);
  EXPECT_EQ(mode_of(session_ + "/node-1.json"), 0600u);
  EXPECT_EQ(mode_of(session_ + "/pids/gcs.pid"), 0600u);

  // --verbose adds each node's machine as hwloc sees it, and its progress thread's PU.
  auto verbose = run({"status", "--verbose"});
  ASSERT_TRUE(verbose.ok()) << verbose.status();
  EXPECT_NE(verbose->output.find("topology: "), std::string::npos) << verbose->output;
  EXPECT_NE(verbose->output.find("; lo "), std::string::npos) << verbose->output;
  EXPECT_NE(verbose->output.find("progress thread on PU "), std::string::npos) << verbose->output;

  auto nodes = status_nodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes.begin()->second, "ALIVE");

  auto joined = run({"start", "--address", str_cat("127.0.0.1:", port), "--labels=zone=b"});
  ASSERT_TRUE(joined.ok()) << joined.status();
  ASSERT_TRUE(joined->exit.success()) << joined->output;
  auto second = node::read_node_state_file(session_ + "/node-2.json");
  ASSERT_TRUE(second.ok()) << second.status();
  nodes = status_nodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[second->node_id], "ALIVE");

  auto drained = run({"drain", second->node_id.substr(0, 10), "--wait", "--timeout-s=30"});
  ASSERT_TRUE(drained.ok()) << drained.status();
  ASSERT_TRUE(drained->exit.success()) << drained->output;
  EXPECT_NE(drained->output.find("left the cluster (REMOVED)"), std::string::npos)
      << drained->output;
  EXPECT_TRUE(wait_for(
      [&] {
        auto s = node::read_node_state_file(session_ + "/node-2.json");
        return s.ok() && s->state == "stopped" && ::kill(static_cast<pid_t>(s->pid), 0) != 0;
      },
      30s))
      << "the drained node did not exit";
  nodes = status_nodes(/*all=*/true);
  EXPECT_EQ(nodes[second->node_id], "REMOVED");
  EXPECT_EQ(status_nodes().size(), 1u);

  const auto before_stop = session_processes();
  EXPECT_EQ(before_stop.size(), 2u) << "expected the GCS and the first node";
  auto stopped = run({"stop"});
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  ASSERT_TRUE(stopped->exit.success()) << stopped->output;
  EXPECT_NE(stopped->output.find("stopped halo-gcs"), std::string::npos) << stopped->output;
  EXPECT_NE(stopped->output.find("stopped halo-node node-1"), std::string::npos) << stopped->output;
  EXPECT_TRUE(wait_for([&] { return session_processes().empty(); }, 10s))
      << "halo processes of the session are left";

  // The GCS removed its address file on the way out: no cluster runs from this session.
  auto after = run({"status", "--timeout-s=1"});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->exit.code, 1);
  EXPECT_NE(after->output.find("no halo cluster is running"), std::string::npos) << after->output;
  // Asked at its address, the error names the address tried.
  auto at = run({"status", "--timeout-s=1", "--address", str_cat("127.0.0.1:", port)});
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(at->exit.code, 1);
  EXPECT_NE(at->output.find(str_cat("ucx://127.0.0.1:", port)), std::string::npos) << at->output;
}

TEST_F(HaloCliTest, StatusWithoutAClusterSaysSo) {
  auto result = run({"status"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 1);
  EXPECT_NE(result->output.find("no halo cluster"), std::string::npos) << result->output;
  EXPECT_NE(result->output.find("halo start --head"), std::string::npos) << result->output;
}

TEST_F(HaloCliTest, TooOpenSecretFileIsRefusedWithTheFix) {
  const std::string secret = dir_.path() + "/secret";
  write_secret(secret);
  ASSERT_EQ(::chmod(secret.c_str(), 0644), 0);
  auto result = run({"status", "--address", "127.0.0.1:1", "--secret-file", secret});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 1);
  EXPECT_NE(result->output.find("chmod 600 " + secret), std::string::npos) << result->output;
}

TEST_F(HaloCliTest, UnreachableGcsIsReportedWithTheAddressTried) {
  const std::string secret = dir_.path() + "/secret";
  write_secret(secret);
  const uint16_t port = free_port();
  auto result = run({"start", "--address", str_cat("127.0.0.1:", port), "--secret-file", secret,
                     "--timeout-s=1"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 1);
  EXPECT_NE(result->output.find(str_cat("ucx://127.0.0.1:", port)), std::string::npos)
      << result->output;
  EXPECT_NE(result->output.find("unreachable"), std::string::npos) << result->output;
  EXPECT_TRUE(session_processes().empty()) << "no node may be left behind";
}

TEST_F(HaloCliTest, BadCommandLineExitsTwo) {
  auto result = run({"start", "--no-such-flag"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 2) << result->output;
  auto drain = run({"drain", "not-hex"});
  ASSERT_TRUE(drain.ok()) << drain.status();
  EXPECT_EQ(drain->exit.code, 1) << drain->output;
  EXPECT_NE(drain->output.find("is not a node id"), std::string::npos) << drain->output;
}

}  // namespace
}  // namespace halo::test
