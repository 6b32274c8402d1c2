// Unit tests of the load generator's report (tools/loadgen/report.h) and its latency
// histogram (latency_histogram.h): bucket arithmetic, percentiles within the documented
// error, merging, and the JSON and table renderings.
#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "latency_histogram.h"
#include "threshold.h"

namespace shardline::loadgen {
namespace {

using ::testing::HasSubstr;

TEST(LoadgenHistogram, BucketsAreContiguousAndCoverEveryValue) {
  for (int i = 0; i + 1 < LatencyHistogram::kNumBuckets; ++i) {
    ASSERT_EQ(LatencyHistogram::BucketHighest(i) + 1, LatencyHistogram::BucketLowest(i + 1))
        << "bucket " << i;
  }
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{1}, std::int64_t{127}, std::int64_t{128},
                         std::int64_t{255}, std::int64_t{256}, std::int64_t{999'999},
                         std::int64_t{1} << 39, (std::int64_t{1} << 40) - 1}) {
    const int b = LatencyHistogram::BucketIndex(v);
    EXPECT_LE(LatencyHistogram::BucketLowest(b), v);
    EXPECT_GE(LatencyHistogram::BucketHighest(b), v);
  }
  EXPECT_EQ(LatencyHistogram::BucketIndex(std::int64_t{1} << 50), LatencyHistogram::kNumBuckets - 1);
  EXPECT_EQ(LatencyHistogram::BucketIndex(-5), 0);
}

TEST(LoadgenHistogram, QuantilesAreWithinOneSixtyFourthAboveTheTrueValue) {
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::printf("LoadgenHistogram seed: %u\n", seed);
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> values;
  LatencyHistogram h;
  for (int i = 0; i < 20000; ++i) {
    const auto v = static_cast<std::int64_t>(rng() % 50'000'000);  // up to 50 ms
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const std::int64_t truth = values[static_cast<std::size_t>(std::ceil(q * 20000)) - 1];
    const std::int64_t got = h.ValueAtQuantile(q);
    EXPECT_GE(got, truth) << "q " << q;
    EXPECT_LE(static_cast<double>(got), static_cast<double>(truth) * (1 + 1.0 / 64) + 1)
        << "q " << q;
  }
  EXPECT_EQ(h.ValueAtQuantile(1.0), values.back());
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
}

TEST(LoadgenHistogram, MergeAddsCountsAndKeepsExtremes) {
  LatencyHistogram a, b, empty;
  a.Record(1000);
  a.Record(3000);
  b.Record(500);
  b.Record(9000);
  a.Merge(b);
  a.Merge(empty);
  EXPECT_EQ(a.count(), 4u);
  EXPECT_EQ(a.min(), 500);
  EXPECT_EQ(a.max(), 9000);
  EXPECT_DOUBLE_EQ(a.mean(), 3375);
  empty.Merge(b);
  EXPECT_EQ(empty.min(), 500);
  EXPECT_EQ(LatencyHistogram().ValueAtQuantile(0.99), 0);
}

RunReport Sample() {
  RunReport r;
  r.mode = "closed";
  r.workers = 4;
  r.mix = "profile=3,log=1";
  r.seconds = 2;
  r.map_version_start = 3;
  r.map_version_end = 4;
  r.fence_retries = 2;
  OpStats profile;
  profile.name = "profile";
  profile.count = 4;
  profile.errors = 1;
  profile.errors_by_kind["failed_precondition/SLF01"] = 1;
  for (int ms : {1, 2, 3, 4}) profile.latency.Record(std::int64_t{ms} * 1'000'000);
  OpStats log;
  log.name = "log";
  log.count = 2;
  log.latency.Record(10'000'000);
  log.latency.Record(10'000'000);
  r.ops = {profile, log};
  r.total.name = "all";
  r.total.Merge(profile);
  r.total.Merge(log);
  return r;
}

TEST(LoadgenReport, JsonCarriesEveryFigurePerOperationAndInTotal) {
  const RunReport r = Sample();
  auto results = EvaluateThresholds({*ParseThreshold("p99<0ms")}, r);
  nlohmann::json j = nlohmann::json::parse(ReportToJson(r, results));
  EXPECT_EQ(j["mode"], "closed");
  EXPECT_EQ(j["workers"], 4);
  EXPECT_EQ(j["ops"]["profile"]["count"], 4);
  EXPECT_EQ(j["ops"]["profile"]["ok"], 3);
  EXPECT_DOUBLE_EQ(j["ops"]["profile"]["throughput"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["ops"]["profile"]["error_rate"].get<double>(), 0.25);
  EXPECT_EQ(j["ops"]["profile"]["errors_by_kind"]["failed_precondition/SLF01"], 1);
  EXPECT_DOUBLE_EQ(j["ops"]["log"]["latency_ms"]["p99"].get<double>(), 10);
  EXPECT_DOUBLE_EQ(j["ops"]["log"]["latency_ms"]["max"].get<double>(), 10);
  EXPECT_EQ(j["all"]["count"], 6);
  EXPECT_EQ(j["all"]["errors"], 1);
  EXPECT_EQ(j["router"]["map_version_start"], 3);
  EXPECT_EQ(j["router"]["map_version_end"], 4);
  EXPECT_EQ(j["router"]["fence_retries"], 2);
  ASSERT_EQ(j["thresholds"].size(), 1u);
  EXPECT_EQ(j["thresholds"][0]["threshold"], "p99<0ms");
  EXPECT_EQ(j["thresholds"][0]["ok"], false);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(nlohmann::json::parse(ReportToJson(r, {}))["ok"], true);
}

TEST(LoadgenReport, TableHasARowPerOperationErrorsByKindAndThresholds) {
  const RunReport r = Sample();
  auto results = EvaluateThresholds({*ParseThreshold("log.p99<5ms")}, r);
  const std::string t = FormatReportTable(r, results);
  EXPECT_THAT(t, HasSubstr("closed loop, 4 workers, 2.0 s measured"));
  EXPECT_THAT(t, HasSubstr("mix: profile=3,log=1"));
  EXPECT_THAT(t, HasSubstr("  profile              4        1.5       1"));
  EXPECT_THAT(t, HasSubstr("  all                  6"));
  EXPECT_THAT(t, HasSubstr("failed_precondition/SLF01"));
  EXPECT_THAT(t, HasSubstr("map version 3 -> 4, fenced writes retried 2"));
  EXPECT_THAT(t, HasSubstr("BROKEN log.p99<5ms: actual 10ms (budget < 5ms)"));
}

}  // namespace
}  // namespace shardline::loadgen
