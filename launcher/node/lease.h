// A node daemon's lease on its membership: the rule that decides when the node fences itself.
//
// The GCS declares a node DEAD after it missed health_check_failure_threshold checks; it grants
// leases of lease_ms = period x threshold, so a node that has not renewed for lease_ms fences
// itself (stops taking work, refuses new HA copies) no later than the GCS can declare it dead:
// no moment exists where the GCS has moved on while the node still acts as a member.
//
//   Lease lease;
//   auto sent = Lease::Clock::now();
//   ...register: lease.registered(incarnation, sent, std::chrono::milliseconds(lease_ms));
//   ...every period: sent = now(); renew; on success lease.renewed(sent, lease_ms);
//                    on FAILED_PRECONDITION (declared dead) lease.refused();
//   if (lease.fenced(Lease::Clock::now())) refuse_work();
//
// Times count from when a request was *sent*, not when its answer came: the GCS saw the node
// alive at some moment after that, so the node's view errs on the safe side.
//
// A plain value driven by the times it is given (no clock of its own, no threads), so tests
// run it without a network or real waiting. Not thread-safe: the daemon guards it.
#pragma once

#include <chrono>
#include <cstdint>

namespace halo::node {

class Lease {
 public:
  using Clock = std::chrono::steady_clock;

  enum class State {
    kUnregistered,  // Not a member (before the first registration, or after a refusal).
    kHeld,          // Registered and renewed within the lease.
  };

  // A registration sent at `sent_at` succeeded under `incarnation` with a lease of `lease`.
  void registered(uint64_t incarnation, Clock::time_point sent_at, Clock::duration lease);
  // A renewal sent at `sent_at` succeeded; a fenced node is unfenced.
  void renewed(Clock::time_point sent_at, Clock::duration lease);
  // The GCS refused a renewal: the node was declared dead (or its incarnation is stale). The
  // node stays fenced until it registers again under a new incarnation.
  void refused();

  State state() const { return state_; }
  uint64_t incarnation() const { return incarnation_; }
  // When a held lease runs out (Clock::time_point::min() when not registered).
  Clock::time_point expires_at() const;
  // True when the node must not take work: not registered, or lease_ms passed without a
  // successful renewal (at exactly expires_at() it is fenced).
  bool fenced(Clock::time_point now) const;

 private:
  State state_ = State::kUnregistered;
  uint64_t incarnation_ = 0;
  Clock::time_point renewed_at_{};
  Clock::duration lease_{};
};

}  // namespace halo::node
