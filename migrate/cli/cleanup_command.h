// `shardline cleanup`: deletes from a node the rows of ranges it no longer owns (after a move), in
// throttled batches with progress lines (migrate/cleanup.h). Refuses a range the node still owns.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli/common.h"

namespace shardline::migrate {

struct CleanupCommandOptions {
  MapSourceOptions source;          // --map FILE | --catalog DSN: the current map
  std::string plan_file;            // --plan PLAN: clean every move's source node
  std::string node;                 // --node NODE
  std::vector<std::string> ranges;  // --range LO:HI (repeatable)
  std::vector<std::string> tables;  // --table T (repeatable)
  double rate = 0;                  // --rate ROWS_PER_S (0 = unthrottled)
  std::size_t batch = 5000;         // --batch N
  bool json = false;                // --json summary
};

CLI::App* SetupCleanup(CLI::App& app, CleanupCommandOptions& options);
absl::Status RunCleanup(const CleanupCommandOptions& options);

}  // namespace shardline::migrate
