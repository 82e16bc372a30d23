#include "launcher/node/lease.h"

#include <algorithm>

namespace halo::node {

void Lease::registered(uint64_t incarnation, Clock::time_point sent_at, Clock::duration lease) {
  state_ = State::kHeld;
  incarnation_ = incarnation;
  renewed_at_ = sent_at;
  lease_ = lease;
}

void Lease::renewed(Clock::time_point sent_at, Clock::duration lease) {
  if (state_ != State::kHeld) return;  // A late answer for an incarnation already given up.
  // Answers may come back out of order; a lease only ever moves forward.
  renewed_at_ = std::max(renewed_at_, sent_at);
  lease_ = lease;
}

void Lease::refused() { state_ = State::kUnregistered; }

Lease::Clock::time_point Lease::expires_at() const {
  if (state_ != State::kHeld) return Clock::time_point::min();
  return renewed_at_ + lease_;
}

bool Lease::fenced(Clock::time_point now) const {
  return state_ != State::kHeld || now >= expires_at();
}

}  // namespace halo::node
