// How shardline reports errors: absl::Status with the code chosen by what the caller should do
// next, and payloads carrying the PostgreSQL SQLSTATE and the node name.
//
//   Unavailable        retry the call (connection failure, breaker open, node shutting down)
//   Aborted            retry the transaction (serialization failure 40001, deadlock 40P01)
//   FailedPrecondition the state must change first (range fenced, invalid map, read-only)
//   InvalidArgument    bad input (syntax, wrong key type, constraint violation)
//   AlreadyExists      unique violation (23505)
//   DeadlineExceeded   checkout timeout, statement timeout (57014), call deadline (the
//                      connection was closed; names the node)
//
// Which failures are safe to retry (IsSafeToRetry below), and why:
//
//   status                                   retry?   why
//   Unavailable, no outcome payload          yes      nothing was sent, or the breaker / pool
//                                                     refused the call (max_waiters, shutdown)
//   DeadlineExceeded, no outcome payload     yes      timed out in checkout: nothing was sent
//   Aborted (40001, 40P01)                   the whole transaction, from its start
//   FailedPrecondition (fenced)              after the map changed (the router does it once)
//   any code + IsOutcomeUnknown()            NO       a write (or COMMIT) was sent and then the
//                                                     connection broke or the deadline passed:
//                                                     it may have been applied. Retrying a
//                                                     non-idempotent write applies it twice;
//                                                     read back (or use an idempotency key)
//                                                     first.
//   WriteOutcome::kNotCommitted              yes      the server said (pg_xact_status) that
//                                                     the transaction did not commit
//   InvalidArgument, AlreadyExists, ...      no       the same input fails the same way
//
// Router::NextId() (no statement, so no outcome): Unavailable = this router's worker-id lease
// is not held (the catalog has been unreachable for longer than worker_id_lease): retry later,
// ids resume once a heartbeat gets through; FailedPrecondition = the router has no worker id at
// all (a map file without RouterOptions::worker_id): fix the configuration, do not retry.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace shardline {

// The SQLSTATE raised by a node for a write into a fenced hash range (see schemas/node.sql).
inline constexpr std::string_view kFencedSqlState = "SLF01";
// The SQLSTATE raised by a node for a statement routed on a shard map older than the node's
// map epoch for the table (ranges of it moved to or from the node at a later map version), or
// for a fan-out's `$owned` on such a map: refused whatever rows it would touch. The router
// retries it once on any newer map (RouterOptions::fence_retries).
inline constexpr std::string_view kStaleMapSqlState = "SLF02";

// The SQLSTATE attached to `status`, if any.
std::optional<std::string> SqlStateOf(const absl::Status& status);
// The node name attached to `status`, if any.
std::optional<std::string> NodeOf(const absl::Status& status);
// True if the status came from a write into a fenced range, or from a statement refused for a
// stale map (both: FailedPrecondition; refresh the map, then retry on the owner it names).
bool IsFenced(const absl::Status& status);
// True if the status came from a statement refused for a stale map (kStaleMapSqlState).
bool IsStaleMap(const absl::Status& status);

// What became of a write whose connection broke, or whose deadline passed, after it was sent.
enum class WriteOutcome {
  kNotApplicable,  // no such doubt: nothing was sent, or the server answered
  kUnknown,        // it may or may not have been applied: never retry blindly
  kCommitted,      // resolved by pg_xact_status: it committed (Transaction returns OK then)
  kNotCommitted,   // resolved by pg_xact_status: it did not commit (safe to retry)
};
const char* WriteOutcomeName(WriteOutcome outcome);
// The outcome payload of `status` (kNotApplicable when none).
WriteOutcome WriteOutcomeOf(const absl::Status& status);
// True when `status` says a write may have been applied: the caller must not retry it blindly.
inline bool IsOutcomeUnknown(const absl::Status& status) {
  return WriteOutcomeOf(status) == WriteOutcome::kUnknown;
}
// The table above: true for Unavailable / DeadlineExceeded / Aborted without an unknown
// outcome, and for WriteOutcome::kNotCommitted.
bool IsSafeToRetry(const absl::Status& status);
void SetWriteOutcome(absl::Status& status, WriteOutcome outcome);

// Attaches SQLSTATE / node payloads (used by the library; exposed for tests and tools).
void SetSqlState(absl::Status& status, std::string_view sqlstate);
void SetNode(absl::Status& status, std::string_view node);
// The status code for a SQLSTATE, by the table above.
absl::StatusCode StatusCodeForSqlState(std::string_view sqlstate);

}  // namespace shardline
