// The NODES subscription channel: every change of the node table, in log order, to
// long-polling subscribers ("gcs.poll", gcs.proto).
//
//   NodeFeed feed(tables.cluster_id(), tables.nodes(false), tables.last_index(), {});
//   // From the log's `done` callbacks, in log order, once each record is durable:
//   feed.publish(index, row_or_null);
//   // From the "gcs.poll" handler:
//   feed.poll(request, std::move(responder));
//
// A change's sequence number is its log index, so it keeps growing across GCS restarts. Only
// durable changes are published: a subscriber never sees a change that a crash could take
// back. A poll is answered at once when there are changes after its `after`, else when one
// arrives or its wait passes (empty, with last_seq). It is answered with resync = true and the
// whole table (every row not REMOVED; a row absent from a resync has left) when the feed
// cannot give every change after `after`: `after` is 0, older than the bounded history, newer
// than anything published (the GCS restarted without it), or from another cluster.
//
// Threads: every method is thread-safe. The feed owns one timer thread that answers polls whose
// wait has passed. Responses are sent outside the feed's lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gcs/proto/gcs.pb.h"
#include "halo/base/ids.h"
#include "halo/transport/rpc.h"

namespace halo::gcs {

class NodeFeed {
 public:
  struct Options {
    uint64_t history = 10000;                   // Changes kept for incremental polls.
    std::chrono::milliseconds max_wait{30000};  // Cap of a poll's max_wait_ms.
  };

  // `rows`: the node table at log index `last_seq`, as recovery or start-up built it.
  NodeFeed(std::string cluster_id, const std::vector<proto::NodeInfo>& rows, uint64_t last_seq,
           Options options);
  // Answers held polls with UNAVAILABLE and joins the timer thread.
  ~NodeFeed();
  NodeFeed(const NodeFeed&) = delete;
  NodeFeed& operator=(const NodeFeed&) = delete;

  // Records that log record `index` is durable; `row` is the node row after it when the record
  // changed a node, else null. Call for every record, in log order; records that arrive early
  // are held until the ones before them come.
  void publish(uint64_t index, const proto::NodeInfo* row);

  // Serves one "gcs.poll".
  void poll(const proto::PollRequest& request, transport::RpcResponder<proto::PollResponse> reply);

  // Answers every held poll with UNAVAILABLE (the GCS is stopping) and takes no more.
  void stop();

  uint64_t last_seq() const;
  size_t waiting_polls() const;

 private:
  struct Waiter {
    uint64_t after;
    transport::RpcResponder<proto::PollResponse> reply;
  };
  using Reply = std::pair<transport::RpcResponder<proto::PollResponse>, proto::PollResponse>;

  // Under mu_.
  void publish_locked(uint64_t index, std::optional<proto::NodeInfo> row,
                      std::vector<Reply>& replies);
  proto::PollResponse resync_locked() const;
  proto::PollResponse changes_after_locked(uint64_t after) const;
  bool needs_resync_locked(const proto::PollRequest& request) const;
  void timer_loop();

  const std::string cluster_id_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t last_seq_;  // Highest index published (of any record).
  uint64_t floor_;     // Every node change after this index is in history_.
  std::deque<proto::NodeChange> history_;
  std::unordered_map<NodeId, proto::NodeInfo> rows_;          // Not REMOVED, as of last_seq_.
  std::map<uint64_t, std::optional<proto::NodeInfo>> early_;  // Published out of order.
  std::multimap<std::chrono::steady_clock::time_point, Waiter> waiters_;
  std::thread timer_;
};

}  // namespace halo::gcs
