#include "gcs/server/node_feed.h"

#include <algorithm>

namespace halo::gcs {

namespace {
using Clock = std::chrono::steady_clock;
// A held poll is answered this long before its caller's deadline, so that the empty answer
// reaches the caller before it gives up and counts the poll as failed.
constexpr auto kDeadlineMargin = std::chrono::milliseconds(200);
}  // namespace

NodeFeed::NodeFeed(std::string cluster_id, const std::vector<proto::NodeInfo>& rows,
                   uint64_t last_seq, Options options)
    : cluster_id_(std::move(cluster_id)), options_(options), last_seq_(last_seq), floor_(last_seq) {
  for (const auto& row : rows) {
    if (row.state() == proto::REMOVED) continue;
    auto id = NodeId::from_binary(row.node_id());
    if (id.ok()) rows_[*id] = row;
  }
  timer_ = std::thread([this] { timer_loop(); });
}

NodeFeed::~NodeFeed() {
  stop();
  if (timer_.joinable()) timer_.join();
}

void NodeFeed::stop() {
  std::multimap<Clock::time_point, Waiter> waiters;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    waiters.swap(waiters_);
  }
  cv_.notify_all();
  for (auto& [at, waiter] : waiters) {
    waiter.reply.respond(unavailable_error("the GCS is stopping; poll again after reconnecting"));
  }
}

uint64_t NodeFeed::last_seq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

size_t NodeFeed::waiting_polls() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

void NodeFeed::publish(uint64_t index, const proto::NodeInfo* row) {
  std::vector<Reply> replies;
  {
    std::lock_guard lock(mu_);
    std::optional<proto::NodeInfo> copy;
    if (row != nullptr) copy = *row;
    if (index <= last_seq_) return;  // Already reflected (the starting table).
    if (index != last_seq_ + 1) {
      early_.emplace(index, std::move(copy));
      return;
    }
    publish_locked(index, std::move(copy), replies);
    // Records that were waiting for this one.
    for (auto it = early_.begin(); it != early_.end() && it->first == last_seq_ + 1;) {
      publish_locked(it->first, std::move(it->second), replies);
      it = early_.erase(it);
    }
  }
  for (auto& [reply, response] : replies) reply.respond(std::move(response));
}

void NodeFeed::publish_locked(uint64_t index, std::optional<proto::NodeInfo> row,
                              std::vector<Reply>& replies) {
  last_seq_ = index;
  if (!row) return;
  auto id = NodeId::from_binary(row->node_id());
  if (!id.ok()) return;
  if (row->state() == proto::REMOVED) {
    rows_.erase(*id);
  } else {
    rows_[*id] = *row;
  }
  proto::NodeChange& change = history_.emplace_back();
  change.set_seq(index);
  *change.mutable_node() = std::move(*row);
  while (history_.size() > std::max<uint64_t>(1, options_.history)) {
    floor_ = history_.front().seq();
    history_.pop_front();
  }
  // Every held poll waits for exactly this: a change after its `after` (held polls are never
  // behind the history, or they would have been answered at once).
  for (auto& [at, waiter] : waiters_) {
    replies.emplace_back(std::move(waiter.reply), changes_after_locked(waiter.after));
  }
  waiters_.clear();
}

bool NodeFeed::needs_resync_locked(const proto::PollRequest& request) const {
  if (request.after() == 0) return true;
  if (!request.cluster_id().empty() && request.cluster_id() != cluster_id_) return true;
  return request.after() < floor_ || request.after() > last_seq_;
}

proto::PollResponse NodeFeed::resync_locked() const {
  proto::PollResponse response;
  response.set_resync(true);
  response.set_cluster_id(cluster_id_);
  response.set_last_seq(last_seq_);
  std::vector<const proto::NodeInfo*> rows;
  rows.reserve(rows_.size());
  for (const auto& [id, row] : rows_) rows.push_back(&row);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->node_id() < b->node_id(); });
  response.mutable_node_changes()->Reserve(static_cast<int>(rows.size()));
  for (const auto* row : rows) {
    proto::NodeChange* change = response.add_node_changes();
    change->set_seq(last_seq_);
    *change->mutable_node() = *row;
  }
  return response;
}

proto::PollResponse NodeFeed::changes_after_locked(uint64_t after) const {
  proto::PollResponse response;
  response.set_cluster_id(cluster_id_);
  response.set_last_seq(last_seq_);
  auto first = std::upper_bound(history_.begin(), history_.end(), after,
                                [](uint64_t a, const proto::NodeChange& c) { return a < c.seq(); });
  for (auto it = first; it != history_.end(); ++it) *response.add_node_changes() = *it;
  return response;
}

void NodeFeed::poll(const proto::PollRequest& request,
                    transport::RpcResponder<proto::PollResponse> reply) {
  if (request.channel() != proto::NODES) {
    return reply.respond(invalid_argument_error(str_cat("unknown subscription channel ",
                                                        static_cast<int>(request.channel()),
                                                        "; this GCS serves NODES (1)")));
  }
  if (!request.cluster_id().empty() && request.cluster_id().size() != 16) {
    return reply.respond(invalid_argument_error(
        str_cat("cluster_id must be 16 bytes or empty, got ", request.cluster_id().size())));
  }
  std::optional<proto::PollResponse> now;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      now.reset();
    } else if (needs_resync_locked(request)) {
      now = resync_locked();
    } else {
      proto::PollResponse changes = changes_after_locked(request.after());
      auto wait = std::min<int64_t>(request.max_wait_ms(), options_.max_wait.count());
      Clock::time_point until =
          Clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, wait));
      until = std::min(until, reply.context().deadline() - kDeadlineMargin);
      if (changes.node_changes_size() > 0 || until <= Clock::now()) {
        now = std::move(changes);
      } else {
        bool earliest = waiters_.empty() || until < waiters_.begin()->first;
        waiters_.emplace(until, Waiter{request.after(), std::move(reply)});
        if (earliest) cv_.notify_all();
        return;
      }
    }
  }
  if (!now) return reply.respond(unavailable_error("the GCS is stopping; poll again later"));
  reply.respond(std::move(*now));
}

void NodeFeed::timer_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (waiters_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const auto next = waiters_.begin()->first;
    if (Clock::now() < next) {
      cv_.wait_until(lock, next);
      continue;
    }
    std::vector<Reply> replies;
    const auto now = Clock::now();
    while (!waiters_.empty() && waiters_.begin()->first <= now) {
      auto node = waiters_.extract(waiters_.begin());
      replies.emplace_back(std::move(node.mapped().reply),
                           changes_after_locked(node.mapped().after));
    }
    lock.unlock();
    for (auto& [reply, response] : replies) reply.respond(std::move(response));
    lock.lock();
  }
}

}  // namespace halo::gcs
