// Integration tests of the Router on the devcluster: routing lands rows on their owner,
// transactions, fan-out with unowned leftovers, map reloads under load, refused maps, the fence
// and its retry, pool contention, and passwords kept out of errors, logs and metrics.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "catalog.h"
#include "router_test_util.h"
#include "status_matchers.h"
#include "shardline/errors.h"
#include "shardline/id_gen.h"
#include "shardline/merge.h"
#include "shardline/router.h"
#include "tcp_proxy.h"

namespace shardline {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::shardline::testing::StatusIs;
using namespace std::chrono_literals;
using testing::RouterFixture;
using testing::UnusedPort;
using testing::WaitFor;
using testing::ConnectOrDie;

TEST_F(RouterFixture, EachUsersRowsLandOnTheOwningNode) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  WriteMap(Config(1, 16));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  for (std::int64_t uid = 1; uid <= 300; ++uid) {
    auto r = router->Execute(uid, "INSERT INTO users (user_id, name) VALUES ($1, $2)",
                             {uid, fmt::format("user{}", uid)});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->affected_rows(), 1);
    EXPECT_EQ(r->node(), router->Locate(uid)->node);
  }
  int total = 0;
  for (std::size_t i = 0; i < node_names_.size(); ++i) {
    auto conn = Direct(i);
    auto rows = conn->Exec("SELECT user_id FROM users");
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_GT(rows->rows(), 0) << "node " << node_names_[i] << " got no user";
    for (int row = 0; row < rows->rows(); ++row) {
      const std::int64_t uid = rows->Int64Or0(row, 0);
      EXPECT_EQ(router->Locate(uid)->node, node_names_[i]) << "user " << uid;
    }
    total += rows->rows();
  }
  EXPECT_EQ(total, 300);
  // And the router reads them back from the owner.
  auto name = router->ExecuteRead(42, "SELECT name FROM users WHERE user_id = $1", {42});
  ASSERT_TRUE(name.ok()) << name.status();
  ASSERT_EQ(name->rows(), 1);
  EXPECT_EQ(*name->GetString(0, 0), "user42");
}

TEST_F(RouterFixture, WrongKeyTypeIsInvalidArgument) {
  WriteMap(Config(1, 4));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  auto r = router->Execute("alice", "SELECT 1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("is text but the map's key_type is bigint"));
}

TEST_F(RouterFixture, TransactionCommitsOnOkAndRollsBackOnAnyError) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  WriteMap(Config(1, 8));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  auto count = [&](std::int64_t uid) {
    auto r = router->Execute(uid, "SELECT count(*) FROM users WHERE user_id = $1", {uid});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r->GetInt64(0, 0) : -1;
  };

  absl::Status ok = router->Transaction(7, [](Session& s) -> absl::Status {
    auto a = s.Execute("INSERT INTO users VALUES ($1, 'a')", {7});
    if (!a.ok()) return a.status();
    return s.Execute("UPDATE users SET name = 'b' WHERE user_id = $1", {7}).status();
  });
  ASSERT_TRUE(ok.ok()) << ok;
  EXPECT_EQ(count(7), 1);

  absl::Status cancelled = router->Transaction(8, [](Session& s) -> absl::Status {
    auto a = s.Execute("INSERT INTO users VALUES ($1, 'a')", {8});
    if (!a.ok()) return a.status();
    return absl::CancelledError("changed my mind");
  });
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(count(8), 0);

  absl::Status dup = router->Transaction(9, [](Session& s) -> absl::Status {
    auto a = s.Execute("INSERT INTO users VALUES ($1, 'a')", {9});
    if (!a.ok()) return a.status();
    return s.Execute("INSERT INTO users VALUES ($1, 'again')", {9}).status();
  });
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(dup.message()), HasSubstr("SQLSTATE 23505"));
  EXPECT_EQ(NodeOf(dup), router->Locate(9)->node);
  EXPECT_EQ(count(9), 0);

  // fn ignores a failed statement and returns OK: PostgreSQL would silently turn COMMIT into
  // ROLLBACK; the router reports the failure instead.
  absl::Status swallowed = router->Transaction(10, [](Session& s) -> absl::Status {
    (void)s.Execute("INSERT INTO users VALUES ($1, 'a')", {10});
    (void)s.Execute("INSERT INTO users VALUES ($1, 'again')", {10});
    return absl::OkStatus();
  });
  EXPECT_EQ(swallowed.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(count(10), 0);

  // The connections went back to their pools outside any transaction.
  auto borrowed = router->Borrow(10);
  ASSERT_TRUE(borrowed.ok()) << borrowed.status();
  // SAVEPOINT works only inside a transaction block (SQLSTATE 25P01 outside one).
  auto probe = borrowed->Execute("SAVEPOINT probe");
  EXPECT_EQ(SqlStateOf(probe.status()), "25P01") << probe.status();
}

TEST_F(RouterFixture, BorrowedSessionLeftInATransactionIsRolledBack) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  WriteMap(Config(1, 4, /*pool_max=*/1));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  {
    auto s = router->Borrow(5);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(s->Execute("BEGIN").ok());
    ASSERT_TRUE(s->Execute("INSERT INTO users VALUES ($1, 'x')", {5}).ok());
  }  // returned without COMMIT
  auto r = router->Execute(5, "SELECT count(*) FROM users WHERE user_id = $1", {5});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->GetInt64(0, 0), 0);
}

TEST_F(RouterFixture, ReadsGoToTheReadNodeAndReplicasWithFallbackToThePrimary) {
  ExecOnAllNodes("CREATE TABLE whoami (name text)");
  for (std::size_t i = 0; i < node_names_.size(); ++i) {
    ExecOnNode(i, fmt::format("INSERT INTO whoami VALUES ('{}')", node_names_[i]));
  }
  ShardMapConfig config = Config(1, 4);
  // Range 0 is mid-move from its owner to another node with reads switched.
  const std::string owner = config.ranges[0].node;
  const std::string target = owner == node_names_[2] ? node_names_[0] : node_names_[2];
  config.ranges[0].state = RangeState::kReadsSwitched;
  config.ranges[0].read_node = target;
  WriteMap(config);
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  const std::int64_t key = FindKeyInRange(config.ranges[0].lo, config.ranges[0].hi, 1);
  auto loc = router->Locate(key);
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->node, owner);
  EXPECT_EQ(loc->read_node, target);
  auto write_side = router->Execute(key, "SELECT name FROM whoami");
  ASSERT_TRUE(write_side.ok()) << write_side.status();
  EXPECT_EQ(*write_side->GetString(0, 0), owner);
  auto read_side = router->ExecuteRead(key, "SELECT name FROM whoami");
  ASSERT_TRUE(read_side.ok()) << read_side.status();
  EXPECT_EQ(*read_side->GetString(0, 0), target);

  // Replicas: node 1's reads go to its replica (here: node 2's database, which says so); a
  // dead replica falls back to the primary.
  ShardMapConfig v2 = Config(2, 4);
  v2.nodes[1].replicas = {node_dsns_[2]};
  WriteMap(v2);
  ASSERT_TRUE(router->RefreshMap().ok());
  const std::int64_t on1 = KeyOwnedBy(*router, node_names_[1]);
  auto replica = router->ExecuteRead(on1, "SELECT name FROM whoami");
  ASSERT_TRUE(replica.ok()) << replica.status();
  EXPECT_EQ(*replica->GetString(0, 0), node_names_[2]);
  EXPECT_EQ(replica->node(), node_names_[1] + "/replica1");
  auto primary = router->Execute(on1, "SELECT name FROM whoami");
  ASSERT_TRUE(primary.ok()) << primary.status();
  EXPECT_EQ(*primary->GetString(0, 0), node_names_[1]);

  ShardMapConfig v3 = v2;
  v3.version = 3;
  v3.nodes[1].replicas = {fmt::format("host=127.0.0.1 port={} dbname=app user=app", UnusedPort())};
  WriteMap(v3);
  ASSERT_TRUE(router->RefreshMap().ok());
  auto fallback = router->ExecuteRead(on1, "SELECT name FROM whoami");
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_EQ(*fallback->GetString(0, 0), node_names_[1]);
}

TEST_F(RouterFixture, FanOutCountsEveryRowOnceWhenANodeHoldsUnownedCopies) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  WriteMap(Config(1, 16));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  for (std::int64_t uid = 1; uid <= 200; ++uid) {
    ASSERT_TRUE(router->Execute(uid, "INSERT INTO users VALUES ($1, 'u')", {uid}).ok());
  }
  // Leftovers of a move: node 0's rows also sit on node 1, which does not own them.
  auto src = Direct(0);
  auto dst = Direct(1);
  auto rows = src->Exec("SELECT user_id FROM users");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_GT(rows->rows(), 0);
  for (int i = 0; i < rows->rows(); ++i) {
    ASSERT_TRUE(dst->Exec("INSERT INTO users VALUES ($1, 'copy')", {rows->String(i, 0)}).ok());
  }

  auto owned = router->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)");
  ASSERT_TRUE(owned.ok()) << owned.status();
  ASSERT_EQ(owned->size(), node_names_.size());
  for (std::size_t i = 0; i < owned->size(); ++i) {
    EXPECT_EQ((*owned)[i].node, node_names_[i]);
  }
  auto sum = SumInt64(*owned, 0);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 200);

  auto naive = router->FanOut("SELECT count(*) FROM users");
  ASSERT_TRUE(naive.ok()) << naive.status();
  EXPECT_EQ(*SumInt64(*naive, 0), 200 + rows->rows());

  // Ordered top-k across nodes, parameters shared by every node.
  auto top = router->FanOut(
      "SELECT user_id FROM users WHERE $owned(user_id) AND user_id <= $1 "
      "ORDER BY user_id DESC LIMIT 5",
      {150});
  ASSERT_TRUE(top.ok()) << top.status();
  auto merged = MergeOrdered(
      *top, [](const Row& a, const Row& b) { return *a.GetInt64(0) > *b.GetInt64(0); }, 5);
  ASSERT_TRUE(merged.ok()) << merged.status();
  ASSERT_EQ(merged->size(), 5u);
  EXPECT_EQ(*(*merged)[0].GetInt64(0), 150);
  EXPECT_EQ(*(*merged)[4].GetInt64(0), 146);
}

TEST_F(RouterFixture, FanOutReportsPerNodeErrorsOnRequest) {
  ExecOnNode(0, "CREATE TABLE only_here (x int)");
  WriteMap(Config(1, 4));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  auto all = router->FanOut("SELECT count(*) FROM only_here");
  EXPECT_EQ(all.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(all.status().message()), HasSubstr("SQLSTATE 42P01"));
  FanOutOptions each;
  each.fail_on_any_error = false;
  auto per_node = router->FanOut("SELECT count(*) FROM only_here", {}, each);
  ASSERT_TRUE(per_node.ok()) << per_node.status();
  EXPECT_TRUE((*per_node)[0].result.ok());
  EXPECT_EQ((*per_node)[1].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NodeOf((*per_node)[1].result.status()), node_names_[1]);
}

TEST_F(RouterFixture, MapFileRewrittenUnderConcurrentLoadLosesNoQuery) {
  WriteMap(Config(1, 16));
  RouterOptions opts = Options();
  opts.map_poll_interval = 20ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);

  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> done{0};
  std::atomic<std::int64_t> errors{0};
  absl::Status first_error;
  std::mutex first_mu;
  std::vector<std::thread> threads;
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      while (!stop.load()) {
        const std::int64_t key = static_cast<std::int64_t>(rng() % 100000);
        auto r = router->Execute(key, "SELECT $1::bigint + 1", {key});
        if (!r.ok() || *r->GetInt64(0, 0) != key + 1) {
          errors.fetch_add(1);
          std::lock_guard<std::mutex> l(first_mu);
          if (first_error.ok()) {
            first_error = r.ok() ? absl::InternalError("wrong value") : r.status();
          }
        }
        done.fetch_add(1);
      }
    });
  }
  for (int version = 2; version <= 6; ++version) {
    // Rotate ownership and change pool limits (so pools are rebuilt) with every version.
    WriteMap(Config(version, 16, /*pool_max=*/4 + version % 2, /*rotate=*/version));
    ASSERT_TRUE(WaitFor([&] { return router->map_version() == version; }, 20s))
        << "router stuck at version " << router->map_version();
    const std::int64_t before = done.load();
    ASSERT_TRUE(WaitFor([&] { return done.load() >= before + 200; }, 20s));
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_GT(done.load(), 1000);
  EXPECT_THAT(router->MetricsText(), HasSubstr("shardline_map_version 6"));
  EXPECT_THAT(router->MetricsText(), HasSubstr("shardline_map_reloads_total{outcome=\"ok\"} 5"));
}

TEST_F(RouterFixture, InvalidMapOnReloadIsRefusedLoggedAndTheOldOneStays) {
  WriteMap(Config(1, 8));
  RouterOptions opts = Options();
  opts.map_poll_interval = 20ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);

  ShardMapConfig broken = Config(2, 8);
  broken.ranges.erase(broken.ranges.begin() + 3);  // a gap
  WriteMap(broken);
  // Explicit refresh: the status says why.
  absl::Status st = router->RefreshMap();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("gap between"));
  EXPECT_EQ(router->map_version(), 1);
  // The log saw the refusal, naming the file and the problem.
  ASSERT_TRUE(WaitFor([&] { return logs_.Contains("refused"); }, 10s));
  EXPECT_THAT(logs_.Matching("refused"), HasSubstr("gap between"));
  EXPECT_THAT(logs_.Matching("refused"), HasSubstr(map_path_));
  EXPECT_THAT(logs_.Matching("refused"), HasSubstr("keeping version 1"));
  // Queries still run on version 1.
  EXPECT_TRUE(router->Execute(1, "SELECT 1").ok());
  EXPECT_THAT(router->MetricsText(), HasSubstr("shardline_map_reloads_total{outcome=\"refused\"}"));

  // A version that is not greater is ignored.
  WriteMap(Config(1, 4));
  ASSERT_TRUE(WaitFor([&] { return logs_.Contains("is not greater"); }, 10s));
  EXPECT_EQ(router->map_version(), 1);
  EXPECT_EQ(router->map()->ranges().size(), 8u);

  // A valid newer map is picked up by the file watch.
  WriteMap(Config(3, 4));
  ASSERT_TRUE(WaitFor([&] { return router->map_version() == 3; }, 10s));
  EXPECT_EQ(router->map()->ranges().size(), 4u);
}

TEST_F(RouterFixture, FollowsTheCatalogThroughNotifyAndPollingAndReportsItInTheRegistry) {
  const std::string control = scratch_->control_dsn();
  std::unique_ptr<migrate::Catalog> catalog;
  RouterOptions opts;
  ASSERT_NO_FATAL_FAILURE(InitCatalog(&catalog, &opts));
  opts.map_poll_interval = std::chrono::hours(1);  // only LISTEN/NOTIFY can wake it
  opts.heartbeat_interval = 50ms;
  auto router = MakeRouter(opts);
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->map_version(), 1);

  auto registry = [&](const std::string& column) {
    return CountOnDsn(control, fmt::format("SELECT {} FROM shardline.routers WHERE pid = {} "
                                           "ORDER BY worker_id LIMIT 1",
                                           column, ::getpid()));
  };
  EXPECT_EQ(CountOnDsn(control, "SELECT count(*) FROM shardline.routers"), 1);
  EXPECT_EQ(registry("map_version"), 1);
  absl::StatusOr<std::int64_t> id = router->NextId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(registry("worker_id"), DecodeId(*id).worker_id);

  // Publish: the NOTIFY wakes the router, which applies the version and reports it.
  ASSERT_TRUE(catalog->Publish(Config(2, 8, 4, /*rotate=*/1), "v2", {}).ok());
  ASSERT_TRUE(WaitFor([&] { return router->map_version() == 2; }, 20s))
      << "the router did not apply version 2 (still " << router->map_version() << ")";
  EXPECT_EQ(router->Locate(1)->map_version, 2);
  ASSERT_TRUE(WaitFor([&] { return registry("map_version") == 2; }, 20s));

  // A second router gets another worker id; each removes its row when it stops.
  {
    auto second = MakeRouter(opts);
    ASSERT_NE(second, nullptr);
    EXPECT_EQ(CountOnDsn(control, "SELECT count(DISTINCT worker_id) FROM shardline.routers"), 2);
    absl::StatusOr<std::int64_t> a = router->NextId();
    absl::StatusOr<std::int64_t> b = second->NextId();
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
    EXPECT_NE(DecodeId(*b).worker_id, DecodeId(*a).worker_id);
  }
  EXPECT_EQ(CountOnDsn(control, "SELECT count(*) FROM shardline.routers"), 1);
}

TEST_F(RouterFixture, CatalogPollingFindsAVersionPublishedWithoutNotifyAndRefusesABadOne) {
  const std::string control = scratch_->control_dsn();
  RouterOptions opts;
  ASSERT_NO_FATAL_FAILURE(InitCatalog(nullptr, &opts));
  opts.map_poll_interval = 20ms;
  opts.register_in_catalog = false;
  auto router = MakeRouter(opts);
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(CountOnDsn(control, "SELECT count(*) FROM shardline.routers"), 0);

  // Written behind the CLI's back: no NOTIFY, only polling can see it.
  auto publish_silently = [&](std::int64_t version, const std::string& toml) {
    auto conn = ConnectOrDie(control);
    auto ins = conn->Exec(
        "INSERT INTO shardline.map_versions (version, content, key_type) VALUES ($1, $2, "
        "'bigint')",
        {std::to_string(version), toml});
    ASSERT_TRUE(ins.ok()) << ins.status();
    auto upd = conn->Exec("UPDATE shardline.current_map SET version = $1",
                          {std::to_string(version)});
    ASSERT_TRUE(upd.ok()) << upd.status();
  };
  publish_silently(2, ShardMapToToml(Config(2, 4), PasswordMode::kKeep));
  ASSERT_TRUE(WaitFor([&] { return router->map_version() == 2; }, 20s));

  ShardMapConfig broken = Config(3, 4);
  broken.ranges[1].node = "nowhere";
  publish_silently(3, ShardMapToToml(broken, PasswordMode::kKeep));
  ASSERT_TRUE(WaitFor([&] { return logs_.Contains("refused"); }, 20s));
  EXPECT_THAT(logs_.Matching("refused"), HasSubstr("catalog version 3"));
  EXPECT_THAT(logs_.Matching("refused"), HasSubstr("nowhere"));
  EXPECT_THAT(logs_.Matching("refused"), HasSubstr("keeping version 2"));
  EXPECT_EQ(router->map_version(), 2);
  EXPECT_TRUE(router->Execute(1, "SELECT 1").ok());
}

TEST_F(RouterFixture, CatalogConnectionsCutAreReestablishedAndFollowingResumes) {
  std::unique_ptr<testing::TcpProxy> proxy;
  RouterOptions opts;
  ASSERT_NO_FATAL_FAILURE(CatalogBehindProxy(&proxy, &opts));
  const std::string control = scratch_->control_dsn();
  auto catalog = migrate::Catalog::Create(control);  // publishes later versions directly
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  opts.map_poll_interval = std::chrono::hours(1);
  opts.heartbeat_interval = 50ms;
  opts.pool.backoff_initial = 10ms;
  opts.pool.backoff_max = 100ms;
  auto router = MakeRouter(opts);
  ASSERT_NE(router, nullptr);
  const std::int64_t listening_before = proxy->accepted();
  // The router's catalog connections: the one Create loaded the map on (kept for RefreshMap),
  // the registry's, and the LISTEN connection the maintenance thread opens.
  ASSERT_TRUE(WaitFor([&] { return proxy->live_connections() >= 3; }, 20s));

  proxy->CutConnections();  // the LISTEN and registry connections drop
  ASSERT_TRUE((*catalog)->Publish(Config(2, 8, 4, /*rotate=*/2), "v2", {}).ok());
  ASSERT_TRUE(WaitFor([&] { return router->map_version() == 2; }, 20s))
      << "still at version " << router->map_version() << "; log:\n" << logs_.All();
  EXPECT_GT(proxy->accepted(), listening_before);
  EXPECT_TRUE(logs_.Contains("cannot follow the map")) << logs_.All();
  auto registered = [&] {
    return CountOnDsn(control, fmt::format("SELECT map_version FROM shardline.routers "
                                           "WHERE pid = {}", ::getpid())) == 2;
  };
  EXPECT_TRUE(WaitFor(registered, 20s)) << logs_.All();
}

TEST_F(RouterFixture, FencedWriteRefreshesTheMapAndLandsOnTheNewOwner) {
  InstallNodeSql();
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  ExecOnAllNodes("SELECT shardline.install_fence('users', 'user_id', 'bigint')");
  const std::int64_t uid = 4242;
  // Version 1: uid's range is owned by node 0; version 2 moves it to node 1.
  ShardMapConfig v1 = Config(1, 8);
  const std::size_t ri = RangeOf(v1, uid);
  v1.ranges[ri].node = node_names_[0];
  ShardMapConfig v2 = v1;
  v2.version = 2;
  v2.ranges[ri].node = node_names_[1];
  const std::int64_t lo = v1.ranges[ri].lo, hi = v1.ranges[ri].hi;
  WriteMap(v1);
  RouterOptions opts = Options();
  opts.map_poll_interval = std::chrono::hours(1);  // only the fence makes it look
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  ASSERT_EQ(router->Locate(uid)->node, node_names_[0]);

  // The migration fences the range on the source, then publishes the move.
  ExecOnNode(0, fmt::format("INSERT INTO shardline.fenced_ranges (table_name, lo, hi) "
                            "VALUES ('users', {}, {})", lo, hi));
  {
    auto direct = Direct(0)->Exec("INSERT INTO users VALUES ($1, 'direct')", {std::to_string(uid)});
    EXPECT_EQ(direct.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(IsFenced(direct.status())) << direct.status();
    EXPECT_THAT(std::string(direct.status().message()), HasSubstr("public.users"));
    EXPECT_THAT(std::string(direct.status().message()), HasSubstr(fmt::format("{}..{}", lo, hi)));
  }
  WriteMap(v2);

  ASSERT_NO_FATAL_FAILURE(ExpectInsertRetriedFromNode0ToNode1(*router, uid));

  // A transaction whose first statement is fenced is retried whole on the new owner.
  const std::int64_t uid2 = FindKeyInRange(lo, hi, uid + 1);
  ShardMapConfig v3 = v2;
  v3.version = 3;
  v3.ranges[ri].node = node_names_[2];
  ExecOnNode(1, fmt::format("INSERT INTO shardline.fenced_ranges (table_name, lo, hi) "
                            "VALUES ('users', {}, {})", lo, hi));
  WriteMap(v3);
  EXPECT_EQ(InsertInTransaction(*router, uid2), 2);
  EXPECT_EQ(CountOn(2, fmt::format("SELECT count(*) FROM users WHERE user_id = {}", uid2)), 1);
  EXPECT_EQ(CountOn(1, fmt::format("SELECT count(*) FROM users WHERE user_id = {}", uid2)), 0);
  EXPECT_THAT(router->MetricsText(), HasSubstr("shardline_fence_retries_total 2\n"));
}

// A map file produces no newer map by itself: the fenced write fails after one re-read, at
// once (the old code waited out the 60 s checkout_timeout per call; with it, this test would
// hit the ctest timeout's neighbourhood), naming the router's map.
TEST_F(RouterFixture, FencedWriteOnAMapFileWithoutANewerMapFailsAtOnceNamingTheMapVersion) {
  InstallNodeSql();
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  ExecOnAllNodes("SELECT shardline.install_fence('users', 'user_id', 'bigint')");
  WriteMap(Config(1, 4));
  RouterOptions opts = Options();
  opts.pool.checkout_timeout = 60s;
  opts.call_timeout = 60s;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  auto loc = router->Locate(77);
  const std::size_t node = NodeIndexOf(loc->node);
  ExecOnNode(node, fmt::format("INSERT INTO shardline.fenced_ranges (table_name, lo, hi) "
                               "VALUES ('users', {}, {})", loc->lo, loc->hi));
  auto r = router->Execute(77, "INSERT INTO users VALUES ($1, 'x')", {77});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsFenced(r.status()));
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("this router's shard map (version 1, from map file"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("has no newer map"));
  EXPECT_THAT(router->MetricsText(), HasSubstr("shardline_fence_retries_total 0\n"));
}

TEST_F(RouterFixture, NodeStoppedMidLoadFailsOnlyItsOwnKeysAndThePoolRecovers) {
  // Node 1 is reached through a proxy that can make it look dead.
  auto proxy = testing::TcpProxy::StartFor(node_dsns_[1]);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ShardMapConfig config = Config(1, 16);
  config.nodes[1].dsn = (*proxy)->RedirectDsn(node_dsns_[1]);
  WriteMap(config);
  RouterOptions opts = Options();
  opts.pool.connect_timeout = 500ms;
  opts.pool.checkout_timeout = 2s;
  opts.pool.breaker_open_for = 50ms;
  opts.pool.backoff_initial = 10ms;
  opts.pool.backoff_max = 100ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  const std::string dead = node_names_[1];

  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> ok_dead{0}, ok_others{0}, err_dead{0}, err_others{0};
  std::mutex mu;
  absl::Status other_error, dead_error_with_wrong_code;
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      while (!stop.load()) {
        const std::int64_t key = static_cast<std::int64_t>(rng() % 1000000);
        const bool on_dead = router->Locate(key)->node == dead;
        auto r = router->Execute(key, "SELECT $1::bigint", {key});
        if (r.ok()) {
          (on_dead ? ok_dead : ok_others).fetch_add(1);
          continue;
        }
        std::lock_guard<std::mutex> l(mu);
        if (!on_dead) {
          err_others.fetch_add(1);
          if (other_error.ok()) other_error = r.status();
        } else {
          err_dead.fetch_add(1);
          const auto code = r.status().code();
          if (code != absl::StatusCode::kUnavailable &&
              code != absl::StatusCode::kDeadlineExceeded && dead_error_with_wrong_code.ok()) {
            dead_error_with_wrong_code = r.status();
          }
          if (NodeOf(r.status()) != dead && dead_error_with_wrong_code.ok()) {
            dead_error_with_wrong_code = r.status();
          }
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok_dead.load() > 100 && ok_others.load() > 100; }, 30s));

  (*proxy)->Down();  // the node dies under load
  ASSERT_TRUE(WaitFor([&] { return err_dead.load() > 50; }, 30s));
  const std::int64_t others_while_down = ok_others.load();
  ASSERT_TRUE(WaitFor([&] { return ok_others.load() > others_while_down + 500; }, 30s))
      << "the other nodes stalled while one was down";

  ASSERT_TRUE((*proxy)->Up().ok());  // and comes back
  const std::int64_t dead_ok_before = ok_dead.load();
  EXPECT_TRUE(WaitFor([&] { return ok_dead.load() > dead_ok_before + 100; }, 30s))
      << "the pool of " << dead << " did not recover";
  stop = true;
  for (auto& th : threads) th.join();

  EXPECT_EQ(err_others.load(), 0) << other_error;
  EXPECT_GT(err_dead.load(), 0);
  EXPECT_TRUE(dead_error_with_wrong_code.ok()) << dead_error_with_wrong_code;
}

TEST_F(RouterFixture, SixtyFourThreadsShareAPoolOfFourWithoutDeadlockOrStarvation) {
  WriteMap(Config(1, 4, /*pool_max=*/4, /*rotate=*/0, /*nodes=*/1));
  RouterOptions opts = Options();
  opts.pool.checkout_timeout = 60s;  // contention, not timeouts, is under test
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  constexpr int kThreads = 64;
  constexpr int kPerThread = 25;
  std::vector<int> completed(kThreads, 0);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = router->Execute(t * 1000 + i, "SELECT pg_sleep(0.001), $1::int", {i});
        if (r.ok()) {
          ++completed[static_cast<std::size_t>(t)];
        } else {
          errors.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(completed[static_cast<std::size_t>(t)], kPerThread);
  // Never more than pool_max connections.
  EXPECT_LE(CountOn(0, fmt::format("SELECT count(*) FROM pg_stat_activity WHERE "
                                   "application_name = '{}'", app_name_)),
            4);
}

// The pools report to the router: breaker transitions reach the router's log sink, and every
// checkout (Execute, Transaction, failed or not) is one observation of the node's checkout-wait
// histogram.
TEST_F(RouterFixture, PoolBreakerLogsAndCheckoutWaitsReachTheRouter) {
  ShardMapConfig config = Config(1, 8, /*pool_max=*/2, /*rotate=*/0, /*nodes=*/2);
  config.nodes[1].dsn = fmt::format("host=127.0.0.1 port={} dbname=app user=app", UnusedPort());
  WriteMap(config);
  RouterOptions opts = Options();
  opts.pool.connect_timeout = 500ms;
  opts.pool.breaker_failures = 2;
  opts.pool.breaker_open_for = 60s;  // stays open for the whole test
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  const std::int64_t on0 = KeyOwnedBy(*router, node_names_[0]);
  const std::int64_t on1 = KeyOwnedBy(*router, node_names_[1]);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(router->Execute(on0, "SELECT 1").ok());
  ASSERT_TRUE(router->Transaction(on0, [](Session& s) { return s.Execute("SELECT 1").status(); })
                  .ok());
  for (int i = 0; i < 4; ++i) {
    EXPECT_THAT(router->Execute(on1, "SELECT 1").status(),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("node n2")));
  }
  EXPECT_THAT(logs_.Matching("circuit breaker open"),
              HasSubstr("node n2: circuit breaker open after 2 consecutive connection failures"))
      << logs_.All();
  const std::string metrics = router->MetricsText();
  EXPECT_THAT(metrics, HasSubstr("shardline_pool_checkout_wait_seconds_count{node=\"n1\"} 6\n"));
  EXPECT_THAT(metrics, HasSubstr("shardline_pool_checkout_wait_seconds_count{node=\"n2\"} 4\n"));
}

TEST_F(RouterFixture, PasswordsNeverAppearInErrorsLogsOrMetrics) {
  const std::string secret = "s3cretPW-do-not-print";
  ShardMapConfig config = Config(1, 8, /*pool_max=*/2, /*rotate=*/0, /*nodes=*/2);
  // Node 0: a trust-auth node (the password is ignored); node 1: nothing listens there.
  config.nodes[0].dsn += fmt::format(" password={}", secret);
  config.nodes[1].dsn = fmt::format("host=127.0.0.1 port={} dbname=app user=app password={}",
                                    UnusedPort(), secret);
  WriteMap(config);
  RouterOptions opts = Options();
  opts.pool.connect_timeout = 500ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);

  const std::int64_t on0 = KeyOwnedBy(*router, node_names_[0]);
  const std::int64_t on1 = KeyOwnedBy(*router, node_names_[1]);
  auto good = router->Execute(on0, "SELECT 1");
  ASSERT_TRUE(good.ok()) << good.status();
  for (int i = 0; i < 5; ++i) {  // connect failures, then the breaker's fast failures
    auto bad = router->Execute(on1, "SELECT 1");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnavailable) << bad.status();
    EXPECT_THAT(std::string(bad.status().message()), Not(HasSubstr(secret)));
    EXPECT_EQ(NodeOf(bad.status()), node_names_[1]);
  }
  auto fan = router->FanOut("SELECT 1");
  EXPECT_THAT(std::string(fan.status().message()), Not(HasSubstr(secret)));
  // A refused map whose error quotes a DSN.
  ShardMapConfig broken = config;
  broken.version = 2;
  broken.nodes.push_back(broken.nodes[0]);  // duplicate name
  WriteMap(broken);
  absl::Status refused = router->RefreshMap();
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.message()), Not(HasSubstr(secret)));

  EXPECT_THAT(router->MetricsText(), Not(HasSubstr(secret)));
  EXPECT_THAT(router->MetricsText(), Not(HasSubstr("password")));
  EXPECT_THAT(logs_.All(), Not(HasSubstr(secret)));
}

}  // namespace
}  // namespace shardline
