// Circuit breaker policy (pure logic, injectable time): closed -> open after N consecutive
// failures -> half-open after a cool-down (one probe) -> closed on success / open again on
// failure. The cool-down grows exponentially with jitter on repeated failed probes.
#pragma once

#include <chrono>
#include <cstdint>

#include "backoff.h"

namespace shardline::internal {

enum class BreakerState { kClosed, kOpen, kHalfOpen };
const char* BreakerStateName(BreakerState s);

// The breaker of one node's connection attempts. Thread-compatible (the pool guards it with
// its mutex); no clock of its own: every call that depends on time takes `now`.
//
// Cool-down of the n-th consecutive opening: uniform in [3/4 c, c] with
// c = min(max_open_for, open_for * 2^(n-1)) (see backoff.h). The jitter is "equal"-style,
// not full, so that an open breaker never re-probes at once; it spreads the probes of many
// routers that saw the same node die at the same moment.
//
//   CircuitBreaker b(3, 1000ms, 5000ms, seed);
//   if (!b.AllowAttempt(now)) return Unavailable(...);   // open, or a probe is in flight
//   if (Connect().ok()) b.RecordSuccess(); else b.RecordFailure(now);
class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  // `failure_threshold` < 1 disables the breaker (it never opens).
  CircuitBreaker(int failure_threshold, std::chrono::milliseconds open_for,
                 std::chrono::milliseconds max_open_for, std::uint64_t jitter_seed);

  // Whether a connection attempt may be made now: always when closed; never while open
  // before retry_at(); from retry_at() on (half-open) exactly one probe, admitted by this
  // call, until that probe reports RecordSuccess or RecordFailure.
  bool AllowAttempt(TimePoint now);
  // A connection attempt succeeded: closed, failure count reset. Returns true if the breaker
  // was open or half-open (a transition worth logging).
  bool RecordSuccess();
  // A connection attempt failed. Returns true if this failure opened the breaker (the
  // threshold was reached, or the half-open probe failed and the cool-down was re-armed).
  // A late failure of an attempt that started before the breaker opened changes nothing but
  // the count.
  bool RecordFailure(TimePoint now);
  BreakerState state(TimePoint now) const;
  // When an open breaker will admit the next probe (meaningful only when not closed).
  TimePoint retry_at() const { return retry_at_; }
  int consecutive_failures() const { return failures_; }
  int threshold() const { return threshold_; }

 private:
  bool IsOpen() const { return threshold_ > 0 && failures_ >= threshold_; }
  void Arm(TimePoint now);

  const int threshold_;
  const std::chrono::milliseconds open_for_;
  const std::chrono::milliseconds max_open_for_;
  JitterRng rng_;
  int failures_ = 0;
  int opens_ = 0;  // consecutive times opened (grows the cool-down)
  bool probing_ = false;
  TimePoint retry_at_{};
};

}  // namespace shardline::internal
