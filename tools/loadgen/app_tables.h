// The fitness-app tables as the load generator sees them (schemas/app.sql): their primary-key
// shape and the columns whose content the ledger records, shared by the workload (which hashes
// what it wrote) and check-ledger (which hashes what it finds), so both hash the same columns
// in the same order.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "shardline/shard_map.h"

namespace shardline::loadgen {

// The app's tables, in dependency-free load order.
inline constexpr std::string_view kAppTables[] = {"users", "workouts", "workout_logs", "posts"};

// A table whose writes are ledgered. Every primary key is (user_id) or (user_id, id).
struct LedgeredTable {
  std::string_view name;
  bool has_id;                                  // primary key (user_id, id)
  std::vector<std::string_view> content_columns;  // hashed in this order
};

// The ledgered table named `name`, or nullptr.
const LedgeredTable* FindLedgeredTable(std::string_view name);

// Runs schemas/app.sql on every node of `map` (in parallel, one connection each, created with
// `application_name`). Idempotent. The first failure, naming the node, otherwise OK. Blocks
// for one connect and one script per node.
absl::Status ApplyAppSchema(const ShardMap& map, const std::string& application_name);

}  // namespace shardline::loadgen
