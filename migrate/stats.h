// Size estimates per hash range: how many rows and bytes of the sharded tables fall into each
// range of a shard map. `shardline stats` computes them with one bucketed pass per table per node
// (rows grouped by the server-side hash of the shard key); the rebalance planner consumes them.
//
// STATUS: interface only. CollectRangeStats() is a stub returning Unimplemented until the stats
// pass is written (migrate/stats.cc); RangeStats is what the planner already consumes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// Estimated contents of the inclusive hash range [lo, hi]: rows and bytes summed over the
// sharded tables (reference tables excluded). Several entries for the same range (one per table)
// add up; consumers treat a range without an entry as empty.
struct RangeStats {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::int64_t rows = 0;   // >= 0
  std::int64_t bytes = 0;  // >= 0, e.g. sum(pg_column_size(t.*)) of the rows in the range

  friend bool operator==(const RangeStats&, const RangeStats&) = default;
};

// What CollectRangeStats() looks at.
struct CollectStatsOptions {
  // Sharded tables to measure; empty = every sharded table of the map.
  std::vector<std::string> tables;
};

// Measures every range of `map` on the node that owns it (reads of a range moving under a
// rollout are counted on its owner). Returns one entry per range of the map, in map order.
// Blocks for one scan of each table on each node.
// Unavailable naming the node when a node cannot be reached; NotFound naming table and node
// when a table is missing.
// STUB: currently always returns Unimplemented (see migrate/stats.cc).
absl::StatusOr<std::vector<RangeStats>> CollectRangeStats(const ShardMap& map,
                                                          const CollectStatsOptions& options);

}  // namespace shardline::migrate
