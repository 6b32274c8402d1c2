// Exponential backoff with full jitter. See backoff.h.
#include "backoff.h"

#include <algorithm>
#include <random>

namespace shardline::internal {

std::uint64_t JitterRng::Next() {
  // splitmix64 (Steele, Lea, Flood 2014): passes BigCrush, one add and three mixes per draw.
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::int64_t JitterRng::Uniform(std::int64_t bound) {
  if (bound <= 0) return 0;
  // Modulo bias is below 2^-40 for the bounds used here (milliseconds, at most hours).
  return static_cast<std::int64_t>(Next() % (static_cast<std::uint64_t>(bound) + 1));
}

std::chrono::milliseconds BackoffCeiling(int attempt, std::chrono::milliseconds initial,
                                         std::chrono::milliseconds max) {
  const std::int64_t cap = std::max<std::int64_t>(0, max.count());
  std::int64_t ceiling = std::clamp<std::int64_t>(initial.count(), 0, cap);
  for (int i = 1; i < attempt && ceiling > 0 && ceiling < cap; ++i) {
    ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
  }
  return std::chrono::milliseconds(ceiling);
}

std::chrono::milliseconds FullJitterBackoff(int attempt, std::chrono::milliseconds initial,
                                            std::chrono::milliseconds max, JitterRng& rng) {
  return std::chrono::milliseconds(rng.Uniform(BackoffCeiling(attempt, initial, max).count()));
}

std::uint64_t RandomSeed() {
  std::random_device rd;
  const std::uint64_t hi = rd();
  const std::uint64_t lo = rd();
  return (hi << 32) ^ lo ^
         static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

}  // namespace shardline::internal
