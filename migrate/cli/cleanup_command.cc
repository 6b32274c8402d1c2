// `shardline cleanup` (see cleanup_command.h): flags -> (node, ranges) -> the cleanup library,
// with a progress line per batch (at most one a second) and a summary.
#include "cli/cleanup_command.h"
#include "admin_conn.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cleanup.h"
#include "cli/verify_command.h"
#include "pg_conn.h"
#include "plan_toml.h"

namespace shardline::migrate {

CLI::App* SetupCleanup(CLI::App& app, CleanupCommandOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "cleanup", "Delete from a node the rows of ranges it no longer owns, in throttled batches");
  AddMapSourceOptions(*cmd, options.source);
  CLI::Option* plan = cmd->add_option(
      "--plan", options.plan_file, "Plan file: clean each move's range from its source node");
  CLI::Option* node = cmd->add_option("--node", options.node, "Node to delete rows from");
  CLI::Option* range =
      cmd->add_option("--range", options.ranges, "Hash range LO:HI to delete (repeatable)")
          ->allow_extra_args(false);
  plan->excludes(node)->excludes(range);
  cmd->add_option("--table", options.tables, "Sharded table to clean (repeatable; default all)")
      ->allow_extra_args(false);
  cmd->add_option("--rate", options.rate, "Throttle in rows per second (0 = unthrottled)")
      ->capture_default_str();
  cmd->add_option("--batch", options.batch, "Rows deleted per transaction")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--json", options.json, "Print the summary as JSON");
  cmd->footer(
      "The current map (--map FILE, --catalog DSN or $SHARDLINE_CATALOG) must no longer give\n"
      "the ranges to the node: a range the node still owns, or whose reads it still serves, is\n"
      "refused before anything is deleted. Each batch deletes the next N rows of the ranges in\n"
      "primary-key order in its own transaction; rerun after an interruption to go on.\n"
      "\n"
      "Examples:\n"
      "  shardline cleanup --catalog \"$SHARDLINE_CATALOG\" --plan plan.toml --rate 50000\n"
      "  shardline cleanup --map map.toml --node a --range 0:4611686018427387903 --batch 1000");
  return cmd;
}

absl::Status RunCleanup(const CleanupCommandOptions& options) {
  auto loaded = LoadMapFromSource(options.source, std::getenv(kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  PrintWarnings(loaded->parsed.warnings);
  const ShardMap& map = *loaded->parsed.map;

  // node -> ranges, in first-seen order.
  std::vector<std::pair<std::string, std::vector<std::pair<std::int64_t, std::int64_t>>>> work;
  if (!options.plan_file.empty()) {
    auto plan = LoadPlanFile(options.plan_file);
    if (!plan.ok()) return plan.status();
    PrintWarnings(plan->warnings);
    for (const RangeMove& m : plan->plan.moves) {
      auto it = std::find_if(work.begin(), work.end(), [&](const auto& w) { return w.first == m.from; });
      if (it == work.end()) {
        work.push_back({m.from, {}});
        it = work.end() - 1;
      }
      it->second.emplace_back(m.lo, m.hi);
    }
  } else {
    if (options.node.empty() || options.ranges.empty()) {
      return UsageError("give --plan PLAN, or --node NODE and --range LO:HI");
    }
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
    for (const std::string& r : options.ranges) {
      auto range = ParseRangeArg(r);
      if (!range.ok()) return range.status();
      ranges.push_back(*range);
    }
    work.push_back({options.node, std::move(ranges)});
  }
  // Every node's ranges are checked before anything is deleted anywhere.
  for (const auto& [node, ranges] : work) {
    if (absl::Status s = CheckNotOwned(map, node, ranges); !s.ok()) return s;
  }

  nlohmann::ordered_json json_nodes = nlohmann::ordered_json::array();
  for (const auto& [node, ranges] : work) {
    const NodeConfig& nc = map.nodes()[static_cast<std::size_t>(map.NodeIndex(node))];
    auto conn = ConnectAdmin(nc);
    if (!conn.ok()) return conn.status();
    CleanupOptions co;
    co.tables = options.tables;
    co.batch = options.batch;
    co.rows_per_second = options.rate;
    auto last_print = std::chrono::steady_clock::now() - std::chrono::seconds(10);
    if (!options.json) {
      co.progress = [&, node = node](const std::string& table, std::int64_t deleted,
                                     double rate) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_print < std::chrono::seconds(1)) return;
        last_print = now;
        std::fputs(fmt::format("cleanup node {} table {}: {} rows deleted ({:.0f} rows/s)\n", node,
                               table, deleted, rate)
                       .c_str(),
                   stdout);
        std::fflush(stdout);
      };
    }
    auto result = CleanupRanges(**conn, map, node, ranges, co);
    if (!result.ok()) return result.status();
    if (options.json) {
      nlohmann::ordered_json tables = nlohmann::ordered_json::array();
      for (const CleanupTableResult& t : result->tables) {
        tables.push_back({{"table", t.table}, {"deleted", t.deleted}, {"batches", t.batches},
                          {"seconds", t.seconds}});
      }
      json_nodes.push_back({{"node", node}, {"ranges", ranges.size()}, {"tables", tables},
                            {"deleted", result->deleted()}});
      continue;
    }
    for (const CleanupTableResult& t : result->tables) {
      std::fputs(fmt::format("cleanup node {} table {}: done, {} rows deleted in {} batches, "
                             "{:.1f} s\n",
                             node, t.table, t.deleted, t.batches, t.seconds)
                     .c_str(),
                 stdout);
    }
    std::fputs(fmt::format("cleanup node {}: {} rows deleted from {} range{}\n", node,
                           result->deleted(), ranges.size(), ranges.size() == 1 ? "" : "s")
                   .c_str(),
               stdout);
  }
  if (options.json) {
    nlohmann::ordered_json out{{"map_version", map.version()}, {"nodes", json_nodes}};
    std::fputs((out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n")
                   .c_str(),
               stdout);
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
