// The halo-gcs program: its "listening" line and address file, a clean stop on SIGTERM, exit 2
// for bad flags with the loader's message, exit 1 with the reason for a corrupt data directory
// (naming the file) or a secret file others can read.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/gcs/server/gcs_test_env.h"
#include "tests/support/child_process.h"
#include "tests/support/wait_for.h"

namespace halo::gcs::testing {
namespace {

constexpr std::string_view kListening = "halo-gcs listening on ";

class HaloGcs : public ::testing::Test {
 protected:
  void SetUp() override {
    secret_file_ = dir_.file("secret");
    std::ofstream(secret_file_) << kSecret;
    ::chmod(secret_file_.c_str(), 0600);
  }
  std::vector<std::string> argv(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {HALO_GCS_PATH, "--data-dir=" + dir_.file("data"),
                                     "--secret-file=" + secret_file_, "--port=0",
                                     "--ucx-tls=tcp,self"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  static std::string address_of(const std::string& line) {
    const size_t start = kListening.size();
    return line.substr(start, line.find(' ', start) - start);
  }

  TempDir dir_;
  std::string secret_file_;
};

TEST_F(HaloGcs, PrintsItsAddressWritesTheAddressFileAndStopsCleanlyOnSigterm) {
  const std::string address_file = dir_.file("gcs_address");
  auto gcs = test::ChildProcess::spawn(argv({"--address-file=" + address_file}));
  ASSERT_TRUE(gcs.ok()) << gcs.status();
  auto line = gcs->wait_for_line(std::string(kListening), 20s);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_NE(line->find("(cluster "), std::string::npos) << *line;
  EXPECT_NE(line->find("recovered 1 records in "), std::string::npos) << *line;
  const std::string address = address_of(*line);
  std::ifstream in(address_file);
  std::stringstream contents;
  contents << in.rdbuf();
  EXPECT_EQ(contents.str(), address + "\n");
  struct stat st {};
  ASSERT_EQ(::stat(address_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto peer = RpcPeer::connect(address);
  ASSERT_NE(peer, nullptr);
  EXPECT_TRUE(
      (peer->call<proto::GcsStatusRequest, proto::GcsStatusResponse>("gcs.status", {}).ok()));
  peer.reset();
  ASSERT_TRUE(gcs->signal(SIGTERM).ok());
  auto exit = gcs->wait(10s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->to_string();
  EXPECT_FALSE(std::filesystem::exists(address_file)) << "a stopped GCS leaves no address behind";
}

TEST_F(HaloGcs, BadFlagsExitTwoWithTheLoadersMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;  // In the output.
  };
  const std::vector<Case> cases = {
      {argv({"--port=seventy"}), "port"},
      {argv({"--no-such-knob=1"}), "no-such-knob"},
      {argv({"--fsync-policy=sometimes"}), "fsync_policy"},
      {argv({"--health-check-failure-threshold=0"}), "health_check_failure_threshold"},
      {argv({"positional"}), "positional"},
      {{HALO_GCS_PATH, "--secret-file=" + secret_file_}, "--data-dir"},
      {{HALO_GCS_PATH, "--data-dir=" + dir_.file("data")}, "--secret-file"},
  };
  for (const Case& c : cases) {
    auto result = test::run_command(c.args);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->exit.code, 2) << c.args.back() << ": " << result->output;
    EXPECT_NE(result->output.find(c.expected), std::string::npos) << result->output;
  }
}

TEST_F(HaloGcs, SecretFileOthersCanReadIsRefused) {
  ::chmod(secret_file_.c_str(), 0644);
  auto result = test::run_command(argv());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 1) << result->output;
  EXPECT_NE(result->output.find(secret_file_), std::string::npos) << result->output;
  EXPECT_NE(result->output.find("chmod"), std::string::npos) << result->output;
}

// A record in the middle of the log with a flipped byte (valid records after it) is not a torn
// tail: halo-gcs must refuse to start, name the file, and leave it for the operator.
TEST_F(HaloGcs, CorruptDataDirectoryExitsOneNamingTheFile) {
  {
    auto gcs = test::ChildProcess::spawn(argv());
    ASSERT_TRUE(gcs.ok());
    auto line = gcs->wait_for_line(std::string(kListening), 20s);
    ASSERT_TRUE(line.ok()) << line.status();
    auto peer = RpcPeer::connect(address_of(*line));
    ASSERT_NE(peer, nullptr);
    for (int i = 0; i < 40; ++i) {
      proto::KvPutRequest put;
      put.set_key("key" + std::to_string(i));
      put.set_value(std::string(100, 'v'));
      ASSERT_TRUE((peer->call<proto::KvPutRequest, proto::KvPutResponse>("gcs.kv_put", put).ok()));
    }
    peer.reset();
    ASSERT_TRUE(gcs->signal(SIGTERM).ok());
    ASSERT_TRUE(gcs->wait(10s).ok());
  }
  std::string segment;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.file("data"))) {
    const std::string name = entry.path().filename();
    if (name.starts_with("wal-") && name.ends_with(".log") && entry.file_size() > 2000) {
      segment = entry.path();
    }
  }
  ASSERT_FALSE(segment.empty()) << "no log segment with the 40 records in " << dir_.file("data");
  {
    std::fstream file(segment, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = std::filesystem::file_size(segment);
    file.seekg(static_cast<std::streamoff>(size / 3));
    char byte = 0;
    file.read(&byte, 1);
    file.seekp(static_cast<std::streamoff>(size / 3));
    byte = static_cast<char>(byte ^ 0x5a);
    file.write(&byte, 1);
  }
  auto result = test::run_command(argv());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.code, 1) << result->output;
  EXPECT_NE(result->output.find(std::filesystem::path(segment).filename().string()),
            std::string::npos)
      << "the error must name the corrupt file: " << result->output;
  EXPECT_EQ(result->output.find(std::string(kListening)), std::string::npos)
      << "a GCS with a corrupt log must not serve";
}

}  // namespace
}  // namespace halo::gcs::testing
