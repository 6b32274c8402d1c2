// Log-linear latency buckets (see latency_histogram.h).
//
// Index of a value v: values below 2 * kSubBuckets (128) have their own bucket (index v).
// Above, with s = bit_width(v) - 1 - kSubBucketBits (the shift that leaves 7 significant
// bits), the index is s * kSubBuckets + (v >> s), where v >> s lies in [64, 128): each power
// of two [2^k, 2^(k+1)) is cut into 64 equal buckets of width 2^s. Indexes are contiguous.
#include "latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace shardline::loadgen {

LatencyHistogram::LatencyHistogram() : counts_(kNumBuckets, 0) {}

int LatencyHistogram::BucketIndex(std::int64_t nanos) {
  if (nanos < 0) nanos = 0;
  const std::int64_t cap = (std::int64_t{1} << kMaxBits) - 1;
  if (nanos > cap) nanos = cap;
  const auto v = static_cast<std::uint64_t>(nanos);
  if (v < static_cast<std::uint64_t>(2 * kSubBuckets)) return static_cast<int>(v);
  const int shift = static_cast<int>(std::bit_width(v)) - 1 - kSubBucketBits;
  return static_cast<int>(shift * kSubBuckets + static_cast<std::int64_t>(v >> shift));
}

std::int64_t LatencyHistogram::BucketLowest(int index) {
  if (index < 2 * kSubBuckets) return index;
  const int shift = static_cast<int>(index / kSubBuckets) - 1;
  return (index - shift * kSubBuckets) << shift;
}

std::int64_t LatencyHistogram::BucketHighest(int index) {
  if (index < 2 * kSubBuckets) return index;
  const int shift = static_cast<int>(index / kSubBuckets) - 1;
  return BucketLowest(index) + (std::int64_t{1} << shift) - 1;
}

void LatencyHistogram::Record(std::int64_t nanos) {
  if (nanos < 0) nanos = 0;
  ++counts_[static_cast<std::size_t>(BucketIndex(nanos))];
  if (count_ == 0 || nanos < min_) min_ = nanos;
  if (nanos > max_) max_ = nanos;
  ++count_;
  sum_ += nanos;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

std::int64_t LatencyHistogram::ValueAtQuantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(BucketHighest(static_cast<int>(i)), max_);
  }
  return max_;
}

}  // namespace shardline::loadgen
