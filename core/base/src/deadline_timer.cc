#include "halo/base/deadline_timer.h"

#include <algorithm>
#include <vector>

namespace halo {

DeadlineTimer::DeadlineTimer(std::function<void(uint64_t id)> on_expired,
                             std::chrono::milliseconds check_interval,
                             std::function<void()> on_check)
    : on_expired_(std::move(on_expired)),
      check_interval_(std::max(check_interval, std::chrono::milliseconds(1))),
      on_check_(std::move(on_check)),
      thread_([this] { run(); }) {}

DeadlineTimer::~DeadlineTimer() { stop(); }

void DeadlineTimer::add(Clock::time_point deadline, uint64_t id) {
  std::lock_guard lock(mu_);
  if (pending_.empty()) next_check_ = Clock::now() + check_interval_;
  pending_.emplace(deadline, id);
  // Only a deadline before the thread's own wake-up needs to wake it; calls with the usual
  // timeouts (longer than check_interval) never pay for a wake-up.
  if (deadline < wake_at_) cv_.notify_one();
}

void DeadlineTimer::remove(Clock::time_point deadline, uint64_t id) {
  std::lock_guard lock(mu_);
  pending_.erase({deadline, id});
}

void DeadlineTimer::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    pending_.clear();
  }
  cv_.notify_one();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void DeadlineTimer::run() {
  std::unique_lock lock(mu_);
  std::vector<uint64_t> expired;
  while (!stopping_) {
    const Clock::time_point now = Clock::now();
    const bool check = !pending_.empty() && now >= next_check_;
    if (check) next_check_ = now + check_interval_;
    expired.clear();
    while (!pending_.empty() && pending_.begin()->first <= now) {
      expired.push_back(pending_.begin()->second);
      pending_.erase(pending_.begin());
    }
    if (check || !expired.empty()) {
      lock.unlock();
      for (uint64_t id : expired) on_expired_(id);
      if (check) on_check_();
      lock.lock();
      continue;
    }
    // Idle, the thread still wakes every check_interval, so that add() rarely has to wake it.
    wake_at_ =
        pending_.empty() ? now + check_interval_ : std::min(pending_.begin()->first, next_check_);
    cv_.wait_until(lock, wake_at_);
    wake_at_ = Clock::time_point::min();  // Awake: the loop looks at the entries anyway.
  }
}

}  // namespace halo
