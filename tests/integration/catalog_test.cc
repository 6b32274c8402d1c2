// Tests of the control catalog (migrate/catalog.h, router/catalog_reader.h) against a real
// control database: idempotent and concurrent init, publish rules, the publish race, NOTIFY,
// the audit trail and revert. Each test gets its own scratch database on the control instance.
#include "catalog.h"

#include <libpq-fe.h>
#include <poll.h>

#include <atomic>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "catalog_reader.h"
#include "cluster.h"
#include "status_matchers.h"

namespace shardline::migrate {
namespace {

using ::shardline::testing::ConnectOrDie;
using ::shardline::testing::ScratchDatabases;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using ::shardline::testing::StatusIs;

// A valid two-node map of `version`; node a's DSN holds a password (the catalog keeps it).
ShardMapConfig TwoNodeMap(std::int64_t version, const std::string& owner_of_upper_half = "b") {
  ShardMapConfig c;
  c.version = version;
  NodeConfig a;
  a.name = "a";
  a.dsn = "host=127.0.0.1 port=1 dbname=app user=app password=secret";
  NodeConfig b;
  b.name = "b";
  b.dsn = "host=127.0.0.1 port=2 dbname=app user=app";
  c.nodes = {a, b};
  RangeConfig lower;
  lower.lo = kMinHash;
  lower.hi = -1;
  lower.node = "a";
  RangeConfig upper;
  upper.lo = 0;
  upper.hi = kMaxHash;
  upper.node = owner_of_upper_half;
  c.ranges = {lower, upper};
  TableConfig t;
  t.name = "users";
  t.key = "user_id";
  c.tables = {t};
  return c;
}

class CatalogTest : public ::testing::Test {
 protected:
  CatalogTest() : db_(1) {}

  std::unique_ptr<Catalog> Open() {
    auto c = Catalog::Create(db_.control_dsn());
    if (!c.ok()) throw std::runtime_error(std::string(c.status().message()));
    return *std::move(c);
  }
  std::unique_ptr<Catalog> OpenInitialised() {
    auto c = Open();
    auto created = c->Init({.os_user = "tester"});
    EXPECT_TRUE(created.ok()) << created.status();
    return c;
  }

  ScratchDatabases db_;
};

TEST_F(CatalogTest, InitCreatesOnceAndIsIdempotent) {
  auto c = Open();
  absl::StatusOr<bool> first = c->Init({.os_user = "tester"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);
  absl::StatusOr<bool> second = c->Init({.os_user = "tester"});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(*second);
  EXPECT_EQ(*c->CurrentVersion(), 0);
  absl::StatusOr<std::vector<HistoryEntry>> h = c->History();
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->size(), 1u);  // one init row, not one per run
  EXPECT_EQ((*h)[0].action, "init");
  EXPECT_EQ((*h)[0].os_user, "tester");
}

TEST_F(CatalogTest, ConcurrentInitsAllSucceedAndExactlyOneCreates) {
  constexpr int kThreads = 6;
  std::vector<std::unique_ptr<Catalog>> catalogs;
  for (int i = 0; i < kThreads; ++i) catalogs.push_back(Open());
  std::vector<absl::StatusOr<bool>> results(kThreads, absl::UnknownError("not run"));
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      results[i] = catalogs[i]->Init({});
    });
  }
  for (auto& t : threads) t.join();
  int created = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    created += *r ? 1 : 0;
  }
  EXPECT_EQ(created, 1);
}

TEST_F(CatalogTest, PublishBeforeInitSaysToRunCatalogInit) {
  auto c = Open();
  EXPECT_THAT(c->Publish(TwoNodeMap(1), "", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("not initialised"), HasSubstr("shardline catalog init"))));
  EXPECT_THAT(c->CurrentVersion(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("shardline catalog init")));
}

TEST_F(CatalogTest, PublishesConsecutiveVersionsAndLoadsThemBack) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "first", {}).ok());
  ASSERT_TRUE(c->Publish(TwoNodeMap(2, "a"), "second", {}).ok());
  EXPECT_EQ(*c->CurrentVersion(), 2);
  absl::StatusOr<ParsedShardMap> v1 = c->Load(1);
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->map->config(), TwoNodeMap(1));  // passwords kept: the catalog is the truth
  absl::StatusOr<ParsedShardMap> current = c->LoadCurrent();
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(current->map->config(), TwoNodeMap(2, "a"));
  // The router's reader sees the same.
  absl::StatusOr<ParsedShardMap> via_router =
      internal::LoadCurrentMapFromCatalog(db_.control_dsn());
  ASSERT_TRUE(via_router.ok()) << via_router.status();
  EXPECT_EQ(via_router->map->version(), 2);
}

TEST_F(CatalogTest, FirstPublishAcceptsAnyPositiveVersionThenRequiresTheNext) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(5), "", {}).ok());
  EXPECT_THAT(c->Publish(TwoNodeMap(7), "", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("catalog is at version 5; this map has version 7; expected 6")));
  EXPECT_TRUE(c->Publish(TwoNodeMap(6), "", {}).ok());
}

TEST_F(CatalogTest, RefusesAVersionThatSkipsAheadNamingBothVersions) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  ASSERT_TRUE(c->Publish(TwoNodeMap(2), "", {}).ok());
  EXPECT_THAT(c->Publish(TwoNodeMap(4), "", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("catalog is at version 2; this map has version 4; expected 3")));
  EXPECT_EQ(*c->CurrentVersion(), 2);
}

TEST_F(CatalogTest, RefusesAnAlreadyPublishedVersion) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  EXPECT_THAT(c->Publish(TwoNodeMap(1), "", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("catalog is at version 1; this map has version 1"),
                             HasSubstr("already published"))));
}

TEST_F(CatalogTest, RefusesAnInvalidMapNamingTheFaultAndPublishesNothing) {
  auto c = OpenInitialised();
  ShardMapConfig bad = TwoNodeMap(1);
  bad.ranges[1].node = "zz";
  EXPECT_THAT(c->Publish(bad, "", {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not published"), HasSubstr("'zz'"))));
  ShardMapConfig gap = TwoNodeMap(1);
  gap.ranges[1].lo = 5;
  EXPECT_THAT(c->Publish(gap, "", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hash values 0..4")));
  EXPECT_EQ(*c->CurrentVersion(), 0);
}

// N publishers, each on its own connection, race to publish the same next version, round after
// round: exactly one wins each round and every loser is told which version it lost to.
TEST_F(CatalogTest, ConcurrentPublishersOfTheSameVersionExactlyOneWins) {
  constexpr int kThreads = 5;
  constexpr int kRounds = 25;
  std::vector<std::unique_ptr<Catalog>> catalogs;
  catalogs.push_back(OpenInitialised());
  for (int i = 1; i < kThreads; ++i) catalogs.push_back(Open());
  for (int round = 1; round <= kRounds; ++round) {
    std::vector<absl::Status> results(kThreads);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        results[i] = catalogs[i]->Publish(TwoNodeMap(round, i % 2 ? "a" : "b"),
                                          fmt::format("thread {}", i), {});
      });
    }
    for (auto& t : threads) t.join();
    int wins = 0;
    for (const absl::Status& s : results) {
      if (s.ok()) {
        ++wins;
        continue;
      }
      EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition,
                              HasSubstr(fmt::format(
                                  "catalog is at version {}; this map has version {}; "
                                  "expected {}",
                                  round, round, round + 1))))
          << "round " << round;
    }
    ASSERT_EQ(wins, 1) << "round " << round;
  }
  EXPECT_EQ(*catalogs[0]->CurrentVersion(), kRounds);
  absl::StatusOr<std::vector<HistoryEntry>> h = catalogs[0]->History();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->size(), 1u + kRounds);  // init + one publish per round, none for the losers
}

// Waits (up to a generous deadline, not as synchronisation) for the next notification on
// `conn`; returns "<channel>:<payload>" or "" on timeout.
std::string NextNotification(pg::Conn& conn) {
  for (int waited_ms = 0; waited_ms < 30000;) {
    PQconsumeInput(conn.raw());
    if (PGnotify* n = PQnotifies(conn.raw())) {
      std::string out = fmt::format("{}:{}", n->relname, n->extra);
      PQfreemem(n);
      return out;
    }
    pollfd pfd{PQsocket(conn.raw()), POLLIN, 0};
    ::poll(&pfd, 1, 1000);
    waited_ms += 1000;
  }
  return "";
}

TEST_F(CatalogTest, PublishNotifiesListenersWithTheVersionAndAFailedPublishDoesNot) {
  auto c = OpenInitialised();
  auto listener = ConnectOrDie(db_.control_dsn());
  ASSERT_TRUE(listener->Exec("LISTEN shardline_map").ok());
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  EXPECT_EQ(NextNotification(*listener), "shardline_map:1");
  ASSERT_FALSE(c->Publish(TwoNodeMap(3), "", {}).ok());  // refused: rolled back, no NOTIFY
  ASSERT_TRUE(c->Publish(TwoNodeMap(2), "", {}).ok());
  EXPECT_EQ(NextNotification(*listener), "shardline_map:2");  // not a "3" in between
  absl::StatusOr<std::int64_t> reverted = c->Revert(1, "", {});
  ASSERT_TRUE(reverted.ok()) << reverted.status();
  EXPECT_EQ(NextNotification(*listener), "shardline_map:3");
}

TEST_F(CatalogTest, HistoryListsEveryActionInOrder) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "first map", {.os_user = "alice"}).ok());
  ASSERT_TRUE(c->Publish(TwoNodeMap(2, "a"), "move upper half", {.os_user = "bob"}).ok());
  ASSERT_TRUE(c->Revert(1, "a was overloaded", {.os_user = "carol"}).ok());
  absl::StatusOr<std::vector<HistoryEntry>> h = c->History();
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->size(), 4u);
  std::vector<std::string> actions;
  std::vector<std::int64_t> versions;
  for (const HistoryEntry& e : *h) {
    actions.push_back(e.action);
    versions.push_back(e.version);
    EXPECT_EQ(e.db_user, "app");  // the devcluster's role
  }
  EXPECT_THAT(actions, ElementsAre("init", "publish", "publish", "revert"));
  EXPECT_THAT(versions, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ((*h)[1].comment, "first map");
  EXPECT_EQ((*h)[1].os_user, "alice");
  EXPECT_EQ((*h)[2].os_user, "bob");
  EXPECT_EQ((*h)[3].reverted_from, 1);
  EXPECT_EQ((*h)[3].comment, "a was overloaded");
  EXPECT_LE((*h)[0].at, (*h)[3].at);
}

TEST_F(CatalogTest, RevertPublishesTheNextVersionWithTheOldContent) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  ASSERT_TRUE(c->Publish(TwoNodeMap(2, "a"), "", {}).ok());
  absl::StatusOr<std::int64_t> v = c->Revert(1, "undo", {});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 3);
  EXPECT_EQ(*c->CurrentVersion(), 3);
  absl::StatusOr<ParsedShardMap> current = c->LoadCurrent();
  ASSERT_TRUE(current.ok()) << current.status();
  ShardMapConfig expected = TwoNodeMap(1);
  expected.version = 3;
  EXPECT_EQ(current->map->config(), expected);
  // Publishing goes on from the new version.
  EXPECT_THAT(c->Publish(TwoNodeMap(3), "", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("expected 4")));
}

TEST_F(CatalogTest, RevertToAnUnknownOrTheCurrentVersionIsRefused) {
  auto c = OpenInitialised();
  EXPECT_THAT(c->Revert(1, "", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no published map")));
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  EXPECT_THAT(c->Revert(9, "", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("version 9 was never published")));
  EXPECT_THAT(c->Revert(1, "", {}), StatusIs(absl::StatusCode::kFailedPrecondition,
                                             HasSubstr("version 1 is already the current")));
  EXPECT_EQ(*c->CurrentVersion(), 1);
}

TEST_F(CatalogTest, ReaderDistinguishesMissingEmptyAndBrokenCatalogs) {
  EXPECT_THAT(internal::LoadCurrentMapFromCatalog(db_.control_dsn()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("catalog init")));
  auto c = OpenInitialised();
  EXPECT_THAT(internal::LoadCurrentMapFromCatalog(db_.control_dsn()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no map has been published")));
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  // A stored text that no longer validates (hand-edited) is named by its version.
  ASSERT_TRUE(c->conn()
                  .Exec("UPDATE shardline.map_versions SET content = replace(content, "
                        "'node = \"b\"', 'node = \"nowhere\"')")
                  .ok());
  EXPECT_THAT(internal::LoadCurrentMapFromCatalog(db_.control_dsn()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("catalog version 1:"), HasSubstr("'nowhere'"))));
}

TEST_F(CatalogTest, StoredContentKeepsPasswordsAndNothingIsGrantedToPublic) {
  auto c = OpenInitialised();
  ASSERT_TRUE(c->Publish(TwoNodeMap(1), "", {}).ok());
  auto r = c->conn().Exec("SELECT content FROM shardline.map_versions WHERE version = 1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->String(0, 0), HasSubstr("password=secret"));
  auto grants = c->conn().Exec(
      "SELECT count(*) FROM information_schema.role_table_grants "
      "WHERE table_schema = 'shardline' AND grantee = 'PUBLIC'");
  ASSERT_TRUE(grants.ok()) << grants.status();
  EXPECT_EQ(grants->Int64Or0(0, 0), 0);
}

}  // namespace
}  // namespace shardline::migrate
