// The human-readable view of a rebalance plan: the table `rebalance plan --dry-run` prints (moves,
// per-node shares before and after, the summary and any warnings). It names nodes only and never
// prints a connection string, so it is safe for terminals and logs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "planner.h"

namespace shardline::migrate {

struct PlanReportOptions {
  // Print at most this many moves (the rest are counted); 0 = all of them.
  std::size_t max_moves = 0;
};

// The plan as aligned text tables ending with a newline. Pure; thread-compatible.
std::string PlanReportText(const RebalancePlan& plan, const PlanReportOptions& options = {});

// 1536 -> "1.5 KiB", 0 -> "0 B" (binary units, one decimal).
std::string HumanBytes(std::int64_t bytes);

}  // namespace shardline::migrate
