// Performance budgets: `--threshold p99<20ms`, `error_rate<0.1%`, `throughput>500`,
// `log.p99<30ms` (one operation). Parsed into a Threshold and evaluated against a RunReport;
// a run with a broken budget exits 1 (the performance gate CI uses). Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace shardline::loadgen {

struct RunReport;

enum class ThresholdMetric {
  kP50, kP90, kP95, kP99, kP999, kMax, kMean,  // latency, milliseconds
  kErrorRate,                                  // fraction of calls that failed (0..1)
  kErrors,                                     // failed calls
  kThroughput,                                 // successful calls per second
};
enum class Comparison { kLess, kLessEqual, kGreater, kGreaterEqual };

// One budget. Value type.
struct Threshold {
  std::string text;   // as given, e.g. "log.p99<30ms"
  std::string op;     // operation name, or "all" when the budget has no "op." prefix
  ThresholdMetric metric = ThresholdMetric::kP99;
  Comparison comparison = Comparison::kLess;
  // In the metric's unit: ms for latencies ("20ms", "0.5s", "800us", bare numbers are ms), a
  // fraction for error_rate ("0.1%" = 0.001, "0.001"), calls/s for throughput, a count for
  // errors.
  double value = 0;
};

// Parses "[OP.]METRIC CMP VALUE[UNIT]" (spaces allowed around CMP). METRIC: p50, p90, p95,
// p99, p999, max, mean, error_rate, errors, throughput. CMP: <, <=, >, >=. OP: one of the
// workload's operations (mix.h). InvalidArgument quoting the text and saying what is wrong:
// unknown metric or operation, missing or unknown comparison, a value that is not a number,
// a unit that does not fit the metric (e.g. "throughput>5ms").
absl::StatusOr<Threshold> ParseThreshold(std::string_view text);

// The outcome of one budget.
struct ThresholdResult {
  Threshold threshold;
  double actual = 0;    // in the threshold's unit
  bool ok = false;
  std::string message;  // "log.p99<30ms: actual 41.2ms (budget < 30ms)"
};

// Evaluates every threshold against `report`. A threshold on an operation that did not run
// (weight 0) is broken with "operation 'x' did not run", so a typo in the mix cannot pass a
// gate silently.
std::vector<ThresholdResult> EvaluateThresholds(const std::vector<Threshold>& thresholds,
                                                const RunReport& report);

// True when every result is ok.
bool AllHeld(const std::vector<ThresholdResult>& results);

// A metric's name as written in a threshold ("p99", "error_rate", ...).
std::string_view ThresholdMetricName(ThresholdMetric metric);
// A value in the metric's unit, formatted for messages ("41.2ms", "0.35%", "512.3/s", "3").
std::string FormatThresholdValue(ThresholdMetric metric, double value);

}  // namespace shardline::loadgen
