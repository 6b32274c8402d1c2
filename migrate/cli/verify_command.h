// `shardline verify`: compares the rows of moved ranges between a source and a target node
// (migrate/verify.h), per table, and names the keys that are missing, extra, different or
// duplicated; --repair re-copies what differs; --orphans lists rows on any node that the map says
// belong elsewhere. Exit status 0 when clean, 1 on any difference.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli/common.h"

namespace shardline::migrate {

struct VerifyCommandOptions {
  MapSourceOptions source;          // --map FILE | --catalog DSN: the nodes (and the tables)
  std::string plan_file;            // --plan PLAN: the moves to verify
  std::string from;                 // --from NODE
  std::string to;                   // --to NODE
  std::vector<std::string> ranges;  // --range LO:HI (repeatable)
  std::vector<std::string> tables;  // --table T (repeatable)
  int buckets = 1024;               // --buckets N
  bool json = false;                // --json
  bool repair = false;              // --repair
  bool orphans = false;             // --orphans
  std::size_t max_keys = 10;        // --max-keys N: keys listed per kind
  bool sequential = false;          // --sequential: one side after the other (shared host)
};

CLI::App* SetupVerify(CLI::App& app, VerifyCommandOptions& options);

// Runs the verification and prints the report. OK when clean; FailedPrecondition "verify found
// N differences" (exit 1) otherwise; usage errors for bad flag combinations.
absl::Status RunVerify(const VerifyCommandOptions& options);

// "LO:HI" (signed 64-bit integers, LO <= HI) -> pair. InvalidArgument naming the text.
absl::StatusOr<std::pair<std::int64_t, std::int64_t>> ParseRangeArg(const std::string& text);

}  // namespace shardline::migrate
