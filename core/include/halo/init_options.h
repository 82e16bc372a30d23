// How halo::init() connects a process to a cluster. Every field has an environment variable
// that fills it when the field is left at its default, so a job script can configure a
// program without code changes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace halo {

struct InitOptions {
  // The GCS of the cluster to join, "HOST:PORT" or a transport address ($HALO_ADDRESS).
  // Empty: start an embedded local cluster.
  std::string address = "";
  // The cluster secret file when joining ($HALO_SECRET_FILE); empty: the newest session's
  // (`halo start` writes $HALO_TEMP_DIR/session_latest/cluster_secret, /tmp/halo by default).
  std::string secret_file = "";
  // The node daemon to use when joining, its transport address ($HALO_NODE_ADDRESS); empty:
  // the first ALIVE node whose address is on this machine.
  std::string node_address = "";

  // Embedded cluster: node daemons to start ($HALO_NUM_NODES), each with a store of
  // object_store_memory bytes ($HALO_OBJECT_STORE_MEMORY; 0: the node's default, 30% of the
  // machine's memory), and extra flags for every node (e.g. "--spill-dir=/scratch/x").
  int num_nodes = 1;
  uint64_t object_store_memory = 0;
  std::vector<std::string> node_flags = {};

  // How long a put waits for room in a full store before ObjectStoreFullError.
  std::chrono::milliseconds put_timeout{10'000};
  // The connection to the node daemon takes its transport settings from the same HALO_*
  // environment variables as the daemons (halo/transport/transport_config.h): HALO_TRANSPORT
  // (ucx, the default, or ofi), HALO_UCX_TLS, HALO_NET_INTERFACE, HALO_PROGRESS_MODE, ...
};

}  // namespace halo
