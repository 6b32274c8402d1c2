// Cleanup after a move: deletes from a node the rows of hash ranges it no longer owns, in
// throttled batches (keyset order of the primary key, each batch its own transaction), so a
// node's copies of moved ranges go away without long locks or a burst of WAL. Refuses a range the
// node still owns (in whole or in part) in the current map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

inline constexpr std::size_t kDefaultCleanupBatch = 5000;

struct CleanupOptions {
  std::vector<std::string> tables;  // sharded tables (names as in the map); empty = all
  std::size_t batch = kDefaultCleanupBatch;  // rows deleted per transaction
  double rows_per_second = 0;  // throttle; 0 = unthrottled
  // Called after every batch (table, rows deleted so far in that table); may be empty.
  std::function<void(const std::string& table, std::int64_t deleted, double rows_per_s)> progress;
  // Accept a node that `map` does not name (nothing routes to it: the rollout deletes the
  // copies of a node its rollback or cleanup already dropped from the map). Default false: a
  // node name the map does not know is a mistake on the command line.
  bool node_may_be_absent = false;
};

struct CleanupTableResult {
  std::string table;
  std::int64_t deleted = 0;
  std::int64_t batches = 0;
  double seconds = 0;
};

struct CleanupResult {
  std::string node;
  std::vector<CleanupTableResult> tables;
  std::int64_t deleted() const {
    std::int64_t n = 0;
    for (const auto& t : tables) n += t.deleted;
    return n;
  }
};

// Checks that node `node` owns no part of any of `ranges` in `map`: FailedPrecondition
// "node b still owns range lo..hi (map version 7); cleanup deletes only ranges a node no longer
// owns" naming the first overlap. InvalidArgument when a range is empty, and when the node is
// unknown unless `node_may_be_absent` (CleanupOptions::node_may_be_absent).
absl::Status CheckNotOwned(const ShardMap& map, const std::string& node,
                           const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
                           bool node_may_be_absent = false);

// Deletes the rows of `ranges` from every selected table on `conn` (node `node` of `map`),
// after CheckNotOwned. Each batch: DELETE ... WHERE key in the next `batch` keys in primary-key
// order with hash in the ranges, in its own transaction; then sleeps to keep the rate. Blocks
// until done. Errors name the node and the table.
absl::StatusOr<CleanupResult> CleanupRanges(
    pg::Conn& conn, const ShardMap& map, const std::string& node,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    const CleanupOptions& options);

}  // namespace shardline::migrate
