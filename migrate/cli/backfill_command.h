// `shardline backfill`: copies the rows of moving hash ranges from their source node to their
// target node (migrate/backfill.h): every move of a plan file, or one --from/--to/--range.
// Checkpointed (in the catalog with --catalog, else on the target), resumable after any kill,
// idempotent, throttled; a progress bar on a terminal, plain lines otherwise; a summary (text or
// --json) at the end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "backfill.h"
#include "cli/common.h"

namespace shardline::migrate {

// Test-only environment: SHARDLINE_TEST_KILL_AFTER_BATCHES=N raises SIGKILL at batch N of the
// run, at the point SHARDLINE_TEST_KILL_POINT names (before_commit, after_commit,
// after_checkpoint; default after_checkpoint).
inline constexpr const char* kKillAfterBatchesEnvForTest = "SHARDLINE_TEST_KILL_AFTER_BATCHES";
inline constexpr const char* kKillPointEnvForTest = "SHARDLINE_TEST_KILL_POINT";

struct BackfillCommandOptions {
  MapSourceOptions source;          // --map FILE | --catalog DSN: nodes, tables, checkpoints
  std::string plan_file;            // --plan PLAN: every move it lists
  std::string from;                 // --from NODE
  std::string to;                   // --to NODE
  std::vector<std::string> ranges;  // --range LO:HI (repeatable)
  std::vector<std::string> tables;  // --table T (repeatable; default every sharded table)
  double rate = 0;                  // --rate ROWS_PER_S (0 = unlimited)
  std::int64_t batch = kDefaultBackfillBatchRows;  // --batch N
  bool restart = false;             // --restart
  bool json = false;                // --json
};

CLI::App* SetupBackfill(CLI::App& app, BackfillCommandOptions& options);

// Runs the backfill and prints the summary. Errors as RunBackfill (backfill.h), plus usage
// errors for bad flag combinations and the map / plan loaders' errors.
absl::Status RunBackfillCommand(const BackfillCommandOptions& options);

}  // namespace shardline::migrate
