// Running one statement on a leased connection: prepared once per connection and distinct SQL
// text (PQprepare), then PQexecPrepared with the typed parameters (text format, bytea binary;
// parameter types left to the server to infer). Connection-level failures mark the lease
// broken so the pool discards the connection.
#pragma once

#include <span>
#include <string_view>

#include "absl/status/statusor.h"
#include "conn_pool.h"
#include "shardline/param.h"
#include "shardline/result.h"

namespace shardline::internal {

// Most statements kept prepared on one connection; past it the connection's statements are
// deallocated and re-prepared on demand (a fan-out's `$owned` expansion changes with every map
// version, so the set of distinct texts is not bounded by the application's code).
inline constexpr std::size_t kMaxPreparedPerConnection = 256;

// Runs `sql` with `params` on `lease`'s connection. Returns the result (node = the lease's
// node), or a status coded by SQLSTATE naming the node (shardline/errors.h); Unavailable when
// the connection failed, in which case the lease is marked broken. A statement that the
// server no longer knows (26000) or whose cached plan changed its result type (0A000) is
// re-prepared and run once more when no transaction is open. Blocks for the round trips
// until the lease's deadline: past it the lease is marked timed out (closed on return, counted
// by the node's breaker) and the status is DeadlineExceeded naming the node. A statement sent
// whose connection broke or whose deadline passed before the answer carries
// WriteOutcome::kUnknown (shardline/errors.h). Not thread-safe (one lease, one thread).
absl::StatusOr<Result> ExecPrepared(Lease& lease, std::string_view sql,
                                    std::span<const Param> params);

// Behind a transaction-mode pooler (PooledConnection::transaction_pooler) nothing is prepared:
// each statement is unnamed (one round trip, parsed every time), and outside a transaction
// block the lease's map version (and the router's statement_timeout) are set
// transaction-local in the same round trip (libpq pipeline: set_config, the statement, one
// sync), so nothing reaches the server connection's session.

// Runs a parameterless control statement (BEGIN, COMMIT, ROLLBACK) with the simple protocol.
// Same error handling and deadline as ExecPrepared.
absl::Status ExecControl(Lease& lease, const char* sql);

// Starts a transaction block: ExecControl(lease, "BEGIN"), except behind a transaction-mode
// pooler, where the map version and statement_timeout are set transaction-local right after
// BEGIN, pipelined with it (one round trip).
absl::Status ExecBegin(Lease& lease);

// True when a status from ExecPrepared means the connection (not the statement) failed.
bool IsConnectionFailure(const absl::Status& status);

}  // namespace shardline::internal
