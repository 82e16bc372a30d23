// Health checks: the GCS asks every live node "node.health_check" (gcs.proto) every period and
// turns the answers into node state changes (Ray's knob names, docs/gcs.md):
//
//   ALIVE --1 failure--> SUSPECTED --success--> ALIVE
//   ALIVE/SUSPECTED --`threshold` consecutive failures--> DEAD  ("missed N health checks")
//   DRAINING --`threshold` consecutive failures--> REMOVED
//   DEAD --dead_node_remove_after--> REMOVED
//
//   HealthChecker checker(rpc.client(), options, [&](const StateProposal& p) {
//     service.propose_node_state(p);  // validated, applied and logged by the GCS service
//   });
//   for (const auto& row : tables.nodes(true)) checker.on_node_row(row);
//   checker.start();
//   ...on registration or lease renewal: checker.on_node_endpoint(id, incarnation, ctx.peer());
//
// A check goes over the endpoint the node last registered or renewed its lease on (the node's
// own connection to the GCS, so no second connection and no address that might not route
// back). A node with no endpoint yet, or a closed one, fails its check at once; a check with no
// answer fails when its timeout fires, not at the next period. So a node that stops answering
// right after a successful check at time t is declared dead by t + period × threshold +
// timeout. Every node, newly registered or known from before a GCS restart, gets
// initial_delay before its first check counts, time for it to (re)connect.
//
// Cost: one timer thread for all nodes, a heap of due times, asynchronous calls (no thread or
// connection per node), and the checks due within one tick (period / 20, at most 5 ms) sent
// together: thousands of nodes checked every 100 ms cost a fraction of a core.
//
// Threads: every method is thread-safe. Proposals are made without the checker's lock held,
// from the timer thread or the RPC layer's callback threads; on_node_row may be called with
// the GCS service's lock held (the service's lock is taken before the checker's, never after).
// stop() before the RpcNode whose client it uses is destroyed, and destroy the checker after
// that RpcNode: the node's destruction completes outstanding checks, whose callbacks need the
// checker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gcs/proto/gcs.pb.h"
#include "halo/base/ids.h"
#include "halo/transport/rpc.h"

namespace halo::gcs {

// A state change the checker wants; the GCS service decides (the row may have moved on).
struct StateProposal {
  NodeId node_id;
  uint64_t incarnation = 0;
  proto::NodeState state = proto::NODE_STATE_UNSPECIFIED;
  std::string reason;
};

class HealthChecker {
 public:
  struct Options {
    std::chrono::milliseconds initial_delay{2000};
    std::chrono::milliseconds period{1000};
    std::chrono::milliseconds timeout{500};
    int failure_threshold = 3;
    std::chrono::milliseconds dead_node_remove_after{300000};
  };

  struct Stats {
    uint64_t checks_sent = 0;
    uint64_t checks_succeeded = 0;
    uint64_t checks_failed = 0;  // Including nodes with no endpoint to check over.
    uint64_t nodes_checked = 0;  // Nodes currently under checks.
  };

  HealthChecker(transport::RpcClient& client, Options options,
                std::function<void(const StateProposal&)> propose);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the timer thread. Rows given before start() get their initial delay from start().
  void start();
  // Stops checking and proposing; results that arrive later are ignored. Idempotent.
  void stop();

  // A node row as the tables hold it now (after registration, a state change, or at start-up).
  // ALIVE, SUSPECTED and DRAINING rows are checked; DEAD rows wait for removal; REMOVED rows
  // are forgotten. A new incarnation starts over (initial delay, no endpoint, no failures).
  void on_node_row(const proto::NodeInfo& row);
  // Node `id` at `incarnation` spoke over `endpoint`: check it there from now on.
  void on_node_endpoint(const NodeId& id, uint64_t incarnation, transport::EndpointPtr endpoint);

  Stats stats() const;

 private:
  struct Node {
    uint64_t incarnation = 0;
    proto::NodeState state = proto::ALIVE;
    transport::EndpointPtr endpoint;
    int failures = 0;
    bool in_flight = false;
    bool declared = false;   // A final proposal (DEAD/REMOVED) was made; no more checks count.
    uint64_t check_seq = 0;  // Identifies the outstanding check, so a stale answer is ignored.
    std::chrono::steady_clock::time_point next_due;
    std::chrono::steady_clock::time_point sent_due;  // Due time of the check in flight.
  };
  struct Due {
    std::chrono::steady_clock::time_point at;
    NodeId id;
    uint64_t incarnation;
    bool operator>(const Due& other) const { return at > other.at; }
  };
  using DueHeap = std::priority_queue<Due, std::vector<Due>, std::greater<Due>>;
  struct Call {
    NodeId id;
    uint64_t incarnation;
    uint64_t check_seq;
    transport::EndpointPtr endpoint;
  };

  void timer_loop();
  // Under mu_: counts one result of node `id`'s check and returns a proposal if it leads to one.
  std::optional<StateProposal> record_locked(const NodeId& id, Node& node, const Status& result);
  void on_result(const Call& call, const Status& result);
  void schedule_locked(const NodeId& id, Node& node, std::chrono::steady_clock::time_point at);

  transport::RpcClient& client_;
  const Options options_;
  const std::function<void(const StateProposal&)> propose_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;
  std::unordered_map<NodeId, Node> nodes_;
  DueHeap checks_;
  // DEAD rows: when to propose REMOVED.
  DueHeap removals_;
  std::unordered_map<NodeId, uint64_t> dead_;  // id -> incarnation awaiting removal.
  std::thread timer_;

  std::atomic<uint64_t> checks_sent_{0};
  std::atomic<uint64_t> checks_succeeded_{0};
  std::atomic<uint64_t> checks_failed_{0};
};

}  // namespace halo::gcs
