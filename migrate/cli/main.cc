// The `shardline` command: wires the subcommands (one file each in migrate/cli/), parses the
// command line with CLI11, runs the one subcommand given and maps its status to the exit code
// (0 ok, 1 failure or invalid input, 2 usage error). Nothing here decides anything.
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/backfill_command.h"
#include "cli/catalog_init.h"
#include "cli/common.h"
#include "cli/map_diff_command.h"
#include "cli/map_history.h"
#include "cli/map_init.h"
#include "cli/map_locate.h"
#include "cli/map_publish.h"
#include "cli/map_revert.h"
#include "cli/map_show.h"
#include "cli/map_validate.h"
#include "cli/rebalance_plan.h"
#include "cli/stats_command.h"
#include "cli/verify_command.h"
#include "cli/cleanup_command.h"
#include "cli/rollout_command.h"

namespace shardline::migrate {
namespace {

// Every subcommand's parsed flags. Lives on main's stack for the whole run.
struct AllOptions {
  CatalogInitOptions catalog_init;
  MapInitOptions map_init;
  MapValidateOptions map_validate;
  MapShowOptions map_show;
  MapLocateOptions map_locate;
  MapDiffOptions map_diff;
  MapPublishOptions map_publish;
  MapHistoryOptions map_history;
  MapRevertOptions map_revert;
  RebalancePlanOptions rebalance_plan;
  StatsOptions stats;
  VerifyCommandOptions verify;
  CleanupCommandOptions cleanup;
  BackfillCommandOptions backfill;
  RolloutCliOptions rollout;
};

struct Command {
  CLI::App* app;
  std::function<absl::Status()> run;
};

// No lock wait of the CLI is unbounded: every connection it opens (catalog, nodes) starts with
// lock_timeout = 10 s through libpq's PGOPTIONS, unless the user set PGOPTIONS. Statements are
// not given a statement_timeout here (a verify or backfill pass over a large table is one long
// statement); `rollout` sets its own per step (--statement-timeout, --lock-timeout).
void DefaultLockTimeout() {
  if (std::getenv("PGOPTIONS") == nullptr) ::setenv("PGOPTIONS", "-c lock_timeout=10000", 0);
}

int Main(int argc, char** argv) {
  DefaultLockTimeout();
  CLI::App app("shardline: administer the shard map of a sharded PostgreSQL deployment and move "
               "data between its nodes",
               "shardline");
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("shardline: error: {}\nRun with --help for more information.\n", e.what());
  });
  app.footer(
      "Exit status: 0 ok, 1 failure or invalid input, 2 usage error.\n"
      "Environment: SHARDLINE_CATALOG stands in for --catalog DSN. Connections wait at most\n"
      "10 s for a lock (lock_timeout) unless PGOPTIONS is set.\n"
      "Every command has --help, e.g. `shardline map locate --help`.\n"
      "\n"
      "Examples:\n"
      "  shardline catalog init --catalog 'host=127.0.0.1 port=55432 dbname=control'\n"
      "  shardline map init --node a=\"$SHARDLINE_NODE_1_DSN\" --node b=\"$SHARDLINE_NODE_2_DSN\" "
      "\\\n"
      "      --ranges 256 --table workout_logs:user_id -o map.toml\n"
      "  shardline map publish --catalog \"$SHARDLINE_CATALOG\" map.toml --comment 'first map'\n"
      "  shardline map locate --catalog \"$SHARDLINE_CATALOG\" 42");

  CLI::App* map = app.add_subcommand("map", "Create, check, inspect and publish shard maps");
  map->require_subcommand(1);
  map->footer(
      "A map comes from a TOML file (--map FILE, format: docs/map-format.md) or from the\n"
      "control catalog (--catalog DSN or $SHARDLINE_CATALOG), which keeps every published\n"
      "version and an audit trail.");
  CLI::App* catalog = app.add_subcommand("catalog", "Manage the control catalog");
  catalog->require_subcommand(1);
  CLI::App* rebalance =
      app.add_subcommand("rebalance", "Plan moving hash ranges between nodes");
  rebalance->require_subcommand(1);

  AllOptions o;
  CLI::App* rollout_group = SetupRollout(app, o.rollout);
  const std::vector<Command> commands = {
      {rollout_group, [&] { return RunRollout(*rollout_group, o.rollout); }},
      {SetupCatalogInit(*catalog, o.catalog_init), [&] { return RunCatalogInit(o.catalog_init); }},
      {SetupMapInit(*map, o.map_init), [&] { return RunMapInit(o.map_init); }},
      {SetupMapValidate(*map, o.map_validate), [&] { return RunMapValidate(o.map_validate); }},
      {SetupMapShow(*map, o.map_show), [&] { return RunMapShow(o.map_show); }},
      {SetupMapLocate(*map, o.map_locate), [&] { return RunMapLocate(o.map_locate); }},
      {SetupMapDiff(*map, o.map_diff), [&] { return RunMapDiff(o.map_diff); }},
      {SetupMapPublish(*map, o.map_publish), [&] { return RunMapPublish(o.map_publish); }},
      {SetupMapHistory(*map, o.map_history), [&] { return RunMapHistory(o.map_history); }},
      {SetupMapRevert(*map, o.map_revert), [&] { return RunMapRevert(o.map_revert); }},
      {SetupRebalancePlan(*rebalance, o.rebalance_plan),
       [&] { return RunRebalancePlan(o.rebalance_plan); }},
      {SetupStats(app, o.stats), [&] { return RunStats(o.stats); }},
      {SetupVerify(app, o.verify), [&] { return RunVerify(o.verify); }},
      {SetupCleanup(app, o.cleanup), [&] { return RunCleanup(o.cleanup); }},
      {SetupBackfill(app, o.backfill), [&] { return RunBackfillCommand(o.backfill); }},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ExitCodeForParseError(app.exit(e));
  }

  for (const Command& c : commands) {
    if (!c.app->parsed()) continue;
    absl::Status status;
    try {
      status = c.run();
    } catch (const std::exception& e) {
      // Our code returns statuses; this is a library throwing (bad_alloc, a JSON encoder...).
      status = absl::InternalError(fmt::format("unexpected exception: {}", e.what()));
    }
    if (!status.ok()) PrintError(status);
    return ExitCodeForStatus(status);
  }
  // require_subcommand makes this unreachable; fail loudly rather than succeed silently.
  PrintError(UsageError("no command given"));
  return kExitUsage;
}

}  // namespace
}  // namespace shardline::migrate

int main(int argc, char** argv) { return shardline::migrate::Main(argc, argv); }
