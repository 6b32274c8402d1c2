// Parsing and evaluating performance budgets (see threshold.h).
#include "threshold.h"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "mix.h"
#include "report.h"

namespace shardline::loadgen {
namespace {

struct MetricName {
  std::string_view name;
  ThresholdMetric metric;
};
constexpr MetricName kMetricNames[] = {
    {"p50", ThresholdMetric::kP50},       {"p90", ThresholdMetric::kP90},
    {"p95", ThresholdMetric::kP95},       {"p99", ThresholdMetric::kP99},
    {"p999", ThresholdMetric::kP999},     {"max", ThresholdMetric::kMax},
    {"mean", ThresholdMetric::kMean},     {"error_rate", ThresholdMetric::kErrorRate},
    {"errors", ThresholdMetric::kErrors}, {"throughput", ThresholdMetric::kThroughput},
};

bool IsLatency(ThresholdMetric m) {
  switch (m) {
    case ThresholdMetric::kP50:
    case ThresholdMetric::kP90:
    case ThresholdMetric::kP95:
    case ThresholdMetric::kP99:
    case ThresholdMetric::kP999:
    case ThresholdMetric::kMax:
    case ThresholdMetric::kMean:
      return true;
    default:
      return false;
  }
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

std::string_view ComparisonText(Comparison c) {
  switch (c) {
    case Comparison::kLess:
      return "<";
    case Comparison::kLessEqual:
      return "<=";
    case Comparison::kGreater:
      return ">";
    case Comparison::kGreaterEqual:
      return ">=";
    default:
      return "?";
  }
}

// The metric's value in `s` (ms for latencies, a fraction for error_rate).
double Actual(ThresholdMetric metric, const OpStats& s, double seconds) {
  constexpr double kNsPerMs = 1e6;
  switch (metric) {
    case ThresholdMetric::kP50:
      return static_cast<double>(s.latency.ValueAtQuantile(0.50)) / kNsPerMs;
    case ThresholdMetric::kP90:
      return static_cast<double>(s.latency.ValueAtQuantile(0.90)) / kNsPerMs;
    case ThresholdMetric::kP95:
      return static_cast<double>(s.latency.ValueAtQuantile(0.95)) / kNsPerMs;
    case ThresholdMetric::kP99:
      return static_cast<double>(s.latency.ValueAtQuantile(0.99)) / kNsPerMs;
    case ThresholdMetric::kP999:
      return static_cast<double>(s.latency.ValueAtQuantile(0.999)) / kNsPerMs;
    case ThresholdMetric::kMax:
      return static_cast<double>(s.latency.max()) / kNsPerMs;
    case ThresholdMetric::kMean:
      return s.latency.mean() / kNsPerMs;
    case ThresholdMetric::kErrorRate:
      return s.ErrorRate();
    case ThresholdMetric::kErrors:
      return static_cast<double>(s.errors);
    case ThresholdMetric::kThroughput:
      return s.Throughput(seconds);
    default:
      return 0;
  }
}

bool Holds(Comparison c, double actual, double limit) {
  switch (c) {
    case Comparison::kLess:
      return actual < limit;
    case Comparison::kLessEqual:
      return actual <= limit;
    case Comparison::kGreater:
      return actual > limit;
    case Comparison::kGreaterEqual:
      return actual >= limit;
    default:
      return false;
  }
}

}  // namespace

std::string_view ThresholdMetricName(ThresholdMetric metric) {
  for (const MetricName& m : kMetricNames) {
    if (m.metric == metric) return m.name;
  }
  return "unknown";
}

std::string FormatThresholdValue(ThresholdMetric metric, double value) {
  if (IsLatency(metric)) return fmt::format("{:.3g}ms", value);
  switch (metric) {
    case ThresholdMetric::kErrorRate:
      return fmt::format("{:.3g}%", value * 100);
    case ThresholdMetric::kThroughput:
      return fmt::format("{:.1f}/s", value);
    default:
      return fmt::format("{:.0f}", value);
  }
}

absl::StatusOr<Threshold> ParseThreshold(std::string_view text) {
  Threshold t;
  t.text = std::string(Trim(text));
  const std::string_view s = t.text;
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(fmt::format(
        "threshold '{}': {} (form: [OP.]METRIC<VALUE, e.g. p99<20ms, error_rate<0.1%, "
        "throughput>500, log.p99<30ms)",
        s, what));
  };
  const std::size_t cmp_pos = s.find_first_of("<>");
  if (cmp_pos == std::string_view::npos) return error("no comparison (< <= > >=)");
  std::string_view lhs = Trim(s.substr(0, cmp_pos));
  std::string_view rest = s.substr(cmp_pos);
  if (rest.starts_with("<=")) {
    t.comparison = Comparison::kLessEqual;
    rest.remove_prefix(2);
  } else if (rest.starts_with(">=")) {
    t.comparison = Comparison::kGreaterEqual;
    rest.remove_prefix(2);
  } else if (rest.starts_with("<")) {
    t.comparison = Comparison::kLess;
    rest.remove_prefix(1);
  } else {
    t.comparison = Comparison::kGreater;
    rest.remove_prefix(1);
  }
  rest = Trim(rest);

  t.op = "all";
  std::string_view metric_name = lhs;
  if (const std::size_t dot = lhs.find('.'); dot != std::string_view::npos) {
    const std::string_view op = lhs.substr(0, dot);
    if (op != "all" && !ParseOpName(op)) {
      return error(fmt::format("unknown operation '{}' (known: all, profile, feed, log, update, "
                               "leaderboard)",
                               op));
    }
    t.op = std::string(op);
    metric_name = lhs.substr(dot + 1);
  }
  bool found = false;
  for (const MetricName& m : kMetricNames) {
    if (m.name == metric_name) {
      t.metric = m.metric;
      found = true;
    }
  }
  if (!found) {
    return error(fmt::format("unknown metric '{}' (known: p50, p90, p95, p99, p999, max, mean, "
                             "error_rate, errors, throughput)",
                             metric_name));
  }

  // The number, then its unit.
  const std::string number(rest);
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  if (end == number.c_str() || !std::isfinite(v)) {
    return error(fmt::format("value '{}' is not a number", rest));
  }
  const std::string_view unit = Trim(std::string_view(end));
  if (IsLatency(t.metric)) {
    if (unit.empty() || unit == "ms") {
      t.value = v;
    } else if (unit == "s") {
      t.value = v * 1e3;
    } else if (unit == "us" || unit == "µs") {
      t.value = v / 1e3;
    } else if (unit == "ns") {
      t.value = v / 1e6;
    } else {
      return error(fmt::format("unit '{}' is not a duration (ns, us, ms, s)", unit));
    }
  } else if (t.metric == ThresholdMetric::kErrorRate) {
    if (unit == "%") {
      t.value = v / 100;
    } else if (unit.empty()) {
      t.value = v;
    } else {
      return error(fmt::format("unit '{}' does not fit error_rate (a fraction or N%)", unit));
    }
  } else {
    if (!unit.empty() && !(t.metric == ThresholdMetric::kThroughput && unit == "/s")) {
      return error(fmt::format("unit '{}' does not fit {}", unit, metric_name));
    }
    t.value = v;
  }
  return t;
}

std::vector<ThresholdResult> EvaluateThresholds(const std::vector<Threshold>& thresholds,
                                                const RunReport& report) {
  std::vector<ThresholdResult> out;
  for (const Threshold& t : thresholds) {
    ThresholdResult r;
    r.threshold = t;
    const OpStats* s = report.Find(t.op);
    if (s == nullptr || s->count == 0) {
      r.ok = false;
      r.message = fmt::format("{}: operation '{}' did not run", t.text, t.op);
      out.push_back(std::move(r));
      continue;
    }
    r.actual = Actual(t.metric, *s, report.seconds);
    r.ok = Holds(t.comparison, r.actual, t.value);
    r.message = fmt::format("{}: actual {} (budget {} {})", t.text,
                            FormatThresholdValue(t.metric, r.actual), ComparisonText(t.comparison),
                            FormatThresholdValue(t.metric, t.value));
    out.push_back(std::move(r));
  }
  return out;
}

bool AllHeld(const std::vector<ThresholdResult>& results) {
  for (const ThresholdResult& r : results) {
    if (!r.ok) return false;
  }
  return true;
}

}  // namespace shardline::loadgen
