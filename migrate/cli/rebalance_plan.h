// `shardline rebalance plan`: plans the moves that balance the nodes of a shard map (optionally
// adding and draining nodes) and writes them, with the resulting map, to a plan file; --dry-run
// prints them as a table instead. The decisions are made by migrate/planner.h; this command only
// gathers the inputs (map, size estimates, flags) and writes the output.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "planner.h"

namespace shardline::migrate {

struct RebalancePlanOptions {
  std::string map_file;                   // --map FILE: the current map
  std::string catalog_dsn;                // --catalog DSN: the current map from the catalog
  std::vector<std::string> add_nodes;     // --add-node NAME=DSN, repeatable
  std::vector<std::string> remove_nodes;  // --remove-node NAME, repeatable
  bool use_empty_nodes = false;           // --use-empty-nodes: give ranges to nodes owning none
  std::string by = "size";                // --by size|ranges (size needs the stats pass)
  double tolerance_percent = kDefaultTolerancePercent;  // --tolerance PCT
  std::string output;                     // -o PLAN: the plan file to write (0600)
  bool dry_run = false;                   // --dry-run: print the table, write nothing
  std::size_t max_moves = 0;              // --max-moves N: moves shown in the table; 0 = all
};

// Adds the `plan` subcommand to `rebalance` (the `shardline rebalance` group), storing parsed
// flags into `options`, which must outlive parsing. Returns the subcommand, so that the caller
// can run RunRebalancePlan(options) when `->parsed()`.
CLI::App* SetupRebalancePlan(CLI::App& rebalance, RebalancePlanOptions& options);

// Loads the map, collects size estimates (--by size), plans, and writes the plan file or prints
// the table. Blocks on the map file, the stats pass over every node, and the plan file write.
// InvalidArgument for bad flags and maps (the planner's messages), NotFound / PermissionDenied
// naming the file, Unavailable naming the catalog or a node that cannot be reached (--by size
// scans every sharded table on every node once, see migrate/stats.h). Without --map and
// --catalog, $SHARDLINE_CATALOG is used; a UsageError when none is given.
absl::Status RunRebalancePlan(const RebalancePlanOptions& options);

}  // namespace shardline::migrate
