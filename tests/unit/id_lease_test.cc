// Unit tests of the worker-id lease in front of the id generator (router/id_lease.h), on a
// hand-driven clock.
#include "id_lease.h"

#include <atomic>
#include <chrono>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "status_matchers.h"

namespace shardline::internal {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;
using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = IdLease::TimePoint;

class FakeClock {
 public:
  TimePoint Now() const { return TimePoint(std::chrono::nanoseconds(ns_.load())); }
  void Advance(std::chrono::nanoseconds d) { ns_ += d.count(); }
  IdLease::ClockFn Fn() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<std::int64_t> ns_{std::chrono::nanoseconds(seconds(1000)).count()};
};

TEST(IdLeaseTest, FixedWorkerIdAlwaysGenerates) {
  FakeClock clock;
  auto lease = IdLease::Fixed(5, clock.Fn());
  clock.Advance(std::chrono::hours(24 * 365));
  absl::StatusOr<std::int64_t> id = lease->Next();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(DecodeId(*id).worker_id, 5);
  EXPECT_EQ(lease->worker_id(), 5);
}

TEST(IdLeaseTest, RefusingLeaseSaysWhyWithFailedPrecondition) {
  auto lease = IdLease::Refusing("set worker_id");
  EXPECT_THAT(lease->Next().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "set worker_id"));
  EXPECT_EQ(lease->worker_id(), -1);
}

TEST(IdLeaseTest, LeasedGeneratesOnlyFromRenewalUntilItsEndMinusTheMargin) {
  FakeClock clock;
  auto lease = IdLease::Leased(seconds(10), clock.Fn());
  EXPECT_THAT(lease->Next().status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("holds no id-generator worker "
                                                                 "id lease yet")));
  const TimePoint sent = clock.Now();
  lease->Renew(3, sent);
  ASSERT_TRUE(lease->Next().ok());
  EXPECT_EQ(DecodeId(*lease->Next()).worker_id, 3);
  // Margin: a tenth of 10 s. Valid until sent + 9 s, not at it.
  clock.Advance(milliseconds(8999));
  EXPECT_TRUE(lease->Next().ok());
  clock.Advance(milliseconds(1));
  lease->NoteProblem("heartbeat failed: timeout");
  EXPECT_THAT(lease->Next().status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("lease of id-generator worker id 3 expired 0 ms ago (lease "
                                 "10000 ms")));
  EXPECT_THAT(lease->Next().status().message(),
              HasSubstr("(last registry problem: heartbeat failed: timeout)"));
  // A renewal sent later extends it; an older one never shortens it.
  lease->Renew(3, clock.Now());
  EXPECT_TRUE(lease->Next().ok());
  lease->Renew(3, sent);
  clock.Advance(milliseconds(8000));
  EXPECT_TRUE(lease->Next().ok());
}

TEST(IdLeaseTest, MarginIsAtMostFiveSeconds) {
  FakeClock clock;
  auto lease = IdLease::Leased(seconds(100), clock.Fn());
  lease->Renew(1, clock.Now());
  clock.Advance(milliseconds(94999));
  EXPECT_TRUE(lease->Next().ok());
  clock.Advance(milliseconds(1));
  EXPECT_FALSE(lease->Next().ok());
}

TEST(IdLeaseTest, LostLeaseRefusesAtOnceUntilRenewed) {
  FakeClock clock;
  auto lease = IdLease::Leased(seconds(10), clock.Fn());
  lease->Renew(4, clock.Now());
  lease->Lose("the registry row of worker id 4 was deleted");
  EXPECT_THAT(lease->Next().status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("lease of id-generator worker id 4 was lost")));
  lease->Renew(4, clock.Now());
  EXPECT_TRUE(lease->Next().ok());
}

TEST(IdLeaseTest, SwitchingWorkerIdsKeepsEachIdsOwnSequence) {
  FakeClock clock;
  auto lease = IdLease::Leased(seconds(10), clock.Fn());
  lease->Renew(4, clock.Now());
  absl::StatusOr<std::int64_t> on4 = lease->Next();
  ASSERT_TRUE(on4.ok());
  lease->Renew(9, clock.Now());
  absl::StatusOr<std::int64_t> on9 = lease->Next();
  ASSERT_TRUE(on9.ok());
  EXPECT_EQ(DecodeId(*on9).worker_id, 9);
  EXPECT_EQ(lease->worker_id(), 9);
  lease->Renew(4, clock.Now());
  absl::StatusOr<std::int64_t> again4 = lease->Next();
  ASSERT_TRUE(again4.ok());
  EXPECT_EQ(DecodeId(*again4).worker_id, 4);
  EXPECT_GT(*again4, *on4);  // worker id 4's generator continued, it did not start over
}

}  // namespace
}  // namespace shardline::internal
