// Configuration of a node daemon (halo-node). Every knob is documented here, once, next to its
// default; halo/base/config.h explains how defaults, a file, HALO_* environment variables and
// flags combine (`--gcs-address` and `--gcs_address` are the same flag).
#pragma once

#include <cstdint>
#include <string>

namespace halo::node {

struct NodeConfig {
  // The GCS to join: the transport address halo-gcs printed ("ucx://10.0.0.1:6379"), or
  // HOST:PORT, to which the scheme of the configured transport is added.
  std::string gcs_address = "";
  // File holding the cluster secret; must be owner-only (mode 0600).
  std::string secret_file = "";
  // Address and port of the node's own transport listener: the address it registers, where
  // the GCS's peers reach it. Port 0 picks a free one.
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // Custom resources, "NAME=AMOUNT,..." (e.g. "GPU=2,license=1"); added to CPU and memory.
  std::string resources = "";
  // Labels, "KEY=VALUE,..." (e.g. "failure_domain=rack1"); the HA layer spreads copies over
  // different failure_domain values.
  std::string labels = "";
  // CPU count to register instead of what hwloc finds (the machine's processing units, i.e.
  // hardware threads); -1 = detect.
  int32_t num_cpus = -1;
  // Memory in bytes to register instead of the machine's total memory from hwloc; -1 = detect.
  int64_t memory_bytes = -1;
  // Where the transport's progress thread runs: "nic" binds it to a processing unit near the
  // NIC of --host (hwloc), among those this process may use (a Slurm allocation's); "none"
  // leaves it to the scheduler. An explicit --progress-core wins. A refused binding is a
  // warning, never a failure.
  std::string cpu_binding = "nic";
  // How long the node keeps trying to reach a GCS it lost before it exits with an error
  // (Ray's gcs_rpc_server_reconnect_timeout_s). A GCS restarted within this time finds the
  // node still there, same id and incarnation unless it had declared the node dead.
  int64_t gcs_rpc_server_reconnect_timeout_s = 60;
  // JSON file describing the node as it sees itself (node_id, incarnation, state, ...),
  // rewritten atomically on every change; `halo` and tests read it. Empty: none.
  std::string state_file = "";

  template <typename V>
  void visit(V& v) {
    v("gcs_address", gcs_address, "GCS transport address, or HOST:PORT");
    v("secret_file", secret_file, "file holding the cluster secret (mode 0600)");
    v("host", host, "address of this node's transport listener (registered with the GCS)");
    v("port", port, "port of this node's transport listener; 0 picks a free one");
    v("resources", resources, "custom resources NAME=AMOUNT,...");
    v("labels", labels, "labels KEY=VALUE,... (e.g. failure_domain=rack1)");
    v("num_cpus", num_cpus, "CPUs to register; -1 = hwloc's processing units");
    v("memory_bytes", memory_bytes, "memory to register in bytes; -1 = hwloc's total");
    v("cpu_binding", cpu_binding, "progress thread placement: nic (near the NIC) or none");
    v("gcs_rpc_server_reconnect_timeout_s", gcs_rpc_server_reconnect_timeout_s,
      "seconds to keep trying to reach a lost GCS before exiting");
    v("state_file", state_file, "JSON file rewritten with the node's state; empty = none");
  }
};

}  // namespace halo::node
