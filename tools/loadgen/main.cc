// The `shardline-loadgen` command: wires the subcommands (one file each), parses the command
// line with CLI11, runs the one given and maps its status to the exit code (0 ok, 1 failure or
// broken threshold, 2 usage error), like the `shardline` CLI. SIGINT/SIGTERM ask a running
// `run` to stop and report; a second one kills as usual.
#include <csignal>
#include <exception>
#include <functional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "check_ledger_command.h"
#include "cli_common.h"
#include "load_command.h"
#include "run_command.h"
#include "schema_command.h"

namespace shardline::loadgen {
namespace {

// Set by the signal handler: a static because a handler can reach nothing else. Lock-free
// atomics are async-signal-safe.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void OnStopSignal(int sig) {
  g_stop.store(true);
  std::signal(sig, SIG_DFL);  // a second signal terminates
}

struct Command {
  CLI::App* app;
  std::function<absl::Status()> run;
};

int Main(int argc, char** argv) {
  CLI::App app(
      "shardline-loadgen: load and run a fitness-app workload on a sharded PostgreSQL cluster "
      "through the shardline router",
      kProgram);
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("{}: error: {}\nRun with --help for more information.\n", kProgram,
                       e.what());
  });
  app.footer(
      "Exit status: 0 ok, 1 failure, broken threshold or missing writes, 2 usage error.\n"
      "Environment: SHARDLINE_CATALOG stands in for --catalog DSN.\n"
      "Every command has --help, e.g. `shardline-loadgen run --help`.\n"
      "\n"
      "Examples:\n"
      "  shardline-loadgen load --map schemas/maps/app_3_nodes.toml --users 100000 --truncate\n"
      "  shardline-loadgen run --map schemas/maps/app_3_nodes.toml --users 100000 --workers 16 \\\n"
      "      --duration 30s --ledger run.ledger --threshold 'p99<20ms'\n"
      "  shardline-loadgen check-ledger --map schemas/maps/app_3_nodes.toml --ledger run.ledger");

  SchemaOptions schema;
  LoadCommandOptions load;
  RunCommandOptions run;
  CheckLedgerCommandOptions check;
  CLI::App* run_app = SetupRun(app, run);
  const std::vector<Command> commands = {
      {SetupSchema(app, schema), [&] { return RunSchema(schema); }},
      {SetupLoad(app, load), [&] { return RunLoad(load); }},
      {run_app, [&] { return RunRun(run, &g_stop); }},
      {SetupCheckLedger(app, check), [&] { return RunCheckLedger(check); }},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return migrate::ExitCodeForParseError(app.exit(e));
  }
  // Only `run` stops gracefully; the other commands die on a signal as usual.
  if (run_app->parsed()) {
    std::signal(SIGINT, OnStopSignal);
    std::signal(SIGTERM, OnStopSignal);
  }

  for (const Command& c : commands) {
    if (!c.app->parsed()) continue;
    absl::Status status;
    try {
      status = c.run();
    } catch (const std::exception& e) {
      status = absl::InternalError(fmt::format("unexpected exception: {}", e.what()));
    }
    if (!status.ok()) PrintError(status);
    return migrate::ExitCodeForStatus(status);
  }
  PrintError(migrate::UsageError("no command given"));
  return migrate::kExitUsage;
}

}  // namespace
}  // namespace shardline::loadgen

int main(int argc, char** argv) { return shardline::loadgen::Main(argc, argv); }
