// A halo cluster brought up by the ranks of an MPI communicator: what `halo-launch-mpi` (under
// mpirun) and `halo::init(MPI_Comm)` (halo/mpi.h) start. docs/mpi.md is the user's guide.
//
//   MPI_Init(&argc, &argv);
//   HALO_ASSIGN_OR_RETURN(auto cluster, MpiCluster::start(MPI_COMM_WORLD, {}));  // Collective.
//   connect(cluster->gcs_address(), cluster->secret_file(), cluster->node_address());
//   ...
//   HALO_RETURN_IF_ERROR(cluster->stop());  // Collective too.
//
// How it comes up, collectively over the communicator:
//   1. Rank 0 starts halo-gcs on a free port of its machine, with a new cluster secret (or
//      takes the one start_gcs_early() began before MPI_Init), and broadcasts the GCS's
//      address and the secret with MPI. (When `join_address` names a
//      running cluster, nothing is started: every rank reads `join_secret_file`.)
//   2. On each machine (the ranks MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) puts together),
//      the lowest rank starts one halo-node that joins the GCS, unless it joins a running
//      cluster whose node already runs there (`find_node`). It shares the node's address and
//      a secret file (mode 0600, on its machine) with the machine's other ranks.
//   3. Every rank learns whether every step worked on every rank: start() returns OK on all,
//      or an error on all (the first failing rank's message), never leaving some ranks
//      waiting. Daemons started before a failure are stopped.
//
// The daemons are children of the ranks that started them (SIGKILLed by the kernel if that
// rank dies: see LocalCluster), with their files in a session folder under $HALO_TEMP_DIR
// (default /tmp/halo) on their machine, kept when a daemon failed: that is where the logs are.
//
// Threads: MPI calls happen on the calling thread; the object is used from one thread.
#pragma once

#include <mpi.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "halo/base/status.h"
#include "launcher/local_cluster/local_cluster.h"

namespace halo::launcher {

struct MpiClusterOptions {
  // The address this machine's daemons listen on; empty: this_host_address() decides
  // (launcher/mpi/host_address.h). Launchers fill it from $HALO_HOST.
  std::string host;
  // A running cluster to join (its GCS, HOST:PORT or a transport address) and the file with
  // its secret on every machine; empty: rank 0 starts a GCS.
  std::string join_address;
  std::string join_secret_file;
  // When joining: the transport address of a node daemon of that cluster already running on
  // this machine, or "" when none does (then one is started). Called on the machine's lowest
  // rank only.
  std::function<StatusOr<std::string>(const std::string& gcs_address,
                                      const std::string& secret_file)>
      find_node;
  std::vector<std::string> gcs_flags;   // Extra flags for halo-gcs (docs/gcs.md).
  std::vector<std::string> node_flags;  // Extra flags for every halo-node (docs/node.md).
  std::string bin_dir;                  // Where halo-gcs and halo-node are (find_program()).
  std::string temp_dir;                 // For the session folders; empty: $HALO_TEMP_DIR.
  std::chrono::milliseconds start_timeout{60'000};
  // Rank 0's GCS, already starting (start_gcs_early()): start() takes it instead of starting
  // one. Ignored, and the GCS stopped, on any other rank or when joining a running cluster.
  std::future<StatusOr<std::unique_ptr<LocalCluster>>> early_gcs;
};

class MpiCluster {
 public:
  // Collective over `comm` (MPI must be initialized). See the top of this file.
  static StatusOr<std::unique_ptr<MpiCluster>> start(MPI_Comm comm, MpiClusterOptions options);

  MpiCluster(const MpiCluster&) = delete;
  MpiCluster& operator=(const MpiCluster&) = delete;
  // stop_here() unless stop() ran.
  ~MpiCluster();

  // Collective: once every rank is here, the node daemons stop (they unregister), then the
  // GCS. Returns what stopping this rank's daemons reported. Idempotent.
  Status stop();
  // Not collective: stops the daemons this rank started, nodes first. For a rank that is
  // going away on its own (a signal, a failed start).
  Status stop_here();

  // OK while this rank's node daemon / GCS runs (or when it started none); else UNAVAILABLE
  // naming the daemon that ended, how, and its log.
  Status check_node();
  Status check_gcs();

  const std::string& gcs_address() const { return gcs_address_; }
  // A file on this machine holding the cluster secret.
  const std::string& secret_file() const { return secret_file_; }
  // The node daemon of this machine (transport address), and where this machine's daemons
  // listen.
  const std::string& node_address() const { return node_address_; }
  const std::string& host() const { return host_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // The number of machines (node daemons) the communicator spans.
  int machines() const { return machines_; }
  // This rank started the GCS / its machine's node daemon.
  bool runs_gcs() const { return gcs_cluster_ != nullptr; }
  bool runs_node() const { return node_cluster_ != nullptr; }
  // Where this rank's daemons keep their files (logs), or "" when it started none.
  std::string session_dirs() const;

 private:
  explicit MpiCluster(MpiClusterOptions options) : options_(std::move(options)) {}
  Status launch();
  Status start_gcs();
  Status start_node();

  MpiClusterOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm machine_comm_ = MPI_COMM_NULL;  // The ranks on this machine.
  int rank_ = 0;
  int size_ = 1;
  int machine_rank_ = 0;
  int machines_ = 1;
  std::string host_;
  std::string gcs_address_;
  std::string secret_;
  std::string secret_file_;
  std::string node_address_;
  std::unique_ptr<LocalCluster> gcs_cluster_;   // Rank 0's GCS (no nodes).
  std::unique_ptr<LocalCluster> node_cluster_;  // This machine's node, on its lowest rank.
  bool stopped_ = false;
  Status stop_status_;
};

// The rank the launcher gave this process in MPI_COMM_WORLD, read from its environment
// (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK) so that it is known before MPI_Init; -1 when
// none is set.
int world_rank_before_init();

// On the process world_rank_before_init() names 0: starts the GCS on another thread, for
// MpiClusterOptions::early_gcs, so that its start overlaps MPI_Init (which takes tens of
// milliseconds). Elsewhere: an empty future. `options` as for start().
std::future<StatusOr<std::unique_ptr<LocalCluster>>> start_gcs_early(
    const MpiClusterOptions& options);

// Collectives that wait gently (below): a rank waiting for another to start a daemon leaves
// the cores to it, where MPI's blocking calls would spin.
//
// Collective over `comm`: OK on every rank when `mine` is OK on every rank; else, on every
// rank, the failure of the lowest failing rank ("rank N: ..." on the others).
Status agree_on(const Status& mine, MPI_Comm comm);
// Broadcasts `text` from `root` (any length).
void broadcast(std::string& text, int root, MPI_Comm comm);
void barrier(MPI_Comm comm);
// Waits for a non-blocking MPI operation by polling with growing pauses (up to 5 ms).
void wait_gently(MPI_Request& request);

}  // namespace halo::launcher
