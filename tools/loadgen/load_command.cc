// `shardline-loadgen load` (see load_command.h).
#include "load_command.h"

#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app_tables.h"
#include "shardline/router.h"

namespace shardline::loadgen {

CLI::App* SetupLoad(CLI::App& app, LoadCommandOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "load", "Fill the cluster with generated users, workouts, logs and posts (COPY per node)");
  AddRouterFlags(*cmd, options.router);
  cmd->add_option("--users", options.load.users, "How many users")->required();
  cmd->add_option("--first-user", options.load.first_user, "The first user id")
      ->capture_default_str();
  cmd->add_option("--workouts-per-user", options.load.workouts_per_user, "Workouts per user")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--logs-per-workout", options.load.logs_per_workout,
                  "workout_logs rows per workout")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--posts-per-user", options.load.posts_per_user, "Posts per user")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--seed", options.load.seed, "Seed of the generated values")
      ->capture_default_str();
  cmd->add_flag("--truncate", options.load.truncate,
                "Empty the app's tables on every node first");
  cmd->add_flag("--no-schema", options.no_schema, "Do not apply schemas/app.sql first");
  cmd->add_flag("--json", options.json, "Print the figures as JSON");
  cmd->footer(
      "Each user's rows go to the node that owns hashint8extended(user_id, 0) under the map;\n"
      "ids of workouts, logs and posts come from the router's id generator. A user id that\n"
      "exists already makes that node's COPY fail (use --truncate or another --first-user).\n"
      "\n"
      "Examples:\n"
      "  shardline-loadgen load --map schemas/maps/app_3_nodes.toml --users 100000 --truncate\n"
      "  shardline-loadgen load --catalog \"$SHARDLINE_CATALOG\" --users 5000 --first-user 100001");
  return cmd;
}

absl::Status RunLoad(const LoadCommandOptions& options) {
  if (options.load.users < 0) return migrate::UsageError("--users must not be negative");
  absl::StatusOr<RouterOptions> ropts =
      MakeRouterOptions(options.router, std::getenv(migrate::kCatalogEnv));
  if (!ropts.ok()) return ropts.status();
  absl::StatusOr<std::unique_ptr<Router>> router = Router::Create(std::move(*ropts));
  if (!router.ok()) return router.status();
  if (absl::Status s = CheckCanGenerateIds(**router); !s.ok()) return s;
  const std::shared_ptr<const ShardMap> map = (*router)->map();
  if (!options.no_schema) {
    if (absl::Status s = ApplyAppSchema(*map, options.router.application_name); !s.ok()) return s;
  }
  LoadOptions load = options.load;
  load.application_name = options.router.application_name;
  Router& r = **router;
  absl::StatusOr<LoadStats> stats = LoadUsers(*map, [&r] { return r.NextId(); }, load);
  if (!stats.ok()) return stats.status();
  const double rate = stats->seconds > 0 ? static_cast<double>(stats->rows) / stats->seconds : 0;
  if (options.json) {
    nlohmann::ordered_json j = {{"users", options.load.users},
                                {"rows", stats->rows},
                                {"seconds", stats->seconds},
                                {"rows_per_second", rate},
                                {"rows_by_table", stats->rows_by_table},
                                {"users_by_node", stats->users_by_node},
                                {"map_version", map->version()}};
    fmt::print("{}\n", j.dump(2));
    return absl::OkStatus();
  }
  fmt::print("loaded {} users ({} rows) in {:.2f} s: {:.0f} rows/s (map version {})\n",
             options.load.users, stats->rows, stats->seconds, rate, map->version());
  for (const auto& [table, n] : stats->rows_by_table) fmt::print("  {:<14} {:>10} rows\n", table, n);
  for (const auto& [node, n] : stats->users_by_node) fmt::print("  node {:<9} {:>10} users\n", node, n);
  return absl::OkStatus();
}

}  // namespace shardline::loadgen
