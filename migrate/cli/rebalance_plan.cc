// `shardline rebalance plan` (see rebalance_plan.h): flags -> PlanRequest -> plan file or table.
// Connection strings given with --add-node go into the plan file (it must be able to connect)
// but are never printed: errors name the node, the table shows names only.
#include "cli/rebalance_plan.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include <fmt/format.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/common.h"
#include "plan_report.h"
#include "plan_toml.h"
#include "shardline/map_toml.h"
#include "stats.h"

namespace shardline::migrate {
namespace {

// Number of moves the summary after writing a plan file shows (the file has them all).
constexpr std::size_t kMovesShownAfterWrite = 20;

// "NAME=DSN" -> NodeConfig. The argument is never echoed: it holds a password.
absl::StatusOr<NodeConfig> ParseAddNode(const std::string& arg) {
  const std::size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        "--add-node expects NAME=DSN, e.g. --add-node 'e=host=10.0.0.5 dbname=app'");
  }
  NodeConfig node;
  node.name = arg.substr(0, eq);
  node.dsn = arg.substr(eq + 1);
  if (node.dsn.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("--add-node {}=: the connection string after '=' is empty", node.name));
  }
  return node;
}

}  // namespace

CLI::App* SetupRebalancePlan(CLI::App& rebalance, RebalancePlanOptions& options) {
  CLI::App* cmd = rebalance.add_subcommand(
      "plan", "Plan the moves that balance the nodes (adding or draining nodes) into a plan file");
  CLI::Option* map = cmd->add_option("--map", options.map_file, "Current shard map file (TOML)");
  CLI::Option* catalog =
      cmd->add_option("--catalog", options.catalog_dsn, "Control database holding the map");
  map->excludes(catalog);
  catalog->excludes(map);
  cmd->add_option("--add-node", options.add_nodes, "Node to add, as NAME=DSN (repeatable)")
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_option("--remove-node", options.remove_nodes, "Node to drain, by name (repeatable)")
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_flag("--use-empty-nodes", options.use_empty_nodes,
                "Give ranges to current nodes that own none (default: such a node is planned as "
                "removed and leaves the map at the rollout's cleanup)");
  cmd->add_option("--by", options.by,
                  "Balance by estimated size (needs the stats pass) or by number of ranges")
      ->check(CLI::IsMember({"size", "ranges"}))
      ->capture_default_str();
  cmd->add_option("--tolerance", options.tolerance_percent,
                  "Allowed deviation of a node from the mean, in percent")
      ->capture_default_str();
  cmd->add_option("-o,--output", options.output, "Plan file to write (created with mode 0600)");
  cmd->add_flag("--dry-run", options.dry_run, "Print the moves as a table; write nothing");
  cmd->add_option("--max-moves", options.max_moves, "Moves shown in the table (0 = all)")
      ->capture_default_str();
  return cmd;
}

absl::Status RunRebalancePlan(const RebalancePlanOptions& options) {
  if (!options.dry_run && options.output.empty()) {
    return absl::InvalidArgumentError(
        "give the plan file to write with -o PLAN (or use --dry-run to print the moves)");
  }
  absl::StatusOr<LoadedMap> loaded =
      LoadMapFromSource({.map_file = options.map_file, .catalog_dsn = options.catalog_dsn},
                        std::getenv(kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  PrintWarnings(loaded->parsed.warnings);
  const ParsedShardMap* map = &loaded->parsed;

  PlanRequest request;
  absl::StatusOr<BalanceMode> mode = ParseBalanceMode(options.by);
  if (!mode.ok()) return mode.status();
  request.mode = *mode;
  request.tolerance_percent = options.tolerance_percent;
  request.remove_nodes = options.remove_nodes;
  request.use_empty_nodes = options.use_empty_nodes;
  for (const std::string& arg : options.add_nodes) {
    absl::StatusOr<NodeConfig> node = ParseAddNode(arg);
    if (!node.ok()) return node.status();
    request.add_nodes.push_back(*std::move(node));
  }
  if (request.mode == BalanceMode::kSize) {
    absl::StatusOr<std::vector<RangeStats>> stats = CollectRangeStats(*map->map, {});
    if (!stats.ok()) return stats.status();
    request.stats = *std::move(stats);
  }

  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map->map->config(), request);
  if (!plan.ok()) return plan.status();
  plan->created_at = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());

  if (options.dry_run) {
    std::fputs(PlanReportText(*plan, {.max_moves = options.max_moves}).c_str(), stdout);
    return absl::OkStatus();
  }
  if (absl::Status s = WritePlanFile(options.output, *plan); !s.ok()) return s;
  std::fputs(PlanReportText(*plan, {.max_moves = options.max_moves == 0 ? kMovesShownAfterWrite
                                                                         : options.max_moves})
                 .c_str(),
             stdout);
  std::printf("\nplan written to %s (mode 0600: it holds the nodes' connection strings)\n",
              options.output.c_str());
  return absl::OkStatus();
}

}  // namespace shardline::migrate
