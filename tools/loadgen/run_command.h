// `shardline-loadgen run`: the workload mix through the router, closed or open loop, with a
// report, thresholds (exit 1 when a budget is broken), an optional ledger of acknowledged
// writes and an optional metrics endpoint.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli_common.h"

namespace shardline::loadgen {

struct RunCommandOptions {
  RouterFlags router;
  std::int64_t users = 1000;
  std::int64_t first_user = 1;
  int workouts_per_user = 3;
  std::string mix = "profile=40,feed=30,log=20,update=8,leaderboard=2";
  int workers = 8;
  double rate = 0;
  std::string duration = "10s";
  std::string warmup = "0s";
  std::string progress = "5s";
  std::uint64_t calls = 0;
  std::uint64_t seed = 1;
  std::string ledger;
  std::vector<std::string> thresholds;
  bool json = false;
  int metrics_port = -1;  // -1: no endpoint; 0: any free port (printed)
};

CLI::App* SetupRun(CLI::App& app, RunCommandOptions& options);
// Runs and prints the report (table, or JSON with --json) on stdout. UsageError for a bad
// --mix / --threshold / duration; the router's error when it cannot start; the ledger's when
// it cannot be written; FailedPrecondition naming every broken threshold (exit 1) after the
// report. Stops early, with a report, when `stop` becomes true (SIGINT/SIGTERM).
absl::Status RunRun(const RunCommandOptions& options, const std::atomic<bool>* stop);

}  // namespace shardline::loadgen
