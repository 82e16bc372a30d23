// Waiting in tests without fixed sleeps: poll a condition until it holds or a deadline passes.
//
//   ASSERT_TRUE(wait_for([&] { return server.connected_peers() == 2; }, 5s))
//       << "the second peer never connected";
//
// A test that sleeps for a guessed time is slow when the guess is long and flaky when it is
// short; a poll with a deadline returns as soon as the condition holds and fails with a clear
// message when it never does. The interval between polls starts at 100 µs and doubles up to
// 10 ms, so quick conditions cost little and slow ones do not spin a core.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

namespace halo::test {

// A point in time on the steady clock, with what remains until it.
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Deadline(Clock::duration timeout) : at_(Clock::now() + timeout) {}

  static Deadline never() { return Deadline(Clock::time_point::max()); }

  Clock::time_point at() const { return at_; }
  bool expired() const { return Clock::now() >= at_; }

  // Time left, never negative.
  Clock::duration remaining() const {
    if (at_ == Clock::time_point::max()) return Clock::duration::max();
    return std::max(Clock::duration::zero(), at_ - Clock::now());
  }

  // Time left in whole milliseconds, rounded up so that a little time left is not 0, capped to
  // an int: the form poll(2) takes.
  int remaining_ms() const {
    auto left = remaining();
    if (left == Clock::duration::max()) return -1;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<long long>(ms, 1 << 30));
  }

 private:
  explicit Deadline(Clock::time_point at) : at_(at) {}
  Clock::time_point at_;
};

// Calls `condition()` until it returns true (returns true) or `timeout` has passed (returns
// false). The condition is always checked once more at the deadline, so a condition that holds
// by then is never reported as a time-out.
template <typename Condition>
[[nodiscard]] bool wait_for(Condition&& condition, std::chrono::steady_clock::duration timeout) {
  using namespace std::chrono_literals;
  const Deadline deadline(timeout);
  std::chrono::steady_clock::duration interval = 100us;
  while (true) {
    if (condition()) return true;
    if (deadline.expired()) return false;
    std::this_thread::sleep_for(std::min(interval, deadline.remaining()));
    interval = std::min<std::chrono::steady_clock::duration>(interval * 2, 10ms);
  }
}

}  // namespace halo::test
