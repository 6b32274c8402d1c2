// The rebalance planner: given the current shard map, size estimates per range and the nodes to
// add or remove, decides which ranges move where so that every node ends within a tolerance of
// the mean while as little data as possible moves. A pure function (no I/O, no clock, no
// randomness): the same input always gives the same plan, so it is unit-tested exhaustively and
// `rebalance plan` only gathers inputs and writes the result (see plan_toml.h).
//
// How it works: each node's load is the sum of its ranges' weights (bytes, or 1 per range). The
// target of a remaining node is the mean; a removed node's target is zero. Removed nodes are
// drained first, each range going to the node furthest below its target. Then, while some node
// is outside half the tolerance (the other half is headroom for the estimates), the greedy moves
// a range from the most over-target node to the most under-target one, choosing the largest range
// that fits min(deficit, excess). When no range fits, the smallest range that does not is split
// into two halves of its hash span, its size shared in proportion (an estimate that holds for a
// good hash), and the greedy tries again. A range may overshoot what is wanted by a quarter of
// the tolerance (saving a split) while all overshoots together stay under 2% of the minimum
// movement, so a plan moves at most 1.02 times the minimum (draining a range of one hash value
// that cannot be split is the only exception).
// Finally adjacent pieces of one original range that end on the same node are joined again, so
// a split survives only where the two halves end up on different nodes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/shard_map.h"
#include "stats.h"

namespace shardline::migrate {

// What a balanced node has the same amount of.
enum class BalanceMode {
  kSize,    // estimated bytes (RangeStats::bytes); ranges too coarse are split
  kRanges,  // number of ranges, each weighing 1; never splits
};
// "size" | "ranges".
std::string_view BalanceModeName(BalanceMode mode);
// Parses "size" | "ranges"; InvalidArgument naming the value otherwise.
absl::StatusOr<BalanceMode> ParseBalanceMode(std::string_view name);

inline constexpr double kDefaultTolerancePercent = 5.0;
inline constexpr double kMinTolerancePercent = 0.1;
inline constexpr double kMaxTolerancePercent = 100.0;

// The planner's input besides the current map.
struct PlanRequest {
  // Size estimates. Entries are summed per range; an entry that straddles several ranges of the
  // map is shared among them in proportion to the hash span; a range without an entry is empty.
  std::vector<RangeStats> stats;
  // Nodes to add: name and dsn are required; pool limits and replicas are copied into the map.
  std::vector<NodeConfig> add_nodes;
  // Names of nodes to drain. A drained node stays in the resulting map owning no range, so the
  // plan still has its connection string for copying and cleanup; the rollout's cleanup
  // publishes a map without it (rollout_cleanup.cc).
  std::vector<std::string> remove_nodes;
  // A node of the current map that owns no range (a drained node left behind by a cleanup that
  // did not finish, a node published by hand) gets no ranges unless this is set: it is planned
  // as removed (role "removed", a warning says so), so a plan never moves ranges back onto a
  // node that was decommissioned, and the rollout's cleanup drops it from the map. Nodes named
  // in `add_nodes` always get their share. Default false.
  bool use_empty_nodes = false;
  BalanceMode mode = BalanceMode::kSize;
  // Every remaining node ends within this many percent of the mean load (kMinTolerancePercent..
  // kMaxTolerancePercent). Smaller means more moves and more splits; default 5%.
  double tolerance_percent = kDefaultTolerancePercent;
};

// One range changing owner. [lo, hi] is a range of the resulting map.
struct RangeMove {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::string from;  // owner in the current map
  std::string to;    // owner in the resulting map
  std::int64_t rows = 0;   // estimated
  std::int64_t bytes = 0;  // estimated

  friend bool operator==(const RangeMove&, const RangeMove&) = default;
};

enum class NodeRole { kKept, kAdded, kRemoved };
// "kept" | "added" | "removed".
std::string_view NodeRoleName(NodeRole role);
absl::StatusOr<NodeRole> ParseNodeRole(std::string_view name);

// One node's share before and after the plan.
struct NodeBalance {
  std::string name;
  NodeRole role = NodeRole::kKept;
  std::int64_t ranges_before = 0;
  std::int64_t ranges_after = 0;
  std::int64_t rows_before = 0;
  std::int64_t rows_after = 0;
  std::int64_t bytes_before = 0;
  std::int64_t bytes_after = 0;

  friend bool operator==(const NodeBalance&, const NodeBalance&) = default;
};

// A plan: the moves, the map they lead to, and numbers to judge it by.
struct RebalancePlan {
  BalanceMode mode = BalanceMode::kSize;
  double tolerance_percent = kDefaultTolerancePercent;
  std::int64_t source_map_version = 0;
  // RFC 3339 UTC time the plan was made. The planner leaves it empty (it reads no clock); the
  // CLI sets it before writing the plan file.
  std::string created_at;

  // Sorted by lo; each names a range of `result` owned by `to`.
  std::vector<RangeMove> moves;
  // The map after all moves: version = source + 1, ranges sorted by lo, every range stable.
  ShardMapConfig result;

  // Per node, in the order of result.nodes (current nodes, then added ones).
  std::vector<NodeBalance> nodes;
  std::int64_t total_rows = 0;
  std::int64_t total_bytes = 0;
  std::int64_t rows_moved = 0;
  std::int64_t bytes_moved = 0;
  std::int64_t ranges_moved = 0;  // = moves.size()
  // Lower bounds: what must leave the nodes above the mean (all of a removed node's share).
  // Bytes: the excess over the exact mean. Ranges: the excess over the mean rounded up.
  std::int64_t min_bytes_moved = 0;
  std::int64_t min_ranges_moved = 0;
  // Ranges of the result that exist because a range was split (result ranges - current ranges).
  std::int64_t splits = 0;
  // Largest |load - mean| / mean of a remaining node after the plan, in percent, counted in the
  // mode's unit (bytes or ranges). 0 when there is nothing to balance.
  double max_deviation_percent = 0;
  // Why the plan misses the tolerance or balances nothing, if it does; empty when all is well.
  std::vector<std::string> warnings;

  friend bool operator==(const RebalancePlan&, const RebalancePlan&) = default;
};

// Plans the rebalance of `current` (see the file comment). Deterministic; does not block.
// InvalidArgument for: an invalid `current` (the ShardMap::Create message), a tolerance outside
// kMinTolerancePercent..kMaxTolerancePercent, an unknown or twice-named node to remove, an added
// node whose name exists or is given twice or is empty or has an empty dsn, removing every node,
// negative or inverted stats, an unknown mode.
// FailedPrecondition when a range of `current` is not stable (a rollout is under way).
// A plan that cannot reach the tolerance (a range of one hash value larger than the tolerance,
// or too few ranges in kRanges mode) is still returned, with a warning saying why.
absl::StatusOr<RebalancePlan> PlanRebalance(const ShardMapConfig& current,
                                            const PlanRequest& request);

}  // namespace shardline::migrate
