// halo::init(MPI_Comm) (halo/mpi.h): an MpiCluster brought up over the communicator, then
// init() of every rank against its machine's node daemon.
#include <cstdlib>
#include <memory>

#include "halo/halo.h"
#include "halo/mpi.h"
#include "launcher/mpi/mpi_cluster.h"

namespace halo {
namespace {

std::string env_or(const std::string& value, const char* name) {
  if (!value.empty()) return value;
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

void init(MPI_Comm comm, const InitOptions& options) {
  if (is_initialized()) throw Error("halo::init() called twice: call halo::shutdown() first");
  launcher::MpiClusterOptions cluster_options;
  cluster_options.host = env_or("", "HALO_HOST");
  cluster_options.join_address = env_or(options.address, "HALO_ADDRESS");
  cluster_options.join_secret_file = env_or(options.secret_file, "HALO_SECRET_FILE");
  cluster_options.node_flags = options.node_flags;
  if (options.object_store_memory != 0) {
    cluster_options.node_flags.push_back("--object-store-memory=" +
                                         std::to_string(options.object_store_memory));
  }
  cluster_options.find_node = internal::find_local_node;
  auto started = launcher::MpiCluster::start(comm, std::move(cluster_options));
  if (!started.ok()) {
    throw Error(started.status().with_context("halo::init(MPI_Comm)").to_string());
  }
  std::shared_ptr<launcher::MpiCluster> cluster = std::move(*started);

  // Every rank connects; all succeed or all throw, so that no rank waits for a failed one.
  InitOptions joined = options;
  joined.address = cluster->gcs_address();
  joined.secret_file = cluster->secret_file();
  joined.node_address = cluster->node_address();
  Status connected;
  try {
    init(joined);
  } catch (const Error& e) {
    connected = unavailable_error(e.what());
  }
  MPI_Comm agreed;
  MPI_Comm_dup(comm, &agreed);
  Status all = launcher::agree_on(connected, agreed);
  MPI_Comm_free(&agreed);
  if (!all.ok()) {
    if (connected.ok()) shutdown();
    (void)cluster->stop();
    throw Error(all.with_context("halo::init(MPI_Comm)").to_string());
  }
  internal::at_shutdown([cluster] {
    Status stopped = cluster->stop();
    if (!stopped.ok()) {
      std::fprintf(stderr,
                   "halo::shutdown: stopping the daemons halo::init(MPI_Comm) started: %s\n",
                   stopped.to_string().c_str());
    }
  });
}

}  // namespace halo
