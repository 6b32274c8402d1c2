// `load`: fills the app's tables fast. Rows are generated per user (deterministically from the
// user id and a seed), routed by the shard map to the node that owns the user, and streamed
// with COPY (text format): one connection per table per node, all streaming at once, so each
// node builds its four tables in parallel backends.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "shardline/shard_map.h"

namespace shardline::loadgen {

struct LoadOptions {
  std::int64_t first_user = 1;  // users first_user .. first_user + users - 1
  std::int64_t users = 0;
  int workouts_per_user = 3;
  int logs_per_workout = 5;     // workout_logs rows per workout
  int posts_per_user = 2;
  // TRUNCATE the app's tables on every node first. Default false (a COPY of users that exist
  // fails on their primary key, naming it).
  bool truncate = false;
  std::uint64_t seed = 1;       // what the generated names, numbers and texts derive from
  std::string application_name = "shardline-loadgen";
};

struct LoadStats {
  std::int64_t rows = 0;
  std::map<std::string, std::int64_t> rows_by_table;
  std::map<std::string, std::int64_t> users_by_node;
  double seconds = 0;
};

// Loads the users of `options` into the nodes of `map`; `next_id` gives the ids of workouts,
// logs and posts (the router's generator: ids stay unique when ranges move). The schema must
// exist (ApplyAppSchema). The first error, naming the node and table, when a connection or a
// COPY fails (what was copied on other nodes stays). Blocks until every COPY finished.
absl::StatusOr<LoadStats> LoadUsers(const ShardMap& map,
                                    const std::function<absl::StatusOr<std::int64_t>()>& next_id,
                                    const LoadOptions& options);

}  // namespace shardline::loadgen
