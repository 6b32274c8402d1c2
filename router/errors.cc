// Status payloads (SQLSTATE, node) and the SQLSTATE -> status code policy: see errors.h.
#include "shardline/errors.h"

#include "absl/strings/cord.h"

namespace shardline {
namespace {
constexpr std::string_view kSqlStateUrl = "type.shardline.dev/sqlstate";
constexpr std::string_view kNodeUrl = "type.shardline.dev/node";
constexpr std::string_view kOutcomeUrl = "type.shardline.dev/write-outcome";
}  // namespace

const char* WriteOutcomeName(WriteOutcome outcome) {
  switch (outcome) {
    case WriteOutcome::kNotApplicable:
      return "not-applicable";
    case WriteOutcome::kUnknown:
      return "outcome-unknown";
    case WriteOutcome::kCommitted:
      return "committed";
    case WriteOutcome::kNotCommitted:
      return "not-committed";
    default:
      return "invalid";
  }
}

WriteOutcome WriteOutcomeOf(const absl::Status& status) {
  auto p = status.GetPayload(absl::string_view(kOutcomeUrl.data(), kOutcomeUrl.size()));
  if (!p) return WriteOutcome::kNotApplicable;
  const std::string v(*p);
  if (v == "outcome-unknown") return WriteOutcome::kUnknown;
  if (v == "committed") return WriteOutcome::kCommitted;
  if (v == "not-committed") return WriteOutcome::kNotCommitted;
  return WriteOutcome::kNotApplicable;
}

void SetWriteOutcome(absl::Status& status, WriteOutcome outcome) {
  const absl::string_view url(kOutcomeUrl.data(), kOutcomeUrl.size());
  if (outcome == WriteOutcome::kNotApplicable) {
    status.ErasePayload(url);
    return;
  }
  if (!status.ok()) status.SetPayload(url, absl::Cord(WriteOutcomeName(outcome)));
}

bool IsSafeToRetry(const absl::Status& status) {
  switch (WriteOutcomeOf(status)) {
    case WriteOutcome::kUnknown:
    case WriteOutcome::kCommitted:
      return false;
    case WriteOutcome::kNotCommitted:
      return true;
    default:
      break;
  }
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

std::optional<std::string> SqlStateOf(const absl::Status& status) {
  auto p = status.GetPayload(absl::string_view(kSqlStateUrl.data(), kSqlStateUrl.size()));
  if (!p) return std::nullopt;
  return std::string(*p);
}

std::optional<std::string> NodeOf(const absl::Status& status) {
  auto p = status.GetPayload(absl::string_view(kNodeUrl.data(), kNodeUrl.size()));
  if (!p) return std::nullopt;
  return std::string(*p);
}

bool IsFenced(const absl::Status& status) {
  auto s = SqlStateOf(status);
  return s && (*s == kFencedSqlState || *s == kStaleMapSqlState);
}

bool IsStaleMap(const absl::Status& status) {
  auto s = SqlStateOf(status);
  return s && *s == kStaleMapSqlState;
}

void SetSqlState(absl::Status& status, std::string_view sqlstate) {
  if (!status.ok()) status.SetPayload(absl::string_view(kSqlStateUrl.data(), kSqlStateUrl.size()), absl::Cord(std::string(sqlstate)));
}

void SetNode(absl::Status& status, std::string_view node) {
  if (!status.ok()) status.SetPayload(absl::string_view(kNodeUrl.data(), kNodeUrl.size()), absl::Cord(std::string(node)));
}

absl::StatusCode StatusCodeForSqlState(std::string_view s) {
  if (s == kFencedSqlState || s == kStaleMapSqlState) return absl::StatusCode::kFailedPrecondition;
  if (s == "40001" || s == "40P01") return absl::StatusCode::kAborted;
  if (s == "23505") return absl::StatusCode::kAlreadyExists;
  if (s == "57014") return absl::StatusCode::kDeadlineExceeded;  // statement timeout / cancel
  if (s == "25006") return absl::StatusCode::kFailedPrecondition;  // read-only transaction
  if (s == "55P03") return absl::StatusCode::kUnavailable;         // lock not available
  if (s.starts_with("08")) return absl::StatusCode::kUnavailable;  // connection exception
  if (s.starts_with("57P")) return absl::StatusCode::kUnavailable;  // shutdown, crash
  if (s.starts_with("53")) return absl::StatusCode::kResourceExhausted;
  if (s.starts_with("23")) return absl::StatusCode::kInvalidArgument;  // constraints
  if (s.starts_with("22")) return absl::StatusCode::kInvalidArgument;  // data exception
  if (s.starts_with("42")) return absl::StatusCode::kInvalidArgument;  // syntax, access
  if (s.starts_with("28")) return absl::StatusCode::kPermissionDenied;
  if (s.starts_with("3D")) return absl::StatusCode::kNotFound;  // no such database
  if (s.starts_with("40")) return absl::StatusCode::kAborted;
  if (s.starts_with("55")) return absl::StatusCode::kFailedPrecondition;
  return absl::StatusCode::kInternal;
}

}  // namespace shardline
