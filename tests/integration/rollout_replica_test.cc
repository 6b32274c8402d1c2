// Read replicas through a move (issue 20): n3, the target, has a real streaming replica (made by
// `tools/devcluster replica`, replaying 3 s behind through recovery_min_apply_delay) listed in
// the map, and every existing user is read through Router::ExecuteRead after every step of a
// rollout and of a rollback; a stopped replica makes the switch of reads refuse, naming it; and
// `rebalance plan` takes a node of the map that has no tables yet as an empty node.
#include <fcntl.h>
#include <sys/file.h>

#include "plan_toml.h"
#include "rollout_fixture.h"

namespace shardline::testing {
namespace {

using ::testing::HasSubstr;

#ifndef SHARDLINE_SOURCE_DIR
#error "SHARDLINE_SOURCE_DIR must be defined (tests/integration/CMakeLists.txt)"
#endif

// `dsn` (key=value) with its port replaced by `port`.
std::string WithPort(const std::string& dsn, const std::string& port) {
  std::istringstream in(dsn);
  std::string word, out;
  while (in >> word) {
    if (word.rfind("port=", 0) == 0) word = "port=" + port;
    out += (out.empty() ? "" : " ") + word;
  }
  return out;
}

class RolloutReplicaTest : public RolloutTest {
 protected:
  void SetUp() override {
    RolloutTest::SetUp();
    if (HasFatalFailure()) return;
    // The cluster has one replica of node3 (port P+13) and these tests start, stop and remove
    // it: tests run side by side (ctest -j), so one test at a time holds it, across processes.
    ASSERT_TRUE(LockReplica("node3", std::chrono::seconds(300)))
        << "another test held the devcluster's replica of node3 for 300 s";
    CommandResult r = Devcluster({"replica", "--of", "node3", "--delay", "3s"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    // "export SHARDLINE_NODE3_REPLICA_DSN='host=127.0.0.1 port=P dbname=app user=app'"
    const std::size_t at = r.out.find("port=");
    ASSERT_NE(at, std::string::npos) << r.out;
    const std::string port = r.out.substr(at + 5, r.out.find(' ', at) - at - 5);
    replica_dsn_ = WithPort(db_->node_dsn(2), port);
    // The replica has our scratch database (created before it replayed, or before the base
    // backup): until then a router would fall back to n3's primary and prove nothing.
    started_replica_ = true;
    ASSERT_TRUE(WaitReplicaReplayed(2, replica_dsn_, std::chrono::seconds(30)));
    plan_ = (dir_ / "plan_replica.toml").string();
    Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--replica",
         fmt::format("n3={}", replica_dsn_), "--by", "ranges", "-o", plan_},
        0);
  }

  void TearDown() override {
    reader_.reset();
    if (started_replica_) {
      CommandResult r = Devcluster({"replica", "--of", "node3", "--remove"});
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    }
    for (const std::string& node : more_replicas_) {
      CommandResult r = Devcluster({"replica", "--of", node, "--remove"});
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    }
    for (int fd : lock_fds_) ::close(fd);  // releases the flocks
    RolloutTest::TearDown();
  }

  // An exclusive flock on <cluster dir>/replica-<node>.test.lock, polled (bounded by `limit`).
  bool LockReplica(const std::string& node, std::chrono::seconds limit) {
    const std::string path = Cluster().dir + "/replica-" + node + ".test.lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return false;
    lock_fds_.push_back(fd);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  // Starts a replica of devcluster node `node` ("node1") 3 s behind, for our database on node
  // index `i`; returns its DSN once it has our database ("" on failure, reported).
  std::string StartReplica(const std::string& node, int i) {
    EXPECT_TRUE(LockReplica(node, std::chrono::seconds(300)));
    CommandResult r = Devcluster({"replica", "--of", node, "--delay", "3s"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    if (r.exit_code != 0) return "";
    more_replicas_.push_back(node);
    const std::size_t at = r.out.find("port=");
    const std::string dsn =
        WithPort(db_->node_dsn(i), r.out.substr(at + 5, r.out.find(' ', at) - at - 5));
    EXPECT_TRUE(WaitReplicaReplayed(i, dsn, std::chrono::seconds(30)));
    return dsn;
  }

  CommandResult Devcluster(std::vector<std::string> args) {
    args.insert(args.begin(), std::string(SHARDLINE_SOURCE_DIR) + "/tools/devcluster");
    args.push_back("--dir");
    args.push_back(Cluster().dir);
    return RunCommand(args, {});
  }

  // Replica `dsn` has replayed past node `i`'s WAL position now (polled, bounded by `limit`).
  bool WaitReplicaReplayed(int i, const std::string& dsn, std::chrono::seconds limit) {
    auto primary = ConnectOrDie(db_->node_dsn(i));
    auto lsn = primary->Exec("SELECT pg_current_wal_lsn()::text");
    if (!lsn.ok()) return false;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = pg::Conn::Connect(dsn, "replica", std::chrono::seconds(2));
      if (c.ok()) {
        auto r = (*c)->Exec("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", {lsn->String(0, 0)});
        if (r.ok() && r->Text(0, 0) == "t") return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // A reading router on the catalog, at the catalog's current map version (polled, 10 s).
  Router& Reader() {
    if (!reader_) {
      auto r = Router::Create(WriterRouterOptions(db_->control_dsn()));
      EXPECT_TRUE(r.ok()) << r.status();
      reader_ = std::move(*r);
    }
    const std::int64_t want = CurrentMap()->version();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (reader_->map_version() < want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_GE(reader_->map_version(), want);
    return *reader_;
  }

  // Every user 1..kInitialRows read through ExecuteRead right now, with its value; failures
  // are named (at most 5) with `when`.
  void ExpectEveryUserFound(const std::string& when) {
    Router& router = Reader();
    int missing = 0;
    for (std::int64_t key = 1; key <= kInitialRows; ++key) {
      auto r = router.ExecuteRead(ShardKey(key), "SELECT v FROM users WHERE user_id = $1", {key});
      std::string what;
      if (!r.ok()) {
        what = std::string(r.status().message());
      } else if (r->rows() != 1) {
        what = "not found";
      } else if (auto v = r->GetInt64(0, 0); !v.ok() || *v != key) {
        what = "wrong value";
      }
      if (!what.empty() && ++missing <= 5) {
        ADD_FAILURE() << fmt::format("{}: user {}: {}", when, key, what);
      }
    }
    EXPECT_EQ(missing, 0) << when << ": users not found through ExecuteRead (of "
                          << kInitialRows << ")";
  }

  // A key whose range the plan moves to n3.
  std::int64_t MovedKey() {
    auto plan = migrate::LoadPlanFile(plan_);
    EXPECT_TRUE(plan.ok()) << plan.status();
    for (std::int64_t key = 1; plan.ok() && key <= kInitialRows; ++key) {
      if (plan->result_map->RangeFor(ShardKey(key).Hash()).node == "n3") return key;
    }
    ADD_FAILURE() << "the plan moves no user to n3";
    return 1;
  }

  // Runs `advance` until wave 1 reaches `step`, reading every user after each advance.
  void AdvanceReading(std::int64_t id, const std::string& step) {
    for (int i = 0; i < 10; ++i) {
      Json s = Status();
      ASSERT_TRUE(s.is_array() && !s.empty());
      if (s[0]["waves"][0]["step"] == step) return;
      CommandResult r = Cli({"rollout", "advance", "--migration", std::to_string(id)}, 0);
      ASSERT_EQ(r.exit_code, 0);
      std::printf("%s", r.out.c_str());
      ExpectEveryUserFound(fmt::format("after advance to {}",
                                       Status()[0]["waves"][0]["step"].get<std::string>()));
    }
    FAIL() << "wave 1 did not reach " << step;
  }

  std::int64_t Start() {
    Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
    ExpectEveryUserFound("after start");
    return Status()[0]["id"].get<std::int64_t>();
  }

  std::string replica_dsn_;
  bool started_replica_ = false;
  std::vector<int> lock_fds_;
  std::vector<std::string> more_replicas_;  // devcluster nodes whose replica a test started
  std::unique_ptr<Router> reader_;
};

TEST_F(RolloutReplicaTest, EveryUserFoundThroughTheTargetsLaggingReplicaAfterEveryStep) {
  ExpectEveryUserFound("before the move");
  const std::int64_t id = Start();
  AdvanceReading(id, "writes_switched");
  // The reads of moved ranges did go to the replica (not a fallback to n3's primary).
  auto standby = Reader().ExecuteRead(ShardKey(MovedKey()), "SELECT pg_is_in_recovery()");
  ASSERT_TRUE(standby.ok()) << standby.status();
  EXPECT_EQ(*standby->GetBool(0, 0), true) << "a moved user's read did not go to n3's replica";
  // status shows the target's replica and its replay.
  const Json replicas = Status()[0]["waves"][0]["target_replicas"];
  ASSERT_EQ(replicas.size(), 1u) << replicas.dump(2);
  EXPECT_EQ(replicas[0]["name"], "n3/replica1");
  EXPECT_EQ(replicas[0]["in_recovery"], true);
  EXPECT_GE(replicas[0]["bytes_behind"].get<std::int64_t>(), 0);
  Cli({"rollout", "cleanup", "--migration", std::to_string(id)}, 0);
  ExpectEveryUserFound("after cleanup");
}

TEST_F(RolloutReplicaTest, EveryUserFoundThroughARollback) {
  const std::int64_t id = Start();
  AdvanceReading(id, "writes_switched");
  Cli({"rollout", "rollback", "--migration", std::to_string(id)}, 0);
  ExpectEveryUserFound("after rollback");
}

TEST_F(RolloutReplicaTest, UsersWrittenOnTheTargetFoundThroughTheSourcesReplicaAfterARollback) {
  // n1, a source, has a replica 3 s behind too; users created on n3 after the switch of writes
  // reach n1 by reverse replication, and reads of their ranges go back to n1's replica.
  const std::string n1_replica = StartReplica("node1", 0);
  ASSERT_FALSE(n1_replica.empty());
  plan_ = (dir_ / "plan_two_replicas.toml").string();
  Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--replica",
       fmt::format("n3={}", replica_dsn_), "--replica", fmt::format("n1={}", n1_replica), "--by",
       "ranges", "-o", plan_},
      0);
  auto before = CurrentMap();
  auto plan = migrate::LoadPlanFile(plan_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::int64_t id = Start();
  AdvanceReading(id, "writes_switched");
  // New users in ranges that moved from n1 to n3, written on n3.
  std::vector<std::int64_t> created;
  for (std::int64_t key = kInitialRows + 1; created.size() < 50 && key < 10 * kInitialRows; ++key) {
    const std::int64_t h = ShardKey(key).Hash();
    if (before->RangeFor(h).node != "n1" || plan->result_map->RangeFor(h).node != "n3") continue;
    auto w = Reader().Execute(ShardKey(key), "INSERT INTO users (user_id, v) VALUES ($1, $1)",
                              {key});
    ASSERT_TRUE(w.ok()) << w.status();
    created.push_back(key);
  }
  ASSERT_EQ(created.size(), 50u);
  CommandResult r = Cli({"rollout", "rollback", "--migration", std::to_string(id)}, 0);
  std::printf("%s", r.out.c_str());
  ExpectEveryUserFound("after rollback");
  Router& router = Reader();
  int missing = 0;
  for (std::int64_t key : created) {
    auto got = router.ExecuteRead(ShardKey(key), "SELECT v FROM users WHERE user_id = $1", {key});
    if (!got.ok() || got->rows() != 1) {
      if (++missing <= 5) {
        ADD_FAILURE() << fmt::format("user {} created on n3: {}", key,
                                     got.ok() ? "not found" : got.status().ToString());
      }
    }
  }
  EXPECT_EQ(missing, 0) << "users created on the target missing after the rollback (of 50)";
  auto standby = router.ExecuteRead(ShardKey(created.front()), "SELECT pg_is_in_recovery()");
  ASSERT_TRUE(standby.ok()) << standby.status();
  EXPECT_EQ(*standby->GetBool(0, 0), true) << "the read did not go to n1's replica";
}

TEST_F(RolloutReplicaTest, StoppedReplicaRefusesTheSwitchOfReadsNamingIt) {
  const std::int64_t id = Start();
  AdvanceReading(id, "verified");
  const std::int64_t before = CurrentMap()->version();
  CommandResult stop = Devcluster({"replica", "--of", "node3", "--stop"});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  CommandResult r = Cli(
      {"rollout", "advance", "--migration", std::to_string(id), "--replica-wait", "2"}, -1);
  EXPECT_NE(r.exit_code, 0);
  std::printf("refused: %s", r.err.c_str());
  EXPECT_THAT(r.err, HasSubstr("replica n3/replica1"));
  EXPECT_THAT(r.err, HasSubstr("cannot be reached"));
  EXPECT_THAT(r.err, HasSubstr("nothing was published"));
  EXPECT_THAT(r.err, HasSubstr("--replica-wait"));
  EXPECT_EQ(CurrentMap()->version(), before) << "a map was published";
  EXPECT_EQ(Status()[0]["waves"][0]["step"], "verified");
  ExpectEveryUserFound("after the refused switch of reads");
  // Back: the same command completes the switch, and every user is still found.
  CommandResult start = Devcluster({"replica", "--of", "node3"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  AdvanceReading(id, "reads_switched");
}

TEST_F(RolloutReplicaTest, ReplicaNotInRecoveryRefusesTheSwitchOfReads) {
  // What a promoted replica looks like: a server of the same data that is not in recovery.
  // n3's own primary, listed as its replica.
  plan_ = (dir_ / "plan_promoted.toml").string();
  Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--replica",
       fmt::format("n3={}", db_->node_dsn(2)), "--by", "ranges", "-o", plan_},
      0);
  const std::int64_t id = Start();
  AdvanceReading(id, "verified");
  const std::int64_t before = CurrentMap()->version();
  CommandResult r = Cli({"rollout", "advance", "--migration", std::to_string(id)}, -1);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("replica n3/replica1"));
  EXPECT_THAT(r.err, HasSubstr("is not replaying (pg_is_in_recovery() is false"));
  EXPECT_EQ(CurrentMap()->version(), before) << "a map was published";
  EXPECT_EQ(Status()[0]["waves"][0]["step"], "verified");
  ExpectEveryUserFound("after the refused switch of reads");
}

TEST_F(RolloutReplicaTest, PlanTakesANodeWithoutTablesAsEmpty) {
  // n3 is in the map with its replica, owning nothing, and has no tables yet.
  ShardMapConfig c = CurrentMap()->config();
  NodeConfig n3;
  n3.name = "n3";
  n3.dsn = db_->node_dsn(2);
  n3.replicas = {replica_dsn_};
  c.nodes.push_back(n3);
  c.version = CurrentMap()->version() + 1;
  auto catalog = migrate::Catalog::Create(db_->control_dsn());
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  ASSERT_TRUE((*catalog)->Publish(c, "test: n3 listed before it has tables", {}).ok());
  CommandResult r = Cli({"rebalance", "plan", "--dry-run"}, 0);
  EXPECT_THAT(r.out, HasSubstr("note: node n3: table \"users\" does not exist yet (counted as "
                               "empty; rollout start creates it)"));
  EXPECT_THAT(r.out, HasSubstr("n3"));
  // A node that serves ranges and lacks a table still fails (its rows are elsewhere).
  Exec(1, "ALTER TABLE users RENAME TO users_gone");
  CommandResult broken = Cli({"rebalance", "plan", "--dry-run"}, -1);
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_THAT(broken.err, HasSubstr("node n2: table \"users\" does not exist"));
  Exec(1, "ALTER TABLE users_gone RENAME TO users");
  // --replica for an unknown node is refused, naming it.
  CommandResult unknown =
      Cli({"rebalance", "plan", "--by", "ranges", "--dry-run", "--replica", "n9=host=x"}, -1);
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("replica for node 'n9'"));
}

}  // namespace
}  // namespace shardline::testing
