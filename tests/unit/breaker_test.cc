// Unit tests of the circuit breaker policy (router/breaker.h): opening after N consecutive
// failures, no attempt while open, exactly one half-open probe, closing on success, a growing
// and jittered cool-down on failed probes, and a disabled breaker.
#include "breaker.h"

#include <chrono>
#include <cstdint>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardline::internal {
namespace {

using std::chrono::milliseconds;
using TimePoint = CircuitBreaker::TimePoint;

constexpr std::uint64_t kSeed = 7;
const TimePoint kT0 = TimePoint() + std::chrono::hours(1);

// Fails `n` attempts at `now`, each after asking for permission.
void Fail(CircuitBreaker& b, int n, TimePoint now) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(b.AllowAttempt(now));
    b.RecordFailure(now);
  }
}

TEST(CircuitBreaker, StaysClosedBelowThreshold) {
  CircuitBreaker b(3, milliseconds(1000), milliseconds(5000), kSeed);
  Fail(b, 2, kT0);
  EXPECT_EQ(b.state(kT0), BreakerState::kClosed);
  EXPECT_EQ(b.consecutive_failures(), 2);
  EXPECT_TRUE(b.AllowAttempt(kT0));
}

TEST(CircuitBreaker, SuccessResetsTheConsecutiveCount) {
  CircuitBreaker b(3, milliseconds(1000), milliseconds(5000), kSeed);
  Fail(b, 2, kT0);
  EXPECT_FALSE(b.RecordSuccess());  // was closed: nothing to log
  Fail(b, 2, kT0);
  EXPECT_EQ(b.state(kT0), BreakerState::kClosed);
}

TEST(CircuitBreaker, OpensAfterThresholdAndRefusesAttemptsUntilCoolDownEnds) {
  CircuitBreaker b(3, milliseconds(1000), milliseconds(5000), kSeed);
  Fail(b, 2, kT0);
  ASSERT_TRUE(b.AllowAttempt(kT0));
  EXPECT_TRUE(b.RecordFailure(kT0));  // this one opened it
  EXPECT_EQ(b.state(kT0), BreakerState::kOpen);
  EXPECT_FALSE(b.AllowAttempt(kT0));
  // Cool-down jittered within [3/4, 1] of breaker_open_for.
  EXPECT_GE(b.retry_at() - kT0, milliseconds(750));
  EXPECT_LE(b.retry_at() - kT0, milliseconds(1000));
  EXPECT_FALSE(b.AllowAttempt(b.retry_at() - milliseconds(1)));
  EXPECT_EQ(b.state(b.retry_at() - milliseconds(1)), BreakerState::kOpen);
}

TEST(CircuitBreaker, HalfOpenAdmitsExactlyOneProbeAndSuccessCloses) {
  CircuitBreaker b(3, milliseconds(1000), milliseconds(5000), kSeed);
  Fail(b, 3, kT0);
  const TimePoint later = b.retry_at();
  EXPECT_EQ(b.state(later), BreakerState::kHalfOpen);
  EXPECT_TRUE(b.AllowAttempt(later));
  EXPECT_FALSE(b.AllowAttempt(later));
  EXPECT_FALSE(b.AllowAttempt(later + std::chrono::hours(1)));
  EXPECT_EQ(b.state(later), BreakerState::kHalfOpen);
  EXPECT_TRUE(b.RecordSuccess());  // was open: a transition to log
  EXPECT_EQ(b.state(later), BreakerState::kClosed);
  EXPECT_EQ(b.consecutive_failures(), 0);
  EXPECT_TRUE(b.AllowAttempt(later));
  EXPECT_TRUE(b.AllowAttempt(later));
}

TEST(CircuitBreaker, FailedProbesReopenWithGrowingJitteredCoolDownCappedAtMax) {
  CircuitBreaker b(3, milliseconds(1000), milliseconds(5000), kSeed);
  Fail(b, 3, kT0);
  TimePoint now = b.retry_at();
  // Opening n (n = 2, 3, 4, 5): ceiling min(5000, 1000 * 2^(n-1)) = 2000, 4000, 5000, 5000.
  for (const std::int64_t ceiling : {2000, 4000, 5000, 5000}) {
    ASSERT_TRUE(b.AllowAttempt(now));
    EXPECT_TRUE(b.RecordFailure(now));
    EXPECT_EQ(b.state(now), BreakerState::kOpen);
    EXPECT_GE(b.retry_at() - now, milliseconds(ceiling * 3 / 4)) << "ceiling " << ceiling;
    EXPECT_LE(b.retry_at() - now, milliseconds(ceiling)) << "ceiling " << ceiling;
    now = b.retry_at();
  }
  // After a success the next opening starts from breaker_open_for again.
  ASSERT_TRUE(b.AllowAttempt(now));
  b.RecordSuccess();
  Fail(b, 3, now);
  EXPECT_LE(b.retry_at() - now, milliseconds(1000));
}

TEST(CircuitBreaker, LateFailureWhileOpenDoesNotExtendCoolDown) {
  CircuitBreaker b(2, milliseconds(1000), milliseconds(5000), kSeed);
  // Two attempts were in flight when the breaker was closed; both fail, then a third.
  ASSERT_TRUE(b.AllowAttempt(kT0));
  ASSERT_TRUE(b.AllowAttempt(kT0));
  ASSERT_TRUE(b.AllowAttempt(kT0));
  b.RecordFailure(kT0);
  EXPECT_TRUE(b.RecordFailure(kT0));
  const TimePoint retry_at = b.retry_at();
  EXPECT_FALSE(b.RecordFailure(kT0 + milliseconds(500)));
  EXPECT_EQ(b.retry_at(), retry_at);
  EXPECT_EQ(b.consecutive_failures(), 3);
}

TEST(CircuitBreaker, JitterDependsOnSeedButStaysInBounds) {
  bool differs = false;
  TimePoint first{};
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    CircuitBreaker b(1, milliseconds(1000), milliseconds(1000), seed);
    Fail(b, 1, kT0);
    ASSERT_GE(b.retry_at() - kT0, milliseconds(750)) << "seed " << seed;
    ASSERT_LE(b.retry_at() - kT0, milliseconds(1000)) << "seed " << seed;
    if (seed == 1) first = b.retry_at();
    differs = differs || b.retry_at() != first;
  }
  EXPECT_TRUE(differs);
}

TEST(CircuitBreaker, ThresholdBelowOneNeverOpens) {
  CircuitBreaker b(0, milliseconds(1000), milliseconds(5000), kSeed);
  Fail(b, 100, kT0);
  EXPECT_EQ(b.state(kT0), BreakerState::kClosed);
  EXPECT_TRUE(b.AllowAttempt(kT0));
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_STREQ(BreakerStateName(BreakerState::kClosed), "closed");
  EXPECT_STREQ(BreakerStateName(BreakerState::kOpen), "open");
  EXPECT_STREQ(BreakerStateName(BreakerState::kHalfOpen), "half-open");
}

}  // namespace
}  // namespace shardline::internal
