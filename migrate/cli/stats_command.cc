// `shardline stats` (see stats_command.h).
#include "cli/stats_command.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace shardline::migrate {
namespace {

// Ranges at or below this count are listed in the text output without --per-range.
constexpr std::size_t kRangesListedByDefault = 32;

std::string Share(std::int64_t part, std::int64_t total) {
  return FormatShare(total == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(total));
}

// Totals of one node over the selected tables.
struct NodeTotals {
  std::int64_t ranges = 0;
  RowsBytes owned;
  RowsBytes orphans;
};

std::vector<NodeTotals> TotalsByNode(const ShardMap& map, const StatsDetail& detail,
                                     const std::string* table) {
  std::vector<NodeTotals> out(map.nodes().size());
  for (std::size_t ri = 0; ri < map.ranges().size(); ++ri) {
    ++out[static_cast<std::size_t>(map.OwnerNodeIndex(ri))].ranges;
  }
  for (const TableNodeStats& e : detail.entries) {
    if (table != nullptr && e.table != *table) continue;
    const int ni = map.NodeIndex(e.node);
    if (ni < 0) continue;
    out[static_cast<std::size_t>(ni)].owned += e.owned;
    out[static_cast<std::size_t>(ni)].orphans += e.orphans;
  }
  return out;
}

std::string NodeTable(const ShardMap& map, const std::vector<NodeTotals>& totals) {
  std::vector<std::vector<std::string>> rows = {
      {"node", "ranges", "rows", "rows%", "bytes", "bytes%", "orphan_rows", "orphan_bytes"}};
  NodeTotals all;
  for (const NodeTotals& t : totals) {
    all.ranges += t.ranges;
    all.owned += t.owned;
    all.orphans += t.orphans;
  }
  for (std::size_t ni = 0; ni < totals.size(); ++ni) {
    const NodeTotals& t = totals[ni];
    rows.push_back({map.nodes()[ni].name, std::to_string(t.ranges), std::to_string(t.owned.rows),
                    Share(t.owned.rows, all.owned.rows), std::to_string(t.owned.bytes),
                    Share(t.owned.bytes, all.owned.bytes), std::to_string(t.orphans.rows),
                    std::to_string(t.orphans.bytes)});
  }
  rows.push_back({"total", std::to_string(all.ranges), std::to_string(all.owned.rows),
                  all.owned.rows == 0 ? "-" : "100.00%", std::to_string(all.owned.bytes),
                  all.owned.bytes == 0 ? "-" : "100.00%", std::to_string(all.orphans.rows),
                  std::to_string(all.orphans.bytes)});
  return FormatTable(rows, {false, true, true, true, true, true, true, true});
}

std::vector<std::string> TableNames(const StatsDetail& detail) {
  std::vector<std::string> names;
  for (const TableNodeStats& e : detail.entries) {
    if (names.empty() || names.back() != e.table) names.push_back(e.table);
  }
  return names;
}

}  // namespace

CLI::App* SetupStats(CLI::App& app, StatsOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "stats", "Rows and bytes per range, node and sharded table (one pass per table per node)");
  AddMapSourceOptions(*cmd, options.source);
  cmd->add_flag("--json", options.json, "Print the report as JSON");
  cmd->add_option("--table", options.tables, "Sharded table to measure (repeatable; default all)")
      ->allow_extra_args(false);
  cmd->add_flag("--per-range", options.per_range,
                "List every range in the text report (default: only up to 32 ranges)");
  cmd->footer(
      "Each node scans each table once, grouping rows by the server-side hash of the shard key\n"
      "into the map's ranges; nodes are measured in parallel. bytes = sum(pg_column_size(row)).\n"
      "Rows a node holds in a range it does not own are orphans (left behind by a move, or\n"
      "copied ahead of one); they are not counted for the owner. `shardline verify --orphans`\n"
      "names their keys.\n"
      "\n"
      "Examples:\n"
      "  shardline stats --map map.toml\n"
      "  shardline stats --catalog \"$SHARDLINE_CATALOG\" --table workout_logs --json");
  return cmd;
}

std::string StatsReportText(const ShardMap& map, const StatsDetail& detail, bool per_range) {
  std::string out;
  const std::vector<std::string> tables = TableNames(detail);
  for (const std::string& table : tables) {
    out += fmt::format("table {}\n", table);
    out += NodeTable(map, TotalsByNode(map, detail, &table));
    out += '\n';
  }
  if (tables.size() != 1) {
    out += fmt::format("all tables ({})\n", tables.size());
    out += NodeTable(map, TotalsByNode(map, detail, nullptr));
    out += '\n';
  }
  const std::vector<RangeStats> ranges = RangeTotals(map, detail);
  if (per_range || ranges.size() <= kRangesListedByDefault) {
    std::vector<std::vector<std::string>> rows = {{"lo", "hi", "node", "rows", "bytes"}};
    for (std::size_t ri = 0; ri < ranges.size(); ++ri) {
      rows.push_back({std::to_string(ranges[ri].lo), std::to_string(ranges[ri].hi),
                      map.nodes()[static_cast<std::size_t>(map.OwnerNodeIndex(ri))].name,
                      std::to_string(ranges[ri].rows), std::to_string(ranges[ri].bytes)});
    }
    out += "ranges (owned rows, all tables)\n";
    out += FormatTable(rows, {true, true, false, true, true});
    out += '\n';
  } else {
    out += fmt::format("({} ranges; --per-range lists them, --json has them all)\n\n",
                       ranges.size());
  }
  std::string orphans;
  for (const TableNodeStats& e : detail.entries) {
    for (std::size_t ri = 0; ri < e.orphans_by_range.size(); ++ri) {
      const RowsBytes& o = e.orphans_by_range[ri];
      if (o.rows == 0) continue;
      const RangeConfig& r = map.ranges()[ri];
      orphans += fmt::format("  node {} holds {} row{} ({} bytes) of table {} in range {}..{} "
                             "owned by {}\n",
                             e.node, o.rows, o.rows == 1 ? "" : "s", o.bytes, e.table, r.lo, r.hi,
                             r.node);
    }
  }
  if (orphans.empty()) {
    out += "orphans: none\n";
  } else {
    out += "orphans (rows on a node that does not own their range):\n" + orphans;
  }
  return out;
}

std::string StatsReportJson(const ShardMap& map, const StatsDetail& detail) {
  using Json = nlohmann::ordered_json;
  auto rb = [](const RowsBytes& v) { return Json{{"rows", v.rows}, {"bytes", v.bytes}}; };
  Json out;
  out["map_version"] = map.version();
  Json tables = Json::array();
  for (const std::string& table : TableNames(detail)) {
    Json t;
    t["table"] = table;
    Json nodes = Json::array();
    for (const TableNodeStats& e : detail.entries) {
      if (e.table != table) continue;
      Json n{{"node", e.node}, {"owned", rb(e.owned)}, {"orphans", rb(e.orphans)}};
      Json ranges = Json::array();
      Json orphan_ranges = Json::array();
      for (std::size_t ri = 0; ri < e.owned_by_range.size(); ++ri) {
        const RangeConfig& r = map.ranges()[ri];
        if (e.owned_by_range[ri].rows != 0) {
          ranges.push_back({{"lo", r.lo}, {"hi", r.hi}, {"rows", e.owned_by_range[ri].rows},
                            {"bytes", e.owned_by_range[ri].bytes}});
        }
        if (e.orphans_by_range[ri].rows != 0) {
          orphan_ranges.push_back({{"lo", r.lo}, {"hi", r.hi}, {"owner", r.node},
                                   {"rows", e.orphans_by_range[ri].rows},
                                   {"bytes", e.orphans_by_range[ri].bytes}});
        }
      }
      n["ranges"] = std::move(ranges);
      n["orphan_ranges"] = std::move(orphan_ranges);
      nodes.push_back(std::move(n));
    }
    t["nodes"] = std::move(nodes);
    tables.push_back(std::move(t));
  }
  out["tables"] = std::move(tables);
  const std::vector<NodeTotals> totals = TotalsByNode(map, detail, nullptr);
  RowsBytes all;
  for (const NodeTotals& t : totals) all += t.owned;
  Json nodes = Json::array();
  for (std::size_t ni = 0; ni < totals.size(); ++ni) {
    const NodeTotals& t = totals[ni];
    nodes.push_back({{"node", map.nodes()[ni].name},
                     {"ranges", t.ranges},
                     {"rows", t.owned.rows},
                     {"bytes", t.owned.bytes},
                     {"rows_share", all.rows == 0 ? 0.0
                                                  : static_cast<double>(t.owned.rows) /
                                                        static_cast<double>(all.rows)},
                     {"bytes_share", all.bytes == 0 ? 0.0
                                                    : static_cast<double>(t.owned.bytes) /
                                                          static_cast<double>(all.bytes)},
                     {"orphans", rb(t.orphans)}});
  }
  out["nodes"] = std::move(nodes);
  out["total"] = rb(all);
  Json ranges = Json::array();
  for (const RangeStats& r : RangeTotals(map, detail)) {
    ranges.push_back({{"lo", r.lo}, {"hi", r.hi}, {"rows", r.rows}, {"bytes", r.bytes}});
  }
  out["ranges"] = std::move(ranges);
  return out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::Status RunStats(const StatsOptions& options) {
  absl::StatusOr<LoadedMap> loaded = LoadMapFromSource(options.source, std::getenv(kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  PrintWarnings(loaded->parsed.warnings);
  const ShardMap& map = *loaded->parsed.map;
  absl::StatusOr<StatsDetail> detail = CollectStatsDetail(map, {.tables = options.tables});
  if (!detail.ok()) return detail.status();
  if (options.json) {
    std::fputs(StatsReportJson(map, *detail).c_str(), stdout);
  } else {
    std::fputs(fmt::format("map version {} ({})\n\n", map.version(), loaded->origin).c_str(),
               stdout);
    std::fputs(StatsReportText(map, *detail, options.per_range).c_str(), stdout);
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
