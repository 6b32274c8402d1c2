// The plan file: a RebalancePlan as TOML, written by `rebalance plan` and read back by backfill,
// verify and rollout. Layout:
//
//   [plan]           format_version, created_at, mode, tolerance_percent, source_map_version,
//                    result_map_version
//   [summary]        totals, moved and minimum amounts, splits, max_deviation_percent, warnings
//   [[summary.nodes]] per node: name, role, ranges/rows/bytes before and after
//   [[moves]]        lo, hi, from, to, rows, bytes (estimates)
//   [result_map]     toml = '''<the resulting map in the shard map format>'''
//
// The resulting map is embedded as the text of a map file rather than as TOML tables so that it
// goes through the one map parser (ParseShardMapToml) with all its checks, and can be copied out
// as a map file unchanged; errors inside it still name the plan file and its line.
// The plan keeps the nodes' connection strings with their passwords (backfill must connect), so
// WritePlanFile() creates the file with mode 0600; never print a plan's text to a terminal.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "planner.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// The layout version written to [plan] format_version; readers refuse other versions.
inline constexpr std::int64_t kPlanFormatVersion = 1;

struct ParsedPlan {
  RebalancePlan plan;
  // The validated resulting map (the same content as plan.result).
  std::shared_ptr<const ShardMap> result_map;
  // Unknown fields, e.g. "plan.toml:7: unknown field 'colour' in [[moves]] (ignored)".
  std::vector<std::string> warnings;
};

// Parses plan text. `source_name` (usually the path) prefixes every message. InvalidArgument
// with "source:line: ..." for TOML syntax errors, missing or mistyped fields, an unsupported
// format_version, a result map that fails validation (lines counted in the plan file), and moves
// inconsistent with the result map (a move whose range is not a range of the result map owned by
// its `to`, a move to itself, an unknown node, a range moved twice).
absl::StatusOr<ParsedPlan> ParsePlanToml(std::string_view text, std::string_view source_name);

// Reads and parses a plan file. NotFound / PermissionDenied naming the path when it cannot be
// read; otherwise as ParsePlanToml. Blocks on the file read.
absl::StatusOr<ParsedPlan> LoadPlanFile(const std::string& path);

// The plan as TOML text (passwords kept: for the plan file only, never for display).
std::string PlanToToml(const RebalancePlan& plan);

// Writes PlanToToml(plan) to `path` with mode 0600 through a temporary file in the same
// directory renamed into place, so a reader never sees half a plan. Blocks on the write and
// fsync. PermissionDenied / NotFound / Internal naming the path on failure.
absl::Status WritePlanFile(const std::string& path, const RebalancePlan& plan);

}  // namespace shardline::migrate
