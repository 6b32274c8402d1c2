// The ends of a node's and a migration's life (issue 15, points 6 and 7, and hand publishes):
// a drained node leaves the map at cleanup and a fan-out no longer needs its server; an aborted
// or rolled back --add-node leaves no node behind, so the same plan can be made again; a planner
// never hands ranges to a node that owns nothing unless asked; a rollback whose reverse
// replication cannot deliver hands the writes back to the targets and completes when rerun after
// the fix; `map publish` / `map revert` refuse during a migration and onto ranges a node fences.
#include "plan_toml.h"
#include "rollout_fixture.h"

namespace shardline::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class RolloutLifecycleTest : public RolloutTest {
 protected:
  // A router following the catalog (no registry row: it must not hold a cleanup back).
  std::unique_ptr<Router> NewRouter() {
    RouterOptions o;
    o.catalog_dsn = db_->control_dsn();
    o.register_in_catalog = false;
    o.worker_id = 7;
    o.log_sink = [](LogLevel, std::string_view) {};
    auto r = Router::Create(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // The nodes of a plan file's resulting map and their roles ("n1:kept").
  std::vector<std::string> PlanNodes(const std::string& path) {
    auto plan = migrate::LoadPlanFile(path);
    EXPECT_TRUE(plan.ok()) << plan.status();
    std::vector<std::string> out;
    if (!plan.ok()) return out;
    for (const migrate::NodeBalance& n : plan->plan.nodes) {
      out.push_back(fmt::format("{}:{}", n.name, migrate::NodeRoleName(n.role)));
    }
    return out;
  }

  // A key the Writer never writes (it writes 1..2 * kInitialRows) whose range the current map
  // gives to `node`.
  std::int64_t KeyOwnedBy(const std::string& node) {
    auto map = CurrentMap();
    for (std::int64_t k = 100001; k <= 200000; ++k) {
      if (map->RangeFor(ShardKey(k).Hash()).node == node) return k;
    }
    ADD_FAILURE() << "no key owned by " << node;
    return 0;
  }

  // The reverse subscriptions of the migration on node `i` (they live on the sources).
  std::vector<std::string> ReverseSubscriptions(int i) {
    std::vector<std::string> out;
    auto r = ConnectOrDie(db_->node_dsn(i))
                 ->Exec("SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM "
                        "pg_database WHERE datname = current_database()) AND subname LIKE "
                        "'%\\_rev\\_%' ORDER BY 1");
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) {
      for (int row = 0; row < r->rows(); ++row) out.push_back(r->String(row, 0));
    }
    return out;
  }

  void SetReverseEnabled(bool enabled) {
    int n = 0;
    for (int i = 0; i < 2; ++i) {
      auto conn = ConnectOrDie(db_->node_dsn(i));
      for (const std::string& sub : ReverseSubscriptions(i)) {
        auto r = conn->Exec(fmt::format("ALTER SUBSCRIPTION {} {}", conn->QuoteIdent(sub),
                                        enabled ? "ENABLE" : "DISABLE"));
        ASSERT_TRUE(r.ok()) << r.status();
        ++n;
      }
    }
    ASSERT_GT(n, 0) << "no reverse subscription found";
  }

  // Starts `writer`, then the plan adding n3 in one wave up to its write switch, and waits until
  // the target took writes.
  void SwitchWritesUnderLoad(Writer& writer) {
    writer.Start();
    Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
    ASSERT_NO_FATAL_FAILURE(RunUntil(1, "writes_switched"));
    ASSERT_TRUE(writer.WaitForMoreWrites(300));
  }

  // Writes the current map with the next version and one more (reference) table to a file and
  // returns its path: a change of someone else's.
  std::string NextMapFile(const std::string& name) {
    ShardMapConfig c = CurrentMap()->config();
    c.version += 1;
    c.tables.push_back(
        TableConfig{.name = "countries", .key = "", .primary_key = {}, .reference = true});
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << ShardMapToToml(c, PasswordMode::kKeep);
    return path;
  }
};

// Point 6: a node drained by --remove-node leaves the map at the end of cleanup (a recorded
// step), so a fan-out works with its server refusing connections, and a new plan has no such
// node. Fails before the change: the map kept n2 owning nothing, and the fan-out failed on it.
TEST_F(RolloutLifecycleTest, DrainedNodeLeavesTheMapAndItsServerCanGo) {
  const std::string drain = DrainPlan();
  EXPECT_THAT(PlanNodes(drain), ::testing::ElementsAre("n1:kept", "n2:removed"));
  Writer writer(db_->control_dsn(), 61);
  writer.Start();
  Cli({"rollout", "start", "--plan", drain, "--waves", "100%"}, 0);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "cleaned"));
  ASSERT_TRUE(writer.WaitForMoreWrites(200));
  writer.Stop();
  EXPECT_THAT(writer.Errors(), IsEmpty());
  EXPECT_EQ(Status()[0]["state"], "cleaned");

  auto map = CurrentMap();
  EXPECT_EQ(map->NodeIndex("n2"), -1) << "map version " << map->version() << " still has n2";
  ASSERT_EQ(map->nodes().size(), 1u);
  EXPECT_EQ(Count(-1,
                  "SELECT count(*) FROM shardline.migration_steps WHERE step = "
                  "'drop_drained_nodes' AND outcome = 'ok'"),
            1);
  ExpectWritesOnOwners(writer.Acked(), /*exclusive=*/true);

  // n2's server goes away: its database refuses connections.
  // (From the node's `app` database: a session cannot disallow connections to its own.)
  auto n2 = ConnectOrDie(db_->node_dsn(1) + " dbname=app");
  const std::string dbname = n2->QuoteIdent(db_->name());
  auto blocked = n2->Exec(fmt::format("ALTER DATABASE {} ALLOW_CONNECTIONS false", dbname));
  ASSERT_TRUE(blocked.ok()) << blocked.status();
  auto ended = n2->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                        {db_->name()});
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_FALSE(pg::Conn::Connect(db_->node_dsn(1), "n2").ok());
  {
    auto router = NewRouter();
    ASSERT_NE(router, nullptr);
    auto owned = router->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)");
    ASSERT_TRUE(owned.ok()) << owned.status();
    std::int64_t rows = 0;
    for (const NodeResult& r : *owned) {
      ASSERT_TRUE(r.result.ok()) << r.node << ": " << r.result.status();
      auto n = r.result->GetInt64(0, 0);
      ASSERT_TRUE(n.ok()) << n.status();
      rows += *n;
    }
    EXPECT_GE(rows, kInitialRows);
    auto all = router->FanOut("SELECT 1");
    EXPECT_TRUE(all.ok()) << all.status();
  }
  // A new plan does not know n2.
  const std::string again = (dir_ / "again.toml").string();
  Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--by",
       "ranges", "-o", again},
      0);
  EXPECT_THAT(PlanNodes(again), ::testing::ElementsAre("n1:kept", "n3:added"));
  ASSERT_TRUE(n2->Exec(fmt::format("ALTER DATABASE {} ALLOW_CONNECTIONS true", dbname)).ok());
}

// Point 6: an aborted --add-node leaves no n3 in the map, and the same plan can be made again.
// Fails before the change: n3 stayed in the map, and the plan was refused ("already has a node
// of that name").
TEST_F(RolloutLifecycleTest, AbortedAddNodeLeavesNoNodeAndThePlanCanBeMadeAgain) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "reads_switched"));
  EXPECT_GE(CurrentMap()->NodeIndex("n3"), 0);
  Cli({"rollout", "abort", "--migration", "1"}, 0);
  auto map = CurrentMap();
  EXPECT_EQ(map->NodeIndex("n3"), -1) << "map version " << map->version() << " still has n3";
  EXPECT_EQ(map->nodes().size(), 2u);
  EXPECT_EQ(Rows(2).size(), 0u);
  ExpectWritesOnOwners({}, /*exclusive=*/true);
  const std::string again = (dir_ / "again.toml").string();
  Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--by",
       "ranges", "-o", again},
      0);
  EXPECT_THAT(PlanNodes(again), ::testing::ElementsAre("n1:kept", "n2:kept", "n3:added"));
}

// The planner never moves a range onto a node that owns nothing unless asked: such a node is
// planned as removed (and a warning says so); --use-empty-nodes gives it its share.
TEST_F(RolloutLifecycleTest, PlannerGivesNoRangesToAnEmptyNodeUnlessAsked) {
  ShardMapConfig c = CurrentMap()->config();
  c.version += 1;
  NodeConfig n3;
  n3.name = "n3";
  n3.dsn = db_->node_dsn(2);
  c.nodes.push_back(n3);
  auto catalog = migrate::Catalog::Create(db_->control_dsn());
  ASSERT_TRUE(catalog.ok());
  ASSERT_TRUE((*catalog)->Publish(c, "an empty node", {}).ok());

  const std::string plain = (dir_ / "plain.toml").string();
  CommandResult r = Cli({"rebalance", "plan", "--by", "ranges", "-o", plain}, 0);
  EXPECT_THAT(r.out + r.err, HasSubstr("node 'n3' owns no range"));
  EXPECT_THAT(PlanNodes(plain), ::testing::ElementsAre("n1:kept", "n2:kept", "n3:removed"));
  auto parsed = migrate::LoadPlanFile(plain);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  for (const migrate::RangeMove& m : parsed->plan.moves) EXPECT_NE(m.to, "n3");

  const std::string asked = (dir_ / "asked.toml").string();
  Cli({"rebalance", "plan", "--by", "ranges", "--use-empty-nodes", "-o", asked}, 0);
  EXPECT_THAT(PlanNodes(asked), ::testing::ElementsAre("n1:kept", "n2:kept", "n3:kept"));
  auto used = migrate::LoadPlanFile(asked);
  ASSERT_TRUE(used.ok()) << used.status();
  int to_n3 = 0;
  for (const migrate::RangeMove& m : used->plan.moves) to_n3 += m.to == "n3" ? 1 : 0;
  EXPECT_GT(to_n3, 0);
}

// A sharded fan-out (`$owned`) skips a node that owns nothing in the call's map, so a node whose
// server is gone costs nothing; a fan-out without `$owned` (reference tables) still reaches
// every node of the map. Fails before the change: the `$owned` fan-out failed on n3.
TEST_F(RolloutLifecycleTest, OwnedFanOutSkipsANodeThatOwnsNothing) {
  ShardMapConfig c = CurrentMap()->config();
  c.version += 1;
  // Nothing listens on port 1: every connection to n3 is refused at once.
  NodeConfig gone;
  gone.name = "n3";
  gone.dsn = "host=127.0.0.1 port=1 dbname=gone user=app connect_timeout=1";
  c.nodes.push_back(gone);
  auto catalog = migrate::Catalog::Create(db_->control_dsn());
  ASSERT_TRUE(catalog.ok());
  ASSERT_TRUE((*catalog)->Publish(c, "n3 owns nothing", {}).ok());
  auto router = NewRouter();
  ASSERT_NE(router, nullptr);
  ASSERT_EQ(router->map_version(), c.version);

  auto owned = router->FanOut("SELECT count(*) FROM users WHERE $owned(user_id)");
  ASSERT_TRUE(owned.ok()) << owned.status();
  std::vector<std::string> nodes;
  std::int64_t rows = 0;
  for (const NodeResult& r : *owned) {
    nodes.push_back(r.node);
    ASSERT_TRUE(r.result.ok()) << r.node << ": " << r.result.status();
    auto n = r.result->GetInt64(0, 0);
    ASSERT_TRUE(n.ok()) << n.status();
    rows += *n;
  }
  EXPECT_THAT(nodes, ::testing::ElementsAre("n1", "n2"));
  EXPECT_EQ(rows, kInitialRows);

  FanOutOptions per_node;
  per_node.fail_on_any_error = false;
  auto all = router->FanOut("SELECT 1", {}, per_node);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].node, "n3");
  EXPECT_FALSE((*all)[2].result.ok());
}

// Point 7: a rollback whose reverse replication is stopped (subscriptions disabled on the
// sources) fails within --apply-wait saying what blocks, the targets take writes again (a write
// to a moved range succeeds, on the target), `status` says what to run; after the subscriptions
// are enabled again the rerun completes, every acknowledged write is on the sources and n3
// leaves the map. Fails before the change: the targets stayed fenced and the write was refused.
TEST_F(RolloutLifecycleTest, RollbackThatCannotDeliverHandsWritesBackAndCompletesOnRerun) {
  Writer writer(db_->control_dsn(), 62);
  ASSERT_NO_FATAL_FAILURE(SwitchWritesUnderLoad(writer));
  ASSERT_NO_FATAL_FAILURE(SetReverseEnabled(false));

  // status sees it.
  Json before = Status()[0];
  ASSERT_FALSE(before["reverse_problems"].empty()) << before.dump(2);
  EXPECT_THAT(before["reverse_problems"][0].get<std::string>(), HasSubstr("is disabled"));

  const auto start = std::chrono::steady_clock::now();
  CommandResult r = Cli({"rollout", "rollback", "--migration", "1", "--apply-wait", "2"}, 1);
  std::printf("the failed rollback said:\n%s", r.err.c_str());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 60.0);
  EXPECT_THAT(r.err, HasSubstr("is disabled"));
  EXPECT_THAT(r.err, HasSubstr("ENABLE"));
  EXPECT_THAT(r.err, HasSubstr("took the writes back"));
  EXPECT_THAT(r.err, HasSubstr("rollout rollback --migration 1"));
  Json after = Status()[0];
  EXPECT_EQ(after["state"], "rolling_back");
  EXPECT_THAT(after["next"].get<std::string>(), HasSubstr("rollback --migration 1"));
  EXPECT_THAT(after["last_error"].get<std::string>(), HasSubstr("is disabled"));

  // The current owner, the target, takes writes again.
  const std::int64_t key = KeyOwnedBy("n3");
  {
    auto router = NewRouter();
    ASSERT_NE(router, nullptr);
    CallOptions call;
    call.timeout = std::chrono::seconds(3);
    auto w = router->Execute(ShardKey(key), "INSERT INTO users (user_id, v) VALUES ($1, $2)",
                             {key, std::int64_t{424242}}, call);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_EQ(w->affected_rows(), 1);
  }
  EXPECT_EQ(Rows(2)[key], 424242);
  ASSERT_TRUE(writer.WaitForMoreWrites(200));

  ASSERT_NO_FATAL_FAILURE(SetReverseEnabled(true));
  Cli({"rollout", "rollback", "--migration", "1"}, 0);
  ASSERT_TRUE(writer.WaitForMoreWrites(200));  // on the sources again
  writer.Stop();
  EXPECT_EQ(Status()[0]["state"], "rolled_back");
  auto map = CurrentMap();
  EXPECT_EQ(map->NodeIndex("n3"), -1);
  auto acked = writer.Acked();
  acked[key] = 424242;
  ExpectWritesOnOwners(acked, /*exclusive=*/true);
  EXPECT_EQ(ReplicationObjects(), 0);
  ExpectMarksOnlyWhereNotServed();
}

// Point 7, the issue's own case: a unique index on a non-key column of the source that the
// move makes conflict. A row written on the target collides there, the reverse apply worker
// fails on it, and the rollback fails naming the apply errors; the targets keep taking writes;
// once the colliding row is gone the rerun completes with every acknowledged write on the
// sources. Fails before the change: the targets stayed fenced after the failed rollback.
TEST_F(RolloutLifecycleTest, RollbackBlockedByAConflictingUniqueKeyCompletesOnceItIsFixed) {
  Writer writer(db_->control_dsn(), 63);
  ASSERT_NO_FATAL_FAILURE(SwitchWritesUnderLoad(writer));
  // Only the sources have the unique index (created after the clone); the writer's values are
  // unique anyway (1000001 upwards).
  for (int i = 0; i < 2; ++i) Exec(i, "CREATE UNIQUE INDEX users_v_key ON users (v)");
  const std::int64_t on_target = KeyOwnedBy("n3");
  // The same value under a new key on each source (whichever gets on_target's row back).
  const std::vector<std::int64_t> on_sources = {KeyOwnedBy("n1"), KeyOwnedBy("n2")};
  auto router = NewRouter();
  ASSERT_NE(router, nullptr);
  const std::int64_t clash = 777777777;
  const char* insert = "INSERT INTO users (user_id, v) VALUES ($1, $2)";
  for (std::int64_t k : on_sources) {
    ASSERT_TRUE(router->Execute(ShardKey(k), insert, {k, clash}).ok());
  }
  ASSERT_TRUE(router->Execute(ShardKey(on_target), insert, {on_target, clash}).ok());

  CommandResult r = Cli({"rollout", "rollback", "--migration", "1", "--apply-wait", "3"}, 1);
  std::printf("the failed rollback said:\n%s", r.err.c_str());
  EXPECT_THAT(r.err, HasSubstr("apply error"));
  EXPECT_THAT(r.err, HasSubstr("server log"));
  EXPECT_THAT(r.err, HasSubstr("took the writes back"));
  EXPECT_EQ(Status()[0]["state"], "rolling_back");
  // The target still takes writes.
  auto w = router->Execute(ShardKey(on_target), "UPDATE users SET v = $2 WHERE user_id = $1",
                           {on_target, clash + 1});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(Rows(2)[on_target], clash + 1);

  // The fix: the rows the sources hold under that value go (the blocked insert from the target
  // still carries `clash` and is applied then).
  for (std::int64_t k : on_sources) {
    auto d = router->Execute(ShardKey(k), "DELETE FROM users WHERE user_id = $1", {k});
    ASSERT_TRUE(d.ok()) << d.status();
  }
  router.reset();
  Cli({"rollout", "rollback", "--migration", "1"}, 0);
  ASSERT_TRUE(writer.WaitForMoreWrites(200));
  writer.Stop();
  EXPECT_EQ(Status()[0]["state"], "rolled_back");
  auto acked = writer.Acked();
  acked[on_target] = clash + 1;
  ExpectWritesOnOwners(acked, /*exclusive=*/true);
  EXPECT_EQ(ReplicationObjects(), 0);
}

// Hand publishes respect a migration: refused while one is active (naming it), allowed with
// --force (saying what it breaks), and a revert to the migration's own map is what the rollout
// asks for, so it passes; the rollout's own publishes go on. After cleanup a revert that would
// route ranges back to the emptied sources is refused (they fence them) unless --force.
// Fails before the change: the first publish went through.
TEST_F(RolloutLifecycleTest, HandPublishesRefuseDuringAMigrationAndOntoEmptiedRanges) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  const std::string next = NextMapFile("next.toml");
  CommandResult r = Cli({"map", "publish", next}, 1);
  EXPECT_THAT(r.err, HasSubstr("migration 1 is running"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  const std::int64_t ours = CurrentMap()->version();
  r = Cli({"map", "publish", next, "--force"}, 0);
  EXPECT_THAT(r.err, HasSubstr("--force: published while migration 1 is running"));
  EXPECT_EQ(CurrentMap()->version(), ours + 1);
  // The rollout refuses to publish over it; restoring its map is allowed and it goes on.
  Cli({"rollout", "advance", "--migration", "1"}, 0);  // the gate publishes nothing
  r = Cli({"rollout", "advance", "--migration", "1"}, 1);
  EXPECT_THAT(r.err, HasSubstr("someone else published in between"));
  Cli({"map", "revert", "--to", std::to_string(ours)}, 0);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "cleaned"));
  EXPECT_EQ(Status()[0]["state"], "cleaned");

  // After cleanup, n1 and n2 fence what moved to n3: a revert to version 1 is refused.
  r = Cli({"map", "revert", "--to", "1"}, 1);
  EXPECT_THAT(r.err, HasSubstr("which fences it"));
  EXPECT_THAT(r.err, HasSubstr("nothing was published"));
  EXPECT_THAT(r.err, Not(HasSubstr("migration 1 is")));
  const std::int64_t cleaned = CurrentMap()->version();
  r = Cli({"map", "revert", "--to", "1", "--force"}, 0);
  EXPECT_THAT(r.err, HasSubstr("--force: map version"));
  EXPECT_EQ(CurrentMap()->version(), cleaned + 1);
}

}  // namespace
}  // namespace shardline::testing
