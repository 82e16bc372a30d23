// halo started with mpirun on one machine (docs/mpi.md): the ranks of an MPI program become
// clients of one node daemon through halo::init(MPI_COMM_WORLD); bad launches of
// halo-launch-mpi fail at once on every rank, saying what to fix.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "launcher/local_cluster/local_cluster.h"
#include "tests/launch/mpi/mpirun_support.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait_for.h"

namespace halo::test {
namespace {

using namespace std::chrono_literals;

TEST(MpiOneMachine, RanksShareTheMachinesNodeDaemonAndMoveObjectsThroughIt) {
  TempDir dir;
  std::vector<std::string> env = mpirun_env(dir.path());
  env.push_back("HALO_HOST=127.0.0.1");
  std::vector<std::string> argv = {"mpirun", "-np", "3", "--oversubscribe"};
  for (const auto& f : exported(env)) argv.push_back(f);
  argv.push_back(kObjectsProgram);
  auto run = run_command(argv, {.netns = "", .env = env, .timeout = 120s});
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_NE(run->output.find("VERIFIED"), std::string::npos) << run->output;
  EXPECT_NE(run->output.find("NODES 1\n"), std::string::npos) << run->output;
  EXPECT_EQ(count(run->output, " GOT "), 3) << run->output;
  EXPECT_EQ(rank_nodes(run->output).size(), 1u) << "ranks of one machine use one node daemon:\n"
                                                << run->output;
  // shutdown() stopped the daemons and removed their session folders.
  EXPECT_TRUE(wait_for([&] { return processes_mentioning(dir.path()).empty(); }, 10s))
      << "a daemon is still running";
  EXPECT_TRUE(folder_is_empty(dir.path())) << "session folders left in " << dir.path();
}

// A cluster started beforehand (as by slurm/halo.sbatch or halo-launch-mpi) that the MPI
// program joins through HALO_ADDRESS and HALO_SECRET_FILE.
class MpiJoiningACluster : public ::testing::Test {
 protected:
  void SetUp() override {
    launcher::LocalClusterOptions options;
    options.num_nodes = 1;
    options.temp_dir = cluster_dir_.path();
    options.node_flags = {"--object-store-memory=67108864"};
    auto cluster = launcher::LocalCluster::start(std::move(options));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  StatusOr<CommandResult> run_program(const std::string& address, const std::string& secret_file) {
    std::vector<std::string> env = mpirun_env(dir_.path());
    env.push_back("HALO_HOST=127.0.0.1");
    env.push_back("HALO_ADDRESS=" + address);
    env.push_back("HALO_SECRET_FILE=" + secret_file);
    std::vector<std::string> argv = {"mpirun", "-np", "2", "--oversubscribe"};
    for (const auto& f : exported(env)) argv.push_back(f);
    argv.push_back(kObjectsProgram);
    return run_command(argv, {.netns = "", .env = env, .timeout = 120s});
  }

  TempDir cluster_dir_;
  TempDir dir_;
  std::unique_ptr<launcher::LocalCluster> cluster_;
};

TEST_F(MpiJoiningACluster, RanksUseTheClustersNodeDaemonAndStartNone) {
  auto run = run_program(cluster_->gcs_address(), cluster_->secret_file());
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_NE(run->output.find("VERIFIED"), std::string::npos) << run->output;
  EXPECT_NE(run->output.find("NODES 1\n"), std::string::npos) << run->output;
  EXPECT_EQ(rank_nodes(run->output), std::set<std::string>{cluster_->nodes().front().address})
      << run->output;
  EXPECT_TRUE(folder_is_empty(dir_.path())) << "the program started daemons of its own";
  // The cluster's daemons outlive the program.
  EXPECT_TRUE(cluster_->check_running().ok()) << cluster_->check_running();
  EXPECT_TRUE(cluster_->stop().ok());
}

TEST_F(MpiJoiningACluster, TheWrongSecretFailsOnEveryRankSayingSo) {
  const std::string wrong = dir_.write("wrong_secret", std::string(64, 'a'));
  std::filesystem::permissions(
      wrong, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const auto started = std::chrono::steady_clock::now();
  auto run = run_program(cluster_->gcs_address(), wrong);
  ASSERT_TRUE(run.ok()) << run.status();
  // No retrying: the GCS proved another secret.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 8s);
  EXPECT_NE(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_EQ(count(run->output, "halo::init(MPI_Comm)"), 2) << "every rank says why:\n"
                                                           << run->output;
  EXPECT_NE(run->output.find("Check the cluster secret file"), std::string::npos) << run->output;
  EXPECT_TRUE(cluster_->check_running().ok()) << cluster_->check_running();
}

TEST_F(MpiJoiningACluster, AGcsThatIsNotThereFailsOnEveryRankSayingSo) {
  // The cluster's GCS, stopped: its port answers nothing any more.
  const std::string address = cluster_->gcs_address();
  const std::string secret = dir_.write("secret", read_file(cluster_->secret_file()));
  std::filesystem::permissions(
      secret, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  ASSERT_TRUE(cluster_->stop().ok());
  const auto started = std::chrono::steady_clock::now();
  auto run = run_program(address, secret);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 40s);
  EXPECT_NE(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_EQ(count(run->output, "halo::init(MPI_Comm)"), 2) << run->output;
  EXPECT_NE(run->output.find(address.substr(address.find("://") + 3)), std::string::npos)
      << "the message names the GCS:\n"
      << run->output;
}

TEST(MpiOneMachine, AMissingDaemonProgramFailsEveryRankAtOnceSayingWhatToSet) {
  TempDir dir;
  std::vector<std::string> env = mpirun_env(dir.path());
  env.push_back("HALO_HOST=127.0.0.1");
  set_env(env, "HALO_BIN_DIR=" + dir.file("no-such-folder"));
  std::vector<std::string> argv = {"mpirun", "-np", "2", "--oversubscribe"};
  for (const auto& f : exported(env)) argv.push_back(f);
  argv.push_back(kBinDir + "/halo-launch-mpi");
  const auto started = std::chrono::steady_clock::now();
  auto run = run_command(argv, {.netns = "", .env = env, .timeout = 60s});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
  EXPECT_NE(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_NE(run->output.find("the halo cluster did not start"), std::string::npos) << run->output;
  EXPECT_NE(run->output.find("halo-gcs"), std::string::npos) << run->output;
  EXPECT_NE(run->output.find("HALO_BIN_DIR"), std::string::npos) << run->output;
}

TEST(MpiOneMachine, AGcsPortInUseFailsSayingSo) {
  TempDir dir;
  // A port that is taken: a listening socket of this test.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  std::vector<std::string> env = mpirun_env(dir.path());
  env.push_back("HALO_HOST=127.0.0.1");
  env.push_back("HALO_GCS_FLAGS=--port=" + std::to_string(port));
  std::vector<std::string> argv = {"mpirun", "-np", "2", "--oversubscribe"};
  for (const auto& f : exported(env)) argv.push_back(f);
  argv.push_back(kBinDir + "/halo-launch-mpi");
  auto run = run_command(argv, {.netns = "", .env = env, .timeout = 60s});
  ::close(fd);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_NE(run->exit.to_string(), "exit 0") << run->output;
  EXPECT_NE(run->output.find("the halo cluster did not start"), std::string::npos) << run->output;
  EXPECT_NE(run->output.find(std::to_string(port)), std::string::npos) << run->output;
  EXPECT_NE(run->output.find("in use"), std::string::npos) << run->output;
  EXPECT_TRUE(wait_for([&] { return processes_mentioning(dir.path()).empty(); }, 10s))
      << "a daemon is still running";
}

}  // namespace
}  // namespace halo::test
