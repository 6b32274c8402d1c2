// The bucketing of verify's checksum pass (BucketShiftFor): the smallest shift that puts a span of
// hash values into at most the asked number of buckets, for spans from one value to the whole
// space. Randomised spans print their seed.
#include <cstdint>
#include <random>

#include <gtest/gtest.h>

#include "shardline/shard_map.h"
#include "verify.h"

namespace shardline::migrate {
namespace {

// The index of the last bucket (buckets - 1), in unsigned arithmetic so the whole space fits.
std::uint64_t LastBucket(std::int64_t lo, std::int64_t hi, int shift) {
  return static_cast<std::uint64_t>(hi >> shift) - static_cast<std::uint64_t>(lo >> shift);
}

TEST(VerifyBuckets, WholeHashSpaceInto1024BucketsShiftsBy54) {
  EXPECT_EQ(BucketShiftFor(kMinHash, kMaxHash, 1024), 54);
  EXPECT_EQ(LastBucket(kMinHash, kMaxHash, 54), 1023u);
}

TEST(VerifyBuckets, SpanSmallerThanTheBucketCountIsNotShifted) {
  EXPECT_EQ(BucketShiftFor(-50, 49, 1024), 0);
  EXPECT_EQ(BucketShiftFor(7, 7, 1), 0);
}

TEST(VerifyBuckets, ASpanAcrossZeroNeedsAtLeastTwoBuckets) {
  // Arithmetic shifts keep the sign: -1 >> 63 = -1, 0 >> 63 = 0.
  EXPECT_EQ(BucketShiftFor(kMinHash, kMaxHash, 1), 63);
  EXPECT_EQ(LastBucket(kMinHash, kMaxHash, 63), 1u);
  EXPECT_EQ(LastBucket(0, kMaxHash, BucketShiftFor(0, kMaxHash, 1)), 0u);
}

TEST(VerifyBuckets, RandomSpansGetTheSmallestShiftThatFits) {
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 10000; ++i) {
    std::int64_t a = static_cast<std::int64_t>(rng());
    std::int64_t b = static_cast<std::int64_t>(rng() >> (rng() % 64));
    if (a > b) std::swap(a, b);
    const int buckets = 2 + static_cast<int>(rng() % 4096);
    const int shift = BucketShiftFor(a, b, buckets);
    const auto n = static_cast<std::uint64_t>(buckets);
    ASSERT_LT(LastBucket(a, b, shift), n) << a << ".." << b << " into " << buckets;
    if (shift > 0) {
      ASSERT_GE(LastBucket(a, b, shift - 1), n) << a << ".." << b << " into " << buckets;
    }
  }
}

}  // namespace
}  // namespace shardline::migrate
