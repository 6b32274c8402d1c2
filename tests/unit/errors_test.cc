// Unit tests of the retry policy in shardline/errors.h: the write-outcome payload and which
// statuses are safe to retry (issue 10: an unknown outcome is never "retry").
#include "shardline/errors.h"

#include "gtest/gtest.h"

namespace shardline {
namespace {

TEST(Errors, WriteOutcomeRoundTripsAndCanBeCleared) {
  absl::Status s = absl::UnavailableError("node n1: connection lost");
  EXPECT_EQ(WriteOutcomeOf(s), WriteOutcome::kNotApplicable);
  SetWriteOutcome(s, WriteOutcome::kUnknown);
  EXPECT_EQ(WriteOutcomeOf(s), WriteOutcome::kUnknown);
  EXPECT_TRUE(IsOutcomeUnknown(s));
  SetWriteOutcome(s, WriteOutcome::kNotCommitted);
  EXPECT_EQ(WriteOutcomeOf(s), WriteOutcome::kNotCommitted);
  SetWriteOutcome(s, WriteOutcome::kNotApplicable);
  EXPECT_EQ(WriteOutcomeOf(s), WriteOutcome::kNotApplicable);
  absl::Status ok;
  SetWriteOutcome(ok, WriteOutcome::kUnknown);  // OK statuses carry no payload
  EXPECT_EQ(WriteOutcomeOf(ok), WriteOutcome::kNotApplicable);
}

TEST(Errors, AnUnknownOutcomeIsNeverSafeToRetryWhateverItsCode) {
  for (absl::Status s : {absl::UnavailableError("x"), absl::DeadlineExceededError("x"),
                         absl::AbortedError("x")}) {
    EXPECT_TRUE(IsSafeToRetry(s)) << s;
    SetWriteOutcome(s, WriteOutcome::kUnknown);
    EXPECT_FALSE(IsSafeToRetry(s)) << s;
  }
}

TEST(Errors, ResolvedNotCommittedIsSafeAndInputErrorsAreNot) {
  absl::Status aborted = absl::AbortedError("pg_xact_status says it did not commit");
  SetWriteOutcome(aborted, WriteOutcome::kNotCommitted);
  EXPECT_TRUE(IsSafeToRetry(aborted));
  EXPECT_FALSE(IsSafeToRetry(absl::InvalidArgumentError("syntax")));
  EXPECT_FALSE(IsSafeToRetry(absl::AlreadyExistsError("23505")));
  EXPECT_FALSE(IsSafeToRetry(absl::InternalError("fn threw")));
  EXPECT_FALSE(IsSafeToRetry(absl::OkStatus()));
}

}  // namespace
}  // namespace shardline
