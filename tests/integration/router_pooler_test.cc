// Integration tests of the router behind a transaction-mode pooler (issue 16): Debian's
// pgbouncer, started by each test on a free loopback port with its own config and auth file
// (pool_mode = transaction, default_pool_size = 2), in front of every devcluster node, and
// stopped by its PID. Two services with different statements through the same two server
// connections: with the map's pooler = "transaction" none gets the other's answer or an error;
// without it they do (the bug, shown by a test of its own). Routed reads, writes, a
// transaction, a fan-out and a write refused on a stale map (retried on the new owner) work
// through it; nothing the router does outlives a transaction on a server connection; Borrow
// is refused naming the node.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "router_test_util.h"
#include "shardline/errors.h"
#include "shardline/router.h"

namespace shardline {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using testing::ConnectOrDie;
using testing::RouterFixture;
using testing::UnusedPort;
using testing::WaitFor;

// The value of `key` in a libpq connection string, or "".
std::string DsnField(const std::string& dsn, std::string_view key) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  std::string out;
  for (PQconninfoOption* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
    if (key == o->keyword && o->val != nullptr) out = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

// A private pgbouncer in transaction mode in front of `backends` (alias -> server DSN), with a
// pool of `pool_size` server connections per database. Runs in the foreground as a child of
// the test (as the devcluster's server user when the test runs as root: pgbouncer refuses
// root), stopped by its PID in the destructor.
class Pgbouncer {
 public:
  Pgbouncer(const std::filesystem::path& dir,
            const std::vector<std::pair<std::string, std::string>>& backends, int pool_size)
      : dir_(dir), port_(UnusedPort()) {
    std::filesystem::create_directories(dir_);
    std::string user = "app";
    {
      std::ofstream ini(dir_ / "pgbouncer.ini");
      ini << "[databases]\n";
      for (const auto& [alias, dsn] : backends) {
        ini << alias << " = host=" << DsnField(dsn, "host") << " port=" << DsnField(dsn, "port")
            << " dbname=" << DsnField(dsn, "dbname") << "\n";
        if (!DsnField(dsn, "user").empty()) user = DsnField(dsn, "user");
      }
      ini << "[pgbouncer]\n"
          << "listen_addr = 127.0.0.1\n"
          << "listen_port = " << port_ << "\n"
          << "unix_socket_dir =\n"
          << "auth_type = trust\n"
          << "auth_file = " << (dir_ / "users.txt").string() << "\n"
          << "pool_mode = transaction\n"
          << "default_pool_size = " << pool_size << "\n"
          << "max_client_conn = 200\n"
          << "logfile = " << (dir_ / "pgbouncer.log").string() << "\n"
          << "ignore_startup_parameters = extra_float_digits\n";
      std::ofstream users(dir_ / "users.txt");
      users << "\"" << user << "\" \"\"\n";
    }
    user_ = user;
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    if (uid == 0) {
      const passwd* pw = ::getpwnam("shardline");
      if (pw == nullptr) {
        ADD_FAILURE() << "running as root and there is no user 'shardline' to run pgbouncer as "
                         "(tools/devcluster creates it)";
        return;
      }
      uid = pw->pw_uid;
      gid = pw->pw_gid;
      for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
        (void)::chown(e.path().c_str(), uid, gid);
      }
      (void)::chown(dir_.c_str(), uid, gid);
      ::chmod(dir_.parent_path().c_str(), 0755);
    }
    const std::string ini = (dir_ / "pgbouncer.ini").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      if (::getuid() == 0 && (::setgid(gid) != 0 || ::setuid(uid) != 0)) ::_exit(126);
      ::execl("/usr/sbin/pgbouncer", "pgbouncer", "-q", ini.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const bool up = WaitFor(
        [&] {
          auto c = pg::Conn::Connect(Dsn(backends.front().first), "pgbouncer", 1s);
          return c.ok() && (*c)->Exec("SELECT 1").ok();
        },
        10s);
    EXPECT_TRUE(up) << "pgbouncer did not come up on port " << port_ << ": " << Log();
  }
  ~Pgbouncer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  Pgbouncer(const Pgbouncer&) = delete;
  Pgbouncer& operator=(const Pgbouncer&) = delete;

  // A DSN reaching database `alias` through pgbouncer.
  std::string Dsn(const std::string& alias) const {
    return fmt::format("host=127.0.0.1 port={} dbname={} user={}", port_, alias, user_);
  }
  std::string Log() const {
    std::ifstream in(dir_ / "pgbouncer.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::filesystem::path dir_;
  int port_;
  std::string user_;
  pid_t pid_ = -1;
};

class PoolerTest : public RouterFixture {
 protected:
  void SetUp() override {
    RouterFixture::SetUp();
    if (HasFatalFailure()) return;
    std::vector<std::pair<std::string, std::string>> backends;
    for (std::size_t i = 0; i < node_dsns_.size(); ++i) {
      backends.emplace_back(node_names_[i], node_dsns_[i]);
    }
    bouncer_ = std::make_unique<Pgbouncer>(dir_ / "pgbouncer", backends, /*pool_size=*/2);
  }
  void TearDown() override {
    bouncer_.reset();
    RouterFixture::TearDown();
  }

  // Config() with every node reached through pgbouncer, marked `pooler` (kUnset: not marked).
  ShardMapConfig PooledConfig(std::int64_t version, int ranges, Pooler pooler,
                              std::size_t nodes = 0) const {
    ShardMapConfig c = Config(version, ranges, /*pool_max=*/4, /*rotate=*/0, nodes);
    for (NodeConfig& n : c.nodes) {
      n.dsn = bouncer_->Dsn(n.name);
      n.admin_dsn = node_dsns_[NodeIndexOf(n.name)];
      n.pooler = pooler;
    }
    return c;
  }

  struct Tally {
    std::atomic<int> calls{0};
    std::atomic<int> wrong{0};
    std::atomic<int> errors{0};
    std::atomic<int> already_exists{0};  // 42P05
    std::string first_error;
    std::mutex mu;
  };

  // Two services (one Router each, two threads each) run different statements through the
  // same pgbouncer database (node n1, 2 server connections), each checking every answer is
  // its own statement's, until `calls_per_thread` calls each or (with stop_at_first_fault) the
  // first wrong answer or error.
  void TwoServices(Router& a, Router& b, int calls_per_thread, bool stop_at_first_fault,
                   Tally* ta, Tally* tb) {
    std::atomic<bool> stop{false};
    auto service = [&](Router& r, std::string_view tag, std::string_view sql, Tally& t) {
      for (int i = 0; i < calls_per_thread && !stop.load(); ++i) {
        const std::int64_t v = i * 7 + 1;
        auto res = r.ExecuteRead(v, sql, {v});
        t.calls.fetch_add(1);
        if (!res.ok()) {
          t.errors.fetch_add(1);
          if (SqlStateOf(res.status()) == "42P05") t.already_exists.fetch_add(1);
          std::lock_guard<std::mutex> lock(t.mu);
          if (t.first_error.empty()) t.first_error = std::string(res.status().message());
        } else if (res->rows() != 1 || *res->GetString(0, 0) != tag ||
                   *res->GetInt64(0, 1) != v) {
          t.wrong.fetch_add(1);
        } else {
          continue;
        }
        if (stop_at_first_fault) stop.store(true);
      }
    };
    // Different texts, so each router prepares its own statement as sl1 on its connections.
    const std::string sql_a = "SELECT 'A'::text AS who, $1::bigint AS v";
    const std::string sql_b = "SELECT 'B'::text AS who, $1::bigint + 0 AS v";
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back(service, std::ref(a), "A", sql_a, std::ref(*ta));
      threads.emplace_back(service, std::ref(b), "B", sql_b, std::ref(*tb));
    }
    for (auto& th : threads) th.join();
  }

  std::unique_ptr<Pgbouncer> bouncer_;
};


// The bug (issue 16): without pooler = "transaction" the router prepares sl1, sl2, ... on its
// client connections, and pgbouncer hands the server connections (and their prepared
// statements) to the other service: wrong answers or 42P05 "prepared statement already
// exists". Asserted so the fix's test below is known to exercise the fault.
TEST_F(PoolerTest, WithoutThePoolerMarkTwoServicesGetWrongAnswersOrErrors) {
  WriteMap(PooledConfig(1, 4, Pooler::kUnset, /*nodes=*/1));
  auto a = MakeRouter();
  auto b = MakeRouter();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Tally ta, tb;
  TwoServices(*a, *b, /*calls_per_thread=*/5000, /*stop_at_first_fault=*/true, &ta, &tb);
  const int faults = ta.wrong + ta.errors + tb.wrong + tb.errors;
  EXPECT_GT(faults, 0) << "calls A " << ta.calls << ", B " << tb.calls;
  std::printf("without pooler mark: first fault after %d calls; A wrong %d errors %d (42P05 %d), "
              "B wrong %d errors %d (42P05 %d); first error: %s\n",
              ta.calls.load() + tb.calls.load(), ta.wrong.load(), ta.errors.load(),
              ta.already_exists.load(), tb.wrong.load(), tb.errors.load(),
              tb.already_exists.load(), (ta.first_error + tb.first_error).c_str());
}

// The fix: router A's map says pooler = "transaction"; router B's map does not, and its
// RouterOptions::default_pooler says so instead. Under load through the same two server
// connections: 0 wrong answers, 0 errors.
TEST_F(PoolerTest, TwoServicesWithDifferentStatementsGetOnlyTheirOwnAnswers) {
  WriteMap(PooledConfig(1, 4, Pooler::kTransaction, /*nodes=*/1));
  auto a = MakeRouter();
  const std::string b_map = (dir_ / "b.toml").string();
  {
    std::ofstream out(b_map);
    out << ShardMapToToml(PooledConfig(1, 4, Pooler::kUnset, /*nodes=*/1), PasswordMode::kKeep);
  }
  RouterOptions ob = Options();
  ob.map_file = b_map;
  ob.default_pooler = Pooler::kTransaction;
  auto b = MakeRouter(ob);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Tally ta, tb;
  const auto start = std::chrono::steady_clock::now();
  TwoServices(*a, *b, /*calls_per_thread=*/3000, /*stop_at_first_fault=*/false, &ta, &tb);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ta.calls + tb.calls, 4 * 3000);
  EXPECT_EQ(ta.wrong, 0);
  EXPECT_EQ(tb.wrong, 0);
  EXPECT_EQ(ta.errors, 0) << ta.first_error;
  EXPECT_EQ(tb.errors, 0) << tb.first_error;
  std::printf("pooler = transaction: %d calls in %.2f s (%.0f/s), 0 wrong, 0 errors expected: "
              "wrong %d/%d errors %d/%d\n",
              ta.calls.load() + tb.calls.load(), seconds,
              (ta.calls.load() + tb.calls.load()) / seconds, ta.wrong.load(), tb.wrong.load(),
              ta.errors.load(), tb.errors.load());
}

// Routed writes, reads, a transaction and a fan-out through pgbouncer, and afterwards no
// server connection holds anything of the router's: no prepared statement, no
// shardline.map_version, no statement_timeout (each checked on both server connections of
// every node at once, from two clients holding a transaction open each).
TEST_F(PoolerTest, RoutedCallsWorkAndLeaveNothingOnTheServerConnections) {
  InstallNodeSql();
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text, n int)");
  WriteMap(PooledConfig(1, 8, Pooler::kTransaction));
  RouterOptions o = Options();
  o.statement_timeout = 4321ms;
  auto router = MakeRouter(o);
  ASSERT_NE(router, nullptr);
  for (std::int64_t k = 1; k <= 60; ++k) {
    auto w = router->Execute(k, "INSERT INTO users VALUES ($1, $2, 0)", {k, fmt::format("u{}", k)});
    ASSERT_TRUE(w.ok()) << k << ": " << w.status();
    EXPECT_EQ(w->affected_rows(), 1);
  }
  for (std::int64_t k = 1; k <= 60; ++k) {
    auto r = router->ExecuteRead(k, "SELECT name FROM users WHERE user_id = $1", {k});
    ASSERT_TRUE(r.ok()) << k << ": " << r.status();
    ASSERT_EQ(r->rows(), 1);
    EXPECT_EQ(*r->GetString(0, 0), fmt::format("u{}", k));
    EXPECT_EQ(r->node(), router->Locate(k)->node);
  }
  // Inside a transaction the statement_timeout and map version are the transaction's own.
  absl::Status tx = router->Transaction(7, [&](Session& s) -> absl::Status {
    auto set = s.Execute(
        "SELECT current_setting('statement_timeout'), "
        "current_setting('shardline.map_version', true)");
    if (!set.ok()) return set.status();
    EXPECT_EQ(*set->GetString(0, 0), "4321ms");
    EXPECT_EQ(*set->GetString(0, 1), "1");
    auto u = s.Execute("UPDATE users SET n = n + 1 WHERE user_id = $1", {7});
    if (!u.ok()) return u.status();
    return s.Execute("UPDATE users SET n = n + 10 WHERE user_id = $1", {7}).status();
  });
  ASSERT_TRUE(tx.ok()) << tx;
  auto n = router->ExecuteRead(7, "SELECT n FROM users WHERE user_id = $1", {7});
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n->GetInt64(0, 0), 11);
  // Outside one, each statement's implicit transaction has them (set in the same round trip).
  auto implicit = router->Execute(
      9, "SELECT current_setting('statement_timeout'), "
         "current_setting('shardline.map_version', true)");
  ASSERT_TRUE(implicit.ok()) << implicit.status();
  EXPECT_EQ(*implicit->GetString(0, 0), "4321ms");
  EXPECT_EQ(*implicit->GetString(0, 1), "1");

  auto fan = router->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)", {});
  ASSERT_TRUE(fan.ok()) << fan.status();
  std::int64_t total = 0;
  for (const NodeResult& nr : *fan) {
    ASSERT_TRUE(nr.result.ok()) << nr.node << ": " << nr.result.status();
    total += *nr.result->GetInt64(0, 0);
  }
  EXPECT_EQ(total, 60);

  // Both server connections of each node, seen by two clients of pgbouncer at once.
  for (const std::string& node : node_names_) {
    auto c1 = ConnectOrDie(bouncer_->Dsn(node));
    auto c2 = ConnectOrDie(bouncer_->Dsn(node));
    ASSERT_TRUE(c1->Exec("BEGIN").ok());
    ASSERT_TRUE(c2->Exec("BEGIN").ok());
    for (pg::Conn* c : {c1.get(), c2.get()}) {
      auto r = c->Exec(
          "SELECT (SELECT count(*) FROM pg_prepared_statements), "
          "coalesce(current_setting('shardline.map_version', true), ''), "
          "current_setting('statement_timeout'), pg_backend_pid()");
      ASSERT_TRUE(r.ok()) << node << ": " << r.status();
      EXPECT_EQ(r->Int64Or0(0, 0), 0) << node << " backend " << r->String(0, 3);
      EXPECT_EQ(r->String(0, 1), "") << node << " backend " << r->String(0, 3);
      EXPECT_EQ(r->String(0, 2), "0") << node << " backend " << r->String(0, 3);
    }
    (void)c1->Exec("COMMIT");
    (void)c2->Exec("COMMIT");
  }
}

// The stale-map check through the pooler: a router on map version 1 writes a key whose range
// moved (the node's map epoch for users is 2); the node refuses it (SLF02: the version travelled
// with the statement, set transaction-local in the same round trip), and the router retries on
// the owner named by map version 2. A session setting would not do: another client on map
// version 2 shares the server connections, and the write would pass as its and land on the old
// owner (this test fails so with the session setting of a router without the pooler mark).
TEST_F(PoolerTest, WriteOnAStaleMapIsRefusedByTheNodeAndRetriedOnTheNewOwner) {
  InstallNodeSql();
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  ExecOnAllNodes("SELECT shardline.install_fence('users', 'user_id', 'bigint')");
  const std::int64_t uid = 4242;
  ShardMapConfig v1 = PooledConfig(1, 8, Pooler::kTransaction);
  const std::size_t ri = RangeOf(v1, uid);
  v1.ranges[ri].node = node_names_[0];
  ShardMapConfig v2 = v1;
  v2.version = 2;
  v2.ranges[ri].node = node_names_[1];
  WriteMap(v1);
  RouterOptions opts = Options();
  opts.map_poll_interval = std::chrono::hours(1);  // only the refusal makes it look
  auto router = MakeRouter(std::move(opts));
  ASSERT_NE(router, nullptr);
  // Calls routed (as writes) on map version 1 before the move.
  for (std::int64_t k = 0; k < 20; ++k) {
    auto w = router->Execute(uid, "SELECT count(*) FROM users");
    EXPECT_TRUE(w.ok()) << w.status();
  }
  ExecOnNode(0, "SELECT shardline.raise_map_epoch('users', 2, 'test: range moved')");
  WriteMap(v2);
  // Another client of the pooler already on map version 2 left it as a session setting on both
  // server connections of n1 (what a router would do without pooler = "transaction"): a
  // version the writer relied on being on "its" connection would be that client's.
  {
    auto c1 = ConnectOrDie(bouncer_->Dsn(node_names_[0]));
    auto c2 = ConnectOrDie(bouncer_->Dsn(node_names_[0]));
    for (pg::Conn* c : {c1.get(), c2.get()}) ASSERT_TRUE(c->Exec("BEGIN").ok());
    for (pg::Conn* c : {c1.get(), c2.get()}) {
      ASSERT_TRUE(c->Exec("SELECT pg_catalog.set_config('shardline.map_version', '2', false)").ok());
    }
    for (pg::Conn* c : {c1.get(), c2.get()}) ASSERT_TRUE(c->Exec("COMMIT").ok());
  }

  ASSERT_NO_FATAL_FAILURE(ExpectInsertRetriedFromNode0ToNode1(*router, uid));

  // A transaction: the version set right after BEGIN, pipelined with it.
  ShardMapConfig v3 = v2;
  v3.version = 3;
  v3.ranges[ri].node = node_names_[2];
  ExecOnNode(1, "SELECT shardline.raise_map_epoch('users', 3, 'test: range moved again')");
  WriteMap(v3);
  const std::int64_t uid2 = FindKeyInRange(v1.ranges[ri].lo, v1.ranges[ri].hi, uid + 1);
  EXPECT_EQ(InsertInTransaction(*router, uid2), 2);
  EXPECT_EQ(CountOn(2, fmt::format("SELECT count(*) FROM users WHERE user_id = {}", uid2)), 1);
  EXPECT_EQ(CountOn(1, fmt::format("SELECT count(*) FROM users WHERE user_id = {}", uid2)), 0);
}

TEST_F(PoolerTest, BorrowIsRefusedNamingTheNodeAndThePooler) {
  WriteMap(PooledConfig(1, 4, Pooler::kTransaction));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  auto s = router->Borrow(5);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr(fmt::format("node {}: Borrow is refused", router->Locate(5)->node)));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("pooler = \"transaction\""));
}


// The DBA tool needs the server itself: with pooler = "transaction" and no admin_dsn a
// `shardline` command refuses and names the node (before this change it ran through the
// pooler); with admin_dsn it runs on the server, whatever the dsn.
TEST_F(PoolerTest, ShardlineCommandsUseAdminDsnAndRefuseATransactionPoolerWithoutOne) {
  ExecOnAllNodes("CREATE TABLE users (user_id bigint PRIMARY KEY, name text)");
  ShardMapConfig c = PooledConfig(1, 4, Pooler::kTransaction);
  c.nodes[1].admin_dsn.clear();
  const std::string without = (dir_ / "without.toml").string();
  {
    std::ofstream out(without);
    out << ShardMapToToml(c, PasswordMode::kKeep);
  }
  const testing::CommandResult refused =
      testing::RunCommand({testing::BinPath("shardline"), "stats", "--map", without});
  EXPECT_NE(refused.exit_code, 0) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr(fmt::format("node {}: its dsn goes through a "
                                                 "transaction-mode pooler (pooler = "
                                                 "\"transaction\")",
                                                 node_names_[1])));
  EXPECT_THAT(refused.err, HasSubstr("add admin_dsn"));

  c.nodes[1].admin_dsn = node_dsns_[1];
  // n3's dsn leads nowhere: the command succeeds only through its admin_dsn.
  c.nodes[2].dsn = fmt::format("host=127.0.0.1 port={} dbname=app user=app", UnusedPort());
  const std::string with = (dir_ / "with.toml").string();
  {
    std::ofstream out(with);
    out << ShardMapToToml(c, PasswordMode::kKeep);
  }
  const testing::CommandResult ok =
      testing::RunCommand({testing::BinPath("shardline"), "stats", "--map", with});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
}

}  // namespace
}  // namespace shardline
