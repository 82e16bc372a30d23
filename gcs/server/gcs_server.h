// The GCS as one object: storage recovered from the data directory, the tables, the RPC
// service on its own Transport, health checks, node subscriptions and periodic snapshots.
// halo-gcs (launcher/gcs) is this plus flags and signals; tests run it in-process.
//
//   GcsConfig config;                          // data_dir, host, port, health-check knobs, ...
//   HALO_ASSIGN_OR_RETURN(auto server, GcsServer::start(config, transport_config, rpc_config,
//                                                       cluster_secret));
//   std::cout << server->address();            // "ucx://10.0.0.1:6380"
//   ...
//   server->stop();                            // or destroy it
//
// start(): opens the DurableLog (recovery: newest valid snapshot + replay; logs what it did and
// how long it took), builds the tables (a new data directory gets its first record,
// cluster_created, with a random 16-byte cluster id), creates the Transport with the cluster
// secret and its RpcNode, registers the methods, listens, starts health checks (every known
// node gets the initial delay) and the snapshot thread, and writes config.address_file.
// Errors name what failed: a corrupt data directory (DATA_LOSS naming the file, from the
// storage), a port in use, a bad knob.
//
// stop() (idempotent; the destructor calls it) ends in the order that loses nothing: snapshot
// thread, health checks, held subscription polls (answered UNAVAILABLE), the RPC node (no more
// requests; running handlers finish), the log (everything queued is synced and answered), the
// transport. The address file is removed.
//
// Threads: the methods are thread-safe; stop() must not be called from an RPC handler.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gcs/server/gcs_config.h"
#include "gcs/server/gcs_service.h"
#include "gcs/server/health_checker.h"
#include "gcs/server/node_feed.h"
#include "gcs/storage/durable_log.h"
#include "halo/transport/rpc.h"
#include "halo/transport/transport.h"
#include "halo/transport/transport_config.h"

namespace halo::gcs {

class GcsServer {
 public:
  // What start() found and did, for the "listening" line and `gcs.status`.
  struct Recovery {
    uint64_t last_index = 0;      // Log index the tables reflect after recovery.
    uint64_t snapshot_index = 0;  // Of the snapshot recovery started from (0: none).
    uint64_t replayed = 0;        // Records replayed after it.
    int64_t millis = 0;           // Time from opening the data directory to tables built.
    bool new_cluster = false;     // The data directory was empty.
  };

  static StatusOr<std::unique_ptr<GcsServer>> start(const GcsConfig& config,
                                                    const transport::TransportConfig& transport,
                                                    const transport::RpcConfig& rpc,
                                                    std::string cluster_secret);
  ~GcsServer();
  GcsServer(const GcsServer&) = delete;
  GcsServer& operator=(const GcsServer&) = delete;

  void stop();

  // The transport address clients connect to ("ucx://127.0.0.1:40123").
  const std::string& address() const { return address_; }
  // The cluster id as 32 hex digits.
  std::string cluster_id_hex() const;
  const Recovery& recovery() const { return recovery_; }

  // OK while the log works; the storage error once it failed (the GCS must be restarted).
  Status storage_error() const { return service_->storage_error(); }
  // Runs once, from the log's thread, if storage fails (halo-gcs exits then).
  void on_storage_failure(std::function<void(const Status&)> callback);

  uint64_t last_index() const { return service_->last_index(); }
  uint64_t snapshot_index() const { return log_->snapshot_index(); }
  HealthChecker::Stats health_stats() const { return service_->health_stats(); }
  size_t waiting_polls() const { return feed_->waiting_polls(); }
  transport::TransportStats transport_stats() const { return transport_->stats(); }
  transport::RpcStats rpc_stats() const { return rpc_->stats(); }

  // Takes a snapshot now (what the snapshot thread does on its schedule).
  Status take_snapshot();

 private:
  GcsServer() = default;
  Status start_impl(const GcsConfig& config, const transport::TransportConfig& transport,
                    const transport::RpcConfig& rpc, std::string cluster_secret);
  void snapshot_loop();

  GcsConfig config_;
  Recovery recovery_;
  std::string address_;
  std::string cluster_id_;

  // Declaration order is not destruction order: stop() tears these down explicitly.
  std::unique_ptr<DurableLog> log_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::RpcNode> rpc_;
  std::unique_ptr<NodeFeed> feed_;
  std::unique_ptr<GcsService> service_;

  std::mutex snapshot_write_mu_;  // One snapshot at a time, and not while the log goes.
  std::mutex snapshot_mu_;        // Guards stop_snapshots_.
  std::condition_variable snapshot_cv_;
  bool stop_snapshots_ = false;
  std::thread snapshot_thread_;
  std::atomic<bool> stopped_{false};
};

// Writes `contents` to `path` atomically (a temporary file in the same folder, fsync, rename),
// mode 0600. Errors name the file.
Status write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace halo::gcs
