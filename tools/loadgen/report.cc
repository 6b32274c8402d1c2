// Rendering a run's report as a table and as JSON (see report.h).
#include "report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "threshold.h"

namespace shardline::loadgen {

double OpStats::Throughput(double seconds) const {
  return seconds <= 0 ? 0 : static_cast<double>(ok()) / seconds;
}

double OpStats::ErrorRate() const {
  return count == 0 ? 0 : static_cast<double>(errors) / static_cast<double>(count);
}

void OpStats::Merge(const OpStats& other) {
  count += other.count;
  errors += other.errors;
  for (const auto& [kind, n] : other.errors_by_kind) errors_by_kind[kind] += n;
  latency.Merge(other.latency);
}

const OpStats* RunReport::Find(const std::string& name) const {
  if (name == "all") return &total;
  for (const OpStats& s : ops) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

namespace {

double Ms(std::int64_t nanos) { return static_cast<double>(nanos) / 1e6; }

std::string FormatMs(std::int64_t nanos) { return fmt::format("{:.2f}", Ms(nanos)); }

nlohmann::ordered_json StatsJson(const OpStats& s, double seconds) {
  nlohmann::ordered_json kinds = nlohmann::ordered_json::object();
  for (const auto& [kind, n] : s.errors_by_kind) kinds[kind] = n;
  auto q = [&](double quantile) { return Ms(s.latency.ValueAtQuantile(quantile)); };
  return {{"count", s.count},
          {"ok", s.ok()},
          {"errors", s.errors},
          {"throughput", s.Throughput(seconds)},
          {"error_rate", s.ErrorRate()},
          {"latency_ms",
           {{"p50", q(0.50)},
            {"p90", q(0.90)},
            {"p95", q(0.95)},
            {"p99", q(0.99)},
            {"p999", q(0.999)},
            {"max", Ms(s.latency.max())},
            {"mean", s.latency.mean() / 1e6}}},
          {"errors_by_kind", kinds}};
}

}  // namespace

std::string FormatReportTable(const RunReport& report,
                              const std::vector<ThresholdResult>& thresholds) {
  std::string out;
  out += fmt::format("{} loop, {} workers{}, {:.1f} s measured after {:.1f} s warm-up{}\n",
                     report.mode, report.workers,
                     report.rate > 0 ? fmt::format(", {:.0f} arrivals/s", report.rate) : "",
                     report.seconds, report.warmup_seconds,
                     report.interrupted ? " (interrupted)" : "");
  out += fmt::format("mix: {}\n\n", report.mix);
  out += fmt::format("  {:<12} {:>9} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9}\n", "operation",
                     "calls", "ok/s", "errors", "error%", "p50 ms", "p95 ms", "p99 ms", "max ms");
  auto row = [&](const OpStats& s) {
    out += fmt::format("  {:<12} {:>9} {:>10.1f} {:>7} {:>8.3f} {:>8} {:>8} {:>8} {:>9}\n", s.name,
                       s.count, s.Throughput(report.seconds), s.errors, s.ErrorRate() * 100,
                       FormatMs(s.latency.ValueAtQuantile(0.50)),
                       FormatMs(s.latency.ValueAtQuantile(0.95)),
                       FormatMs(s.latency.ValueAtQuantile(0.99)), FormatMs(s.latency.max()));
  };
  for (const OpStats& s : report.ops) row(s);
  row(report.total);
  if (!report.total.errors_by_kind.empty()) {
    out += "\nerrors by kind:\n";
    for (const OpStats& s : report.ops) {
      for (const auto& [kind, n] : s.errors_by_kind) {
        out += fmt::format("  {:<12} {:<40} {:>9}\n", s.name, kind, n);
      }
    }
  }
  out += fmt::format("\nrouter: map version {} -> {}, fenced writes retried {}\n",
                     report.map_version_start, report.map_version_end, report.fence_retries);
  if (report.late_starts > 0) {
    out += fmt::format("open loop: {} calls started late (all workers busy; their latency counts "
                       "from the intended start)\n",
                       report.late_starts);
  }
  if (report.ledger_entries > 0) {
    out += fmt::format("ledger: {} writes recorded\n", report.ledger_entries);
  }
  if (!thresholds.empty()) {
    out += "\nthresholds:\n";
    for (const ThresholdResult& t : thresholds) {
      out += fmt::format("  {:<6} {}\n", t.ok ? "ok" : "BROKEN", t.message);
    }
  }
  return out;
}

std::string ReportToJson(const RunReport& report, const std::vector<ThresholdResult>& thresholds) {
  nlohmann::ordered_json ops = nlohmann::ordered_json::object();
  for (const OpStats& s : report.ops) ops[s.name] = StatsJson(s, report.seconds);
  nlohmann::ordered_json th = nlohmann::ordered_json::array();
  for (const ThresholdResult& t : thresholds) {
    th.push_back({{"threshold", t.threshold.text}, {"actual", t.actual}, {"ok", t.ok}});
  }
  nlohmann::ordered_json j = {
      {"mode", report.mode},
      {"workers", report.workers},
      {"rate", report.rate},
      {"mix", report.mix},
      {"warmup_s", report.warmup_seconds},
      {"duration_s", report.seconds},
      {"interrupted", report.interrupted},
      {"ops", ops},
      {"all", StatsJson(report.total, report.seconds)},
      {"router",
       {{"map_version_start", report.map_version_start},
        {"map_version_end", report.map_version_end},
        {"fence_retries", report.fence_retries}}},
      {"ledger_entries", report.ledger_entries},
      {"late_starts", report.late_starts},
      {"thresholds", th},
      {"ok", AllHeld(thresholds)},
  };
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace shardline::loadgen
