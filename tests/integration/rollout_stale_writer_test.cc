// Integration tests of what the nodes refuse around a move, whatever the router's timing: a
// service on an older map after cleanup (every shape of write, and `$owned` fan-outs), writers
// whose snapshot predates a fence (REPEATABLE READ, prepared transactions), and long readers
// open on the sources, which neither hold the switch of writes nor are terminated by it.
// Services connect as their own non-superuser role, as in production.
#include "rollout_fixture.h"

#include "shardline/errors.h"
#include "shardline/merge.h"

namespace shardline::testing {
namespace {

using ::testing::HasSubstr;

// A non-superuser role for the services, created on every node's server (roles are per
// server) with the rights a service has on its tables; dropped at the end.
class ServiceRole {
 public:
  ServiceRole(const ScratchDatabases& db, int nodes)
      : db_(db), nodes_(nodes), name_(fmt::format("svc_{}_{}", ::getpid(), ++counter_)) {
    for (int i = 0; i < nodes_; ++i) {
      auto c = ConnectOrDie(db_.node_dsn(i));
      (void)c->Exec(fmt::format("DROP ROLE IF EXISTS {}", name_));
      auto r = c->Exec(fmt::format("CREATE ROLE {} LOGIN NOSUPERUSER", name_));
      EXPECT_TRUE(r.ok()) << r.status();
    }
  }
  ~ServiceRole() {
    for (int i = 0; i < nodes_; ++i) {
      auto c = ConnectOrDie(db_.node_dsn(i));
      (void)c->Exec(fmt::format("DROP OWNED BY {}", name_));
      (void)c->Exec(fmt::format("DROP ROLE {}", name_));
    }
  }
  // What a service is granted on a table it reads and writes.
  void GrantOn(int node, const std::string& table) {
    auto r = ConnectOrDie(db_.node_dsn(node))
                 ->Exec(fmt::format("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}",
                                    table, name_));
    EXPECT_TRUE(r.ok()) << r.status();
  }
  // `dsn` with this role as its user (a later keyword wins in a libpq connection string).
  std::string Dsn(const std::string& dsn) const { return dsn + " user=" + name_; }
  const std::string& name() const { return name_; }

 private:
  static inline std::atomic<int> counter_{0};
  const ScratchDatabases& db_;
  const int nodes_;
  const std::string name_;
};

class StaleWriterTest : public RolloutTest {
 protected:
  // A key below kInitialRows (existing row) that the plan moves from `source` to n3, or a
  // key that stays where it is when `source` is empty ("stays on n1").
  std::int64_t KeyMovedFrom(const std::string& source) {
    Json st = Status();
    for (std::int64_t k = 1; k <= kInitialRows; ++k) {
      const std::int64_t h = ShardKey(k).Hash();
      for (const Json& r : st[0]["waves"][0]["ranges"]) {
        if (r["source"] == source && h >= r["lo"].get<std::int64_t>() &&
            h <= r["hi"].get<std::int64_t>()) {
          return k;
        }
      }
    }
    ADD_FAILURE() << "no key moves from " << source;
    return 0;
  }
  std::int64_t KeyStayingOn(const std::string& node) {
    auto now = CurrentMap();
    Json st = Status();
    for (std::int64_t k = 1; k <= kInitialRows; ++k) {
      const std::int64_t h = ShardKey(k).Hash();
      if (now->RangeFor(h).node != node) continue;
      bool moves = false;
      for (const Json& r : st[0]["waves"][0]["ranges"]) {
        moves = moves || (h >= r["lo"].get<std::int64_t>() && h <= r["hi"].get<std::int64_t>());
      }
      if (!moves) return k;
    }
    ADD_FAILURE() << "no key stays on " << node;
    return 0;
  }
  std::int64_t RowsWithV(std::int64_t v) {
    std::int64_t n = 0;
    for (int i = 0; i < 3; ++i) {
      if (Count(i, "SELECT (to_regclass('users') IS NOT NULL)::int") == 0) continue;
      n += Count(i, fmt::format("SELECT count(*) FROM users WHERE v = {}", v));
    }
    return n;
  }
};

// Issue 15 scenario 1: a service still on the map from before the move (a map file) after
// cleanup. Its UPDATE and DELETE of a moved user used to return OK with 0 rows (the old owner
// has no row for the row trigger to refuse) and its `$owned` fan-out silently missed the moved
// users. Every shape of write is now refused by the node (SLF02, the map epoch), the fan-out
// fails rather than undercount, and the router fails at once (the file will not produce a
// newer map) instead of waiting its checkout timeout per call.
TEST_F(StaleWriterTest, ServiceOnAnOldMapFileIsRefusedForEveryShapeOfWriteAfterCleanup) {
  // On n3's server too: start gives the copy of users the sources' grants, and refuses a role
  // the target's server lacks.
  ServiceRole svc(*db_, 3);
  svc.GrantOn(0, "users");
  svc.GrantOn(1, "users");
  const std::string old_map = (dir_ / "old-map.toml").string();
  {
    ShardMapConfig c = CurrentMap()->config();
    for (NodeConfig& n : c.nodes) n.dsn = svc.Dsn(n.dsn);
    std::ofstream out(old_map);
    out << ShardMapToToml(c, PasswordMode::kKeep);
  }
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  const std::int64_t moved = KeyMovedFrom("n1");
  const std::int64_t stays = KeyStayingOn("n1");
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "cleaned"));
  std::printf("write window without long readers: %.1f ms\n",
              Status()[0]["waves"][0]["write_window_ms"].get<double>());

  RouterOptions o;
  o.map_file = old_map;
  o.worker_id = 1;
  // Long: a router that waited for a newer map would take this long per call (the old code
  // did); the file source is re-read once instead.
  o.pool.checkout_timeout = std::chrono::seconds(30);
  o.call_timeout = std::chrono::seconds(30);
  o.log_sink = [](LogLevel, std::string_view) {};
  auto stale = Router::Create(o);
  ASSERT_TRUE(stale.ok()) << stale.status();
  auto expect_refused = [&](std::int64_t key, const std::string& sql) {
    auto r = (*stale)->Execute(ShardKey(key), sql, {key});
    ASSERT_FALSE(r.ok()) << sql << " on the old map was acknowledged (" << r->rows()
                         << " rows)";
    EXPECT_TRUE(IsStaleMap(r.status())) << r.status();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("has no newer map"));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("routed on shard map version 1"));
  };
  expect_refused(moved, "UPDATE users SET v = -7 WHERE user_id = $1 RETURNING user_id");
  expect_refused(moved, "DELETE FROM users WHERE user_id = $1 RETURNING user_id");
  expect_refused(moved, "INSERT INTO users (user_id, v) VALUES ($1, -7)");
  expect_refused(moved,
                 "INSERT INTO users (user_id, v) VALUES ($1, -7) ON CONFLICT (user_id) DO "
                 "UPDATE SET v = EXCLUDED.v");
  // A key the move did not touch, on a node that gave ranges away: refused too (the node
  // cannot tell which map the statement would have needed), never written on a stale map.
  expect_refused(stays, "UPDATE users SET v = -7 WHERE user_id = $1 RETURNING user_id");
  auto truncate = (*stale)->Execute(ShardKey(moved), "TRUNCATE users");
  EXPECT_FALSE(truncate.ok());
  // The fan-out fails instead of counting only the users the old map knows.
  auto owned = (*stale)->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)", {});
  ASSERT_FALSE(owned.ok()) << "a fan-out on the old map returned a partial count";
  EXPECT_TRUE(IsStaleMap(owned.status())) << owned.status();

  // The same service on the current map (the catalog) writes and counts everything.
  RouterOptions cur;
  cur.catalog_dsn = db_->control_dsn();
  cur.log_sink = [](LogLevel, std::string_view) {};
  auto fresh = Router::Create(cur);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  auto upd = (*fresh)->Execute(ShardKey(moved),
                               "UPDATE users SET v = -8 WHERE user_id = $1 RETURNING user_id",
                               {moved});
  ASSERT_TRUE(upd.ok()) << upd.status();
  EXPECT_EQ(upd->rows(), 1);
  auto total = (*fresh)->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)", {});
  ASSERT_TRUE(total.ok()) << total.status();
  auto sum = SumInt64(*total, 0);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, kInitialRows);
  EXPECT_EQ(RowsWithV(-7), 0);
  EXPECT_GT(Count(0, "SELECT count(*) FROM users"), 0) << "TRUNCATE on the old map emptied n1";
}

// Issue 15 scenario 3: long transactions open on the sources at the switch of writes (a
// report, an idle-in-transaction session), with the default flags. The switch used to wait
// --fence-grace, terminate them, and revert anyway. Now it completes, the readers are alive,
// and a write they attempt afterwards is refused (READ COMMITTED: the fence; REPEATABLE READ:
// its snapshot is older than the fence), never lost.
TEST_F(StaleWriterTest, LongReadersOnTheSourcesNeitherHoldTheSwitchNorAreTerminated) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  const std::int64_t from_n1 = KeyMovedFrom("n1");
  const std::int64_t from_n2 = KeyMovedFrom("n2");
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "reads_switched"));
  auto report = ConnectOrDie(db_->node_dsn(0));  // READ COMMITTED, idle in transaction
  ASSERT_TRUE(report->Exec("BEGIN").ok());
  ASSERT_TRUE(report->Exec("SELECT count(*) FROM users").ok());
  auto dump = ConnectOrDie(db_->node_dsn(1));  // pg_dump's shape: REPEATABLE READ, read only
  ASSERT_TRUE(dump->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ").ok());
  ASSERT_TRUE(dump->Exec("SELECT count(*) FROM users").ok());

  CommandResult advance = Cli({"rollout", "advance", "--migration", "1"}, 0);
  Json st = Status();
  ASSERT_EQ(st[0]["waves"][0]["step"], "writes_switched") << advance.out << advance.err;
  std::printf("write window with two long readers open on the sources: %.1f ms\n",
              st[0]["waves"][0]["write_window_ms"].get<double>());
  EXPECT_THAT(advance.out, ::testing::Not(HasSubstr("terminated")));

  auto alive = report->Exec("SELECT count(*) FROM users");
  ASSERT_TRUE(alive.ok()) << "the READ COMMITTED reader was terminated: " << alive.status();
  auto rc_write = report->Exec("INSERT INTO users (user_id, v) VALUES ($1, -9) ON CONFLICT "
                               "(user_id) DO UPDATE SET v = EXCLUDED.v",
                               {std::to_string(from_n1)});
  ASSERT_FALSE(rc_write.ok()) << "a write into a moved range was accepted by the old owner";
  EXPECT_EQ(SqlStateOf(rc_write.status()).value_or(""), kFencedSqlState) << rc_write.status();
  (void)report->Exec("ROLLBACK");

  auto still = dump->Exec("SELECT count(*) FROM users");
  ASSERT_TRUE(still.ok()) << "the REPEATABLE READ reader was terminated: " << still.status();
  auto rr_write = dump->Exec("UPDATE users SET v = -9 WHERE user_id = $1",
                             {std::to_string(from_n2)});
  ASSERT_FALSE(rr_write.ok()) << "a write from a snapshot older than the fence was accepted";
  EXPECT_EQ(SqlStateOf(rr_write.status()).value_or(""), "40001") << rr_write.status();
  (void)dump->Exec("ROLLBACK");
  EXPECT_EQ(RowsWithV(-9), 0);

  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "cleaned"));
  ExpectWritesOnOwners({}, /*exclusive=*/true);
}

// Issue 15 scenario 2: a REPEATABLE READ transaction whose snapshot predates the fence writes
// after it (and would then PREPARE TRANSACTION): the write is refused with 40001 by the node
// (its snapshot cannot see the fence; the fence epoch, a sequence, can), so nothing commits on
// the old owner after the position the target caught up to. No session is terminated.
TEST_F(StaleWriterTest, RepeatableReadWriterOlderThanTheFenceIsRefusedBeforeItCanPrepare) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  const std::int64_t key = KeyMovedFrom("n1");
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "reads_switched"));
  auto rr = ConnectOrDie(db_->node_dsn(0));
  ASSERT_TRUE(rr->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ").ok());
  ASSERT_TRUE(rr->Exec("SELECT count(*) FROM users").ok());  // the snapshot is taken
  Cli({"rollout", "advance", "--migration", "1"}, 0);
  ASSERT_EQ(Status()[0]["waves"][0]["step"], "writes_switched");
  auto ins = rr->Exec("UPDATE users SET v = 4242 WHERE user_id = $1", {std::to_string(key)});
  ASSERT_FALSE(ins.ok()) << "an old snapshot wrote on the old owner after the fence";
  EXPECT_EQ(SqlStateOf(ins.status()).value_or(""), "40001") << ins.status();
  EXPECT_THAT(std::string(ins.status().message()), HasSubstr("snapshot is older"));
  // Nothing to prepare: the transaction is aborted, and its session is alive.
  EXPECT_FALSE(rr->Exec("PREPARE TRANSACTION 'shardline_test_rr'").ok() &&
               Count(0, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = "
                        "'shardline_test_rr'") > 0);
  (void)rr->Exec("ROLLBACK");
  EXPECT_TRUE(rr->Exec("SELECT 1").ok()) << "the session was terminated";
  EXPECT_EQ(RowsWithV(4242), 0);
}

// A transaction that wrote into a moving range (under the pause lock, shared) and was then
// prepared keeps that lock until COMMIT PREPARED: the fence cannot pause it, so the switch
// fails within its lock timeout naming the prepared transaction, reverts (the source keeps
// taking writes), and once it is committed the switch completes with its row on the target.
TEST_F(StaleWriterTest, PreparedTransactionInAMovingRangeHoldsTheSwitchAndIsNamed) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  const std::int64_t key = KeyMovedFrom("n1");
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "reads_switched"));
  const std::string gid = fmt::format("shardline_test_{}", ::getpid());
  auto p = ConnectOrDie(db_->node_dsn(0));
  ASSERT_TRUE(p->Exec("BEGIN").ok());
  auto w = p->Exec("UPDATE users SET v = 5151 WHERE user_id = $1", {std::to_string(key)});
  ASSERT_TRUE(w.ok()) << w.status();
  auto prep = p->Exec(fmt::format("PREPARE TRANSACTION '{}'", gid));
  ASSERT_TRUE(prep.ok()) << prep.status();
  struct Finish {
    pg::Conn& c;
    const std::string& gid;
    ~Finish() { (void)c.Exec(fmt::format("ROLLBACK PREPARED '{}'", gid)); }
  } finish{*p, gid};

  CommandResult blocked = Cli({"rollout", "advance", "--migration", "1"}, 1);
  EXPECT_THAT(blocked.err, HasSubstr(fmt::format("prepared transaction '{}'", gid)));
  EXPECT_THAT(blocked.err, HasSubstr("reverted"));
  ASSERT_EQ(Status()[0]["waves"][0]["step"], "reads_switched");

  auto commit = p->Exec(fmt::format("COMMIT PREPARED '{}'", gid));
  ASSERT_TRUE(commit.ok()) << commit.status();
  Cli({"rollout", "advance", "--migration", "1"}, 0);
  ASSERT_EQ(Status()[0]["waves"][0]["step"], "writes_switched");
  EXPECT_EQ(Count(2, fmt::format("SELECT count(*) FROM users WHERE user_id = {} AND v = 5151",
                                 key)),
            1)
      << "the prepared transaction's write did not reach the new owner";
}

// Logical replication carries no DDL: a table swap, a dropped or disabled fence trigger, or a
// table dropped from the move's publication would silently stop the move of that table or let
// a router on an old map write where nobody reads. The node's event trigger refuses them (the
// DDL is rolled back) while the table has marks; TRUNCATE of a marked table is refused by the
// statement trigger; harmless DDL goes through; the move then completes with nothing lost.
TEST_F(StaleWriterTest, DdlThatWouldTakeAMovingTableOutOfTheFenceOrTheMoveIsRefused) {
  Writer writer(db_->control_dsn(), 21);
  writer.Start();
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "catching_up"));
  const std::string pub = ConnectOrDie(db_->node_dsn(0))
                              ->Exec("SELECT pubname FROM pg_publication WHERE pubname LIKE "
                                     "'shardline%' LIMIT 1")
                              ->String(0, 0);
  ASSERT_FALSE(pub.empty());
  auto expect_refused = [&](const std::string& ddl, const std::string& why) {
    auto c = ConnectOrDie(db_->node_dsn(0));
    auto r = c->Exec(ddl);
    ASSERT_FALSE(r.ok()) << ddl << " was accepted on a node with a moving range";
    EXPECT_EQ(SqlStateOf(r.status()).value_or(""), kFencedSqlState) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(why)) << ddl;
  };
  Exec(0, "CREATE TABLE users_new (LIKE users INCLUDING ALL)");
  expect_refused("ALTER TABLE users RENAME TO users_old", "would no longer exist");
  expect_refused("DROP TABLE users", "would no longer exist");
  expect_refused("DROP TRIGGER shardline_fence ON users", "would lose its shardline fence");
  expect_refused("ALTER TABLE users DISABLE TRIGGER shardline_fence_stmt",
                 "would lose its shardline fence");
  expect_refused(fmt::format("ALTER PUBLICATION {} DROP TABLE users", pub),
                 "would leave the publication");
  expect_refused("TRUNCATE users", "TRUNCATE of public.users refused");
  // Harmless DDL on the same table goes through.
  Exec(0, "CREATE INDEX users_v_idx ON users (v)");
  EXPECT_EQ(Count(0, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND "
                     "tgname LIKE 'shardline_fence%' AND tgenabled <> 'D'"),
            2);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "cleaned"));
  writer.Stop();
  EXPECT_THAT(writer.Errors(), ::testing::IsEmpty());
  ExpectWritesOnOwners(writer.Acked(), /*exclusive=*/true);
}

// A switch of writes cut off inside its window (killed here; a lost catalog leaves the same
// state) leaves the sources refusing writes to the wave's ranges: `status` says so, since when,
// and what ends it, and that command does.
TEST_F(StaleWriterTest, AnInterruptedWriteWindowIsNamedByStatusAndEndedByAdvance) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "reads_switched"));
  CommandResult killed = Cli({"rollout", "advance", "--migration", "1"}, -1,
                             {{"SHARDLINE_ROLLOUT_KILL_AT", "writes:fenced"}});
  EXPECT_NE(killed.exit_code, 0);
  Json st = Status();
  ASSERT_EQ(st[0]["waves"][0]["step"], "reads_switched");
  const std::string next = st[0]["next"];
  EXPECT_THAT(next, HasSubstr("wave 1's switch of writes was interrupted: its sources have "
                              "refused writes"));
  EXPECT_THAT(next, HasSubstr("`advance --migration 1` finishes the switch"));
  Cli({"rollout", "advance", "--migration", "1"}, 0);
  EXPECT_EQ(Status()[0]["waves"][0]["step"], "writes_switched");
}

}  // namespace
}  // namespace shardline::testing
