// Integration tests of issue 10 on the devcluster: every call has a deadline (the statement is
// cancelled, the connection discarded, DeadlineExceeded names the node), connections find a
// dead peer through TCP keepalives / tcp_user_timeout, and a black-holed node under open-loop
// load costs the other nodes no throughput and no error, fails its own calls within the
// deadline, and serves again soon after it heals.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "catalog.h"
#include "router_test_util.h"
#include "status_matchers.h"
#include "shardline/errors.h"
#include "shardline/router.h"
#include "router_impl.h"
#include "tcp_proxy.h"

namespace shardline {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::RouterFixture;
using testing::WaitFor;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

TEST_F(RouterFixture, CallPastItsDeadlineFailsNamingTheNodeAndTheServerCancelsTheStatement) {
  WriteMap(Config(1, 4));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  const std::int64_t key = 7;
  const std::string owner = router->Locate(key)->node;
  const auto start = Clock::now();
  auto r = router->Execute(key, "SELECT pg_sleep(30)", {}, CallOptions{300ms});
  const double ms = MsSince(start);
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                   HasSubstr("call deadline exceeded")));
  EXPECT_EQ(NodeOf(r.status()), owner);
  EXPECT_LT(ms, 300 + 700) << "the call took " << ms << " ms for a 300 ms deadline";
  // The server stops the statement (it notices the closed connection), not after 30 s.
  const std::string sql = fmt::format(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' AND query LIKE "
      "'%pg_sleep(30)%'",
      app_name_);
  const std::size_t node = NodeIndexOf(owner);
  EXPECT_TRUE(WaitFor([&] { return CountOn(node, sql) == 0; }, 10s))
      << "the statement still runs on " << owner;
  // The router goes on serving that node (the broken connection was discarded).
  auto next = router->Execute(key, "SELECT 1");
  EXPECT_TRUE(next.ok()) << next.status();
}

TEST_F(RouterFixture, TheRouterWideDefaultDeadlineIsNotInfinite) {
  WriteMap(Config(1, 4));
  RouterOptions opts = Options();
  opts.call_timeout = 400ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  const auto start = Clock::now();
  auto r = router->Execute(3, "SELECT pg_sleep(30)");
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_LT(MsSince(start), 400 + 700);
  // And a zero timeout is refused: no way to configure an infinite wait.
  RouterOptions zero = Options();
  zero.call_timeout = 0ms;
  EXPECT_THAT(Router::Create(std::move(zero)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("call_timeout")));
}

TEST_F(RouterFixture, ConnectionsSetKeepalivesAndTcpUserTimeout) {
  auto conn = pg::Conn::Connect(node_dsns_[0], "n1", 5s);
  ASSERT_TRUE(conn.ok()) << conn.status();
  const int fd = PQsocket((*conn)->raw());
  ASSERT_GE(fd, 0);
  int keepalive = 0;
  socklen_t len = sizeof(keepalive);
  // A Unix-socket DSN has no TCP options; the devcluster listens on TCP loopback.
  ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive, &len), 0);
  EXPECT_EQ(keepalive, 1);
  unsigned int user_timeout = 0;
  len = sizeof(user_timeout);
  ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, &len), 0);
  EXPECT_EQ(user_timeout, 10000u);
  int idle = 0;
  len = sizeof(idle);
  ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len), 0);
  EXPECT_EQ(idle, 5);
}

TEST_F(RouterFixture, TransactionFunctionThatThrowsLeavesNoConnectionMidTransaction) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  WriteMap(Config(1, 4, /*pool_max=*/1));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  absl::Status s = router->Transaction(5, [](Session& session) -> absl::Status {
    auto r = session.Execute("INSERT INTO users VALUES (5, 'x')");
    if (!r.ok()) return r.status();
    throw std::runtime_error("boom");
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInternal, HasSubstr("boom")));
  // The only connection of the pool is back, outside any transaction, and the row is gone.
  auto count = router->Execute(5, "SELECT count(*) FROM users WHERE user_id = 5");
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count->GetInt64(0, 0), 0);
}

TEST_F(RouterFixture, CommitWithoutAnAnswerIsOutcomeUnknownNeverRetry) {
  // A COMMIT that takes longer than the deadline (a deferred trigger that sleeps at commit
  // time): sent, no answer in time, and the server still works on it when asked.
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  ExecOnAllNodes(
      "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
      "$$BEGIN PERFORM pg_sleep(30); RETURN NULL; END$$");
  ExecOnAllNodes(
      "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON users DEFERRABLE INITIALLY "
      "DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()");
  WriteMap(Config(1, 4));
  RouterOptions opts = Options();
  opts.pool.connect_timeout = 1s;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  const std::int64_t key = 21;
  const auto start = Clock::now();
  absl::Status s = router->Transaction(
      key,
      [&](Session& session) -> absl::Status {
        return session.Execute("INSERT INTO users VALUES ($1, 'x')", {key}).status();
      },
      CallOptions{500ms});
  const double ms = MsSince(start);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("COMMIT")));
  EXPECT_TRUE(IsOutcomeUnknown(s)) << s;
  EXPECT_FALSE(IsSafeToRetry(s)) << s;
  EXPECT_EQ(NodeOf(s), router->Locate(key)->node);
  // The deadline, plus the resolution's round trip on a fresh connection, plus a margin.
  EXPECT_LT(ms, 500 + 1000 + 700);
}

TEST_F(RouterFixture, CommitWhoseConnectionBrokeIsResolvedWithPgXactStatus) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  auto proxy = testing::TcpProxy::StartFor(node_dsns_[0]);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ShardMapConfig config = Config(1, 4);
  config.nodes[0].dsn = (*proxy)->RedirectDsn(node_dsns_[0]);
  WriteMap(config);
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  const std::int64_t key = KeyOwnedBy(*router, node_names_[0]);
  std::int64_t backend = 0;
  // Between the transaction id and COMMIT, the connection breaks, and the server ends that
  // backend (rolling its transaction back) before the router asks what became of it.
  router->ImplForTest().SetBeforeCommitForTest([&] {
    (*proxy)->CutConnections();
    EXPECT_TRUE(WaitFor(
        [&] {
          return CountOn(0, fmt::format("SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
                                        backend)) == 0;
        },
        10s));
  });
  absl::Status s = router->Transaction(key, [&](Session& session) -> absl::Status {
    auto r = session.Execute("INSERT INTO users VALUES ($1, 'x')", {key});
    if (!r.ok()) return r.status();
    auto pid = session.Execute("SELECT pg_backend_pid()");
    if (!pid.ok()) return pid.status();
    backend = *pid->GetInt64(0, 0);
    return absl::OkStatus();
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted, HasSubstr("pg_xact_status says it did "
                                                               "not commit")));
  EXPECT_EQ(WriteOutcomeOf(s), WriteOutcome::kNotCommitted);
  EXPECT_TRUE(IsSafeToRetry(s));
  EXPECT_EQ(CountOn(0, fmt::format("SELECT count(*) FROM users WHERE user_id = {}", key)), 0);
}

TEST_F(RouterFixture, AutocommitWriteWithoutAnAnswerIsOutcomeUnknownAndAReadIsNot) {
  WriteMap(Config(1, 4));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  auto w = router->Execute(9, "SELECT pg_sleep(30)", {}, CallOptions{200ms});
  EXPECT_THAT(w.status(), StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_TRUE(IsOutcomeUnknown(w.status())) << w.status();
  EXPECT_FALSE(IsSafeToRetry(w.status()));
  auto r = router->ExecuteRead(9, "SELECT pg_sleep(30)", {}, CallOptions{200ms});
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_FALSE(IsOutcomeUnknown(r.status())) << r.status();
  EXPECT_TRUE(IsSafeToRetry(r.status()));
}

TEST_F(RouterFixture, BorrowedSessionStateNeverReachesTheNextCaller) {
  WriteMap(Config(1, 4, /*pool_max=*/1));  // one connection per node: the next caller's
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  {
    auto session = router->Borrow(11);
    ASSERT_TRUE(session.ok()) << session.status();
    for (const char* sql :
         {"SET search_path = leaked, public",
          "CREATE TEMP TABLE leaked_tmp (x int)", "SELECT pg_advisory_lock(4242)",
          "LISTEN leaked_channel", "PREPARE leaked_stmt AS SELECT 1"}) {
      auto r = session->Execute(sql);
      ASSERT_TRUE(r.ok()) << sql << ": " << r.status();
    }
  }
  auto session = router->Borrow(11);
  ASSERT_TRUE(session.ok()) << session.status();
  auto check = [&](const char* sql) {
    auto r = session->Execute(sql);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status();
    return r.ok() ? std::string(*r->GetString(0, 0)) : std::string("?");
  };
  EXPECT_EQ(check("SHOW search_path"), "\"$user\", public");
  EXPECT_EQ(check("SELECT coalesce(to_regclass('pg_temp.leaked_tmp')::text, 'none')"), "none");
  EXPECT_EQ(check("SELECT pg_try_advisory_lock(4242)::text"), "true");
  EXPECT_EQ(check("SELECT count(*)::text FROM pg_listening_channels()"), "0");
  EXPECT_EQ(check("SELECT count(*)::text FROM pg_prepared_statements WHERE name = "
                  "'leaked_stmt'"),
            "0");
}

TEST_F(RouterFixture, BlackHoledCatalogKeepsRoutingOnTheLastMapAndRouterDestructionIsBounded) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  std::unique_ptr<testing::TcpProxy> proxy;
  RouterOptions opts;
  ASSERT_NO_FATAL_FAILURE(CatalogBehindProxy(&proxy, &opts));
  const std::string control = scratch_->control_dsn();
  auto catalog = migrate::Catalog::Create(control);  // publishes later versions directly
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  opts.map_poll_interval = 100ms;
  opts.heartbeat_interval = 50ms;
  opts.pool.connect_timeout = 500ms;  // also bounds every catalog statement
  opts.pool.backoff_initial = 10ms;
  opts.pool.backoff_max = 100ms;
  auto router = MakeRouter(opts);
  ASSERT_NE(router, nullptr);
  ASSERT_TRUE(WaitFor([&] { return proxy->live_connections() >= 3; }, 20s));

  proxy->SetStalled(true);  // the catalog hangs: connects succeed, nothing answers
  // Routing goes on with the last map, without an error, while the follower and the heartbeat
  // run into the hung catalog.
  const auto routing_start = Clock::now();
  for (std::int64_t k = 1; MsSince(routing_start) < 1500; ++k) {
    auto r = router->Execute(k, "INSERT INTO users VALUES ($1, 'x')", {k});
    ASSERT_TRUE(r.ok()) << "key " << k << ": " << r.status();
  }
  auto start = Clock::now();
  absl::Status refresh = router->RefreshMap();
  EXPECT_FALSE(refresh.ok());
  EXPECT_TRUE(refresh.code() == absl::StatusCode::kDeadlineExceeded ||
              refresh.code() == absl::StatusCode::kUnavailable)
      << refresh;
  // A statement on the connection, then (the connection closed) at most one reconnect.
  EXPECT_LT(MsSince(start), 500 + 500 + 700) << refresh;
  EXPECT_EQ(router->map_version(), 1);

  // Healed, the router follows the catalog again.
  proxy->SetStalled(false);
  ASSERT_TRUE((*catalog)->Publish(Config(2, 8, 4, /*rotate=*/1), "v2", {}).ok());
  EXPECT_TRUE(WaitFor([&] { return router->map_version() == 2; }, 10s)) << logs_.All();

  // Hung again: ~Router() still returns in bounded time (maintenance thread, deregistration).
  proxy->SetStalled(true);
  ASSERT_TRUE(WaitFor([&] { return logs_.Contains("heartbeat failed"); }, 10s)) << logs_.All();
  start = Clock::now();
  router.reset();
  const double destroy_ms = MsSince(start);
  std::printf("~Router() with a black-holed catalog: %.0f ms\n", destroy_ms);
  // Worst case: a catalog statement in flight on the maintenance thread, then deregistration's
  // connect and statement, each bounded by connect_timeout (500 ms).
  EXPECT_LT(destroy_ms, 4 * 500 + 1000);
  proxy->SetStalled(false);
}

TEST_F(RouterFixture, FanOutWaitsForAHungNodeAtMostItsDeadlineAndKeepsTheHealthyRows) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  auto proxy = testing::TcpProxy::StartFor(node_dsns_[2]);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ShardMapConfig config = Config(1, 12);
  config.nodes[2].dsn = (*proxy)->RedirectDsn(node_dsns_[2]);
  WriteMap(config);
  RouterOptions opts = Options();
  opts.pool.connect_timeout = 400ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  for (std::int64_t k = 1; k <= 60; ++k) {
    ASSERT_TRUE(router->Execute(k, "INSERT INTO users VALUES ($1, 'x')", {k}).ok());
  }
  (*proxy)->SetStalled(true);
  FanOutOptions fo;
  fo.fail_on_any_error = false;
  fo.timeout = 400ms;
  for (int round = 0; round < 3; ++round) {  // repeated: no fan-out worker stays taken
    const auto start = Clock::now();
    auto r = router->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)", {}, fo);
    const double ms = MsSince(start);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 3u);
    EXPECT_LT(ms, 400 + 700) << "round " << round;
    std::int64_t healthy_rows = 0;
    for (const NodeResult& n : *r) {
      if (n.node == node_names_[2]) {
        EXPECT_FALSE(n.result.ok());
        EXPECT_TRUE(n.result.status().code() == absl::StatusCode::kDeadlineExceeded ||
                    n.result.status().code() == absl::StatusCode::kUnavailable)
            << n.result.status();
        EXPECT_EQ(NodeOf(n.result.status()), node_names_[2]);
      } else {
        ASSERT_TRUE(n.result.ok()) << n.node << ": " << n.result.status();
        healthy_rows += *n.result->GetInt64(0, 0);
      }
    }
    EXPECT_EQ(healthy_rows, CountOn(0, "SELECT count(*) FROM users") +
                                CountOn(1, "SELECT count(*) FROM users"));
    EXPECT_GT(healthy_rows, 0);
  }
  (*proxy)->SetStalled(false);
}

TEST_F(RouterFixture, ConcurrentFanOutsCannotAllTakeTheWorkersOfOneHungNode) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  auto proxy = testing::TcpProxy::StartFor(node_dsns_[2]);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ShardMapConfig config = Config(1, 12, /*pool_max=*/16);
  config.nodes[2].dsn = (*proxy)->RedirectDsn(node_dsns_[2]);
  WriteMap(config);
  RouterOptions opts = Options();
  opts.pool.breaker_failures = 1000;  // the hung node's parts keep waiting out their deadline
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  for (std::int64_t k = 1; k <= 60; ++k) {
    ASSERT_TRUE(router->Execute(k, "INSERT INTO users VALUES ($1, 'x')", {k}).ok());
  }
  (*proxy)->SetStalled(true);
  // More fan-outs at once than there are workers: every one has a part on the hung node.
  constexpr int kFanOuts = 12;
  FanOutOptions fo;
  fo.fail_on_any_error = false;
  fo.timeout = 1500ms;
  std::vector<std::vector<NodeResult>> results(kFanOuts);
  std::vector<absl::Status> statuses(kFanOuts);
  std::vector<std::thread> threads;
  for (int f = 0; f < kFanOuts; ++f) {
    threads.emplace_back([&, f] {
      auto r = router->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)", {}, fo);
      statuses[f] = r.status();
      if (r.ok()) results[f] = std::move(*r);
    });
  }
  for (auto& t : threads) t.join();
  for (int f = 0; f < kFanOuts; ++f) {
    ASSERT_TRUE(statuses[f].ok()) << "fan-out " << f << ": " << statuses[f];
    ASSERT_EQ(results[f].size(), 3u);
    for (const NodeResult& n : results[f]) {
      if (n.node == node_names_[2]) {
        EXPECT_FALSE(n.result.ok()) << "fan-out " << f;
        EXPECT_EQ(NodeOf(n.result.status()), node_names_[2]);
      } else {
        // The healthy nodes' parts were not queued behind the hung node's.
        EXPECT_TRUE(n.result.ok()) << "fan-out " << f << ", " << n.node << ": "
                                   << n.result.status();
      }
    }
  }
  (*proxy)->SetStalled(false);
}

TEST_F(RouterFixture, TransactionWhoseFunctionOutlastsTheDeadlineIsNotCommittedNorBlamesTheNode) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  WriteMap(Config(1, 4, /*pool_max=*/1));
  RouterOptions opts = Options();
  opts.pool.breaker_failures = 2;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  // Three keys on one node, so that its breaker (2 failures) would open if these counted.
  std::vector<std::int64_t> keys;
  for (std::int64_t k = 1; keys.size() < 3; ++k) {
    if (router->Locate(k)->node == node_names_[0]) keys.push_back(k);
  }
  for (const std::int64_t key : keys) {
    absl::Status s = router->Transaction(
        key,
        [&](Session& session) -> absl::Status {
          auto r = session.Execute("INSERT INTO users VALUES ($1, 'x')", {key});
          if (!r.ok()) return r.status();
          // The scenario: application code slower than the call's deadline (not a wait for
          // another thread).
          std::this_thread::sleep_for(300ms);
          return absl::OkStatus();
        },
        CallOptions{200ms});
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("before sending")));
    EXPECT_FALSE(IsOutcomeUnknown(s)) << s;  // COMMIT was never sent
  }
  // Nothing committed, and the (healthy) node's breaker did not open: it serves at once.
  EXPECT_EQ(CountOn(0, "SELECT count(*) FROM users"), 0);
  for (const std::int64_t key : keys) {
    auto r = router->Execute(key, "SELECT 1");
    EXPECT_TRUE(r.ok()) << r.status();
  }
}

// One call of the open-loop load: when it was issued, on which node, how it ended.
struct CallRecord {
  double issued_ms = 0;  // since the start of the run
  double latency_ms = 0;
  bool on_hung = false;
  absl::Status status;
};

TEST_F(RouterFixture, BlackHoledNodeUnderOpenLoadCostsTheOthersNothingAndHeals) {
  auto proxy = testing::TcpProxy::StartFor(node_dsns_[2]);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  ShardMapConfig config = Config(1, 12);
  config.nodes[2].dsn = (*proxy)->RedirectDsn(node_dsns_[2]);
  WriteMap(config);
  constexpr auto kDeadline = 500ms;
  constexpr double kMarginMs = 500;
  RouterOptions opts = Options();
  opts.call_timeout = kDeadline;
  opts.pool.connect_timeout = 500ms;
  opts.pool.breaker_open_for = 200ms;
  opts.pool.backoff_initial = 10ms;
  opts.pool.backoff_max = 200ms;
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  const std::string hung = node_names_[2];

  // Open loop: a scheduler issues calls at a fixed rate into a queue, whatever their outcome;
  // a large set of workers runs them (an application's request threads).
  constexpr int kRate = 300;  // calls per second, over all nodes
  constexpr int kWorkers = 128;
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<std::int64_t, double>> queue;  // key, issue time
  std::vector<CallRecord> records;
  bool stop = false;
  const auto run_start = Clock::now();
  std::vector<std::thread> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.emplace_back([&] {
      for (;;) {
        std::pair<std::int64_t, double> call;
        {
          std::unique_lock<std::mutex> l(mu);
          cv.wait(l, [&] { return stop || !queue.empty(); });
          if (queue.empty()) return;
          call = queue.front();
          queue.pop_front();
        }
        CallRecord rec;
        rec.issued_ms = call.second;
        rec.on_hung = router->Locate(call.first)->node == hung;
        const auto t0 = Clock::now();
        auto r = router->Execute(call.first, "SELECT $1::bigint", {call.first});
        rec.latency_ms = MsSince(t0);
        rec.status = r.status();
        std::lock_guard<std::mutex> l(mu);
        records.push_back(std::move(rec));
      }
    });
  }
  std::atomic<bool> stop_scheduler{false};
  // Keys cycle over the nodes, so each node gets exactly a third of the calls and the
  // healthy nodes' offered load is the same in every window (no sampling noise in the ratio).
  std::vector<std::vector<std::int64_t>> keys_by_node(3);
  {
    std::mt19937_64 rng(seed);
    while (std::any_of(keys_by_node.begin(), keys_by_node.end(),
                       [](const auto& v) { return v.size() < 1000; })) {
      const auto key = static_cast<std::int64_t>(rng() % 1000000);
      const std::size_t node = NodeIndexOf(router->Locate(key)->node);
      if (keys_by_node[node].size() < 1000) keys_by_node[node].push_back(key);
    }
  }
  std::thread scheduler([&] {
    std::uint64_t n = 0;
    const auto period = std::chrono::duration_cast<Clock::duration>(1s) / kRate;
    auto next = Clock::now();
    while (!stop_scheduler.load()) {
      // Pacing the open loop is the point of this thread (not a synchronisation).
      std::this_thread::sleep_until(next);
      next += period;
      const std::int64_t key = keys_by_node[n % 3][(n / 3) % 1000];
      ++n;
      {
        std::lock_guard<std::mutex> l(mu);
        queue.emplace_back(key, MsSince(run_start));
      }
      cv.notify_one();
    }
  });
  auto healthy_ok_between = [&](double from_ms, double to_ms) {
    std::lock_guard<std::mutex> l(mu);
    std::int64_t n = 0;
    for (const CallRecord& r : records) {
      if (!r.on_hung && r.status.ok() && r.issued_ms >= from_ms && r.issued_ms < to_ms) ++n;
    }
    return n;
  };
  auto recorded_up_to = [&](double ms) {
    // Every call issued before `ms` has finished (none is still queued or running).
    std::lock_guard<std::mutex> l(mu);
    std::int64_t issued = 0;
    for (const CallRecord& r : records) issued += r.issued_ms < ms ? 1 : 0;
    bool pending = false;
    for (const auto& q : queue) pending = pending || q.second < ms;
    return !pending && issued > 0;
  };

  constexpr double kWindowMs = 3000;
  // Warm up, then a window of normal operation.
  ASSERT_TRUE(WaitFor([&] { return MsSince(run_start) > 1000 + kWindowMs; }, 30s));
  const double hang_at = MsSince(run_start);
  (*proxy)->SetStalled(true);  // node 3 hangs: connects succeed, nothing answers
  ASSERT_TRUE(WaitFor([&] { return MsSince(run_start) > hang_at + kWindowMs; }, 30s));
  const double heal_at = MsSince(run_start);
  (*proxy)->SetStalled(false);
  // The hung node serves again: a call issued after the heal succeeds on it.
  double served_again_ms = -1;
  EXPECT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(mu);
        for (const CallRecord& r : records) {
          if (r.on_hung && r.status.ok() && r.issued_ms >= heal_at) {
            served_again_ms = r.issued_ms + r.latency_ms - heal_at;
            return true;
          }
        }
        return false;
      },
      10s))
      << hung << " did not serve again after the proxy healed";
  stop_scheduler = true;
  scheduler.join();
  ASSERT_TRUE(WaitFor([&] { return recorded_up_to(MsSince(run_start)); }, 10s));
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  for (auto& w : workers) w.join();

  const std::int64_t before = healthy_ok_between(hang_at - kWindowMs, hang_at);
  const std::int64_t during = healthy_ok_between(hang_at, heal_at);
  const double window_during = heal_at - hang_at;
  const double ratio = (static_cast<double>(during) / window_during) /
                       (static_cast<double>(before) / kWindowMs);
  std::int64_t healthy_errors = 0, hung_errors = 0, hung_deadline = 0, hung_breaker = 0;
  double worst_hung_ms = 0;
  absl::Status healthy_error, wrong_hung_error;
  for (const CallRecord& r : records) {
    if (r.status.ok()) continue;
    if (!r.on_hung) {
      ++healthy_errors;
      if (healthy_error.ok()) healthy_error = r.status;
      continue;
    }
    ++hung_errors;
    worst_hung_ms = std::max(worst_hung_ms, r.latency_ms);
    const auto code = r.status.code();
    if (code == absl::StatusCode::kDeadlineExceeded) ++hung_deadline;
    if (code == absl::StatusCode::kUnavailable &&
        std::string(r.status.message()).find("circuit breaker") != std::string::npos) {
      ++hung_breaker;
    }
    if ((code != absl::StatusCode::kDeadlineExceeded && code != absl::StatusCode::kUnavailable) ||
        NodeOf(r.status) != hung) {
      if (wrong_hung_error.ok()) wrong_hung_error = r.status;
    }
  }
  std::printf(
      "healthy nodes: %lld ok before (%.0f ms), %lld during the hang (%.0f ms): ratio %.3f; "
      "hung node: %lld errors (%lld DeadlineExceeded, %lld breaker open), slowest %.0f ms; served again %.0f ms "
      "after the heal\n",
      static_cast<long long>(before), kWindowMs, static_cast<long long>(during), window_during,
      ratio, static_cast<long long>(hung_errors), static_cast<long long>(hung_deadline),
      static_cast<long long>(hung_breaker),
      worst_hung_ms, served_again_ms);
  EXPECT_GT(before, 0);
  EXPECT_GE(ratio, 0.95);
  EXPECT_EQ(healthy_errors, 0) << healthy_error;
  EXPECT_GT(hung_deadline, 0);
  EXPECT_GT(hung_breaker, 0) << "the hung node's breaker never opened";
  EXPECT_TRUE(wrong_hung_error.ok()) << wrong_hung_error;
  const double deadline_ms = std::chrono::duration<double, std::milli>(kDeadline).count();
  EXPECT_LE(worst_hung_ms, deadline_ms + kMarginMs);
  EXPECT_GE(served_again_ms, 0);
  EXPECT_LT(served_again_ms, 5000);
}

}  // namespace
}  // namespace shardline
