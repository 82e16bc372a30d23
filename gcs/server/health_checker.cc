#include "gcs/server/health_checker.h"

#include <algorithm>

#include "halo/base/logging.h"

namespace halo::gcs {

namespace {
using Clock = std::chrono::steady_clock;

int64_t wall_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

HealthChecker::HealthChecker(transport::RpcClient& client, Options options,
                             std::function<void(const StateProposal&)> propose)
    : client_(client), options_(options), propose_(std::move(propose)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() {
  std::lock_guard lock(mu_);
  if (started_ || stopping_) return;
  started_ = true;
  // Rows known before start (recovery) count their initial delay from now: the GCS was not
  // serving, so no node could have reached it.
  const auto first = Clock::now() + options_.initial_delay;
  for (auto& [id, node] : nodes_) schedule_locked(id, node, first);
  timer_ = std::thread([this] { timer_loop(); });
}

void HealthChecker::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

HealthChecker::Stats HealthChecker::stats() const {
  Stats s;
  s.checks_sent = checks_sent_.load();
  s.checks_succeeded = checks_succeeded_.load();
  s.checks_failed = checks_failed_.load();
  std::lock_guard lock(mu_);
  s.nodes_checked = nodes_.size();
  return s;
}

void HealthChecker::schedule_locked(const NodeId& id, Node& node, Clock::time_point at) {
  node.next_due = at;
  checks_.push(Due{at, id, node.incarnation});
  cv_.notify_all();
}

void HealthChecker::on_node_row(const proto::NodeInfo& row) {
  auto parsed = NodeId::from_binary(row.node_id());
  if (!parsed.ok()) return;
  const NodeId id = *parsed;
  std::lock_guard lock(mu_);
  switch (row.state()) {
    case proto::ALIVE:
    case proto::SUSPECTED:
    case proto::DRAINING: {
      dead_.erase(id);
      auto [it, added] = nodes_.try_emplace(id);
      Node& node = it->second;
      if (added || node.incarnation != row.incarnation()) {
        node = Node{};
        node.incarnation = row.incarnation();
        if (started_) schedule_locked(id, node, Clock::now() + options_.initial_delay);
      }
      node.state = row.state();
      break;
    }
    case proto::DEAD: {
      nodes_.erase(id);
      dead_[id] = row.incarnation();
      const int64_t left =
          row.state_changed_at_ms() + options_.dead_node_remove_after.count() - wall_now_ms();
      removals_.push(Due{Clock::now() + std::chrono::milliseconds(std::max<int64_t>(0, left)), id,
                         row.incarnation()});
      cv_.notify_all();
      break;
    }
    default:
      nodes_.erase(id);
      dead_.erase(id);
      break;
  }
}

void HealthChecker::on_node_endpoint(const NodeId& id, uint64_t incarnation,
                                     transport::EndpointPtr endpoint) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end() || it->second.incarnation != incarnation) return;
  it->second.endpoint = std::move(endpoint);
}

std::optional<StateProposal> HealthChecker::record_locked(const NodeId& id, Node& node,
                                                          const Status& result) {
  if (node.declared) return std::nullopt;
  if (result.ok()) {
    checks_succeeded_.fetch_add(1, std::memory_order_relaxed);
    node.failures = 0;
    if (node.state == proto::SUSPECTED) {
      return StateProposal{id, node.incarnation, proto::ALIVE, "answered a health check again"};
    }
    return std::nullopt;
  }
  checks_failed_.fetch_add(1, std::memory_order_relaxed);
  ++node.failures;
  if (node.failures >= options_.failure_threshold) {
    node.declared = true;
    const bool draining = node.state == proto::DRAINING;
    std::string reason =
        str_cat("missed ", node.failures, " health checks (last: ", result.to_string(), ")");
    log::warn("node {} incarnation {} {}: {}", id, node.incarnation,
              draining ? "left while draining" : "is dead", reason);
    return StateProposal{id, node.incarnation, draining ? proto::REMOVED : proto::DEAD,
                         std::move(reason)};
  }
  if (node.state == proto::ALIVE) {
    return StateProposal{
        id, node.incarnation, proto::SUSPECTED,
        str_cat("missed ", node.failures, " health check (", result.to_string(), ")")};
  }
  return std::nullopt;
}

void HealthChecker::on_result(const Call& call, const Status& result) {
  std::optional<StateProposal> proposal;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    auto it = nodes_.find(call.id);
    if (it == nodes_.end() || it->second.incarnation != call.incarnation ||
        it->second.check_seq != call.check_seq || !it->second.in_flight) {
      return;  // The node re-registered, died or left meanwhile: the answer is about the past.
    }
    it->second.in_flight = false;
    proposal = record_locked(call.id, it->second, result);
  }
  if (proposal) propose_(*proposal);
}

void HealthChecker::timer_loop() {
  // Checks due within one tick are sent together: with thousands of nodes whose due times are
  // spread over the period, one wake-up (and one hand-off to the progress thread) per check
  // would cost more than the checks. Sending a check up to a tick early changes nothing that
  // is counted: failures are counted by due times.
  const auto tick = std::min<Clock::duration>(options_.period / 20, std::chrono::milliseconds(5));
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const auto now = Clock::now() + tick;
    std::vector<Call> calls;
    std::vector<StateProposal> proposals;
    while (!checks_.empty() && checks_.top().at <= now) {
      const Due due = checks_.top();
      checks_.pop();
      auto it = nodes_.find(due.id);
      if (it == nodes_.end() || it->second.incarnation != due.incarnation ||
          it->second.next_due != due.at) {
        continue;  // Superseded by a newer schedule, or the node is gone.
      }
      Node& node = it->second;
      // The next check is due one period after this one was, not after it ends, so a slow
      // answer does not stretch the detection bound.
      schedule_locked(due.id, node, due.at + options_.period);
      if (node.declared) continue;
      if (node.in_flight) {
        // The check before this one has had its whole timeout (timeout >= period): it failed,
        // whether or not its deadline callback has run yet. Counting it here, by due times
        // rather than by when the timer thread happened to wake, keeps the bound: otherwise a
        // little wake-up jitter skips a whole period.
        if (due.at < node.sent_due + options_.timeout) continue;
        node.in_flight = false;
        ++node.check_seq;  // Its late callback is about the past now.
        auto p = record_locked(
            due.id, node,
            deadline_exceeded_error(str_cat("no answer within ", options_.timeout.count(), " ms")));
        if (p) proposals.push_back(std::move(*p));
        if (node.declared) continue;
      }
      if (node.endpoint == nullptr || !node.endpoint->is_open()) {
        auto p = record_locked(
            due.id, node,
            unavailable_error(node.endpoint == nullptr ? "no connection from the node"
                                                       : "the node's connection is closed"));
        if (p) proposals.push_back(std::move(*p));
        continue;
      }
      node.in_flight = true;
      node.sent_due = due.at;
      ++node.check_seq;
      calls.push_back(Call{due.id, node.incarnation, node.check_seq, node.endpoint});
    }
    while (!removals_.empty() && removals_.top().at <= now) {
      const Due due = removals_.top();
      removals_.pop();
      auto it = dead_.find(due.id);
      if (it == dead_.end() || it->second != due.incarnation) continue;
      dead_.erase(it);
      proposals.push_back(
          StateProposal{due.id, due.incarnation, proto::REMOVED,
                        str_cat("dead for ", options_.dead_node_remove_after.count(), " ms")});
    }
    if (!calls.empty() || !proposals.empty()) {
      // Calls may complete inline (and take the lock), and proposals reach the service, whose
      // lock comes before ours: neither may run under our lock.
      lock.unlock();
      for (const Call& call : calls) {
        proto::HealthCheckRequest request;
        request.set_node_id(call.id.binary());
        request.set_incarnation(call.incarnation);
        checks_sent_.fetch_add(1, std::memory_order_relaxed);
        client_.call<proto::HealthCheckRequest, proto::HealthCheckResponse>(
            call.endpoint, "node.health_check", request, options_.timeout,
            [this, call](StatusOr<proto::HealthCheckResponse> response) {
              Status result = response.status();
              if (response.ok() && response->incarnation() != call.incarnation &&
                  response->incarnation() != 0) {
                result = failed_precondition_error(
                    str_cat("the node answered as incarnation ", response->incarnation()));
              }
              on_result(call, result);
            });
      }
      for (const StateProposal& p : proposals) propose_(p);
      lock.lock();
      continue;
    }
    auto next = Clock::time_point::max();
    if (!checks_.empty()) next = checks_.top().at;
    if (!removals_.empty()) next = std::min(next, removals_.top().at);
    if (next == Clock::time_point::max()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, next);
    }
  }
}

}  // namespace halo::gcs
