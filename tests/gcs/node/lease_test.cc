// The node's lease (launcher/node/lease.h), driven by explicit times: fencing exactly when
// lease_ms has passed without a renewal, unfencing on renewal, and re-registration after a
// refusal.
#include "launcher/node/lease.h"

#include <gtest/gtest.h>

namespace halo::node {
namespace {

using namespace std::chrono_literals;
using Clock = Lease::Clock;

const Clock::time_point t0 = Clock::time_point() + 1000s;

TEST(Lease, UnregisteredNodeIsFenced) {
  Lease lease;
  EXPECT_EQ(lease.state(), Lease::State::kUnregistered);
  EXPECT_TRUE(lease.fenced(t0));
}

TEST(Lease, FencesExactlyWhenLeaseMsPassWithoutRenewal) {
  Lease lease;
  lease.registered(1, t0, 3000ms);
  EXPECT_FALSE(lease.fenced(t0));
  EXPECT_FALSE(lease.fenced(t0 + 2999ms));
  EXPECT_FALSE(lease.fenced(t0 + 3000ms - 1ns));
  EXPECT_TRUE(lease.fenced(t0 + 3000ms));
  EXPECT_EQ(lease.expires_at(), t0 + 3000ms);
}

TEST(Lease, RenewalExtendsFromWhenItWasSentAndUnfences) {
  Lease lease;
  lease.registered(1, t0, 3000ms);
  lease.renewed(t0 + 1000ms, 3000ms);
  EXPECT_FALSE(lease.fenced(t0 + 3999ms));
  EXPECT_TRUE(lease.fenced(t0 + 4000ms));
  // Fenced after a gap; a renewal that succeeds afterwards unfences, same incarnation.
  EXPECT_TRUE(lease.fenced(t0 + 10s));
  lease.renewed(t0 + 10s, 3000ms);
  EXPECT_FALSE(lease.fenced(t0 + 10s));
  EXPECT_EQ(lease.incarnation(), 1u);
}

TEST(Lease, LateAnswerOfAnOlderRenewalNeverShortensTheLease) {
  Lease lease;
  lease.registered(1, t0, 3000ms);
  lease.renewed(t0 + 2000ms, 3000ms);
  lease.renewed(t0 + 1000ms, 3000ms);  // Sent earlier, answered later.
  EXPECT_EQ(lease.expires_at(), t0 + 5000ms);
}

TEST(Lease, RefusalFencesUntilRegisteredUnderANewIncarnation) {
  Lease lease;
  lease.registered(1, t0, 3000ms);
  lease.refused();
  EXPECT_EQ(lease.state(), Lease::State::kUnregistered);
  EXPECT_TRUE(lease.fenced(t0 + 1ms)) << "a node declared dead must stop at once";
  // A renewal answered after the refusal does not bring the old incarnation back.
  lease.renewed(t0 + 2ms, 3000ms);
  EXPECT_TRUE(lease.fenced(t0 + 3ms));
  lease.registered(2, t0 + 5ms, 3000ms);
  EXPECT_FALSE(lease.fenced(t0 + 5ms));
  EXPECT_EQ(lease.incarnation(), 2u);
}

TEST(Lease, ShorterLeaseFromTheGcsTakesEffectAtTheNextRenewal) {
  Lease lease;
  lease.registered(1, t0, 3000ms);
  lease.renewed(t0 + 100ms, 600ms);
  EXPECT_TRUE(lease.fenced(t0 + 700ms));
}

}  // namespace
}  // namespace halo::node
