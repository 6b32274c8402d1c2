// What a run measured, per operation and in total (throughput, latency percentiles, errors by
// kind), and its two renderings: an aligned table for people and JSON for machines.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "latency_histogram.h"

namespace shardline::loadgen {

struct ThresholdResult;  // threshold.h

// The measured window of one operation (or of all together). Value type, thread-compatible.
struct OpStats {
  std::string name;         // "profile", ..., or "all"
  std::uint64_t count = 0;  // completed calls, failed ones included
  std::uint64_t errors = 0;
  // Failed calls by kind: the status code in lower snake case, with the SQLSTATE when the
  // server sent one ("unavailable", "failed_precondition/SLF01", "deadline_exceeded/57014").
  std::map<std::string, std::uint64_t> errors_by_kind;
  // Latency of every completed call (failed ones included), from its intended start (open
  // loop) or its actual start (closed loop) to its completion.
  LatencyHistogram latency;

  std::uint64_t ok() const { return count - errors; }
  // Successful calls per second of `seconds` (0 when seconds <= 0).
  double Throughput(double seconds) const;
  // errors / count (0 when nothing ran).
  double ErrorRate() const;
  // Adds `other`'s counts, errors and latencies (for the "all" row).
  void Merge(const OpStats& other);
};

struct RunReport {
  std::string mode;             // "closed" or "open"
  int workers = 0;
  double rate = 0;              // arrivals per second (open loop), 0 in closed loop
  std::string mix;              // Mix::ToString()
  double warmup_seconds = 0;
  double seconds = 0;           // the measured window (after warm-up), as it actually lasted
  bool interrupted = false;     // stopped early by SIGINT/SIGTERM
  std::vector<OpStats> ops;     // operations with a non-zero weight, in mix order
  OpStats total;                // "all": every operation together
  // From the router: the map versions at the start and the end of the measured window, and
  // writes retried on a new owner after a fence (shardline_fence_retries_total).
  std::int64_t map_version_start = 0;
  std::int64_t map_version_end = 0;
  std::uint64_t fence_retries = 0;
  std::uint64_t ledger_entries = 0;  // lines appended to --ledger (0 without one)
  // Calls the open loop started later than intended because every worker was busy.
  std::uint64_t late_starts = 0;

  // The stats of operation `name` ("all" for the total), or nullptr.
  const OpStats* Find(const std::string& name) const;
};

// A table: one row per operation and an "all" row (ops, ok/s, errors, error %, p50, p95, p99,
// max in ms), then errors by kind, router facts, and each threshold as "ok" or "BROKEN".
std::string FormatReportTable(const RunReport& report,
                              const std::vector<ThresholdResult>& thresholds);

// The same as JSON (pretty-printed, stable key order):
//   {"mode", "workers", "rate", "mix", "warmup_s", "duration_s", "interrupted",
//    "ops": {"profile": {"count", "ok", "errors", "throughput", "error_rate",
//                        "latency_ms": {"p50", "p90", "p95", "p99", "p999", "max", "mean"},
//                        "errors_by_kind": {...}}, ...},
//    "all": {...same...}, "router": {"map_version_start", "map_version_end", "fence_retries"},
//    "ledger_entries", "late_starts",
//    "thresholds": [{"threshold", "actual", "ok"}], "ok": <every threshold held>}
std::string ReportToJson(const RunReport& report, const std::vector<ThresholdResult>& thresholds);

}  // namespace shardline::loadgen
