// Exponential backoff with full jitter, as pure functions over an explicit random state (no
// clock, no globals), so that the pool and the circuit breaker share one tested policy. "Full
// jitter" (Brooker, "Exponential Backoff And Jitter", AWS architecture blog, 2015): the n-th
// retry waits a uniformly random time in [0, min(max, initial * 2^(n-1))], which spreads the
// reconnects of many clients to a recovering node instead of synchronising them.
#pragma once

#include <chrono>
#include <cstdint>

namespace shardline::internal {

// A small, fast, seedable generator (splitmix64). Thread-compatible; 0 is a valid seed.
class JitterRng {
 public:
  explicit JitterRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next();
  // Uniform in [0, bound] (inclusive); 0 when bound <= 0.
  std::int64_t Uniform(std::int64_t bound);

 private:
  std::uint64_t state_;
};

// The upper bound of the wait before retry number `attempt` (1 = the first retry):
// min(max, initial * 2^(attempt-1)), never below 0, without overflow for any attempt.
std::chrono::milliseconds BackoffCeiling(int attempt, std::chrono::milliseconds initial,
                                         std::chrono::milliseconds max);

// A full-jitter wait before retry number `attempt`: uniform in [0, BackoffCeiling(...)].
std::chrono::milliseconds FullJitterBackoff(int attempt, std::chrono::milliseconds initial,
                                            std::chrono::milliseconds max, JitterRng& rng);

// A seed for production use (random_device mixed with the clock); tests pass fixed seeds.
std::uint64_t RandomSeed();

}  // namespace shardline::internal
