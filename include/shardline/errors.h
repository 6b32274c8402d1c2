// How shardline reports errors: absl::Status with the code chosen by what the caller should do
// next, and payloads carrying the PostgreSQL SQLSTATE and the node name.
//
//   Unavailable        retry the call (connection failure, breaker open, node shutting down)
//   Aborted            retry the transaction (serialization failure 40001, deadlock 40P01)
//   FailedPrecondition the state must change first (range fenced, invalid map, read-only)
//   InvalidArgument    bad input (syntax, wrong key type, constraint violation)
//   AlreadyExists      unique violation (23505)
//   DeadlineExceeded   checkout timeout, statement timeout (57014)
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace shardline {

// The SQLSTATE raised by a node for a write into a fenced hash range (see schemas/node.sql).
inline constexpr std::string_view kFencedSqlState = "SLF01";

// The SQLSTATE attached to `status`, if any.
std::optional<std::string> SqlStateOf(const absl::Status& status);
// The node name attached to `status`, if any.
std::optional<std::string> NodeOf(const absl::Status& status);
// True if the status came from a write into a fenced range.
bool IsFenced(const absl::Status& status);

// Attaches SQLSTATE / node payloads (used by the library; exposed for tests and tools).
void SetSqlState(absl::Status& status, std::string_view sqlstate);
void SetNode(absl::Status& status, std::string_view node);
// The status code for a SQLSTATE, by the table above.
absl::StatusCode StatusCodeForSqlState(std::string_view sqlstate);

}  // namespace shardline
