// The HA directory of a node daemon (objstore/service/ha_directory.h) on its GCS client: nodes
// from "gcs.get_nodes", copies recorded with "gcs.put_ha_object" and found with
// "gcs.get_ha_object". GCS calls block, so they run one after the other on a thread of the
// directory's own, never on the transport's progress thread where the store service asks.
//
//   GcsHaDirectory directory(client, node_id, labels["failure_domain"], admit, 5s);
//   store_service->set_ha_directory(&directory);
//   ...
//   store_service->stop();
//   directory.stop();        // Before the GCS client goes; questions left are answered
//                            // UNAVAILABLE.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gcs/client/gcs_client.h"
#include "objstore/service/ha_directory.h"

namespace halo::node {

class GcsHaDirectory : public objstore::HaDirectory {
 public:
  // `admit` says whether this node takes copies now (NodeDaemon::admit_ha_copy).
  GcsHaDirectory(gcs::GcsClient& client, NodeId self, std::string own_failure_domain,
                 std::function<Status()> admit, std::chrono::milliseconds call_timeout);
  ~GcsHaDirectory() override;
  GcsHaDirectory(const GcsHaDirectory&) = delete;
  GcsHaDirectory& operator=(const GcsHaDirectory&) = delete;

  void stop();

  Status admit_copy() override;
  void candidates(std::function<void(StatusOr<Candidates>)> done) override;
  void record(const ObjectId& id, uint64_t size, const NodeId& owner,
              const std::vector<NodeId>& holders, uint32_t copies_wanted,
              std::function<void(Status)> done) override;
  void forget(const ObjectId& id, std::function<void(Status)> done) override;
  void lookup(const ObjectId& id, std::function<void(StatusOr<objstore::HaRecord>)> done) override;
  // Subscribes to node changes (gcs.poll) until stop().
  void on_node_dead(
      std::function<void(const NodeId&, const std::string& address)> listener) override;

 private:
  // Runs `job` on the directory's thread; after stop(), `refused` runs instead, at once.
  void enqueue(std::function<void()> job, std::function<void()> refused);
  void run();
  // Node rows by binary node id.
  using NodeTable = std::unordered_map<std::string, gcs::proto::NodeInfo>;
  // Runs `use` on the subscription's copy of the node table, under its lock (no copy, no GCS
  // call); false, without running it, before the first poll has answered.
  bool with_cached_nodes(const std::function<void(const NodeTable&)>& use) const;
  // The same, or on a table fetched with gcs.get_nodes when there is no copy yet.
  Status with_nodes(const std::function<void(const NodeTable&)>& use);
  Candidates candidates_in(const NodeTable& table) const;

  gcs::GcsClient& client_;
  const NodeId self_;
  const std::string own_failure_domain_;
  const std::function<Status()> admit_;
  const std::chrono::milliseconds call_timeout_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::function<void()>, std::function<void()>>> jobs_;  // Guarded by mu_.
  bool stopping_ = false;                                                     // Guarded by mu_.
  std::thread thread_;
  std::unique_ptr<gcs::NodeSubscription> subscription_;  // Set once, by on_node_dead.
  // The node table as the subscription keeps it (rows by binary node id), for candidates()
  // and lookup() without a GCS call; empty until the first poll answers (table_ready_).
  mutable std::mutex table_mu_;
  NodeTable table_;           // Guarded by table_mu_.
  bool table_ready_ = false;  // Guarded by table_mu_.
};

}  // namespace halo::node
