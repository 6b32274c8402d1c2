// Unit tests of the load generator's performance budgets (tools/loadgen/threshold.h): parsing
// with units and per-operation prefixes, and evaluation against a report built by hand.
#include "threshold.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "report.h"
#include "status_matchers.h"

namespace shardline::loadgen {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;

Threshold Parse(std::string_view text) {
  auto t = ParseThreshold(text);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : Threshold{};
}

TEST(LoadgenThreshold, ParsesLatencyWithUnitsIntoMilliseconds) {
  Threshold t = Parse("p99<20ms");
  EXPECT_EQ(t.op, "all");
  EXPECT_EQ(t.metric, ThresholdMetric::kP99);
  EXPECT_EQ(t.comparison, Comparison::kLess);
  EXPECT_DOUBLE_EQ(t.value, 20);
  EXPECT_DOUBLE_EQ(Parse("p50 <= 0.5s").value, 500);
  EXPECT_DOUBLE_EQ(Parse("max<800us").value, 0.8);
  EXPECT_DOUBLE_EQ(Parse("mean<7").value, 7);
  EXPECT_EQ(Parse("p50 <= 0.5s").comparison, Comparison::kLessEqual);
}

TEST(LoadgenThreshold, ParsesRatesCountsAndOperationPrefixes) {
  Threshold e = Parse("error_rate<0.1%");
  EXPECT_EQ(e.metric, ThresholdMetric::kErrorRate);
  EXPECT_DOUBLE_EQ(e.value, 0.001);
  EXPECT_DOUBLE_EQ(Parse("error_rate<0.02").value, 0.02);
  Threshold tp = Parse("throughput>500");
  EXPECT_EQ(tp.metric, ThresholdMetric::kThroughput);
  EXPECT_EQ(tp.comparison, Comparison::kGreater);
  EXPECT_DOUBLE_EQ(tp.value, 500);
  EXPECT_DOUBLE_EQ(Parse("throughput>=1e3/s").value, 1000);
  Threshold log = Parse("log.p99<30ms");
  EXPECT_EQ(log.op, "log");
  EXPECT_EQ(log.text, "log.p99<30ms");
  EXPECT_EQ(Parse("leaderboard.errors<1").metric, ThresholdMetric::kErrors);
}

TEST(LoadgenThreshold, MalformedBudgetsAreRefusedSayingWhy) {
  EXPECT_THAT(ParseThreshold("p99=20ms"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("threshold 'p99=20ms': no comparison")));
  EXPECT_THAT(ParseThreshold("p98<20ms"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown metric 'p98'")));
  EXPECT_THAT(ParseThreshold("signup.p99<20ms"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown operation 'signup'")));
  EXPECT_THAT(ParseThreshold("p99<fast"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("value 'fast' is not a number")));
  EXPECT_THAT(ParseThreshold("p99<20kg"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unit 'kg' is not a duration")));
  EXPECT_THAT(ParseThreshold("throughput>5ms"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unit 'ms' does not fit throughput")));
  EXPECT_THAT(ParseThreshold("error_rate<1ms"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unit 'ms' does not fit error_rate")));
}

// A report of 10 s: profile 1000 calls (10 failed) at 1..1000 µs; log 100 calls at 50 ms.
RunReport SampleReport() {
  RunReport r;
  r.seconds = 10;
  OpStats profile;
  profile.name = "profile";
  for (int i = 1; i <= 1000; ++i) profile.latency.Record(std::int64_t{i} * 1000);
  profile.count = 1000;
  profile.errors = 10;
  profile.errors_by_kind["unavailable"] = 10;
  OpStats log;
  log.name = "log";
  for (int i = 0; i < 100; ++i) log.latency.Record(50'000'000);
  log.count = 100;
  r.ops = {profile, log};
  r.total.name = "all";
  r.total.Merge(profile);
  r.total.Merge(log);
  return r;
}

TEST(LoadgenThreshold, EvaluatesEachBudgetAgainstItsOperationOrTheTotal) {
  const RunReport report = SampleReport();
  std::vector<Threshold> ts = {Parse("profile.p99<1.1ms"), Parse("profile.p50<0.4ms"),
                               Parse("error_rate<1%"),     Parse("profile.error_rate<=1%"),
                               Parse("throughput>100"),    Parse("log.p99<30ms"),
                               Parse("log.errors<1")};
  std::vector<ThresholdResult> r = EvaluateThresholds(ts, report);
  ASSERT_EQ(r.size(), ts.size());
  EXPECT_TRUE(r[0].ok) << r[0].message;   // p99 of 1..1000 µs is ~990 µs (within 1.6%)
  EXPECT_FALSE(r[1].ok) << r[1].message;  // p50 is ~500 µs
  EXPECT_TRUE(r[2].ok) << r[2].message;   // 10 of 1100 = 0.91%
  EXPECT_TRUE(r[3].ok) << r[3].message;   // exactly 1%
  EXPECT_TRUE(r[4].ok) << r[4].message;   // 1090 ok / 10 s = 109/s
  EXPECT_FALSE(r[5].ok);
  EXPECT_EQ(r[5].message, "log.p99<30ms: actual 50ms (budget < 30ms)");
  EXPECT_TRUE(r[6].ok);
  EXPECT_FALSE(AllHeld(r));
  EXPECT_TRUE(AllHeld({r[0], r[2]}));
}

TEST(LoadgenThreshold, ImpossibleBudgetsAlwaysBreak) {
  const RunReport report = SampleReport();
  auto r = EvaluateThresholds({Parse("p99<0ms"), Parse("throughput>1e12")}, report);
  EXPECT_FALSE(r[0].ok);
  EXPECT_FALSE(r[1].ok);
}

TEST(LoadgenThreshold, BudgetOnAnOperationThatDidNotRunIsBroken) {
  auto r = EvaluateThresholds({Parse("leaderboard.p99<1s")}, SampleReport());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(r[0].ok);
  EXPECT_EQ(r[0].message, "leaderboard.p99<1s: operation 'leaderboard' did not run");
}

}  // namespace
}  // namespace shardline::loadgen
