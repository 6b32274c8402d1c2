// `shardline rollout start|status|advance|rollback|cleanup|abort`: the online, phased move of a
// plan's ranges (migrate/rollout.h). This file only parses flags and prints; the engine decides.
// Test hook: with SHARDLINE_ROLLOUT_KILL_AT=<point> in the environment the command kills itself
// with SIGKILL when the engine reaches that point (e.g. "writes:fenced"), to prove that a rerun
// continues correctly.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shardline::migrate {

inline constexpr const char* kRolloutKillEnvForTest = "SHARDLINE_ROLLOUT_KILL_AT";

struct RolloutCliOptions {
  std::string catalog_dsn;  // --catalog DSN ($SHARDLINE_CATALOG)
  // start
  std::string plan;
  std::string waves = "1%,10%,50%,100%";
  std::string soak = "0s";  // --soak DURATION: 30s, 5m, 1h
  bool auto_advance = false;
  // every command that names a migration
  std::int64_t migration = 0;
  bool json = false;
  double pause_lock_timeout_s = 2;
  double apply_wait_s = 30;
  double replica_wait_s = 30;
  double copy_wait_s = 600;
  double router_wait_s = 60;
  double statement_timeout_s = 300;
  double lock_timeout_s = 10;
  std::string write_window = "5s";
  std::int64_t delete_batch = 5000;
  double delete_rate = 0;
};

// Adds the `rollout` group with its subcommands to `app`. Returns the group.
CLI::App* SetupRollout(CLI::App& app, RolloutCliOptions& options);

// Runs whichever rollout subcommand was parsed. Statuses from the engine.
absl::Status RunRollout(const CLI::App& group, const RolloutCliOptions& options);

// "30s", "5m", "1h", "250ms", "0" -> seconds. InvalidArgument naming the text.
absl::StatusOr<double> ParseDurationSeconds(const std::string& text);

}  // namespace shardline::migrate
