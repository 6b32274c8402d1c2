// A latency histogram with log-linear buckets (the HdrHistogram layout with 6 bits of
// sub-bucket precision): exact below 128 ns, then 64 buckets per power of two, so any recorded
// value is reported within 1/64 (1.6%) of itself, from 1 ns to about 18 minutes, in 2,300
// counters (18 KB).
//
// Why not router/metrics.h's Histogram: it has the 16 fixed Prometheus buckets (1-2.5-5 steps
// from 100 µs to 10 s) that dashboards aggregate, so a percentile read from it is only known to
// within a bucket (a p99 of "somewhere between 5 and 10 ms"): too coarse to hold a run to a
// `p99<20ms` budget. Why not HdrHistogram itself: it is not packaged in Debian 12 for C++, and
// recording, merging and percentiles are 100 lines.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

namespace shardline::loadgen {

// Counts of recorded durations. Thread-compatible: each worker records into its own and the
// runner merges them at the end (recording is an index computation and an increment).
class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 6;
  static constexpr std::int64_t kSubBuckets = std::int64_t{1} << kSubBucketBits;  // 64
  static constexpr int kMaxBits = 40;  // values are clamped below 2^40 ns (~18 min)
  static constexpr int kNumBuckets = (kMaxBits - kSubBucketBits + 1) * kSubBuckets;

  LatencyHistogram();

  // Records one duration in nanoseconds (negative values count as 0, huge ones are clamped).
  void Record(std::int64_t nanos);
  void Record(std::chrono::nanoseconds d) { Record(d.count()); }
  // Adds every count of `other`.
  void Merge(const LatencyHistogram& other);

  std::uint64_t count() const { return count_; }
  // Exact extremes and mean of the recorded values (0 when empty).
  std::int64_t min() const { return count_ == 0 ? 0 : min_; }
  std::int64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }
  // The value at quantile q in [0, 1] (0.99 = p99), in nanoseconds: the highest value of the
  // bucket holding the ceil(q * count)-th smallest value, capped at max() (so within 1.6%
  // above the true value, never below it). 0 when empty.
  std::int64_t ValueAtQuantile(double q) const;

  // Bucket arithmetic (exposed for tests).
  static int BucketIndex(std::int64_t nanos);
  static std::int64_t BucketLowest(int index);
  static std::int64_t BucketHighest(int index);

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  std::int64_t sum_ = 0;
};

}  // namespace shardline::loadgen
