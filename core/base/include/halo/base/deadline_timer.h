// A deadline tracker: one thread that sleeps on a condition variable until the earliest
// pending deadline and reports each deadline as it passes, so deadlines are met to within the
// scheduler's wake-up latency without a thread per waiter. The RPC client uses it for call
// deadlines, the object store service for requests that wait (gets, puts waiting for room). It
// never sleeps longer than the check interval, so add() must wake it only for a deadline earlier
// than that: the common call costs no wake-up.
//
// While deadlines are pending it also runs a periodic check (e.g. the RPC client's look for
// calls on endpoints that closed without a failure report).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace halo {

class DeadlineTimer {
 public:
  using Clock = std::chrono::steady_clock;

  // `on_expired(id)` runs on the timer thread for every added (deadline, id) whose deadline
  // passed before it was removed; `on_check` every `check_interval` while any is pending.
  // Neither runs with the timer's lock held, so both may call add() and remove().
  DeadlineTimer(std::function<void(uint64_t id)> on_expired,
                std::chrono::milliseconds check_interval, std::function<void()> on_check);
  // Stops the thread (see stop()).
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  void add(Clock::time_point deadline, uint64_t id);
  // No effect if (deadline, id) is not pending.
  void remove(Clock::time_point deadline, uint64_t id);
  // Joins the thread; nothing is reported afterwards. Idempotent; not from the timer thread.
  void stop();

 private:
  void run();

  const std::function<void(uint64_t)> on_expired_;
  const std::chrono::milliseconds check_interval_;
  const std::function<void()> on_check_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::pair<Clock::time_point, uint64_t>> pending_;  // Ordered: earliest first.
  Clock::time_point next_check_ = Clock::time_point::max();
  // When the thread will wake by itself; min() while it is awake.
  Clock::time_point wake_at_ = Clock::time_point::min();
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace halo
