// Unit tests of exponential backoff with full jitter (router/backoff.h): the ceiling doubles
// from the initial value up to the cap without overflow, and the jittered waits stay within
// [0, ceiling], vary, and are reproducible from their seed.
#include "backoff.h"

#include <chrono>
#include <cstdint>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardline::internal {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, CeilingDoublesFromInitialUpToMax) {
  std::vector<std::int64_t> got;
  for (int attempt = 1; attempt <= 9; ++attempt) {
    got.push_back(BackoffCeiling(attempt, milliseconds(50), milliseconds(5000)).count());
  }
  EXPECT_THAT(got, ::testing::ElementsAre(50, 100, 200, 400, 800, 1600, 3200, 5000, 5000));
}

TEST(Backoff, CeilingNeverOverflowsAndHandlesDegenerateInputs) {
  EXPECT_EQ(BackoffCeiling(1'000'000'000, milliseconds(50), milliseconds(5000)), milliseconds(5000));
  EXPECT_EQ(BackoffCeiling(0, milliseconds(50), milliseconds(5000)), milliseconds(50));
  EXPECT_EQ(BackoffCeiling(5, milliseconds(0), milliseconds(5000)), milliseconds(0));
  EXPECT_EQ(BackoffCeiling(5, milliseconds(50), milliseconds(0)), milliseconds(0));
  EXPECT_EQ(BackoffCeiling(3, milliseconds(9000), milliseconds(5000)), milliseconds(5000));
  EXPECT_EQ(BackoffCeiling(64, milliseconds(1), milliseconds::max()).count() > 0, true);
}

TEST(Backoff, FullJitterStaysWithinCeilingAndVaries) {
  const std::uint64_t seed = 20240601;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  JitterRng rng(seed);
  for (int attempt = 1; attempt <= 10; ++attempt) {
    const milliseconds ceiling = BackoffCeiling(attempt, milliseconds(50), milliseconds(5000));
    std::set<std::int64_t> seen;
    for (int i = 0; i < 1000; ++i) {
      const milliseconds wait = FullJitterBackoff(attempt, milliseconds(50), milliseconds(5000), rng);
      ASSERT_GE(wait.count(), 0) << "attempt " << attempt;
      ASSERT_LE(wait, ceiling) << "attempt " << attempt;
      seen.insert(wait.count());
    }
    // 1000 draws over at least 51 values: far from a constant.
    EXPECT_GT(seen.size(), 20u) << "attempt " << attempt;
  }
}

TEST(Backoff, FullJitterUsesTheWholeRange) {
  const std::uint64_t seed = 99;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  JitterRng rng(seed);
  std::int64_t lo = 1 << 30, hi = -1;
  for (int i = 0; i < 10000; ++i) {
    const std::int64_t w = FullJitterBackoff(1, milliseconds(10), milliseconds(10), rng).count();
    lo = std::min(lo, w);
    hi = std::max(hi, w);
  }
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 10);
}

TEST(Backoff, SameSeedSameSequence) {
  JitterRng a(12345), b(12345), c(54321);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const std::uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differs = differs || x != c.Next();
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace shardline::internal
