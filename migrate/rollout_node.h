// What a rollout does on one data node, each operation idempotent (a rerun after a kill finds
// what exists and does only the rest): install the per-node schema and fence triggers, mark
// ranges as moving or fenced (schemas/node.sql), pause writers to moving ranges with the
// migration's advisory lock, create and drop publications with a row filter on the hash
// ranges, subscriptions and their replication slots, and measure and wait for replication
// positions. Free functions over a pg::Conn: single-threaded, like the connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

using HashRangeList = std::vector<std::pair<std::int64_t, std::int64_t>>;

// Installs schemas/node.sql (idempotent) and the fence trigger on every sharded table of `map`
// present on the node. Errors name the node.
absl::Status InstallNodeObjects(pg::Conn& conn, const ShardMap& map);

// Marks `ranges` of every sharded table as 'moving' with lock key `lock_key` (rows that exist
// keep their mode: a fence stays a fence), then stamps fenced_at with the node's clock after
// that commit, so that the gate can tell transactions that predate the marks.
absl::Status MarkMoving(pg::Conn& conn, const ShardMap& map, const HashRangeList& ranges,
                        std::int64_t lock_key, const std::string& reason);

// FailedPrecondition naming each mark of another migration (lock key other than `lock_key`)
// that overlaps `ranges` on a sharded table of `map`: a mark is never inherited. With
// `allow_fences`, another migration's 'fence' marks are accepted (a range that comes back to
// this node carries the fence its earlier move left; LiftReturningFences lifts it at the
// switch).
absl::Status CheckForeignMarks(pg::Conn& conn, const ShardMap& map, const HashRangeList& ranges,
                               std::int64_t lock_key, bool allow_fences);

// Lifts other migrations' fences over `ranges` (they come back to this node): their parts
// outside `ranges` stay fenced (shardline.lift_fence). Returns how many marks were cut.
absl::StatusOr<int> LiftReturningFences(pg::Conn& conn, const ShardMap& map,
                                        const HashRangeList& ranges, std::int64_t lock_key);

// Deletes the marks migration `lock_key` made on this node inside `ranges` (a mark is inside
// when it lies within one of them): by the migration, never by coalesced ranges, so marks
// written per wave go whatever the waves were.
absl::Status UnmarkMigration(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges);

// Turns the marks migration `lock_key` made inside `ranges` into lasting 'fence' marks with
// `reason` (the node gave these ranges away: a router on an older map is refused there).
absl::Status KeepAsFences(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges,
                          const std::string& reason);

// Turns the 'fence' marks migration `lock_key` made inside `ranges` back into 'moving' marks
// (a write window that is reverted: the node takes writes again, through the pause lock).
absl::Status UnfenceToMoving(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges);

// Waits (polling, at most `timeout`) until no *writer* transaction of this database other
// than ours began before the moving marks of `lock_key` were stamped, and no transaction
// prepared before them is pending: such a transaction may have written into the ranges
// without taking the pause lock. Readers (no transaction id yet) are not waited for: a write
// they make later meets the marks (READ COMMITTED sees them; an older snapshot is refused by
// the fence epoch, schemas/node.sql). FailedPrecondition naming the pid (or the prepared
// transaction's gid) and its start when one is still open at the deadline. Never terminates.
absl::Status WaitForPreMarkTransactions(pg::Conn& conn, std::int64_t lock_key,
                                        std::chrono::milliseconds timeout);

// Raises the map epoch of every sharded table of `map` on this node to `version`
// (shardline.raise_map_epoch: never lowers it), with `reason`.
absl::Status RaiseMapEpoch(pg::Conn& conn, const ShardMap& map, std::int64_t version,
                           const std::string& reason);

// Takes the migration's pause lock exclusively (session level) on `conn`: waits for writers in
// flight in moving ranges (they hold it shared) and blocks new ones until ReleasePause.
// lock_timeout bounds the wait (a long writer transaction would otherwise stall every writer
// queued behind us): DeadlineExceeded naming the node when it expires.
absl::Status AcquirePause(pg::Conn& conn, std::int64_t lock_key,
                          std::chrono::milliseconds lock_timeout);
absl::Status ReleasePause(pg::Conn& conn, std::int64_t lock_key);

// The pause as a guard: held from Acquire until Release() or destruction, so no error path
// leaves writers to the moving ranges paused (a session lock would otherwise last until the
// connection closes).
//
//   auto pause = PauseGuard::Acquire(conn, key, timeout);
//   if (!pause.ok()) return pause.status();
//   ... writers are paused ...
//   if (auto s = pause->Release(); !s.ok()) return s;
//
// Single-threaded, like the connection it borrows (which must outlive it). Movable.
class PauseGuard {
 public:
  // AcquirePause's statuses.
  static absl::StatusOr<PauseGuard> Acquire(pg::Conn& conn, std::int64_t lock_key,
                                            std::chrono::milliseconds lock_timeout);
  PauseGuard(PauseGuard&& other) noexcept
      : conn_(other.conn_), lock_key_(other.lock_key_) {
    other.conn_ = nullptr;
  }
  PauseGuard& operator=(PauseGuard&&) = delete;
  PauseGuard(const PauseGuard&) = delete;
  PauseGuard& operator=(const PauseGuard&) = delete;
  ~PauseGuard() {
    if (conn_ != nullptr) (void)ReleasePause(*conn_, lock_key_);
  }
  // Lets the writers go now; idempotent.
  absl::Status Release() {
    if (conn_ == nullptr) return absl::OkStatus();
    pg::Conn* c = conn_;
    conn_ = nullptr;
    return ReleasePause(*c, lock_key_);
  }

 private:
  PauseGuard(pg::Conn& conn, std::int64_t lock_key) : conn_(&conn), lock_key_(lock_key) {}
  pg::Conn* conn_;
  std::int64_t lock_key_;
};

// Fences `ranges` (mode 'fence', inserting rows that are missing), under the pause lock so that
// no writer is in flight, and returns the node's WAL insert position after the commit (every
// write into the ranges that the node accepted is before it: older snapshots are refused by the
// fence epoch) and the node's clock after the commit. Blocks as AcquirePause.
struct FenceResult {
  std::string lsn;
  std::string fenced_at;
};
absl::StatusOr<FenceResult> FenceRanges(pg::Conn& conn, const ShardMap& map,
                                        const HashRangeList& ranges, std::int64_t lock_key,
                                        std::chrono::milliseconds lock_timeout,
                                        const std::string& reason);

// Commits a transaction that writes WAL under synchronous_commit = on: the WAL up to here is
// flushed when it returns (so a walsender can send it without waiting for the WAL writer).
absl::Status FlushWal(pg::Conn& conn);

// The node's current WAL insert position ("0/16B3748").
absl::StatusOr<std::string> CurrentLsn(pg::Conn& conn);

// Creates publication `name` for every sharded table of `map` with a row filter on `ranges`
// (PostgreSQL 15 row filters), unless it exists.
absl::Status EnsurePublication(pg::Conn& conn, const ShardMap& map, const std::string& name,
                               const HashRangeList& ranges);
absl::Status DropPublicationIfExists(pg::Conn& conn, const std::string& name);

// Checks that the server of `subscriber` can connect to node `publisher` with `publisher_dsn`,
// as a subscription would (a CREATE SUBSCRIPTION that connects, makes no slot and is rolled
// back: nothing stays). FailedPrecondition naming both nodes and the server's error otherwise.
absl::Status ProbeReplicationConnection(pg::Conn& subscriber, const std::string& publisher,
                                        const std::string& publisher_dsn);

// Creates logical replication slot `name` (pgoutput) on `publisher` from this session unless it
// exists. Not from CREATE SUBSCRIPTION: that creates the slot inside the subscriber's
// transaction, and slot creation waits for every transaction running on the publisher, so two
// migrations creating subscriptions in opposite directions between the same servers waited for
// each other forever (the side-by-side hang). Here the waiting session holds no transaction on
// any node. Bounded by the connection's statement_timeout.
absl::Status EnsureSlot(pg::Conn& publisher, const std::string& name);

// Moves slot `name` on `publisher` to the node's flushed WAL position: the changes before it are
// never sent. The reverse slot is created before the write window and moved past the rows that
// forward replication applied, which must not travel back.
absl::Status AdvanceSlotToFlushed(pg::Conn& publisher, const std::string& name);

// Creates subscription `name` on `subscriber` to publication `name` at `publisher_dsn` (a
// connection string the subscriber's server can use), with copy_data as given and
// synchronous_commit on (so that the applied position is reported promptly), unless it exists.
// The slot is made first by EnsureSlot (create_slot = false); a slot left by a killed run is
// reused.
// With `enabled` false the subscription is created disabled (its tables listed, nothing
// streamed) for EnableSubscription to start later.
absl::Status EnsureSubscription(pg::Conn& subscriber, pg::Conn& publisher, const std::string& name,
                                const std::string& publisher_dsn, bool copy_data,
                                bool enabled = true);
// Whether subscription `name` exists on `subscriber` and is enabled (nullopt: it does not exist).
absl::StatusOr<std::optional<bool>> SubscriptionEnabled(pg::Conn& subscriber,
                                                        const std::string& name);
// ALTER SUBSCRIPTION ... ENABLE: the launcher starts its apply worker.
absl::Status EnableSubscription(pg::Conn& subscriber, const std::string& name);
// Drops subscription `name` on `subscriber` (stopping its apply worker) without asking the
// publisher; then, with `drop_slots`, drops its slot and table-sync slots on `publisher` (once
// their walsenders exit). Without, call DropSlot later (the switch of writes does, after the
// write window).
absl::Status DropSubscriptionIfExists(pg::Conn& subscriber, pg::Conn& publisher,
                                      const std::string& name, bool drop_slots = true);
// Whether replication slot `name` exists on `conn`.
absl::StatusOr<bool> SlotExists(pg::Conn& conn, const std::string& name);
// Drops replication slot `name` once it is inactive (waits up to 10 s); OK when absent.
absl::Status DropSlot(pg::Conn& conn, const std::string& name);
// Drops every inactive replication slot whose name starts with `prefix`; returns how many.
absl::StatusOr<int> DropSlotsWithPrefix(pg::Conn& conn, const std::string& prefix);

absl::StatusOr<bool> SubscriptionExists(pg::Conn& subscriber, const std::string& name);
// Waits until the apply worker of subscription `name` runs on `subscriber` (at most `timeout`).
// DeadlineExceeded naming the subscription otherwise (no free logical replication worker:
// max_logical_replication_workers, max_worker_processes).
absl::Status WaitApplyWorker(pg::Conn& subscriber, const std::string& name,
                             std::chrono::milliseconds timeout);

// How subscription `name` on `subscriber` is doing, as SQL can tell (a worker's last error is
// only in the server log): whether it exists and is enabled, whether its apply worker runs
// (pg_stat_subscription), and its error counts (pg_stat_subscription_stats: cumulative since
// the subscription was made or its stats were reset).
struct SubscriptionHealth {
  bool exists = false;
  bool enabled = false;
  bool worker_running = false;
  std::int64_t apply_errors = 0;
  std::int64_t sync_errors = 0;
};
absl::StatusOr<SubscriptionHealth> SubscriptionHealthOf(pg::Conn& subscriber,
                                                        const std::string& name);
// What blocks subscription `name` on node `subscriber` (fed by node `publisher`) and what to fix,
// or "" when it is enabled and its apply worker runs. Apply errors are named either way (a
// worker that fails restarts every few seconds, so it may be running when asked).
std::string SubscriptionProblem(const SubscriptionHealth& h, const std::string& subscriber,
                                const std::string& publisher, const std::string& name);

// The node's 'fence' marks (any migration's) that overlap `ranges`, as "table lo..hi (reason)",
// at most `limit`; none when the node has no shardline schema.
absl::StatusOr<std::vector<std::string>> FencesOverlapping(pg::Conn& conn,
                                                           const HashRangeList& ranges,
                                                           int limit = 5);

// Whether `conn` holds a mark of migration `lock_key` in mode `mode` ('fence' or 'moving')
// inside `ranges`.
absl::StatusOr<bool> HoldsMarks(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges,
                                std::string_view mode);

// Waits until every table of subscription `name` finished its initial copy (state 'r').
// DeadlineExceeded naming the tables still copying.
absl::Status WaitInitialCopy(pg::Conn& subscriber, const std::string& name,
                             std::chrono::milliseconds timeout);

// Waits until the subscriber has applied and flushed everything up to `lsn` of the publisher,
// as the publisher's slot `name` reports it. DeadlineExceeded with the lag in bytes otherwise.
absl::Status WaitApplied(pg::Conn& publisher, const std::string& name, const std::string& lsn,
                         std::chrono::milliseconds timeout);

// Replication lag of slot `name` on the publisher: bytes of WAL not yet confirmed, and the
// replay lag in seconds (-1 when unknown). NotFound when there is no such slot.
struct SlotLag {
  std::int64_t bytes = 0;
  double seconds = -1;
  bool active = false;
};
absl::StatusOr<SlotLag> ReplicationLag(pg::Conn& publisher, const std::string& name);

// Rows of `ranges` on the node, per table summed.
absl::StatusOr<std::int64_t> CountRowsInRanges(pg::Conn& conn, const ShardMap& map,
                                               const HashRangeList& ranges);

}  // namespace shardline::migrate
