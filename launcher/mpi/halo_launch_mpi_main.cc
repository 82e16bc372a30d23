// halo-launch-mpi: a halo cluster started by mpirun, one rank per machine (docs/mpi.md).
//
//   mpirun -np 3 --map-by ppr:1:node halo-launch-mpi                      # until stopped
//   mpirun -np 3 --map-by ppr:1:node halo-launch-mpi -- ./driver ARGS...  # for one driver
//
// Rank 0 starts halo-gcs (while MPI_Init runs: mpirun's environment names rank 0) and
// broadcasts its address and a new cluster secret with MPI; every
// machine's lowest rank starts a halo-node that joins it (launcher/mpi/mpi_cluster.h). Once
// every node is a member, rank 0 prints HALO_ADDRESS and HALO_SECRET_FILE (and writes them to
// --env-file), then either runs the driver on its machine with HALO_ADDRESS, HALO_SECRET_FILE
// and HALO_NODE_ADDRESS set, or waits. The cluster stops, nodes first, when the driver ends,
// when mpirun is sent SIGTERM or SIGINT (Ctrl-C), or when the GCS ends; then every rank exits.
//
// A rank whose halo-node dies says so and stays (mpirun would end the whole job if a rank
// left early); the cluster goes on without that node, as under Slurm.
//
// Exit status: the driver's (on rank 0; a driver killed by a signal: 128 + its number), else 0
// after a stop; 1 when the cluster could not start (every rank prints the same reason) or the
// GCS died; 2 for bad flags.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "halo/base/config.h"
#include "halo/base/logging.h"
#include "launcher/mpi/mpi_cluster.h"

extern char** environ;

namespace {

using halo::Status;
using halo::launcher::MpiCluster;

struct MpiLaunchConfig {
  // The address this machine's daemons listen on; empty: the address the host name resolves
  // to, else the first interface that is up (launcher/mpi/host_address.h).
  std::string host = "";
  // Extra flags for every halo-node and for halo-gcs, separated by spaces
  // (e.g. "--object-store-memory=8000000000 --labels=rack=r1").
  std::string node_flags = "";
  std::string gcs_flags = "";
  // How long the whole start may take: the GCS serving and every node a member.
  int64_t start_timeout_s = 60;
  // A file rank 0 writes, once the cluster is up, with HALO_ADDRESS=... and
  // HALO_SECRET_FILE=... lines (a shell can `source` it); empty: none.
  std::string env_file = "";
  // Where halo-gcs and halo-node are; empty: next to this program, then PATH.
  std::string bin_dir = "";

  template <typename V>
  void visit(V& v) {
    v("host", host, "address this machine's daemons listen on; empty = detect");
    v("node_flags", node_flags, "extra halo-node flags, space-separated");
    v("gcs_flags", gcs_flags, "extra halo-gcs flags, space-separated");
    v("start_timeout_s", start_timeout_s, "seconds the cluster may take to start");
    v("env_file", env_file, "file rank 0 writes HALO_ADDRESS/HALO_SECRET_FILE to; empty = none");
    v("bin_dir", bin_dir, "where halo-gcs and halo-node are; empty = next to this program");
  }
};

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// Runs the driver with the cluster's environment; its pid, or -1 (and why, on stderr).
pid_t spawn_driver(const std::vector<std::string>& argv, const MpiCluster& cluster) {
  ::setenv("HALO_ADDRESS", cluster.gcs_address().c_str(), 1);
  ::setenv("HALO_SECRET_FILE", cluster.secret_file().c_str(), 1);
  ::setenv("HALO_NODE_ADDRESS", cluster.node_address().c_str(), 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int err = ::posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    std::cerr << "halo-launch-mpi: cannot run the driver '" << argv[0]
              << "': " << std::strerror(err) << "\n";
    return -1;
  }
  return pid;
}

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace halo;
  // Blocked before MPI starts any thread, so that only the sigtimedwait below takes them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  MpiLaunchConfig config;
  log::LoggingConfig log_config;
  ConfigLoader loader;
  loader.add(config);
  loader.add(log_config);
  auto driver = loader.load({.file = "", .env = environ, .args = {argv + 1, argv + argc}});
  if (loader.help_requested()) {
    std::cout << "halo-launch-mpi: start a halo cluster under mpirun (docs/mpi.md)\n\n"
              << "  mpirun -np N --map-by ppr:1:node halo-launch-mpi [FLAGS] [-- DRIVER ARGS]\n\n"
              << loader.describe();
    return 0;
  }
  if (!driver.ok()) {
    std::cerr << "halo-launch-mpi: " << driver.status()
              << "\n(halo-launch-mpi --help lists the flags)\n";
    return 2;
  }
  if (Status s = log::init(log_config, "halo-launch-mpi"); !s.ok()) {
    std::cerr << "halo-launch-mpi: " << s << "\n";
    return 2;
  }

  launcher::MpiClusterOptions options;
  options.host = config.host;
  options.node_flags = split_words(config.node_flags);
  options.gcs_flags = split_words(config.gcs_flags);
  options.bin_dir = config.bin_dir;
  options.start_timeout = std::chrono::seconds(config.start_timeout_s);
  // Rank 0 (as mpirun's environment says) starts the GCS while MPI initializes.
  options.early_gcs = launcher::start_gcs_early(options);
  MPI_Init(&argc, &argv);
  auto cluster = MpiCluster::start(MPI_COMM_WORLD, std::move(options));
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (!cluster.ok()) {
    if (rank == 0) {
      std::cerr << "halo-launch-mpi: the halo cluster did not start: " << cluster.status() << "\n";
    }
    MPI_Finalize();
    return 1;
  }
  MpiCluster& c = **cluster;
  if (rank == 0) {
    std::printf(
        "halo-launch-mpi: a halo cluster of %d node(s) is up\nHALO_ADDRESS=%s\n"
        "HALO_SECRET_FILE=%s\n",
        c.machines(), c.gcs_address().c_str(), c.secret_file().c_str());
    std::fflush(stdout);
    if (!config.env_file.empty()) {
      std::ofstream env(config.env_file + ".new");
      env << "HALO_ADDRESS=" << c.gcs_address() << "\nHALO_SECRET_FILE=" << c.secret_file() << "\n";
      env.close();
      std::rename((config.env_file + ".new").c_str(), config.env_file.c_str());
    }
  }

  // Rank 0 decides when to stop and tells the others with a non-blocking broadcast, which
  // they poll: no rank spins in MPI while the cluster runs.
  int exit_code = 0;
  MPI_Request stop_request = MPI_REQUEST_NULL;
  if (rank != 0) MPI_Ibcast(&exit_code, 1, MPI_INT, 0, MPI_COMM_WORLD, &stop_request);
  pid_t driver_pid = -1;
  if (rank == 0 && !driver->empty()) {
    driver_pid = spawn_driver(*driver, c);
    if (driver_pid < 0) exit_code = 127;
  }
  bool node_reported = false;
  const timespec poll = {0, 50'000'000};
  while (rank != 0 || driver->empty() || driver_pid > 0) {
    if (::sigtimedwait(&stop_signals, nullptr, &poll) > 0) {
      if (driver_pid > 0) {
        ::kill(driver_pid, SIGTERM);
        int status = 0;
        ::waitpid(driver_pid, &status, 0);
        driver_pid = -1;
      }
      break;
    }
    if (rank != 0) {
      int done = 0;
      MPI_Test(&stop_request, &done, MPI_STATUS_IGNORE);
      if (done) break;
    }
    if (driver_pid > 0) {
      int status = 0;
      if (::waitpid(driver_pid, &status, WNOHANG) == driver_pid) {
        exit_code = exit_code_of(status);
        driver_pid = -1;
      }
    }
    if (Status gcs = c.check_gcs(); !gcs.ok()) {
      std::cerr << "halo-launch-mpi: the GCS ended, and with it the cluster: " << gcs << "\n";
      if (driver_pid > 0) {
        ::kill(driver_pid, SIGTERM);
        int status = 0;
        ::waitpid(driver_pid, &status, 0);
      }
      exit_code = 1;
      break;
    }
    if (Status node = c.check_node(); !node.ok() && !node_reported) {
      std::cerr << "halo-launch-mpi[rank " << rank << "]: " << node << "\n";
      node_reported = true;
    }
  }
  if (rank == 0) {
    MPI_Ibcast(&exit_code, 1, MPI_INT, 0, MPI_COMM_WORLD, &stop_request);
  }
  launcher::wait_gently(stop_request);
  Status stopped = c.stop();
  if (!stopped.ok() && !node_reported) {
    std::cerr << "halo-launch-mpi[rank " << rank << "]: " << stopped << "\n";
  }
  cluster->reset();
  MPI_Finalize();
  return rank == 0 ? exit_code : 0;
}
