// Tests of `shardline backfill` run as a DBA runs it (the real binary, RunCommand) against two
// devcluster nodes with scratch databases: the copied range is exactly the source's rows of the
// range for bigint, text and uuid keys, a composite key and awkward values; SIGKILL at many batch
// positions (before commit, after the target commit, after the checkpoint) and a rerun give the
// exact result with checkpoints on the target and in the catalog; reruns do not duplicate;
// --restart starts over; preconditions name the table and copy nothing; --rate throttles.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cluster.h"
#include "plan_toml.h"
#include "shardline/map_toml.h"
#include "shardline/shard_map.h"

namespace shardline::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Describe(const CommandResult& r) {
  return fmt::format("exit {}\n--- stdout ---\n{}--- stderr ---\n{}", r.exit_code, r.out, r.err);
}

// The upper half of the hash space: what every test moves from a to b.
constexpr const char* kRange = "0:9223372036854775807";

class BackfillTest : public ::testing::Test {
 protected:
  BackfillTest() : db_(2) {
    std::string tmpl = (fs::temp_directory_path() / "shardline-backfill-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    a_ = ConnectOrDie(db_.node_dsn(0));
    b_ = ConnectOrDie(db_.node_dsn(1));
  }
  ~BackfillTest() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A two-node map (a owns the lower half, b the upper) with `tables` as (name, key) pairs.
  std::string WriteMap(KeyType type, const std::vector<std::pair<std::string, std::string>>& tables) {
    ShardMapConfig c;
    c.version = 1;
    c.key_type = type;
    for (const char* name : {"a", "b"}) {
      NodeConfig n;
      n.name = name;
      n.dsn = db_.node_dsn(c.nodes.empty() ? 0 : 1);
      c.nodes.push_back(n);
    }
    RangeConfig low;
    low.lo = kMinHash;
    low.hi = -1;
    low.node = "a";
    RangeConfig high;
    high.lo = 0;
    high.hi = kMaxHash;
    high.node = "b";
    c.ranges = {low, high};
    for (const auto& [name, key] : tables) {
      TableConfig t;
      t.name = name;
      t.key = key;
      c.tables.push_back(t);
    }
    const std::string path = (dir_ / "map.toml").string();
    std::ofstream(path) << ShardMapToToml(c, PasswordMode::kKeep);
    return path;
  }

  // Runs `shardline backfill --from a --to b --range kRange --map MAP <extra>`.
  CommandResult Backfill(const std::string& map, std::vector<std::string> extra = {},
                         std::map<std::string, std::string> env = {}) {
    std::vector<std::string> args = {BinPath("shardline"), "backfill", "--from", "a", "--to", "b",
                                     "--range", kRange};
    if (!map.empty()) {
      args.push_back("--map");
      args.push_back(map);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    env.try_emplace("SHARDLINE_CATALOG", "");
    return RunCommand(args, env);
  }

  // Both nodes get `ddl`.
  void OnBoth(const std::string& ddl) {
    ASSERT_TRUE(a_->ExecScript(ddl).ok());
    ASSERT_TRUE(b_->ExecScript(ddl).ok());
  }

  // Every row of `table` on `conn` matching `where`, as text, in `order`.
  static std::string Contents(pg::Conn& conn, const std::string& table, const std::string& where,
                              const std::string& order) {
    auto r = conn.Exec(fmt::format(
        "SELECT count(*), coalesce(string_agg(t::text, E'\\n' ORDER BY {}), '') FROM {} t "
        "WHERE {}",
        order, table, where));
    if (!r.ok()) return std::string(r.status().message());
    return r->String(0, 0) + " rows\n" + r->String(0, 1);
  }

  // Asserts b holds exactly a's rows of kRange.
  void ExpectExact(const std::string& table, const std::string& hash_expr,
                   const std::string& order) {
    const std::string src = Contents(*a_, table, hash_expr + " >= 0", order);
    const std::string dst = Contents(*b_, table, "true", order);
    EXPECT_THAT(src, Not(HasSubstr(" 0 rows"))) << "the source range is empty: test is void";
    EXPECT_EQ(src.substr(0, src.find('\n')), dst.substr(0, dst.find('\n')));
    EXPECT_TRUE(src == dst) << "target differs from the source range";
  }

  // A table of every awkward type, keyed (user_id, id), with `rows` rows on a.
  void CreateEvents(int rows) {
    OnBoth(
        "CREATE TABLE events (user_id bigint NOT NULL, id bigint NOT NULL, note text, "
        "big text, blob bytea, doc jsonb, amount numeric, at timestamptz, PRIMARY KEY (user_id, "
        "id))");
    ASSERT_TRUE(a_->Exec(fmt::format(
                             "INSERT INTO events SELECT g % 97, g, "
                             "CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g || E' \\t\\n''\"' END, "
                             "CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 4000) END, "
                             "CASE WHEN g % 3 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') || "
                             "'\\x00ff'::bytea END, "
                             "CASE WHEN g % 7 = 0 THEN NULL ELSE jsonb_build_object('g', g, 'a', "
                             "jsonb_build_array(1, 'x', null)) END, "
                             "CASE WHEN g % 11 = 0 THEN NULL ELSE (g * 1.000000001)::numeric "
                             "* 1e20 END, "
                             "CASE WHEN g % 13 = 0 THEN NULL ELSE timestamptz '2024-02-29 "
                             "23:59:59.123456+05' + g * interval '1 minute' END "
                             "FROM generate_series(1, {}) g",
                             rows))
                    .ok());
  }

  ScratchDatabases db_;
  fs::path dir_;
  std::unique_ptr<pg::Conn> a_;
  std::unique_ptr<pg::Conn> b_;
};

constexpr const char* kEventsHash = "hashint8extended(user_id, 0)";

TEST_F(BackfillTest, CopiesExactlyTheRangeWithCompositeKeyAndAwkwardValues) {
  CreateEvents(5000);
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  const CommandResult r = Backfill(map, {"--batch", "300"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("backfill summary"));
  EXPECT_THAT(r.err, HasSubstr("events a->b"));
  ExpectExact("events", kEventsHash, "user_id, id");
}

TEST_F(BackfillTest, CopiesExactlyWithATextKey) {
  OnBoth("CREATE TABLE profiles (name text PRIMARY KEY, bio text, pic bytea)");
  ASSERT_TRUE(a_->Exec("INSERT INTO profiles SELECT 'user ' || g || CASE WHEN g % 4 = 0 THEN "
                       "' é ü' ELSE '' END, CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('b', g % 300) "
                       "END, CASE WHEN g % 2 = 0 THEN '\\x01'::bytea END "
                       "FROM generate_series(1, 3000) g")
                  .ok());
  const std::string map = WriteMap(KeyType::kText, {{"profiles", "name"}});
  const CommandResult r = Backfill(map, {"--batch", "128"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ExpectExact("profiles", "hashtextextended(name, 0)", "name");
}

TEST_F(BackfillTest, CopiesExactlyWithAUuidKey) {
  OnBoth("CREATE TABLE devices (id uuid PRIMARY KEY, seen timestamptz, meta jsonb)");
  ASSERT_TRUE(a_->Exec("INSERT INTO devices SELECT md5(g::text)::uuid, CASE WHEN g % 2 = 0 THEN "
                       "now() END, jsonb_build_object('n', g) FROM generate_series(1, 3000) g")
                  .ok());
  const std::string map = WriteMap(KeyType::kUuid, {{"devices", "id"}});
  const CommandResult r = Backfill(map, {"--batch", "97"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ExpectExact("devices", "uuid_hash_extended(id, 0)", "id");
}

TEST_F(BackfillTest, QuotesTableAndColumnNamesWithCapitalsSpacesAndQuotes) {
  OnBoth("CREATE TABLE \"Odd \"\"Table\"\"\" (\"User Id\" bigint, \"it's\" bigint, \"Val\" text, "
         "PRIMARY KEY (\"User Id\", \"it's\"))");
  ASSERT_TRUE(a_->Exec("INSERT INTO \"Odd \"\"Table\"\"\" SELECT g % 50, g, 'v' || g "
                       "FROM generate_series(1, 1000) g")
                  .ok());
  const std::string map = WriteMap(KeyType::kBigint, {{"Odd \"Table\"", "User Id"}});
  const CommandResult r = Backfill(map, {"--batch", "64"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ExpectExact("\"Odd \"\"Table\"\"\"", "hashint8extended(\"User Id\", 0)",
              "\"User Id\", \"it's\"");
}

TEST_F(BackfillTest, RerunCopiesNothingAndRestartCopiesAfresh) {
  CreateEvents(2000);
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  ASSERT_EQ(Backfill(map, {"--batch", "500"}).exit_code, 0);
  const CommandResult again = Backfill(map, {"--batch", "500", "--json"});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  const auto j = nlohmann::json::parse(again.out);
  EXPECT_EQ(j["rows_copied"], 0);
  EXPECT_EQ(j["tables"][0]["already_done"], true);
  ExpectExact("events", kEventsHash, "user_id, id");

  const CommandResult restart = Backfill(map, {"--batch", "500", "--restart", "--json"});
  ASSERT_EQ(restart.exit_code, 0) << Describe(restart);
  const auto rj = nlohmann::json::parse(restart.out);
  EXPECT_GT(rj["tables"][0]["deleted_on_restart"].get<std::int64_t>(), 0);
  EXPECT_EQ(rj["tables"][0]["deleted_on_restart"], rj["rows_copied"]);
  ExpectExact("events", kEventsHash, "user_id, id");
}

TEST_F(BackfillTest, RefusesRowsOnTheTargetThatNoCheckpointExplains) {
  CreateEvents(500);
  // One row of the moving range (user_ids 0..96 exist on a; pick one hashing into kRange).
  ASSERT_TRUE(b_->Exec("INSERT INTO events (user_id, id) SELECT u, 1 FROM generate_series(0, 96) u "
                       "WHERE hashint8extended(u, 0) >= 0 LIMIT 1")
                  .ok());
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  const CommandResult r = Backfill(map);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("table events: node b already holds rows of ranges"));
  EXPECT_THAT(r.err, HasSubstr("--restart"));
}

// Kills the backfill at `kills` (batch number within the run, kill point) one run after the
// other, then lets it finish: the target must hold exactly the source's range.
nlohmann::json KillAndResume(std::vector<std::string> extra,
                   const std::vector<std::pair<int, std::string>>& kills,
                   const std::function<CommandResult(std::vector<std::string>,
                                                     std::map<std::string, std::string>)>& run) {
  for (const auto& [batch, point] : kills) {
    const CommandResult r = run(extra, {{"SHARDLINE_TEST_KILL_AFTER_BATCHES", std::to_string(batch)},
                                        {"SHARDLINE_TEST_KILL_POINT", point}});
    EXPECT_EQ(r.exit_code, 128 + SIGKILL) << "kill at batch " << batch << " " << point << "\n"
                                          << Describe(r);
  }
  extra.push_back("--json");
  const CommandResult r = run(extra, {});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  if (r.exit_code != 0) return nlohmann::json::object();
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tables"][0]["resumed"], true);
  return j;
}

TEST_F(BackfillTest, SigkillAtManyBatchPositionsThenResumeIsExactWithTargetCheckpoints) {
  CreateEvents(3000);
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  const nlohmann::json last = KillAndResume({"--batch", "40"},
                {{1, "before_commit"},
                 {1, "after_checkpoint"},
                 {3, "before_commit"},
                 {2, "after_commit"},
                 {5, "after_checkpoint"},
                 {4, "before_commit"},
                 {7, "after_commit"}},
                [&](std::vector<std::string> extra, std::map<std::string, std::string> env) {
                  return Backfill(map, extra, env);
                });
  // The checkpoint commits with the rows: nothing above it to clean up.
  EXPECT_EQ(last["tables"][0]["deleted_before_resume"], 0);
  ExpectExact("events", kEventsHash, "user_id, id");
  auto state = b_->Exec("SELECT rows_copied, done FROM shardline.backfill_state");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->String(0, 1), "t");
}

TEST_F(BackfillTest, SigkillAtManyBatchPositionsThenResumeIsExactWithCatalogCheckpoints) {
  CreateEvents(3000);
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  const std::string bin = BinPath("shardline");
  const CommandResult init = RunCommand({bin, "catalog", "init", "--catalog", db_.control_dsn()});
  ASSERT_EQ(init.exit_code, 0) << Describe(init);
  const CommandResult pub =
      RunCommand({bin, "map", "publish", "--catalog", db_.control_dsn(), map, "--comment", "t"});
  ASSERT_EQ(pub.exit_code, 0) << Describe(pub);
  const auto run = [&](std::vector<std::string> extra, std::map<std::string, std::string> env) {
    extra.push_back("--catalog");
    extra.push_back(db_.control_dsn());
    return Backfill("", extra, env);
  };
  const nlohmann::json last = KillAndResume({"--batch", "40"},
                {{1, "after_commit"},
                 {2, "before_commit"},
                 {3, "after_commit"},
                 {2, "after_checkpoint"},
                 {1, "before_commit"},
                 {6, "after_commit"}},
                run);
  // The last kill left batch 6 committed on the target without its checkpoint: the resumed run
  // deleted exactly those rows before copying on.
  EXPECT_EQ(last["tables"][0]["deleted_before_resume"], 40);
  ExpectExact("events", kEventsHash, "user_id, id");
  auto control = ConnectOrDie(db_.control_dsn());
  auto cp = control->Exec("SELECT done FROM shardline.backfill_checkpoints");
  ASSERT_TRUE(cp.ok());
  ASSERT_EQ(cp->rows(), 1);
  EXPECT_EQ(cp->String(0, 0), "t");
  // The rows committed on the target before a kill whose checkpoint was lost were deleted.
  const CommandResult again = run({"--json"}, {});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  EXPECT_EQ(nlohmann::json::parse(again.out)["tables"][0]["already_done"], true);
}

TEST_F(BackfillTest, PreconditionsNameEveryFailingTableAndCopyNothing) {
  CreateEvents(300);
  ASSERT_TRUE(a_->ExecScript("CREATE TABLE nokey (user_id bigint, v text);"
                             "CREATE TABLE onlysource (user_id bigint PRIMARY KEY);"
                             "CREATE TABLE typed (user_id bigint PRIMARY KEY, v integer);"
                             "CREATE TABLE badkey (id bigint PRIMARY KEY, user_id bigint);")
                  .ok());
  ASSERT_TRUE(b_->ExecScript("CREATE TABLE nokey (user_id bigint, v text);"
                             "CREATE TABLE typed (user_id bigint PRIMARY KEY, v text);"
                             "CREATE TABLE badkey (id bigint PRIMARY KEY, user_id bigint);")
                  .ok());
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"},
                                                      {"nokey", "user_id"},
                                                      {"onlysource", "user_id"},
                                                      {"typed", "user_id"},
                                                      {"badkey", "user_id"}});
  const CommandResult r = Backfill(map);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("no row was copied"));
  EXPECT_THAT(r.err, HasSubstr("table \"nokey\""));
  EXPECT_THAT(r.err, HasSubstr("table \"onlysource\""));
  EXPECT_THAT(r.err, HasSubstr("create it on node b"));
  EXPECT_THAT(r.err, HasSubstr("table \"typed\""));
  EXPECT_THAT(r.err, HasSubstr("table \"badkey\""));
  EXPECT_THAT(r.err, Not(HasSubstr("events")));
  auto n = b_->Exec("SELECT count(*) FROM events");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->String(0, 0), "0");
}

TEST_F(BackfillTest, PlanCopiesEveryMoveOfAPairInOnePassWithoutAMap) {
  CreateEvents(3000);
  migrate::RebalancePlan plan;
  plan.source_map_version = 1;
  plan.created_at = "2026-11-28T00:00:00Z";
  ShardMapConfig& c = plan.result;
  c.version = 2;
  for (const char* name : {"a", "b"}) {
    NodeConfig n;
    n.name = name;
    n.dsn = db_.node_dsn(c.nodes.empty() ? 0 : 1);
    c.nodes.push_back(n);
  }
  // Four quarters; a keeps the lower half, b gets the two upper quarters.
  const std::int64_t bounds[4][2] = {{kMinHash, -4611686018427387905},
                                     {-4611686018427387904, -1},
                                     {0, 4611686018427387903},
                                     {4611686018427387904, kMaxHash}};
  for (int i = 0; i < 4; ++i) {
    RangeConfig r;
    r.lo = bounds[i][0];
    r.hi = bounds[i][1];
    r.node = i < 2 ? "a" : "b";
    c.ranges.push_back(r);
    if (i >= 2) {
      migrate::RangeMove m;
      m.lo = r.lo;
      m.hi = r.hi;
      m.from = "a";
      m.to = "b";
      plan.moves.push_back(m);
    }
  }
  TableConfig t;
  t.name = "events";
  t.key = "user_id";
  c.tables.push_back(t);
  const std::string path = (dir_ / "plan.toml").string();
  ASSERT_TRUE(migrate::WritePlanFile(path, plan).ok());
  const CommandResult r = RunCommand({BinPath("shardline"), "backfill", "--plan", path, "--batch",
                                      "250", "--json"},
                                     {{"SHARDLINE_CATALOG", ""}});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tables"].size(), 1u);
  EXPECT_EQ(j["tables"][0]["ranges"], "0:4611686018427387903,4611686018427387904:9223372036854775807");
  ExpectExact("events", kEventsHash, "user_id, id");
}

TEST_F(BackfillTest, RefusesToRunTwiceAtOnceForTheSameJob) {
  CreateEvents(100);
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  // Hold the job's lock as a running backfill would.
  auto other = ConnectOrDie(db_.node_dsn(1));
  ASSERT_TRUE(other
                  ->Exec("SELECT pg_advisory_lock(hashtextextended('shardline.backfill ' || $1, 0))",
                         {fmt::format("a b events {}", kRange)})
                  .ok());
  const CommandResult r = Backfill(map);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("another backfill of this table and ranges is running on node b"));
  other.reset();
  const CommandResult again = Backfill(map);
  EXPECT_EQ(again.exit_code, 0) << Describe(again);
  ExpectExact("events", kEventsHash, "user_id, id");
}

TEST_F(BackfillTest, UnknownTableIsAnInvalidArgumentNamingIt) {
  CreateEvents(10);
  const std::string map = WriteMap(KeyType::kBigint, {{"events", "user_id"}});
  const CommandResult r = Backfill(map, {"--table", "nosuch"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("--table nosuch: not a sharded table of the map"));
}

TEST_F(BackfillTest, RateLimitsRowsPerSecond) {
  OnBoth("CREATE TABLE small (user_id bigint PRIMARY KEY)");
  ASSERT_TRUE(a_->Exec("INSERT INTO small SELECT g FROM generate_series(1, 4000) g").ok());
  const std::string map = WriteMap(KeyType::kBigint, {{"small", "user_id"}});
  const CommandResult r = Backfill(map, {"--batch", "100", "--rate", "2000", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const auto j = nlohmann::json::parse(r.out);
  const auto rows = j["rows_copied"].get<std::int64_t>();
  ASSERT_GT(rows, 1000);
  // The throttle starts batch i no earlier than (rows before it) / rate after the start.
  EXPECT_GE(j["seconds"].get<double>(), static_cast<double>(rows - 100) / 2000.0);
  EXPECT_LE(j["rows_per_second"].get<double>(), 2000.0 * rows / (rows - 100));
  EXPECT_GT(j["peak_rss_kb"].get<std::int64_t>(), 0);
  ExpectExact("small", "hashint8extended(user_id, 0)", "user_id");
}

}  // namespace
}  // namespace shardline::testing
