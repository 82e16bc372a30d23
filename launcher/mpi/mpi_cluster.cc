#include "launcher/mpi/mpi_cluster.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "gcs/client/cluster_secret.h"
#include "halo/base/logging.h"
#include "launcher/mpi/host_address.h"

namespace halo::launcher {

void wait_gently(MPI_Request& request) {
  auto pause = std::chrono::microseconds(50);
  for (int done = 0;;) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5'000));
  }
}

void broadcast(std::string& text, int root, MPI_Comm comm) {
  uint64_t size = text.size();
  MPI_Request request;
  MPI_Ibcast(&size, 1, MPI_UINT64_T, root, comm, &request);
  wait_gently(request);
  text.resize(size);
  if (size == 0) return;
  MPI_Ibcast(text.data(), static_cast<int>(size), MPI_CHAR, root, comm, &request);
  wait_gently(request);
}

void barrier(MPI_Comm comm) {
  MPI_Request request;
  MPI_Ibarrier(comm, &request);
  wait_gently(request);
}

Status agree_on(const Status& mine, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const int failed = mine.ok() ? INT_MAX : rank;
  int first = INT_MAX;
  MPI_Request request;
  MPI_Iallreduce(&failed, &first, 1, MPI_INT, MPI_MIN, comm, &request);
  wait_gently(request);
  if (first == INT_MAX) return Status();
  std::string message = rank == first ? mine.to_string() : "";
  broadcast(message, first, comm);
  if (rank == first) return mine;
  return unavailable_error(str_cat("rank ", first, ": ", message));
}

int world_rank_before_init() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') continue;
    char* end = nullptr;
    const long rank = std::strtol(value, &end, 10);
    if (*end == '\0' && rank >= 0 && rank <= INT_MAX) return static_cast<int>(rank);
  }
  return -1;
}

namespace {

// What every daemon the ranks start shares: where it listens and where its files go.
LocalClusterOptions daemon_options(const MpiClusterOptions& options, const std::string& host) {
  LocalClusterOptions o;
  o.host = host;
  o.bin_dir = options.bin_dir;
  o.temp_dir = options.temp_dir;
  o.start_timeout = options.start_timeout;
  return o;
}

LocalClusterOptions gcs_options(const MpiClusterOptions& options, const std::string& host) {
  LocalClusterOptions o = daemon_options(options, host);
  o.num_nodes = 0;
  o.gcs_flags = options.gcs_flags;
  return o;
}

}  // namespace

std::future<StatusOr<std::unique_ptr<LocalCluster>>> start_gcs_early(
    const MpiClusterOptions& options) {
  if (world_rank_before_init() != 0 || !options.join_address.empty()) return {};
  // The same address launch() settles on (it fails there, on every rank, if there is none).
  auto host = this_host_address(options.host);
  if (!host.ok()) return {};
  return std::async(std::launch::async, [o = gcs_options(options, *host)]() mutable {
    return LocalCluster::start(std::move(o));
  });
}

StatusOr<std::unique_ptr<MpiCluster>> MpiCluster::start(MPI_Comm comm, MpiClusterOptions options) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return failed_precondition_error("MPI is not initialized: call MPI_Init first");
  std::unique_ptr<MpiCluster> cluster(new MpiCluster(std::move(options)));
  MpiCluster& c = *cluster;
  MPI_Request request;
  MPI_Comm_idup(comm, &c.comm_, &request);
  wait_gently(request);
  MPI_Comm_rank(c.comm_, &c.rank_);
  MPI_Comm_size(c.comm_, &c.size_);
  MPI_Comm_split_type(c.comm_, MPI_COMM_TYPE_SHARED, c.rank_, MPI_INFO_NULL, &c.machine_comm_);
  MPI_Comm_rank(c.machine_comm_, &c.machine_rank_);
  const int leader = c.machine_rank_ == 0 ? 1 : 0;
  MPI_Iallreduce(&leader, &c.machines_, 1, MPI_INT, MPI_SUM, c.comm_, &request);
  wait_gently(request);
  Status started = c.launch();
  if (!started.ok()) {
    (void)c.stop_here();  // What went wrong, `started` says.
    return started;
  }
  return cluster;
}

MpiCluster::~MpiCluster() {
  if (stopped_) return;
  if (Status s = stop_here(); !s.ok()) log::warn("stopping the MPI-started halo daemons: {}", s);
}

Status MpiCluster::launch() {
  auto host = this_host_address(options_.host);
  HALO_RETURN_IF_ERROR(agree_on(host.status(), comm_));
  host_ = *host;
  if (machines_ > 1 && host_.rfind("127.", 0) == 0 && options_.host.empty()) {
    // Other machines could not reach daemons listening on loopback. (Set explicitly, it is
    // the user's call: "machines" that share one loopback, as in a local Slurm cluster.)
    HALO_RETURN_IF_ERROR(agree_on(
        failed_precondition_error(str_cat(
            "the ranks span ", machines_, " machines but this one has no address but ", host_,
            " for halo's daemons: set HALO_HOST to an address the other machines reach")),
        comm_));
  } else {
    HALO_RETURN_IF_ERROR(agree_on(Status(), comm_));
  }
  HALO_RETURN_IF_ERROR(agree_on(start_gcs(), comm_));
  if (options_.join_address.empty()) {
    broadcast(gcs_address_, 0, comm_);
    broadcast(secret_, 0, comm_);
  }
  Status node = machine_rank_ == 0 ? start_node() : Status();
  HALO_RETURN_IF_ERROR(agree_on(node, comm_));
  broadcast(node_address_, 0, machine_comm_);
  broadcast(secret_file_, 0, machine_comm_);
  return Status();
}

Status MpiCluster::start_gcs() {
  if (options_.early_gcs.valid() && (rank_ != 0 || !options_.join_address.empty())) {
    options_.early_gcs = {};  // Waits for that start to end; the cluster's destructor stops it.
  }
  if (!options_.join_address.empty()) {
    gcs_address_ = options_.join_address;
    if (options_.join_secret_file.empty()) {
      return invalid_argument_error(
          str_cat("joining the halo cluster at ", gcs_address_,
                  " needs its secret file (HALO_SECRET_FILE) on every machine"));
    }
    HALO_ASSIGN_OR_RETURN(secret_, gcs::read_secret_file(options_.join_secret_file));
    return Status();
  }
  if (rank_ != 0) return Status();
  if (options_.early_gcs.valid()) {
    HALO_ASSIGN_OR_RETURN(gcs_cluster_, options_.early_gcs.get());
  } else {
    HALO_ASSIGN_OR_RETURN(gcs_cluster_, LocalCluster::start(gcs_options(options_, host_)));
  }
  gcs_address_ = gcs_cluster_->gcs_address();
  HALO_ASSIGN_OR_RETURN(secret_, gcs::read_secret_file(gcs_cluster_->secret_file()));
  return Status();
}

Status MpiCluster::start_node() {
  if (!options_.join_address.empty() && options_.find_node) {
    HALO_ASSIGN_OR_RETURN(node_address_,
                          options_.find_node(gcs_address_, options_.join_secret_file));
    if (!node_address_.empty()) {
      secret_file_ = options_.join_secret_file;
      return Status();
    }
  }
  LocalClusterOptions o = daemon_options(options_, host_);
  o.num_nodes = 1;
  o.join_gcs_address = gcs_address_;
  o.join_secret = secret_;
  o.node_flags = options_.node_flags;
  HALO_ASSIGN_OR_RETURN(node_cluster_, LocalCluster::start(std::move(o)));
  node_address_ = node_cluster_->nodes().front().address;
  secret_file_ = node_cluster_->secret_file();
  return Status();
}

Status MpiCluster::check_node() {
  return node_cluster_ ? node_cluster_->check_running() : Status();
}

Status MpiCluster::check_gcs() { return gcs_cluster_ ? gcs_cluster_->check_running() : Status(); }

std::string MpiCluster::session_dirs() const {
  std::string dirs;
  for (const auto* c : {gcs_cluster_.get(), node_cluster_.get()}) {
    if (c == nullptr) continue;
    if (!dirs.empty()) dirs += " ";
    dirs += c->session_dir();
  }
  return dirs;
}

Status MpiCluster::stop() {
  if (stopped_) return stop_status_;
  // Every rank is done with the cluster before any daemon stops; every node has unregistered
  // before the GCS stops.
  barrier(comm_);
  Status node = node_cluster_ ? node_cluster_->stop() : Status();
  barrier(comm_);
  Status gcs = gcs_cluster_ ? gcs_cluster_->stop() : Status();
  stop_status_ = !node.ok() ? node : gcs;
  stopped_ = true;
  MPI_Comm_free(&machine_comm_);
  MPI_Comm_free(&comm_);
  return stop_status_;
}

Status MpiCluster::stop_here() {
  if (stopped_) return stop_status_;
  stopped_ = true;
  Status node = node_cluster_ ? node_cluster_->stop() : Status();
  Status gcs = gcs_cluster_ ? gcs_cluster_->stop() : Status();
  stop_status_ = !node.ok() ? node : gcs;
  // The communicators are left to MPI_Finalize: freeing one is collective.
  return stop_status_;
}

}  // namespace halo::launcher
