// Unit tests of the metrics registry (router/metrics.h): exact Prometheus text, escaping,
// registration conflicts, callbacks, exact sums under concurrency, the router's families.
#include "metrics.h"

#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, RendersExactTextForSmallRegistry) {
  MetricsRegistry reg;
  absl::StatusOr<Counter> ok =
      reg.GetCounter("app_requests_total", "Requests served.", {{"node", "n1"}, {"kind", "read"}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  absl::StatusOr<Counter> other =
      reg.GetCounter("app_requests_total", "ignored", {{"node", "n2"}, {"kind", "read"}});
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<Gauge> version = reg.GetGauge("app_version", "Version.", {});
  ASSERT_TRUE(version.ok()) << version.status();
  absl::StatusOr<Histogram> lat =
      reg.GetHistogram("app_latency_seconds", "Latency.", {{"node", "n1"}}, {0.25, 0.5, 1});
  ASSERT_TRUE(lat.ok()) << lat.status();

  ok->Add(3);
  other->Inc();
  version->Set(42);
  lat->Observe(0.125);  // binary fractions: the sum is exact
  lat->Observe(0.25);   // le is inclusive
  lat->Observe(0.75);
  lat->Observe(4);

  EXPECT_EQ(reg.RenderText(),
            "# HELP app_requests_total Requests served.\n"
            "# TYPE app_requests_total counter\n"
            "app_requests_total{node=\"n1\",kind=\"read\"} 3\n"
            "app_requests_total{node=\"n2\",kind=\"read\"} 1\n"
            "# HELP app_version Version.\n"
            "# TYPE app_version gauge\n"
            "app_version 42\n"
            "# HELP app_latency_seconds Latency.\n"
            "# TYPE app_latency_seconds histogram\n"
            "app_latency_seconds_bucket{node=\"n1\",le=\"0.25\"} 2\n"
            "app_latency_seconds_bucket{node=\"n1\",le=\"0.5\"} 2\n"
            "app_latency_seconds_bucket{node=\"n1\",le=\"1\"} 3\n"
            "app_latency_seconds_bucket{node=\"n1\",le=\"+Inf\"} 4\n"
            "app_latency_seconds_sum{node=\"n1\"} 5.125\n"
            "app_latency_seconds_count{node=\"n1\"} 4\n");
  EXPECT_EQ(lat->Count(), 4u);
  EXPECT_EQ(lat->Sum(), 5.125);
}

TEST(Metrics, HistogramWithoutLabelsPutsLeAlone) {
  MetricsRegistry reg;
  absl::StatusOr<Histogram> h = reg.GetHistogram("h_seconds", "H.", {}, {1});
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(reg.RenderText(),
            "# HELP h_seconds H.\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"1\"} 0\n"
            "h_seconds_bucket{le=\"+Inf\"} 0\n"
            "h_seconds_sum 0\n"
            "h_seconds_count 0\n");
}

TEST(Metrics, SameLabelsReturnTheSameCell) {
  MetricsRegistry reg;
  Counter a = *reg.GetCounter("c_total", "C.", {{"node", "n1"}});
  Counter b = *reg.GetCounter("c_total", "C.", {{"node", "n1"}});
  a.Inc();
  b.Inc();
  EXPECT_EQ(a.Value(), 2u);
  EXPECT_EQ(reg.RenderText(), "# HELP c_total C.\n# TYPE c_total counter\nc_total{node=\"n1\"} 2\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  MetricsRegistry reg;
  Gauge g = *reg.GetGauge("g", "Help with \\ and\nnewline \"kept\".",
                          {{"node", "a\\b\"c\nd"}});
  g.Set(1.5);
  EXPECT_EQ(reg.RenderText(),
            "# HELP g Help with \\\\ and\\nnewline \"kept\".\n"
            "# TYPE g gauge\n"
            "g{node=\"a\\\\b\\\"c\\nd\"} 1.5\n");
}

TEST(Metrics, FormatsNumbersAsPrometheusParsesThem) {
  MetricsRegistry reg;
  const double values[] = {0.1, -2.5, 1e-7, 1e20, 123456789, std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity()};
  const char* names[] = {"a", "b", "c", "d", "e", "f", "g"};
  for (int i = 0; i < 7; ++i) reg.GetGauge(names[i], "x", {})->Set(values[i]);
  reg.GetGauge("h", "x", {})->Set(std::numeric_limits<double>::quiet_NaN());
  std::string text = reg.RenderText();
  EXPECT_THAT(text, HasSubstr("\na 0.1\n"));
  EXPECT_THAT(text, HasSubstr("\nb -2.5\n"));
  EXPECT_THAT(text, HasSubstr("\nc 1e-07\n"));
  EXPECT_THAT(text, HasSubstr("\nd 1e+20\n"));
  EXPECT_THAT(text, HasSubstr("\ne 123456789\n"));
  EXPECT_THAT(text, HasSubstr("\nf +Inf\n"));
  EXPECT_THAT(text, HasSubstr("\ng -Inf\n"));
  EXPECT_THAT(text, HasSubstr("\nh NaN\n"));
}

TEST(Metrics, LatencyBucketsSpan100MicrosecondsTo10Seconds) {
  const std::vector<double>& b = LatencyBuckets();
  ASSERT_EQ(b.size(), 16u);
  EXPECT_EQ(b.front(), 0.0001);
  EXPECT_EQ(b.back(), 10);
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  EXPECT_EQ(ExponentialBuckets(0.001, 2, 3), (std::vector<double>{0.001, 0.002, 0.004}));
}

TEST(Metrics, RejectsConflictingRegistrations) {
  MetricsRegistry reg;
  ASSERT_TRUE(reg.GetCounter("m_total", "M.", {{"node", "n1"}, {"kind", "read"}}).ok());
  EXPECT_EQ(reg.GetGauge("m_total", "M.", {{"node", "n1"}, {"kind", "read"}}).status(),
            absl::InvalidArgumentError("metric m_total is registered as a counter, not a gauge"));
  EXPECT_EQ(reg.GetCounter("m_total", "M.", {{"kind", "read"}, {"node", "n1"}}).status(),
            absl::InvalidArgumentError("metric m_total has labels {node,kind}, not {kind,node}"));
  EXPECT_EQ(reg.GetCounter("m_total", "M.", {{"node", "n1"}}).status(),
            absl::InvalidArgumentError("metric m_total has labels {node,kind}, not {node}"));
  EXPECT_EQ(reg.GetCounter("bad-name", "M.", {}).status(),
            absl::InvalidArgumentError("metric name \"bad-name\" is not valid"));
  EXPECT_EQ(reg.GetCounter("x_total", "M.", {{"__name", "v"}}).status(),
            absl::InvalidArgumentError("metric x_total: label name \"__name\" is not valid"));
  EXPECT_EQ(reg.GetCounter("x_total", "M.", {{"a", "1"}, {"a", "2"}}).status(),
            absl::InvalidArgumentError("metric x_total: label \"a\" appears twice"));
  EXPECT_EQ(reg.GetHistogram("h", "H.", {{"le", "1"}}, {1}).status(),
            absl::InvalidArgumentError("metric h: label name \"le\" is not valid"));
  EXPECT_EQ(reg.GetHistogram("h", "H.", {}, {2, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reg.GetHistogram("h", "H.", {}, {2, 1}).status().message(),
              HasSubstr("histogram h: buckets must be finite and strictly increasing"));
  ASSERT_TRUE(reg.GetHistogram("h2", "H.", {}, {1, 2}).ok());
  EXPECT_EQ(reg.GetHistogram("h2", "H.", {}, {1, 3}).status(),
            absl::InvalidArgumentError("histogram h2 is registered with other buckets"));
  // Nothing of the refused registrations shows.
  EXPECT_THAT(reg.RenderText(), Not(HasSubstr("bad-name")));
}

TEST(Metrics, DefaultHandlesAreNoOps) {
  Counter c;
  Gauge g;
  Histogram h;
  c.Inc();
  g.Set(3);
  h.Observe(1);
  EXPECT_FALSE(c.valid());
  EXPECT_EQ(c.Value(), 0u);
  EXPECT_EQ(g.Value(), 0);
  EXPECT_EQ(h.Count(), 0u);
}

TEST(Metrics, CallbacksAreReadAtRenderTimeAndCanBeRemoved) {
  MetricsRegistry reg;
  int in_use = 2;
  ASSERT_TRUE(reg.AddCallback(MetricType::kGauge, "pool_conns", "Conns.",
                              {{"node", "n1"}, {"state", "in_use"}},
                              [&] { return static_cast<double>(in_use); })
                  .ok());
  ASSERT_TRUE(reg.AddCallback(MetricType::kGauge, "pool_conns", "Conns.",
                              {{"node", "n2"}, {"state", "in_use"}}, [] { return 7.0; })
                  .ok());
  EXPECT_EQ(reg.RenderText(),
            "# HELP pool_conns Conns.\n# TYPE pool_conns gauge\n"
            "pool_conns{node=\"n1\",state=\"in_use\"} 2\n"
            "pool_conns{node=\"n2\",state=\"in_use\"} 7\n");
  in_use = 5;
  EXPECT_THAT(reg.RenderText(), HasSubstr("pool_conns{node=\"n1\",state=\"in_use\"} 5\n"));

  reg.RemoveCallbacks("node", "n1");
  EXPECT_EQ(reg.RenderText(),
            "# HELP pool_conns Conns.\n# TYPE pool_conns gauge\n"
            "pool_conns{node=\"n2\",state=\"in_use\"} 7\n");
  reg.RemoveCallbacks("node", "n2");
  EXPECT_EQ(reg.RenderText(), "");  // families without series are omitted
}

TEST(Metrics, CallbackAndCellCannotShareASeries) {
  MetricsRegistry reg;
  ASSERT_TRUE(reg.GetGauge("g", "G.", {{"node", "n1"}}).ok());
  EXPECT_EQ(reg.AddCallback(MetricType::kGauge, "g", "G.", {{"node", "n1"}}, [] { return 1.0; }),
            absl::InvalidArgumentError("metric g: this series is already registered with a cell"));
  ASSERT_TRUE(
      reg.AddCallback(MetricType::kGauge, "g", "G.", {{"node", "n2"}}, [] { return 1.0; }).ok());
  EXPECT_EQ(reg.GetGauge("g", "G.", {{"node", "n2"}}).status(),
            absl::InvalidArgumentError("metric g: this series is already registered as a callback"));
  EXPECT_EQ(reg.AddCallback(MetricType::kHistogram, "h", "H.", {}, [] { return 1.0; }),
            absl::InvalidArgumentError("metric h: histograms cannot be callbacks"));
}

TEST(Metrics, ConcurrentIncrementsFrom8ThreadsSumExactly) {
  MetricsRegistry reg;
  Counter c = *reg.GetCounter("c_total", "C.", {{"node", "n1"}});
  Gauge g = *reg.GetGauge("g", "G.", {});
  Histogram h = *reg.GetHistogram("h_seconds", "H.", {}, LatencyBuckets());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        c.Inc();
        g.Add(1);
        h.Observe(t % 2 == 0 ? 0.5 : 0.25);  // exact in binary: the sum is exact too
      }
    });
  }
  // Rendering while recording must be safe (checked by TSan in the sanitizer build).
  std::string during = reg.RenderText();
  for (auto& th : threads) th.join();
  EXPECT_THAT(during, HasSubstr("# TYPE c_total counter"));
  EXPECT_EQ(c.Value(), static_cast<std::uint64_t>(kThreads) * kPerThread);
  EXPECT_EQ(g.Value(), static_cast<double>(kThreads) * kPerThread);
  EXPECT_EQ(h.Count(), static_cast<std::uint64_t>(kThreads) * kPerThread);
  EXPECT_EQ(h.Sum(), kPerThread * 4 * 0.5 + kPerThread * 4 * 0.25);
  std::string text = reg.RenderText();
  EXPECT_THAT(text, HasSubstr("c_total{node=\"n1\"} 800000\n"));
  EXPECT_THAT(text, HasSubstr("h_seconds_bucket{le=\"0.25\"} 400000\n"));
  EXPECT_THAT(text, HasSubstr("h_seconds_bucket{le=\"0.5\"} 800000\n"));
  EXPECT_THAT(text, HasSubstr("h_seconds_bucket{le=\"+Inf\"} 800000\n"));
  EXPECT_THAT(text, HasSubstr("h_seconds_count 800000\n"));
}

// Every line of the text format is a comment or `name{labels} value`; HELP/TYPE appear once
// per family; histogram buckets are cumulative and end with +Inf == _count.
TEST(Metrics, RouterFamiliesRenderParseableText) {
  MetricsRegistry reg;
  PoolSample sample{.in_use = 3, .idle = 1, .waiters = 2, .checkout_timeouts = 9,
                    .breaker_open = true};
  absl::StatusOr<NodeMetrics> n1 = NodeMetrics::Register(reg, "n1", [&] { return sample; });
  ASSERT_TRUE(n1.ok()) << n1.status();
  absl::StatusOr<NodeMetrics> n2 = NodeMetrics::Register(reg, "n2", [] { return PoolSample{}; });
  ASSERT_TRUE(n2.ok()) << n2.status();
  absl::StatusOr<RouterMetrics> rm = RouterMetrics::Register(reg);
  ASSERT_TRUE(rm.ok()) << rm.status();

  n1->RecordQuery(QueryKind::kRead, QueryOutcome::kOk, absl::OkStatus(), 0.002);
  n1->RecordQuery(QueryKind::kRead, QueryOutcome::kOk, absl::OkStatus(), 0.0001);
  absl::Status unavailable = absl::UnavailableError("node n1: breaker open");
  n1->RecordQuery(QueryKind::kExecute, OutcomeOf(unavailable), unavailable, 0.00001);
  n2->RecordQuery(QueryKind::kFanout, OutcomeOf(absl::DeadlineExceededError("t")),
                  absl::DeadlineExceededError("t"), 20);
  n1->checkout_wait.Observe(0.3);
  rm->map_version.Set(7);
  rm->map_reloads_ok.Inc();
  rm->map_reloads_refused.Add(2);
  rm->fence_retries.Inc();

  std::string text = reg.RenderText();
  EXPECT_THAT(text, HasSubstr("shardline_queries_total{node=\"n1\",kind=\"read\",outcome=\"ok\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(
      "shardline_queries_total{node=\"n1\",kind=\"execute\",outcome=\"unavailable\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(
      "shardline_queries_total{node=\"n2\",kind=\"fanout\",outcome=\"timeout\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("shardline_query_errors_total{node=\"n1\",code=\"unavailable\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(
      "shardline_query_errors_total{node=\"n2\",code=\"deadline_exceeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(
      "shardline_query_duration_seconds_bucket{node=\"n1\",kind=\"read\",le=\"0.0001\"} 1\n"));
  EXPECT_THAT(text, HasSubstr(
      "shardline_query_duration_seconds_bucket{node=\"n1\",kind=\"read\",le=\"0.0025\"} 2\n"));
  EXPECT_THAT(text, HasSubstr(
      "shardline_query_duration_seconds_count{node=\"n2\",kind=\"fanout\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("shardline_pool_connections{node=\"n1\",state=\"in_use\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("shardline_pool_connections{node=\"n1\",state=\"idle\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("shardline_pool_waiters{node=\"n1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("shardline_pool_checkout_timeouts_total{node=\"n1\"} 9\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE shardline_pool_checkout_timeouts_total counter\n"));
  EXPECT_THAT(text, HasSubstr("shardline_breaker_open{node=\"n1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("shardline_breaker_open{node=\"n2\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("shardline_pool_checkout_wait_seconds_count{node=\"n1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("shardline_map_version 7\n"));
  EXPECT_THAT(text, HasSubstr("shardline_map_reloads_total{outcome=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("shardline_map_reloads_total{outcome=\"refused\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("shardline_fence_retries_total 1\n"));

  // Structural check of every line.
  std::istringstream in(text);
  std::string line;
  std::map<std::string, int> help_count, type_count;
  std::map<std::string, std::string> type_of;
  std::map<std::string, std::uint64_t> last_bucket;  // series (without le) -> last cumulative
  std::map<std::string, std::uint64_t> inf_bucket;
  int samples = 0;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty());
    if (line.starts_with("# HELP ")) {
      help_count[line.substr(7, line.find(' ', 7) - 7)]++;
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      type_count[name]++;
      type_of[name] = rest.substr(rest.find(' ') + 1);
      continue;
    }
    ASSERT_NE(line[0], '#') << line;
    std::size_t sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos) << line;
    std::string series = line.substr(0, sp);
    std::string value = line.substr(sp + 1);
    ASSERT_FALSE(value.empty()) << line;
    std::size_t brace = series.find('{');
    std::string name = series.substr(0, brace);
    if (brace != std::string::npos) {
      ASSERT_EQ(series.back(), '}') << line;
    }
    EXPECT_EQ(line.find("postgres://"), std::string::npos);
    EXPECT_EQ(line.find("password"), std::string::npos);
    ++samples;
    if (name.ends_with("_bucket")) {
      std::size_t le = series.find("le=\"");
      ASSERT_NE(le, std::string::npos) << line;
      std::string key = series.substr(0, le);
      std::uint64_t v = std::stoull(value);
      EXPECT_GE(v, last_bucket[key]) << "buckets not cumulative: " << line;
      last_bucket[key] = v;
      if (series.find("le=\"+Inf\"") != std::string::npos) {
        inf_bucket[key] = v;
        last_bucket.erase(key);
      }
    } else if (name.ends_with("_count") && type_of.count(name.substr(0, name.size() - 6))) {
      // series "x_count{a="b"}" matches bucket key "x_bucket{a="b","
      std::string base = name.substr(0, name.size() - 6);
      std::string labels = brace == std::string::npos ? "{" : series.substr(brace, series.size() - brace - 1) + ",";
      EXPECT_EQ(inf_bucket[base + "_bucket" + labels], std::stoull(value)) << line;
    }
  }
  EXPECT_GT(samples, 100);
  for (const auto& [name, n] : type_count) {
    EXPECT_EQ(n, 1) << name;
    EXPECT_EQ(help_count[name], 1) << name;
  }
  EXPECT_EQ(type_count.size(), 11u);
}

TEST(Metrics, RemovingANodeStopsReadingItsPool) {
  MetricsRegistry reg;
  int calls = 0;
  ASSERT_TRUE(NodeMetrics::Register(reg, "n3", [&] {
                ++calls;
                return PoolSample{};
              }).ok());
  reg.RenderText();
  EXPECT_EQ(calls, 5);  // in_use, idle, waiters, checkout timeouts, breaker
  reg.RemoveCallbacks("node", "n3");
  std::string text = reg.RenderText();
  EXPECT_EQ(calls, 5);
  EXPECT_THAT(text, Not(HasSubstr("shardline_pool_waiters")));
  // The cell series stay (counters keep their values).
  EXPECT_THAT(text, HasSubstr("shardline_queries_total{node=\"n3\",kind=\"read\",outcome=\"ok\"} 0\n"));
}

TEST(Metrics, StatusCodeLabelsAreLowerSnakeCase) {
  EXPECT_EQ(StatusCodeLabel(absl::StatusCode::kFailedPrecondition), "failed_precondition");
  EXPECT_EQ(StatusCodeLabel(absl::StatusCode::kUnauthenticated), "unauthenticated");
  EXPECT_EQ(StatusCodeLabel(static_cast<absl::StatusCode>(99)), "unknown");
  EXPECT_EQ(OutcomeOf(absl::AbortedError("x")), QueryOutcome::kError);
  EXPECT_STREQ(QueryOutcomeName(QueryOutcome::kFencedRetry), "fenced_retry");
  EXPECT_STREQ(QueryKindName(QueryKind::kTxn), "txn");
}

}  // namespace
}  // namespace shardline
