// What a rollout does on one data node, each operation idempotent (a rerun after a kill finds
// what exists and does only the rest): install the per-node schema and fence triggers, mark
// ranges as moving or fenced (schemas/node.sql), pause writers to moving ranges with the
// migration's advisory lock, create and drop publications with a row filter on the hash
// ranges, subscriptions and their replication slots, and measure and wait for replication
// positions. Free functions over a pg::Conn: single-threaded, like the connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
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

// Deletes the fence/moving rows of `ranges` (all tables of the map).
absl::Status UnmarkRanges(pg::Conn& conn, const ShardMap& map, const HashRangeList& ranges);

// Waits (polling, at most `timeout`) until no transaction of this database other than ours
// began before the moving marks of `lock_key` were stamped: such a transaction may have
// passed the fence trigger without taking the pause lock. FailedPrecondition naming the pid
// and its start when one is still open at the deadline.
absl::Status WaitForPreMarkTransactions(pg::Conn& conn, std::int64_t lock_key,
                                        std::chrono::milliseconds timeout);

// Takes the migration's pause lock exclusively (session level) on `conn`: waits for writers in
// flight in moving ranges (they hold it shared) and blocks new ones until ReleasePause.
// lock_timeout bounds the wait (a long writer transaction would otherwise stall every writer
// queued behind us): DeadlineExceeded naming the node when it expires.
absl::Status AcquirePause(pg::Conn& conn, std::int64_t lock_key,
                          std::chrono::milliseconds lock_timeout);
absl::Status ReleasePause(pg::Conn& conn, std::int64_t lock_key);

// Fences `ranges` (mode 'fence', inserting rows that are missing), under the pause lock so that
// no writer is in flight, and returns the node's WAL insert position after the commit: every
// write into the ranges is before it. Blocks as AcquirePause.
absl::StatusOr<std::string> FenceRanges(pg::Conn& conn, const ShardMap& map,
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

// Creates subscription `name` on `subscriber` to publication `name` at `publisher_dsn` (a
// connection string the subscriber's server can use), with copy_data as given and
// synchronous_commit on (so that the applied position is reported promptly), unless it exists.
// A slot of that name left on `publisher` by a CREATE SUBSCRIPTION that was killed half-way is
// dropped first.
absl::Status EnsureSubscription(pg::Conn& subscriber, pg::Conn& publisher, const std::string& name,
                                const std::string& publisher_dsn, bool copy_data);
// Drops subscription `name` on `subscriber` (stopping its apply worker) without asking the
// publisher; then, with `drop_slots`, drops its slot and table-sync slots on `publisher` (once
// their walsenders exit). Without, call DropSlot later (the switch of writes does, after the
// write window).
absl::Status DropSubscriptionIfExists(pg::Conn& subscriber, pg::Conn& publisher,
                                      const std::string& name, bool drop_slots = true);
// Drops replication slot `name` once it is inactive (waits up to 10 s); OK when absent.
absl::Status DropSlot(pg::Conn& conn, const std::string& name);
// Drops every inactive replication slot whose name starts with `prefix`; returns how many.
absl::StatusOr<int> DropSlotsWithPrefix(pg::Conn& conn, const std::string& prefix);
// Counts publications / subscriptions / slots whose names start with `prefix`.
absl::StatusOr<int> CountObjectsWithPrefix(pg::Conn& conn, const std::string& prefix);

absl::StatusOr<bool> SubscriptionExists(pg::Conn& subscriber, const std::string& name);
absl::Status SetSubscriptionEnabled(pg::Conn& subscriber, const std::string& name, bool enabled);
// Waits until the subscription's apply worker has exited (after a disable).
absl::Status WaitWorkerGone(pg::Conn& subscriber, const std::string& name,
                            std::chrono::milliseconds timeout);

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
