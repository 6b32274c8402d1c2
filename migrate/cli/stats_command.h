// `shardline stats`: rows and bytes per range, per node and per sharded table, from one bucketed
// pass per table per node (migrate/stats.h), with totals, each node's share and the orphans (rows
// a node holds in ranges it does not own); a table for people or --json.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli/common.h"
#include "stats.h"

namespace shardline::migrate {

struct StatsOptions {
  MapSourceOptions source;          // --map FILE | --catalog DSN ($SHARDLINE_CATALOG)
  bool json = false;                // --json
  std::vector<std::string> tables;  // --table T (repeatable); empty = every sharded table
  bool per_range = false;           // --per-range: list every range in the text output
};

// Adds `stats` to the top-level app; flags are stored into `options`.
CLI::App* SetupStats(CLI::App& app, StatsOptions& options);

// The report as text (what `stats` prints without --json). `per_range` lists every range.
std::string StatsReportText(const ShardMap& map, const StatsDetail& detail, bool per_range);
// The report as JSON text.
std::string StatsReportJson(const ShardMap& map, const StatsDetail& detail);

// Loads the map, measures, prints. Blocks for one scan per table per node (nodes in parallel).
// Errors from the map source, the connections (Unavailable naming the node) and the tables
// (NotFound naming table and node).
absl::Status RunStats(const StatsOptions& options);

}  // namespace shardline::migrate
