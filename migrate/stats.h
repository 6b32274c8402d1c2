// Size estimates per hash range: how many rows and bytes of the sharded tables fall into each
// range of a shard map. `shardline stats` computes them with one bucketed pass per table per node
// (rows grouped by the server-side hash of the shard key); the rebalance planner consumes them.
// The pass per table per node is
//   SELECT width_bucket(hash(key), $1::bigint[]), count(*), sum(pg_column_size(t.*)) ... GROUP BY 1
// with the ranges' lower bounds as the array parameter, so the bucket is the range index. Rows a
// node holds in a range it does not own (left over from a move, or copied ahead of one) are
// counted as orphans of that node, never attributed to the owner.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pg_conn.h"
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
  // A table missing on a node that owns and reads no range counts as empty there instead of
  // failing (StatsDetail::empty_nodes says so). `rebalance plan` sets it: a node listed in the
  // map before it takes ranges (with its replicas, say) has no tables until `rollout start`
  // creates them, as it does for --add-node. A node that serves ranges and lacks a table still
  // fails: its rows are somewhere else, and a plan from such numbers would be wrong.
  bool missing_table_empty_on_idle_nodes = false;
};

// Measures every range of `map` on the node that owns it (reads of a range moving under a
// rollout are counted on its owner). Returns one entry per range of the map, in map order.
// (CollectStatsDetail + RangeTotals, for callers that need the detail's notes.)
// Blocks for one scan of each table on each node.
// Unavailable naming the node when a node cannot be reached; NotFound naming table and node
// when a table is missing.
absl::StatusOr<std::vector<RangeStats>> CollectRangeStats(const ShardMap& map,
                                                          const CollectStatsOptions& options);

// Rows and bytes (sum of pg_column_size of the rows).
struct RowsBytes {
  std::int64_t rows = 0;
  std::int64_t bytes = 0;
  RowsBytes& operator+=(const RowsBytes& o) {
    rows += o.rows;
    bytes += o.bytes;
    return *this;
  }
  friend bool operator==(const RowsBytes&, const RowsBytes&) = default;
};

// What one node holds of one table.
struct TableNodeStats {
  std::string table;  // as named in the map
  std::string node;
  // Per range index of the map: rows in that range on this node. Only ranges the node owns are
  // non-zero (rows of other ranges are in `orphans`).
  std::vector<RowsBytes> owned_by_range;
  RowsBytes owned;                  // sum of owned_by_range
  RowsBytes orphans;                // rows in ranges another node owns
  std::vector<RowsBytes> orphans_by_range;  // per range index, like owned_by_range
};

// Everything one stats run measured: one entry per (table, node), tables in map order, nodes in
// map order within a table.
struct StatsDetail {
  std::vector<TableNodeStats> entries;
  // With missing_table_empty_on_idle_nodes: one line per (node, table) counted as empty because
  // the table does not exist there, e.g. `node n3: table "users" does not exist yet (counted
  // as empty)`.
  std::vector<std::string> empty_nodes;
};

// Measures the selected tables on every node of `map` (all nodes concurrently, one thread and
// one connection each; one scan per table per node). Errors as CollectRangeStats.
absl::StatusOr<StatsDetail> CollectStatsDetail(const ShardMap& map,
                                               const CollectStatsOptions& options);

// The per-range totals (owned rows only, summed over tables) of a detail, in map range order:
// what CollectRangeStats() returns.
std::vector<RangeStats> RangeTotals(const ShardMap& map, const StatsDetail& detail);

// Measures one table on one node: rows and bytes per range index of `map` (a vector of
// map.ranges().size() entries, rows of every range, owned or not). NotFound naming table and
// node when the table is missing. Blocks for one scan of the table.
absl::StatusOr<std::vector<RowsBytes>> MeasureTableOnNode(pg::Conn& conn, const ShardMap& map,
                                                          const TableConfig& table);

// The tables `names` selects among the sharded tables of `map` (empty = all sharded tables, in
// map order). InvalidArgument naming an unknown or reference table.
absl::StatusOr<std::vector<const TableConfig*>> SelectShardedTables(
    const ShardMap& map, const std::vector<std::string>& names);

}  // namespace shardline::migrate
