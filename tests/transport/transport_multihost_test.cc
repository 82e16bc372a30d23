// The transport between two test hosts (network namespaces on a bridge, tests/support/
// test_hosts.h), for each backend over TCP: a halo_transport_peer serves in host 1 and another
// one, in client mode, runs the checks from host 0 and prints what it saw; the test reads its
// lines. Then host 1's link goes down mid-transfer and the client's operations must all fail
// within the peer timeout. Labels "transport;multihost".
#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <sstream>

#include "tests/support/test_hosts.h"
#include "transport_test_fixture.h"

namespace halo::transport::testing {
namespace {

using test::ChildOptions;
using test::ChildProcess;
using test::TestHosts;

constexpr int kClientHost = 0;
constexpr int kServerHost = 1;
constexpr size_t kRegionBytes = 256 << 20;
// The whole check script, 256 MiB each way over a veth pair on a loaded two-core machine.
constexpr auto kScriptLimit = 240s;

// "LOOP_ENDED ok=3 failed=2 ..." -> {"ok": 3, "failed": 2, ...}.
std::map<std::string, long> parse_fields(const std::string& line) {
  std::map<std::string, long> fields;
  std::istringstream in(line);
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    long value = -1;
    std::from_chars(word.data() + eq + 1, word.data() + word.size(), value);
    fields[word.substr(0, eq)] = value;
  }
  return fields;
}

class MultiHost : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    HALO_SKIP_UNLESS_TEST_HOSTS_USABLE();
    config_ = test_config(GetParam());
    auto secret = SecretFile::create();
    ASSERT_TRUE(secret.ok()) << secret.status();
    secret_ = *std::move(secret);
    auto hosts = TestHosts::create(2);
    ASSERT_TRUE(hosts.ok()) << hosts.status();
    hosts_ = *std::move(hosts);
  }

  // Children go before the hosts (which would kill them anyway), the secret last.
  void TearDown() override {
    client_.reset();
    server_.reset();
    hosts_.reset();
    secret_.reset();
  }

  // Starts the serving peer in host 1, listening on its address.
  void start_server() {
    PeerProcess::Options options;
    options.host = hosts_->address(kServerHost);
    options.region_bytes = kRegionBytes;
    options.child.netns = hosts_->netns_path(kServerHost);
    options.child.echo_label = "server";
    auto server = PeerProcess::start(config_, secret_->path(), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::make_unique<PeerProcess>(*std::move(server));
  }

  // Starts halo_transport_peer in client mode in host 0 with `flags` after the common ones.
  void start_client(std::vector<std::string> flags) {
    std::vector<std::string> argv = {peer_program(), "--connect=" + server_->address(),
                                     "--secret_file=" + secret_->path()};
    for (auto& flag : config_flags(config_)) argv.push_back(std::move(flag));
    for (auto& flag : flags) argv.push_back(std::move(flag));
    ChildOptions options;
    options.echo_label = "client";
    auto client = hosts_->spawn_in_host(kClientHost, std::move(argv), std::move(options));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::make_unique<ChildProcess>(*std::move(client));
  }

  TransportConfig config_;
  std::unique_ptr<SecretFile> secret_;
  std::unique_ptr<TestHosts> hosts_;
  std::unique_ptr<PeerProcess> server_;
  std::unique_ptr<ChildProcess> client_;
};

TEST_P(MultiHost, ActiveMessagesAndPutGetAcrossHostsCarryExactBytes) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  EXPECT_NE(server_->address().find(hosts_->address(kServerHost)), std::string::npos)
      << "the server should publish host 1's address: " << server_->address();
  ASSERT_NO_FATAL_FAILURE(start_client(
      {"--script=check", "--check_sizes=1048576,268435456", "--step_timeout_ms=120000"}));

  auto done = client_->wait_for_line("DONE ", kScriptLimit);
  ASSERT_TRUE(done.ok()) << done.status() << "\n" << client_->output_text();
  const std::vector<std::string> lines = client_->output();
  for (const std::string check : {"connect", "am_small", "am_64KiB", "describe", "register",
                                  "put_1048576", "get_1048576", "put_268435456", "get_268435456"}) {
    const std::string ok = "CHECK " + check + " OK";
    EXPECT_NE(std::find(lines.begin(), lines.end(), ok), lines.end())
        << "no \"" << ok << "\" from the client:\n"
        << client_->output_text();
  }
  EXPECT_EQ(*done, "DONE failures=0") << client_->output_text();
  auto exit = client_->wait(kStepTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->success()) << exit->to_string();
}

TEST_P(MultiHost, LinkDownMidTransferFailsEveryPendingOperationInBoundedTime) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(
      start_client({"--script=transfer_loop", "--loop_op_bytes=" + std::to_string(kRegionBytes),
                    "--step_timeout_ms=120000"}));
  auto flowing = client_->wait_for_line("FLOWING", 120s);
  ASSERT_TRUE(flowing.ok()) << flowing.status() << "\n" << client_->output_text();

  // The server's host drops off the network: the client hears nothing more, no error, no
  // reset. Only its keep-alive time-out can tell.
  ASSERT_TRUE(hosts_->partition(kServerHost, test::PartitionMode::kLinkDown).ok());
  const auto cut_at = Clock::now();
  auto ended = client_->wait_for_line("LOOP_ENDED ", kPeerTimeout + kFailureMargin);
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - cut_at).count();
  ASSERT_TRUE(ended.ok()) << "operations still pending " << (kPeerTimeout + kFailureMargin).count()
                          << " ms after the link went down: " << ended.status() << "\n"
                          << client_->output_text();
  auto fields = parse_fields(*ended);
  EXPECT_GE(fields["failed"], 2) << *ended;
  EXPECT_EQ(fields["unclear"], 0) << "failures other than UNAVAILABLE or CANCELLED:\n"
                                  << client_->output_text();
  EXPECT_EQ(fields["ok_after_down"], 0) << "success reported after the peer was declared failed";
  EXPECT_EQ(fields["extra"], 0) << "an operation completed twice";
  EXPECT_EQ(fields["open"], 0) << "the endpoint stayed open";
  EXPECT_EQ(fields["handler"], 1) << "the failure handler did not run";
  const std::string text = client_->output_text();
  EXPECT_NE(text.find("ENDPOINT_FAILED UNAVAILABLE"), std::string::npos)
      << "the failure handler did not run with UNAVAILABLE:\n"
      << text;
  std::cerr << "all operations ended " << took << " ms after the link went down\n";
  // Releasing buffers and the transport after a failure must neither crash nor hang.
  auto exit = client_->wait(kStepTimeout);
  ASSERT_TRUE(exit.ok()) << "the client did not finish after the failure: " << exit.status();
  EXPECT_TRUE(exit->success()) << exit->to_string() << "\n" << client_->output_text();
}

INSTANTIATE_TEST_SUITE_P(Backends, MultiHost, ::testing::ValuesIn(kTcpBackends), backend_test_name);

}  // namespace
}  // namespace halo::transport::testing
