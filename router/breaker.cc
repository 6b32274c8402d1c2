// Circuit breaker policy. See breaker.h.
#include "breaker.h"

#include <algorithm>

namespace shardline::internal {

const char* BreakerStateName(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half-open";
    default:
      return "unknown";
  }
}

CircuitBreaker::CircuitBreaker(int failure_threshold, std::chrono::milliseconds open_for,
                               std::chrono::milliseconds max_open_for, std::uint64_t jitter_seed)
    : threshold_(failure_threshold),
      open_for_(std::max(open_for, std::chrono::milliseconds(0))),
      max_open_for_(std::max(max_open_for, open_for_)),
      rng_(jitter_seed) {}

bool CircuitBreaker::AllowAttempt(TimePoint now) {
  if (!IsOpen()) return true;
  if (probing_ || now < retry_at_) return false;
  probing_ = true;
  return true;
}

bool CircuitBreaker::RecordSuccess() {
  const bool was_open = IsOpen();
  failures_ = 0;
  opens_ = 0;
  probing_ = false;
  return was_open;
}

bool CircuitBreaker::RecordFailure(TimePoint now) {
  const bool was_open = IsOpen();
  if (failures_ < (1 << 30)) ++failures_;
  if (was_open) {
    if (!probing_) return false;  // a late failure of an attempt started before opening
    probing_ = false;
    Arm(now);
    return true;
  }
  if (!IsOpen()) return false;
  opens_ = 0;
  Arm(now);
  return true;
}

void CircuitBreaker::Arm(TimePoint now) {
  if (opens_ < (1 << 20)) ++opens_;
  const std::int64_t ceiling = BackoffCeiling(opens_, open_for_, max_open_for_).count();
  const std::int64_t cool_down = ceiling - rng_.Uniform(ceiling / 4);
  retry_at_ = now + std::chrono::milliseconds(cool_down);
}

BreakerState CircuitBreaker::state(TimePoint now) const {
  if (!IsOpen()) return BreakerState::kClosed;
  if (probing_ || now >= retry_at_) return BreakerState::kHalfOpen;
  return BreakerState::kOpen;
}

}  // namespace shardline::internal
