// Cross-shard statements: the `$owned(col)` placeholder, expanded per node into a predicate
// on the hash of the key column that is true exactly for the hash ranges the node owns, so a
// fan-out counts every row once even while a move has left copies on the old owner. The
// parallel execution itself is RouterImpl::FanOut (fanout.cc), on the router's worker pool.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "mutex.h"
#include "shardline/key.h"

namespace shardline::internal {

// `sql` with every `$owned(col)` replaced by the predicate for `owned` (sorted, coalesced
// inclusive hash ranges) on column `col`:
//   (hashint8extended("user_id", 0) BETWEEN -9223372036854775808 AND -1 OR ...)
// `true` when `owned` covers the whole hash space, `false` when it is empty. `col` may be
// qualified (`w.user_id`); each part is quoted, and folded to lower case unless already quoted
// (as PostgreSQL folds unquoted names). The text is not parsed as SQL: `$owned(` inside a
// string literal is expanded too. InvalidArgument for an unterminated or empty `$owned(`.
// With `check_version` > 0 the predicate also calls shardline.map_version_ok(check_version)
// (schemas/node.sql), which the node evaluates once, before any row (a one-time filter: it
// has no column reference), and which refuses a map older than the node's map epoch with
// SLF02, so a fan-out on a stale map fails instead of missing or double-counting moved rows:
//   (shardline.map_version_ok(7) AND (<ranges>)), shardline.map_version_ok(7) for the whole
//   space, (NOT shardline.map_version_ok(7)) for nothing (a plain `false` would let the
//   planner drop the check).
// Pure; allocates the result.
absl::StatusOr<std::string> ExpandOwned(
    std::string_view sql, KeyType key_type,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& owned,
    std::int64_t check_version = 0);

// The parts of one fan-out run on the worker pool: each is queued, then started by a worker,
// or abandoned by the caller once the fan-out's deadline passed with the part still queued
// (behind other fan-outs' parts of a hung node). Shared (shared_ptr) with the queued tasks,
// which may run after the fan-out returned. Thread-safe.
class FanOutParts {
 public:
  explicit FanOutParts(std::size_t n);  // part 0 counts as done: the caller runs it
  // A worker is about to run part i: false if it was abandoned (then do nothing).
  bool Start(std::size_t i) ABSL_LOCKS_EXCLUDED(mu_);
  void Finish(std::size_t i) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until every part is done or `deadline` passes (max(): no deadline); then abandons
  // the parts still queued and waits for the running ones. Returns the abandoned parts.
  std::vector<std::size_t> AwaitOrAbandon(std::chrono::steady_clock::time_point deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  enum class State { kQueued, kRunning, kDone, kAbandoned };
  Mutex mu_;
  CondVar cv_;
  std::vector<State> state_ ABSL_GUARDED_BY(mu_);
};

// The predicate alone (what `$owned(col)` expands to) for an already quoted column.
std::string OwnedPredicate(KeyType key_type, std::string_view quoted_column,
                           const std::vector<std::pair<std::int64_t, std::int64_t>>& owned,
                           std::int64_t check_version = 0);

}  // namespace shardline::internal
