// The node daemon (halo-node): a machine's membership in the cluster and its object store. It
// registers the node with the GCS (a new random NodeId per process; the GCS assigns
// incarnations), answers the GCS's health checks, renews its lease every health-check period,
// and fences itself when the lease runs out. It runs the node's object store
// (objstore/service/store_service.h) on the same transport: local clients and other nodes
// reach it at address(). The HA layer asks admit_ha_copy() before it accepts a primary copy.
//
//   NodeConfig config;                    // gcs_address, secret_file, host, port, ...
//   auto daemon = NodeDaemon::start(config, store_config, transport_config, rpc_config);
//   if (!daemon.ok()) return fail(daemon.status());
//   ...SIGTERM: (*daemon)->request_stop();
//   Status why = (*daemon)->wait();       // OK: stopped or drained; else why it gave up
//
// Life of a node, as the state file shows it (node_state_file.h):
//   registering -> alive: registered; renews every health_check_period_ms.
//   alive -> fenced: no renewal succeeded for lease_ms (the GCS's period x threshold). A fenced
//     node takes no work and refuses new HA copies; a later successful renewal unfences it
//     (the GCS never declared it dead, e.g. it restarted meanwhile).
//   -> registering: a renewal was refused (FAILED_PRECONDITION / NOT_FOUND: declared DEAD, or
//     the incarnation is stale). The node registers again under a new incarnation, never
//     resuming the old one; it stays fenced until then.
//   -> draining -> stopped: a renewal reported DRAINING (`halo drain`): the node stops taking
//     work, unregisters and wait() returns OK.
//   -> stopped: request_stop() (unregisters, best effort) or no GCS reachable for
//     gcs_rpc_server_reconnect_timeout_s (wait() returns UNAVAILABLE saying so), or the GCS
//     turned out to belong to another cluster (FAILED_PRECONDITION).
// A GCS that restarts within the reconnect timeout finds the node with the same id and
// incarnation: the client reconnects on its own and the next renewal succeeds.
//
// Threads: one thread of its own renews the lease; health checks are answered on the
// transport's progress thread. Every public method is thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gcs/client/gcs_client.h"
#include "halo/base/ids.h"
#include "halo/base/status.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport_config.h"
#include "launcher/node/gcs_ha_directory.h"
#include "launcher/node/lease.h"
#include "launcher/node/node_config.h"
#include "launcher/node/node_resources.h"
#include "launcher/node/node_state_file.h"
#include "objstore/service/store_config.h"
#include "objstore/service/store_service.h"

namespace halo::node {

class NodeDaemon {
 public:
  // Reads the secret (owner-only), detects resources, listens on config.host:port, and starts
  // joining the GCS in the background (registration is retried until the reconnect timeout).
  // Errors: a bad flag value, an unreadable or too open secret file, a port that cannot be
  // bound; each message names the flag or file.
  static StatusOr<std::unique_ptr<NodeDaemon>> start(NodeConfig config, objstore::StoreConfig store,
                                                     transport::TransportConfig transport,
                                                     transport::RpcConfig rpc = {});
  // Stops (as request_stop) and waits.
  ~NodeDaemon();
  NodeDaemon(const NodeDaemon&) = delete;
  NodeDaemon& operator=(const NodeDaemon&) = delete;

  // Asks the daemon to leave: it unregisters (best effort, a few seconds at most) and
  // wait() returns OK. Idempotent; not from a signal handler (use a thread that sigwaits).
  void request_stop();
  // Blocks until the daemon has ended, and says why (see above).
  Status wait();

  // Whether the node must not take work now: not registered, lease expired, draining or
  // stopping. Exact to the clock, independent of when the renewal thread last ran.
  bool fenced() const;
  // What the object store asks before it accepts a new primary copy of an HA object: OK, or
  // FAILED_PRECONDITION naming the node and why it refuses.
  Status admit_ha_copy() const;

  NodeId node_id() const { return node_id_; }
  uint64_t incarnation() const;
  // The node's transport address, as registered.
  const std::string& address() const { return address_; }
  // The node's object store.
  const objstore::StoreService& store() const { return *store_; }

 private:
  using Clock = std::chrono::steady_clock;

  NodeDaemon(NodeConfig config, NodeResources resources);
  void run();
  // One registration attempt. OK or why not (an unreachable GCS, another cluster).
  Status register_node(Clock::time_point sent);
  // One renewal. OK, or the error; handles refusal and DRAINING itself.
  Status renew(Clock::time_point sent);
  void unregister(const std::string& reason);
  // Rewrites the state file when what it shows changed. Called with mu_ held.
  void publish_locked(const std::string& reason = "");
  std::string state_name_locked(Clock::time_point now) const;
  std::string why_fenced_locked(Clock::time_point now) const;

  const NodeConfig config_;
  const NodeResources resources_;
  const NodeId node_id_ = NodeId::random();
  std::string address_;
  std::string gcs_address_;
  // Declared before client_, so destroyed after it (its transport): transfers in flight write
  // into the store until the transport has stopped.
  std::unique_ptr<objstore::StoreService> store_;
  std::unique_ptr<gcs::GcsClient> client_;
  std::unique_ptr<GcsHaDirectory> ha_directory_;  // Stopped before client_ goes.

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Lease lease_;
  std::chrono::milliseconds period_{1000};
  std::string cluster_id_;
  bool gcs_connected_ = false;
  bool draining_ = false;
  bool stop_requested_ = false;
  bool wake_ = false;
  bool done_ = false;
  bool fenced_published_ = false;
  Status exit_status_;
  NodeStateRecord published_;
  std::thread thread_;
};

}  // namespace halo::node
