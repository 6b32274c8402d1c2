// Integration tests of `shardline-loadgen` on the devcluster, run as a user runs it (a real
// process, its exit code, stdout and stderr): load routes every user's rows to the owning node;
// a run with a ledger passes check-ledger, and a deleted, altered or misplaced ledgered row
// makes it fail naming the row; broken thresholds exit 1; fenced writes are counted and the run
// goes on; a map published in the catalog mid-run is followed without a failed call; the pool
// flags override the map's limits; the metrics endpoint serves Prometheus text while a run is
// going, and SIGTERM stops a run with its report.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "cluster.h"
#include "router_test_util.h"
#include "shardline/hash.h"
#include "shardline/map_toml.h"
#include "shardline/shard_map.h"

extern char** environ;

namespace shardline::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Describe(const CommandResult& r) {
  return fmt::format("exit {}\n--- stdout ---\n{}--- stderr ---\n{}", r.exit_code, r.out, r.err);
}

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<ScratchDatabases>(3);
    dir_ = fs::temp_directory_path() /
           fmt::format("shardline-loadgen-test-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ShardMapConfig c;
    c.version = 1;
    for (int i = 0; i < 3; ++i) {
      NodeConfig n;
      n.name = fmt::format("n{}", i + 1);
      n.dsn = db_->node_dsn(i);
      n.pool_min = 1;
      n.pool_max = 8;
      c.nodes.push_back(n);
    }
    auto ranges = EqualRanges(12, {"n1", "n2", "n3"});
    ASSERT_TRUE(ranges.ok());
    c.ranges = *ranges;
    for (const char* t : {"users", "workouts", "workout_logs", "posts"}) {
      c.tables.push_back(TableConfig{.name = t, .key = "user_id", .primary_key = {}});
    }
    auto map = ShardMap::Create(c);
    ASSERT_TRUE(map.ok()) << map.status();
    map_ = *map;
    map_path_ = (dir_ / "map.toml").string();
    std::ofstream(map_path_) << ShardMapToToml(c, PasswordMode::kKeep);
    ledger_ = (dir_ / "run.ledger").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  CommandResult Loadgen(std::vector<std::string> args) {
    args.insert(args.begin(), BinPath("shardline-loadgen"));
    return RunCommand(args, {{"SHARDLINE_CATALOG", ""}});
  }
  void Load(int users) {
    CommandResult r = Loadgen({"load", "--map", map_path_, "--worker-id", "1", "--users", std::to_string(users)});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  int NodeOf(std::int64_t uid) const {
    return map_->OwnerNodeIndex(map_->RangeIndex(HashInt8(uid)));
  }
  std::int64_t Count(int node, const std::string& sql) {
    auto r = ConnectOrDie(db_->node_dsn(node))->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64Or0(0, 0) : -1;
  }
  void Exec(int node, const std::string& sql) {
    auto r = ConnectOrDie(db_->node_dsn(node))->Exec(sql);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  std::vector<nlohmann::json> LedgerLines() {
    std::ifstream in(ledger_);
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::unique_ptr<ScratchDatabases> db_;
  std::shared_ptr<const ShardMap> map_;
  fs::path dir_;
  std::string map_path_;
  std::string ledger_;
};

TEST_F(LoadgenTest, LoadPutsEveryUsersRowsOnTheNodeThatOwnsThem) {
  CommandResult r = Loadgen({"load", "--map", map_path_, "--worker-id", "1", "--users", "300", "--workouts-per-user",
                             "2", "--logs-per-workout", "3", "--posts-per-user", "1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["rows"], 300 + 600 + 1800 + 300);
  EXPECT_EQ(j["rows_by_table"]["workout_logs"], 1800);
  EXPECT_GT(j["rows_per_second"].get<double>(), 0);
  std::int64_t users = 0;
  for (int node = 0; node < 3; ++node) {
    auto rows = ConnectOrDie(db_->node_dsn(node))->Exec(
        "SELECT user_id, (SELECT count(*) FROM workouts w WHERE w.user_id = u.user_id), "
        "(SELECT count(*) FROM workout_logs l WHERE l.user_id = u.user_id), "
        "(SELECT count(*) FROM posts p WHERE p.user_id = u.user_id) FROM users u");
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_GT(rows->rows(), 0) << "node " << node << " got no user";
    for (int i = 0; i < rows->rows(); ++i) {
      const std::int64_t uid = rows->Int64Or0(i, 0);
      EXPECT_EQ(NodeOf(uid), node) << "user " << uid;
      EXPECT_EQ(rows->Int64Or0(i, 1), 2) << "user " << uid;
      EXPECT_EQ(rows->Int64Or0(i, 2), 6) << "user " << uid;
      EXPECT_EQ(rows->Int64Or0(i, 3), 1) << "user " << uid;
    }
    users += rows->rows();
    // Nothing of another node's users.
    EXPECT_EQ(Count(node, "SELECT count(*) FROM workout_logs l WHERE NOT EXISTS "
                          "(SELECT 1 FROM users u WHERE u.user_id = l.user_id)"),
              0);
  }
  EXPECT_EQ(users, 300);
}

TEST_F(LoadgenTest, LoadingTheSameUsersTwiceFailsNamingTheKeyUnlessTruncated) {
  Load(50);
  CommandResult again = Loadgen({"load", "--map", map_path_, "--worker-id", "1", "--users", "50"});
  EXPECT_EQ(again.exit_code, 1) << Describe(again);
  EXPECT_THAT(again.err, HasSubstr("duplicate key value violates unique constraint"));
  CommandResult truncated = Loadgen({"load", "--map", map_path_, "--worker-id", "1", "--users", "50", "--truncate"});
  EXPECT_EQ(truncated.exit_code, 0) << Describe(truncated);
  EXPECT_THAT(truncated.out, HasSubstr("loaded 50 users (1050 rows)"));
}

TEST_F(LoadgenTest, RunWithLedgerPassesCheckLedgerAndADeletedRowFailsItByName) {
  Load(200);
  CommandResult run = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--users", "200", "--workers", "4",
                               "--calls", "400", "--duration", "60s", "--ledger", ledger_,
                               "--mix", "profile=2,feed=1,log=3,update=3,leaderboard=1",
                               "--json", "--progress", "0"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  nlohmann::json report = nlohmann::json::parse(run.out);
  EXPECT_EQ(report["all"]["count"], 400);
  EXPECT_EQ(report["all"]["errors"], 0) << run.out;
  EXPECT_GT(report["ops"]["leaderboard"]["count"].get<int>(), 0);
  const std::vector<nlohmann::json> lines = LedgerLines();
  EXPECT_EQ(report["ledger_entries"].get<std::size_t>(), lines.size());
  // Every log and every update of an existing workout is acknowledged and ledgered.
  EXPECT_EQ(lines.size(), report["ops"]["log"]["ok"].get<std::size_t>() +
                              report["ops"]["update"]["ok"].get<std::size_t>());

  CommandResult check = Loadgen({"check-ledger", "--map", map_path_, "--ledger", ledger_,
                                 "--strict"});
  ASSERT_EQ(check.exit_code, 0) << Describe(check);
  EXPECT_THAT(check.out, HasSubstr("missing 0, wrong content 0, elsewhere 0"));

  // Delete one ledgered log row on its owner: check-ledger names it.
  const nlohmann::json* log = nullptr;
  for (const auto& l : lines) {
    if (l["table"] == "workout_logs") log = &l;
  }
  ASSERT_NE(log, nullptr);
  const std::int64_t uid = (*log)["user_id"], id = (*log)["id"];
  Exec(NodeOf(uid), fmt::format("DELETE FROM workout_logs WHERE user_id = {} AND id = {}", uid, id));
  CommandResult broken = Loadgen({"check-ledger", "--map", map_path_, "--ledger", ledger_});
  EXPECT_EQ(broken.exit_code, 1) << Describe(broken);
  const std::string named = fmt::format("missing: workout_logs user_id={} id={} on node n{}", uid,
                                        id, NodeOf(uid) + 1);
  EXPECT_THAT(broken.out, HasSubstr("missing 1, wrong content 0"));
  EXPECT_THAT(broken.err, HasSubstr("check-ledger: 1 of "));
  EXPECT_THAT(broken.err, HasSubstr(named));
}

TEST_F(LoadgenTest, CheckLedgerCatchesAlteredContentAndStrictCatchesACopyOnAnotherNode) {
  Load(100);
  CommandResult run = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--users", "100", "--workers", "2",
                               "--calls", "100", "--ledger", ledger_, "--mix", "update=1",
                               "--progress", "0"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  const std::vector<nlohmann::json> lines = LedgerLines();
  ASSERT_FALSE(lines.empty());
  const std::int64_t uid = lines.back()["user_id"], id = lines.back()["id"];
  const int owner = NodeOf(uid);

  // The same row also on another node: fine unless --strict.
  const int other = (owner + 1) % 3;
  Exec(other, fmt::format("INSERT INTO workouts (user_id, id, kind) VALUES ({}, {}, 'run')", uid, id));
  CommandResult lax = Loadgen({"check-ledger", "--map", map_path_, "--ledger", ledger_});
  EXPECT_EQ(lax.exit_code, 0) << Describe(lax);
  CommandResult strict =
      Loadgen({"check-ledger", "--map", map_path_, "--ledger", ledger_, "--strict"});
  EXPECT_EQ(strict.exit_code, 1) << Describe(strict);
  EXPECT_THAT(strict.err, HasSubstr(fmt::format(
                              "elsewhere: workouts user_id={} id={} is also on node n{} (owner is n{})",
                              uid, id, other + 1, owner + 1)));

  // The owner's row altered behind the ledger's back.
  Exec(owner, fmt::format("UPDATE workouts SET note = 'tampered' WHERE user_id = {} AND id = {}",
                          uid, id));
  CommandResult altered = Loadgen({"check-ledger", "--map", map_path_, "--ledger", ledger_,
                                   "--json"});
  EXPECT_EQ(altered.exit_code, 1) << Describe(altered);
  nlohmann::json j = nlohmann::json::parse(altered.out);
  EXPECT_EQ(j["wrong_content"], 1);
  EXPECT_EQ(j["missing"], 0);
  EXPECT_THAT(j["problems"][0].get<std::string>(),
              HasSubstr(fmt::format("wrong content: workouts user_id={} id={} on node n{}", uid,
                                    id, owner + 1)));
}

TEST_F(LoadgenTest, LoadRunAndCheckLedgerFollowTheCatalogsPublishedMap) {
  const std::map<std::string, std::string> env = {{"SHARDLINE_CATALOG", db_->control_dsn()}};
  auto shardline = [&](std::vector<std::string> args) {
    args.insert(args.begin(), BinPath("shardline"));
    return RunCommand(args, env);
  };
  CommandResult init = shardline({"catalog", "init"});
  ASSERT_EQ(init.exit_code, 0) << Describe(init);
  CommandResult publish = shardline({"map", "publish", map_path_, "--comment", "loadgen test"});
  ASSERT_EQ(publish.exit_code, 0) << Describe(publish);

  auto loadgen = [&](std::vector<std::string> args) {
    args.insert(args.begin(), BinPath("shardline-loadgen"));
    return RunCommand(args, env);  // --catalog from $SHARDLINE_CATALOG
  };
  CommandResult load = loadgen({"load", "--users", "100"});
  ASSERT_EQ(load.exit_code, 0) << Describe(load);
  EXPECT_THAT(load.out, HasSubstr("(map version 1)"));
  CommandResult run = loadgen({"run", "--catalog", db_->control_dsn(), "--users", "100",
                               "--calls", "200", "--ledger", ledger_, "--json", "--progress",
                               "0"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  nlohmann::json j = nlohmann::json::parse(run.out);
  EXPECT_EQ(j["router"]["map_version_start"], 1);
  EXPECT_EQ(j["all"]["errors"], 0);
  CommandResult check = loadgen({"check-ledger", "--ledger", ledger_, "--strict"});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
  EXPECT_THAT(check.out, HasSubstr("against map version 1 (catalog"));
}

TEST_F(LoadgenTest, BrokenThresholdsExitOneNamingEachBudget) {
  Load(50);
  CommandResult r = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--users", "50", "--calls", "50",
                             "--progress", "0", "--threshold", "p99<0ms", "--threshold",
                             "throughput>1e12", "--threshold", "error_rate<=100%"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("threshold broken: p99<0ms: actual"));
  EXPECT_THAT(r.err, HasSubstr("threshold broken: throughput>1e12: actual"));
  EXPECT_THAT(r.err, Not(HasSubstr("error_rate<=100%")));
  EXPECT_THAT(r.out, HasSubstr("BROKEN p99<0ms"));
  EXPECT_THAT(r.out, HasSubstr("ok     error_rate<=100%"));

  CommandResult held = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--users", "50", "--calls", "50",
                                "--progress", "0", "--threshold", "p99<60s", "--threshold",
                                "error_rate<=100%"});
  EXPECT_EQ(held.exit_code, 0) << Describe(held);
}

TEST_F(LoadgenTest, BadFlagsAreUsageErrors) {
  CommandResult mix = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--mix", "profile=1,signup=1"});
  EXPECT_EQ(mix.exit_code, 2) << Describe(mix);
  EXPECT_THAT(mix.err, HasSubstr("unknown operation 'signup'"));
  CommandResult threshold = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--threshold", "p99"});
  EXPECT_EQ(threshold.exit_code, 2) << Describe(threshold);
  EXPECT_THAT(threshold.err, HasSubstr("threshold 'p99': no comparison"));
  // A map file has no registry to lease an id-generator worker id from: writers must name one.
  CommandResult no_worker = Loadgen({"load", "--map", map_path_, "--users", "10"});
  EXPECT_EQ(no_worker.exit_code, 2) << Describe(no_worker);
  EXPECT_THAT(no_worker.err, HasSubstr("follows a map file"));
  EXPECT_THAT(no_worker.err, HasSubstr("pass --worker-id N"));
  CommandResult no_map = Loadgen({"run"});
  EXPECT_EQ(no_map.exit_code, 2) << Describe(no_map);
  EXPECT_THAT(no_map.err, HasSubstr("--map FILE or --catalog DSN"));
  CommandResult help = Loadgen({"check-ledger", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--strict"));
}

TEST_F(LoadgenTest, FencedWritesAreCountedByKindAndTheRunGoesOn) {
  Load(100);
  std::ifstream in(fs::path(__FILE__).parent_path() / "../../schemas/node.sql");
  std::stringstream sql;
  sql << in.rdbuf();
  for (int node = 0; node < 3; ++node) {
    ASSERT_TRUE(ConnectOrDie(db_->node_dsn(node))->ExecScript(sql.str()).ok());
    Exec(node, "SELECT shardline.install_fence('workout_logs', 'user_id', 'bigint')");
  }
  // Fence every range of n1 for workout_logs (without a new map: the writes keep failing).
  for (const RangeConfig& range : map_->ranges()) {
    if (range.node != "n1") continue;
    Exec(0, fmt::format("INSERT INTO shardline.fenced_ranges (table_name, lo, hi) "
                        "VALUES ('workout_logs', {}, {})",
                        range.lo, range.hi));
  }
  CommandResult r = Loadgen({"run", "--map", map_path_, "--worker-id", "1", "--users", "100", "--workers", "4",
                             "--calls", "60", "--mix", "log=1,profile=1", "--checkout-timeout",
                             "0.1", "--ledger", ledger_, "--json", "--progress", "0"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["all"]["count"], 60);
  EXPECT_GT(j["ops"]["log"]["errors_by_kind"]["failed_precondition/SLF01"].get<int>(), 0) << r.out;
  EXPECT_GT(j["ops"]["log"]["ok"].get<int>(), 0) << r.out;  // other nodes' users still log
  EXPECT_EQ(j["ops"]["profile"]["errors"], 0);
  // Only the acknowledged logs are in the ledger, and none of them is on n1.
  for (const auto& line : LedgerLines()) EXPECT_NE(NodeOf(line["user_id"]), 0) << line.dump();
  CommandResult check = Loadgen({"check-ledger", "--map", map_path_, "--ledger", ledger_});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
}

// Starts the binary without waiting; stdout and stderr go to files.
pid_t Spawn(const std::vector<std::string>& args, const std::string& out, const std::string& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(LoadgenTest, MetricsEndpointServesPrometheusTextWhileRunningAndSigtermStopsWithAReport) {
  Load(50);
  const int port = UnusedPort();
  const std::string out = (dir_ / "out").string(), err = (dir_ / "err").string();
  const pid_t pid = Spawn({BinPath("shardline-loadgen"), "run", "--map", map_path_, "--worker-id", "1", "--users",
                           "50", "--workers", "2", "--duration", "120s", "--progress", "0",
                           "--metrics-port", std::to_string(port)},
                          out, err);
  ASSERT_GT(pid, 0);
  httplib::Client client("127.0.0.1", port);
  std::string body;
  const bool served = WaitFor(
      [&] {
        auto res = client.Get("/metrics");
        if (!res || res->status != 200) return false;
        body = res->body;
        // Until the run's reads show in the counters.
        static const std::regex kReadsCounted(
            R"(shardline_queries_total\{node="n\d",kind="read",outcome="ok"\} [1-9])");
        return std::regex_search(body, kReadsCounted);
      },
      std::chrono::seconds(30));
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(served) << "no metrics served\n" << ReadFile(err);
  EXPECT_THAT(body, HasSubstr("# TYPE shardline_queries_total counter\n"));
  EXPECT_THAT(body, HasSubstr("# TYPE shardline_query_duration_seconds histogram\n"));
  EXPECT_THAT(body, HasSubstr("shardline_map_version 1\n"));
  EXPECT_THAT(body, Not(HasSubstr("password")));
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(err);
  EXPECT_THAT(ReadFile(out), HasSubstr("(interrupted)"));
  EXPECT_THAT(ReadFile(err), HasSubstr(fmt::format("metrics at http://127.0.0.1:{}/metrics", port)));
}

TEST_F(LoadgenTest, RunFollowsAMapPublishedInTheCatalogWhileItRuns) {
  const std::map<std::string, std::string> env = {{"SHARDLINE_CATALOG", db_->control_dsn()}};
  auto shardline = [&](std::vector<std::string> args) {
    args.insert(args.begin(), BinPath("shardline"));
    return RunCommand(args, env);
  };
  ASSERT_EQ(shardline({"catalog", "init"}).exit_code, 0);
  ASSERT_EQ(shardline({"map", "publish", map_path_, "--comment", "v1"}).exit_code, 0);
  Load(100);

  const int port = UnusedPort();
  const std::string out = (dir_ / "out").string(), err = (dir_ / "err").string();
  const pid_t pid = Spawn({BinPath("shardline-loadgen"), "run", "--catalog", db_->control_dsn(),
                           "--users", "100", "--workers", "2", "--duration", "120s",
                           "--progress", "0", "--ledger", ledger_, "--json", "--metrics-port",
                           std::to_string(port)},
                          out, err);
  ASSERT_GT(pid, 0);
  httplib::Client client("127.0.0.1", port);
  auto serves = [&](const std::string& needle) {
    return WaitFor(
        [&] {
          auto res = client.Get("/metrics");
          return res && res->status == 200 && res->body.find(needle) != std::string::npos;
        },
        std::chrono::seconds(30));
  };
  const bool started = serves("shardline_map_version 1\n");
  // Version 2: the same ranges with other pool limits (no data moves): the run must pick it up
  // and go on without a failed call.
  std::string v2 = ReadFile(map_path_);
  v2.replace(v2.find("version = 1"), 11, "version = 2");
  for (std::size_t at; (at = v2.find("pool_max = 8")) != std::string::npos;) {
    v2.replace(at, 12, "pool_max = 6");
  }
  const std::string v2_path = (dir_ / "v2.toml").string();
  std::ofstream(v2_path) << v2;
  CommandResult publish = shardline({"map", "publish", v2_path, "--comment", "v2"});
  const bool followed = publish.exit_code == 0 && serves("shardline_map_version 2\n");
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(started) << ReadFile(err);
  ASSERT_EQ(publish.exit_code, 0) << Describe(publish);
  ASSERT_TRUE(followed) << ReadFile(err);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ReadFile(err);
  nlohmann::json j = nlohmann::json::parse(ReadFile(out));
  EXPECT_EQ(j["router"]["map_version_start"], 1);
  EXPECT_EQ(j["router"]["map_version_end"], 2);
  EXPECT_GT(j["all"]["count"].get<int>(), 0);
  EXPECT_EQ(j["all"]["errors"], 0) << j.dump();
  CommandResult check = Loadgen({"check-ledger", "--catalog", db_->control_dsn(), "--ledger",
                                 ledger_, "--strict"});
  EXPECT_EQ(check.exit_code, 0) << Describe(check);
  EXPECT_THAT(check.out, HasSubstr("against map version 2"));
}

TEST_F(LoadgenTest, PoolFlagsOverrideTheMapsPoolLimits) {
  Load(50);
  const int port = UnusedPort();
  const std::string app = fmt::format("lg-pool-{}", ::getpid());
  const std::string out = (dir_ / "out").string(), err = (dir_ / "err").string();
  // The map says pool_max = 8; four workers would open up to 4 per node without the override.
  const pid_t pid = Spawn({BinPath("shardline-loadgen"), "run", "--map", map_path_, "--worker-id", "1", "--users",
                           "50", "--workers", "4", "--duration", "120s", "--progress", "0",
                           "--pool-min", "1", "--pool-max", "1", "--application-name", app,
                           "--metrics-port", std::to_string(port)},
                          out, err);
  ASSERT_GT(pid, 0);
  httplib::Client client("127.0.0.1", port);
  static const std::regex kReadsCounted(
      R"(shardline_queries_total\{node="n3",kind="read",outcome="ok"\} [1-9])");
  const bool running = WaitFor(
      [&] {
        auto res = client.Get("/metrics");
        return res && res->status == 200 && std::regex_search(res->body, kReadsCounted);
      },
      std::chrono::seconds(30));
  std::vector<std::int64_t> connections;
  for (int node = 0; node < 3; ++node) {
    connections.push_back(Count(
        node, fmt::format("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}'",
                          app)));
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(running) << ReadFile(err);
  EXPECT_EQ(connections, (std::vector<std::int64_t>{1, 1, 1}));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << ReadFile(err);
}

}  // namespace
}  // namespace shardline::testing
