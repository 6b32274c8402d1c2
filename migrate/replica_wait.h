// Read replicas through a move: before a map sends reads of moved ranges to a node, every
// streaming replica the map lists for that node must have replayed past the node's WAL position
// (the rows the move brought in are then on the replica too), or the reads of those ranges
// would miss rows that existed all along. This file measures a replica's replay against its
// primary and waits, bounded, for it; the switch of reads and a rollback's return of reads to
// the sources call it before they publish (docs/architecture.md, "Read replicas through a
// move"). Free functions; single-threaded (each call opens and closes its own connections).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// Default of RolloutOptions::replica_wait (`--replica-wait`).
inline constexpr std::chrono::milliseconds kDefaultReplicaWait{std::chrono::seconds(30)};

// One replica's replay, relative to a WAL position of its primary.
struct ReplicaReplay {
  std::string name;          // "<node>/replica<j>" (1-based, as the router names its pools)
  bool reachable = false;    // a connection and the query worked; `error` says why not
  bool in_recovery = false;  // pg_is_in_recovery(): false = promoted or not a standby
  bool same_system = false;  // the same system identifier as the primary: a copy of it
  bool paused = false;       // pg_is_wal_replay_paused()
  bool caught_up = false;    // pg_last_wal_replay_lsn() >= the position
  std::int64_t bytes_behind = 0;  // pg_wal_lsn_diff(position, replay lsn); 0 when caught up
  // now() - pg_last_xact_replay_timestamp() on the replica: how old the last replayed commit
  // is (the replay lag while behind under writes); -1 when it replayed none since it started.
  double seconds_behind = -1;
  std::string error;  // when !reachable
};

// The replay of `node`'s replica number `j` (0-based, DSN `dsn`) against `lsn` and the
// primary's system identifier `system_id`. Never fails: an unreachable replica is reported as
// such. Blocks for one connection (at most `connect_timeout`) and one query.
ReplicaReplay MeasureReplica(const std::string& node, std::size_t j, const std::string& dsn,
                             const std::string& lsn, const std::string& system_id,
                             std::chrono::milliseconds connect_timeout);

// Waits until every replica of `node` (its `replicas` in the map) has replayed past the WAL
// position `primary` (a connection to the node) reports now. OK at once when it lists none.
// FailedPrecondition naming the replica, at once, when one is not replaying at all
// (pg_is_in_recovery() false) or is not a copy of the node (another system identifier);
// DeadlineExceeded naming the replica, its lag in bytes and seconds (or why it cannot be
// reached) when one has not got there within `timeout`. Each error says what it means for
// `what` (e.g. "the switch of reads of wave 1: nothing was published") and ends with `next`.
// Blocks up to `timeout` (polling every 20 ms).
absl::Status WaitReplicasReplayed(pg::Conn& primary, const NodeConfig& node,
                                  std::chrono::milliseconds timeout, std::string_view what,
                                  std::string_view next);

// The replicas of `node` measured against the WAL position of `primary` now (for `status`).
absl::StatusOr<std::vector<ReplicaReplay>> MeasureReplicas(pg::Conn& primary,
                                                           const NodeConfig& node);

}  // namespace shardline::migrate
