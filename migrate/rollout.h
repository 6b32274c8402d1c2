// The online, phased move of hash ranges (`shardline rollout`): a plan's moves cut into waves
// (a small pilot first), each wave taken through catch-up (logical replication with a row
// filter on the moving ranges), a consistency gate (exact verify against a snapshot of the
// source while the subscription is paused at the snapshot's position), a switch of reads and
// a switch of writes behind a fence (with reverse replication so that a rollback loses
// nothing), then a soak; `cleanup`, `rollback` and `abort` end a migration. Every step is
// recorded in the catalog before and after it acts (rollout_store.h) and is idempotent, so a
// command killed at any point and run again continues correctly. The protocol and its
// reasoning: docs/architecture.md, "Rollout".
//
// Thread-compatible: each function opens its own connections and uses them from the calling
// thread; a migration is driven by one process at a time (a catalog advisory lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rollout_store.h"

namespace shardline::migrate {

struct RolloutOptions {
  std::string catalog_dsn;
  // How long a command waits for the initial copy of a wave before the gate gives up (the
  // copy goes on; run `advance` again). Default 10 min.
  std::chrono::milliseconds copy_wait{std::chrono::minutes(10)};
  // How long to wait for a subscriber to apply up to a position (gate, fence). Default 30 s.
  std::chrono::milliseconds apply_wait{std::chrono::seconds(30)};
  // lock_timeout when pausing writers to the moving ranges (gate, fence): a writer transaction
  // in flight longer than this makes the step fail (retry later) rather than stall writers.
  // Default 2 s.
  std::chrono::milliseconds pause_lock_timeout{std::chrono::seconds(2)};
  // How long cleanup / rollback wait for every live router to apply a map version. 60 s.
  std::chrono::milliseconds router_wait{std::chrono::seconds(60)};
  // A router whose heartbeat is older than this is not live. Default 60 s (router/registry.h).
  std::chrono::seconds router_stale_after{60};
  // statement_timeout and lock_timeout of every connection the engine opens (catalog and
  // nodes): no statement waits without bound. Default 5 min / 10 s.
  std::chrono::milliseconds statement_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds lock_timeout{std::chrono::seconds(10)};
  // The write window's deadline: from the fence to the owner map. When the targets have not
  // caught up or reverse replication has not started by then, the step reverts by itself (the
  // sources take writes again) and fails saying so. Default 5 s.
  std::chrono::milliseconds write_window{std::chrono::seconds(5)};
  // Cleanup's deletes of moved rows: rows per transaction and a rate limit (0 = none).
  std::int64_t delete_batch = 5000;
  double delete_rows_per_second = 0;
  // Progress lines (may be empty).
  std::function<void(const std::string&)> log;
  // Called at named points between the actions of a step (e.g. "writes:fenced"); tests make
  // the CLI kill itself there (SHARDLINE_ROLLOUT_KILL_AT). May be empty.
  std::function<void(std::string_view point)> at_point_for_test;
};

struct RolloutStartOptions {
  std::string plan_path;
  std::vector<double> wave_percents;  // ParseWavePercents
  double soak_seconds = 0;
  bool auto_advance = false;  // go on through every wave while the gates hold
};

// Checks every precondition on every node and table (wal_level, privileges, free slots and
// wal senders, replica identity, key in the primary key, table present on the target or
// creatable — then creates it), records the migration and runs the first wave's catch-up (all
// waves with auto_advance). Returns the migration id. FailedPrecondition listing every failed
// check (nothing is touched then); warnings (a key default from a per-node sequence) go to
// options.log.
absl::StatusOr<std::int64_t> StartRollout(const RolloutOptions& options,
                                          const RolloutStartOptions& start);

// Runs the next step of the current wave (catch-up, gate, switch reads, switch writes); with
// `auto_advance`, every remaining step of every wave, waiting out soaks. FailedPrecondition when
// a gate does not hold (verify found differences: named in the message; a soak not over); the
// migration stays resumable.
absl::Status AdvanceRollout(const RolloutOptions& options, std::int64_t id, bool auto_advance);

// Back to the previous owners with no lost write, from any step before cleanup: records
// `rolling_back` (one-way: advance and cleanup are refused from then on, a rerun continues),
// fences the targets of switched waves, waits for reverse replication, lifts the sources' marks,
// publishes the original assignment, drops every replication object, waits for live routers,
// deletes the targets' copies where the current map gives the ranges to other nodes (the
// targets keep fences there), and ends `rolled_back` with every wave pending (one transaction).
// FailedPrecondition once cleanup has begun.
absl::Status RollbackRollout(const RolloutOptions& options, std::int64_t id);

// Like rollback (state `aborting`), for a migration whose writes have not switched anywhere
// (FailedPrecondition otherwise): removes everything it created; no replication slot is left.
absl::Status AbortRollout(const RolloutOptions& options, std::int64_t id);

// After every wave switched writes and the last soak is over, once every live router applies
// the final map: records `cleaning` (one-way: rollback, abort and advance are refused from then
// on, a rerun continues), drops the replication objects, deletes the moved rows from the
// sources in throttled batches, only where the catalog's current map gives them wholly to the
// move's target, and keeps the sources' fences there (a router on an older map is refused, not
// lost). FailedPrecondition, deleting nothing, when the current map does not give a moved range
// to its target.
absl::Status CleanupRollout(const RolloutOptions& options, std::int64_t id);

// Live figures of a wave (status).
struct WaveLive {
  std::int64_t lag_bytes = -1;  // max over the wave's active slots; -1 when none
  double lag_seconds = -1;
  std::int64_t rows_on_target = -1;  // rows of the wave's ranges on its targets (catch-up only)
};

struct RolloutStatus {
  MigrationState state;
  std::vector<WaveLive> live;  // per wave
  std::string next;            // what the next command would do
  // Reverse replication of switched waves that would keep a rollback from completing, or that
  // counts apply errors (CheckReverse): empty when healthy or not asked (other states).
  std::vector<std::string> reverse_problems;
};

// Status of migration `id` (with live lag and copied rows).
absl::StatusOr<RolloutStatus> DescribeRollout(const RolloutOptions& options, std::int64_t id);
// Ids of every migration, newest first.
absl::StatusOr<std::vector<std::int64_t>> ListRollouts(const RolloutOptions& options);

// What the next command would do for a migration in `state` (pure).
std::string NextAction(const MigrationState& state);

}  // namespace shardline::migrate
