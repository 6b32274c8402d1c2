// Unit tests of the fan-out's `$owned(col)` expansion (router/fanout.h) and the worker pool.
#include "fanout.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "shardline/shard_map.h"
#include "worker_pool.h"

namespace shardline::internal {
namespace {

using ::testing::HasSubstr;
using Ranges = std::vector<std::pair<std::int64_t, std::int64_t>>;

TEST(ExpandOwned, NodeOwningNothingGetsFalse) {
  auto s = ExpandOwned("SELECT count(*) FROM w WHERE $owned(user_id)", KeyType::kBigint, {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, "SELECT count(*) FROM w WHERE false");
}

TEST(ExpandOwned, NodeOwningEverythingGetsTrue) {
  auto s = ExpandOwned("WHERE $owned(user_id)", KeyType::kBigint, {{kMinHash, kMaxHash}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, "WHERE true");
}

TEST(ExpandOwned, RangesBecomeOrOfBetweenWithOpenEnds) {
  Ranges owned = {{kMinHash, -100}, {5, 10}, {200, kMaxHash}};
  auto s = ExpandOwned("WHERE $owned(user_id) AND x = $1", KeyType::kBigint, owned);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s,
            "WHERE (hashint8extended(\"user_id\", 0) <= -100 OR "
            "hashint8extended(\"user_id\", 0) BETWEEN 5 AND 10 OR "
            "hashint8extended(\"user_id\", 0) >= 200) AND x = $1");
}

// With a map version the node checks it once (shardline.map_version_ok, a one-time filter);
// a node owning nothing must still run the check, so its predicate is NOT check, never a
// constant false the planner would fold the check away with.
TEST(ExpandOwned, MapVersionCheckIsKeptForEveryShapeOfOwnership) {
  auto none = ExpandOwned("WHERE $owned(user_id)", KeyType::kBigint, {}, 7);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, "WHERE (NOT shardline.map_version_ok(7))");
  auto all = ExpandOwned("WHERE $owned(user_id)", KeyType::kBigint, {{kMinHash, kMaxHash}}, 7);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, "WHERE shardline.map_version_ok(7)");
  auto some = ExpandOwned("WHERE $owned(user_id)", KeyType::kBigint, {{5, 10}}, 7);
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_EQ(*some,
            "WHERE (shardline.map_version_ok(7) AND (hashint8extended(\"user_id\", 0) BETWEEN 5 "
            "AND 10))");
}

TEST(ExpandOwned, UsesTheHashFunctionOfTheKeyType) {
  auto t = ExpandOwned("$owned(email)", KeyType::kText, {{1, 2}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, "(hashtextextended(\"email\", 0) BETWEEN 1 AND 2)");
  auto u = ExpandOwned("$owned(id)", KeyType::kUuid, {{1, 2}});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(*u, "(uuid_hash_extended(\"id\", 0) BETWEEN 1 AND 2)");
}

TEST(ExpandOwned, QualifiedColumnsAreQuotedPerPartAndFoldedUnlessQuoted) {
  auto s = ExpandOwned("$owned( W.User_Id ) $owned(\"Odd.Name\")", KeyType::kBigint, {{1, 2}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s,
            "(hashint8extended(\"w\".\"user_id\", 0) BETWEEN 1 AND 2) "
            "(hashint8extended(\"Odd.Name\", 0) BETWEEN 1 AND 2)");
}

TEST(ExpandOwned, QuoteInsideAnUnquotedNameCannotBreakOut) {
  auto s = ExpandOwned("$owned(a\"b)", KeyType::kBigint, {});
  // An odd number of quotes leaves the `)` inside a quoted section: unterminated.
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ExpandOwned, StatementWithoutPlaceholderIsUnchanged) {
  auto s = ExpandOwned("SELECT $1::int", KeyType::kBigint, {{1, 2}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, "SELECT $1::int");
}

TEST(ExpandOwned, UnterminatedOrEmptyPlaceholderIsInvalidArgument) {
  auto a = ExpandOwned("WHERE $owned(user_id", KeyType::kBigint, {});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("unterminated $owned( at offset 6"));
  auto b = ExpandOwned("WHERE $owned( )", KeyType::kBigint, {});
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("needs a column name"));
}

TEST(WorkerPool, RunsEveryTaskAndDrainsOnDestruction) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(3);
    Latch done(50);
    for (int i = 0; i < 50; ++i) {
      pool.Submit([&] {
        ran.fetch_add(1);
        done.CountDown();
      });
    }
    done.Wait();
    EXPECT_EQ(ran.load(), 50);
    for (int i = 0; i < 10; ++i) pool.Submit([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 60);
}

TEST(FanOutPartsTest, PartsStillQueuedAtTheDeadlineAreAbandoned) {
  FanOutParts parts(4);  // part 0 is the caller's
  ASSERT_TRUE(parts.Start(1));
  parts.Finish(1);
  ASSERT_TRUE(parts.Start(2));
  parts.Finish(2);
  // A deadline already past: part 3 never started, so it is abandoned, not waited for.
  EXPECT_EQ(parts.AwaitOrAbandon(std::chrono::steady_clock::now()),
            (std::vector<std::size_t>{3}));
  EXPECT_FALSE(parts.Start(3));  // a worker reaching the abandoned part later does nothing
}

TEST(FanOutPartsTest, ARunningPartIsAwaitedPastTheDeadline) {
  FanOutParts parts(2);
  ASSERT_TRUE(parts.Start(1));
  std::vector<std::size_t> abandoned{99};
  std::thread caller([&] { abandoned = parts.AwaitOrAbandon(std::chrono::steady_clock::now()); });
  parts.Finish(1);  // the caller returns only after this, whenever it started waiting
  caller.join();
  EXPECT_TRUE(abandoned.empty());
}

TEST(FanOutPartsTest, WithoutADeadlineEveryPartIsAwaited) {
  FanOutParts parts(3);
  std::thread worker([&] {
    for (std::size_t i : {1u, 2u}) {
      ASSERT_TRUE(parts.Start(i));
      parts.Finish(i);
    }
  });
  EXPECT_TRUE(parts.AwaitOrAbandon(std::chrono::steady_clock::time_point::max()).empty());
  worker.join();
}

}  // namespace
}  // namespace shardline::internal
