// The dry-run table of a rebalance plan (see plan_report.h). Only node names are printed, never
// connection strings.
#include "plan_report.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include <fmt/format.h>

namespace shardline::migrate {
namespace {

double Percent(std::int64_t part, std::int64_t whole) {
  return whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

// Rows of cells printed with each column as wide as its widest cell; numeric columns (by index
// in `right`) aligned right.
std::string Table(const std::vector<std::vector<std::string>>& rows,
                  const std::vector<bool>& right) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line = " ";
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += ' ';
      const bool r = c < right.size() && right[c];
      line += r ? fmt::format("{:>{}}", row[c], width[c]) : fmt::format("{:<{}}", row[c], width[c]);
      line += ' ';
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace

std::string HumanBytes(std::int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024 && bytes > -1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  std::size_t unit = 0;
  while ((v >= 1024.0 || v <= -1024.0) && unit + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", v, kUnits[unit]);
}

std::string PlanReportText(const RebalancePlan& plan, const PlanReportOptions& options) {
  std::string out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "Rebalance plan: map version {} -> {}, balanced by {}, tolerance {}%\n",
                 plan.source_map_version, plan.result.version, BalanceModeName(plan.mode),
                 plan.tolerance_percent);

  const std::size_t shown = options.max_moves == 0
                                ? plan.moves.size()
                                : std::min(plan.moves.size(), options.max_moves);
  fmt::format_to(it, "\nMoves ({}):\n", plan.moves.size());
  if (plan.moves.empty()) {
    out += "  none\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"LO", "HI", "FROM", "TO", "ROWS", "BYTES"});
    for (std::size_t i = 0; i < shown; ++i) {
      const RangeMove& m = plan.moves[i];
      rows.push_back({fmt::format("{}", m.lo), fmt::format("{}", m.hi), m.from, m.to,
                      fmt::format("{}", m.rows), HumanBytes(m.bytes)});
    }
    out += Table(rows, {true, true, false, false, true, true});
    if (shown < plan.moves.size()) {
      fmt::format_to(it, "  ... and {} more moves\n", plan.moves.size() - shown);
    }
  }

  out += "\nNodes:\n";
  {
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"NODE", "ROLE", "RANGES", "", "ROWS", "", "BYTES", "", "SHARE"});
    for (const NodeBalance& n : plan.nodes) {
      const double share = plan.mode == BalanceMode::kSize
                               ? Percent(n.bytes_after, plan.total_bytes)
                               : Percent(n.ranges_after,
                                         static_cast<std::int64_t>(plan.result.ranges.size()));
      rows.push_back({n.name, std::string(NodeRoleName(n.role)),
                      fmt::format("{} ->", n.ranges_before), fmt::format("{}", n.ranges_after),
                      fmt::format("{} ->", n.rows_before), fmt::format("{}", n.rows_after),
                      fmt::format("{} ->", HumanBytes(n.bytes_before)), HumanBytes(n.bytes_after),
                      fmt::format("{:.1f}%", share)});
    }
    out += Table(rows, {false, false, true, true, true, true, true, true, true});
  }

  out += "\nSummary:\n";
  fmt::format_to(it, "  moved      {} ranges, {} rows, {} ({:.1f}% of {})\n", plan.ranges_moved,
                 plan.rows_moved, HumanBytes(plan.bytes_moved),
                 Percent(plan.bytes_moved, plan.total_bytes), HumanBytes(plan.total_bytes));
  if (plan.mode == BalanceMode::kSize) {
    fmt::format_to(it, "  minimum    {} (what must leave nodes above the mean)\n",
                   HumanBytes(plan.min_bytes_moved));
  } else {
    fmt::format_to(it, "  minimum    {} ranges (what must leave nodes above the mean)\n",
                   plan.min_ranges_moved);
  }
  fmt::format_to(it, "  splits     {}\n", plan.splits);
  fmt::format_to(it, "  deviation  {:.2f}% from the mean at most (tolerance {}%)\n",
                 plan.max_deviation_percent, plan.tolerance_percent);
  for (const std::string& w : plan.warnings) fmt::format_to(it, "warning: {}\n", w);
  return out;
}

}  // namespace shardline::migrate
