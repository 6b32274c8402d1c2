// `shardline verify` end to end on the devcluster: the kinds of difference it names (missing,
// extra, changed, duplicated) with their keys, --repair, clean pairs, --plan, --orphans, text and
// uuid keys, identifiers that need quoting, and the library's snapshot option (rollout's gate).
#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "migrate_test_util.h"
#include "status_matchers.h"
#include "plan_toml.h"
#include "verify.h"

namespace shardline::testing {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A table name and columns that all need quoting.
constexpr const char* kTable = R"(Workout "Logs" 2)";
constexpr const char* kCreateWithPk =
    R"(CREATE TABLE "Workout ""Logs"" 2" ("User Id" bigint NOT NULL, "Log-Id" bigint NOT NULL, )"
    R"("Note" text, "When" timestamptz, PRIMARY KEY ("User Id", "Log-Id")))";
// The same columns without the primary key constraint, so a key can appear twice.
constexpr const char* kCreateWithoutPk =
    R"(CREATE TABLE "Workout ""Logs"" 2" ("User Id" bigint NOT NULL, "Log-Id" bigint NOT NULL, )"
    R"("Note" text, "When" timestamptz))";
constexpr const char* kFill =
    R"(INSERT INTO "Workout ""Logs"" 2" SELECT u, u * 10, 'note ' || u, )"
    R"(timestamptz '2026-01-01 00:00:00+00' + u * interval '1 minute' FROM generate_series(1, 300) u)";
constexpr const char* kFull = "-9223372036854775808:9223372036854775807";

class VerifyTest : public MigrateTest {
 protected:
  std::string Map() { return WriteMap(MapConfig(4, {0, 0, 0, 0}, {{kTable, "User Id"}})); }
  // Rows of node `node` not on the other one, both ways (0 when both hold the same rows).
  std::string Differing() {
    // Both scratch databases live on different instances: compare through a hash of all rows.
    const std::string q =
        R"(SELECT count(*) || ':' || coalesce(sum(hashtextextended(t::text, 0)), 0) )"
        R"(FROM "Workout ""Logs"" 2" t)";
    return Scalar(0, q) == Scalar(1, q) ? "same" : Scalar(0, q) + " vs " + Scalar(1, q);
  }
};

TEST_F(VerifyTest, CleanPairExitsZero) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithPk);
  Sql(0, kFill);
  Sql(1, kFill);
  const CommandResult r = Run({"verify", "--map", Map(), "--from", "a", "--to", "b", "--range", kFull});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("verify a -> b"), HasSubstr("result: clean"),
                           HasSubstr("300")));
}

TEST_F(VerifyTest, NamesMissingExtraChangedAndDuplicatedKeysAndRepairFixesThem) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithoutPk);
  Sql(0, kFill);
  Sql(1, kFill);
  Sql(1, R"(DELETE FROM "Workout ""Logs"" 2" WHERE "User Id" = 5)");
  Sql(1, R"(UPDATE "Workout ""Logs"" 2" SET "Note" = 'changed' WHERE "User Id" = 7)");
  Sql(1, R"(INSERT INTO "Workout ""Logs"" 2" VALUES (9999, 1, 'extra', NULL))");
  Sql(1, R"(INSERT INTO "Workout ""Logs"" 2" SELECT * FROM "Workout ""Logs"" 2" WHERE "User Id" = 11)");
  const std::string map = Map();

  CommandResult r =
      Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--json"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("verify found 4 differences"));
  const Json j = Json::parse(r.out);
  const Json& t = j["pairs"][0]["tables"][0];
  EXPECT_EQ(t["table"], kTable);
  EXPECT_EQ(t["source_rows"], 300);
  EXPECT_EQ(t["target_rows"], 301);
  EXPECT_EQ(t["missing"], 1);
  EXPECT_EQ(t["extra"], 1);
  EXPECT_EQ(t["different"], 1);
  EXPECT_EQ(t["duplicated"], 1);
  EXPECT_THAT(t["missing_keys"].get<std::vector<std::string>>(), ElementsAre("(5,50)"));
  EXPECT_THAT(t["extra_keys"].get<std::vector<std::string>>(), ElementsAre("(9999,1)"));
  EXPECT_THAT(t["different_keys"].get<std::vector<std::string>>(), ElementsAre("(7,70)"));
  EXPECT_THAT(t["duplicated_keys"].get<std::vector<std::string>>(), ElementsAre("(11,110)"));
  EXPECT_EQ(j["differences"], 4);

  // The text report names them too.
  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("1 missing on target (key): (5,50)"),
                           HasSubstr("1 extra on target (key): (9999,1)"),
                           HasSubstr("1 different (key): (7,70)"),
                           HasSubstr("1 duplicated (surplus rows; key): (11,110)"),
                           HasSubstr("result: 4 differences")));

  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--repair"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  // Deleted: extra (1), changed (1), both copies of the duplicate (2); copied: missing, changed,
  // duplicated (one row each).
  EXPECT_THAT(r.out, AllOf(HasSubstr("repair on b: deleted 4 rows, copied 3 rows from a"),
                           HasSubstr("result: clean")));
  EXPECT_EQ(Differing(), "same");
  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
}

TEST_F(VerifyTest, OnlyTheGivenRangesAreCompared) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithPk);
  Sql(0, kFill);
  // b holds only the rows of the upper half of the hash space.
  Sql(1, std::string(kFill) + R"( WHERE hashint8extended(u, 0) >= 0)");
  const std::string map = Map();
  CommandResult r =
      Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", "0:9223372036854775807"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range",
           "-4611686018427387904:9223372036854775807", "--json"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  const std::string expected_missing =
      Scalar(0, R"(SELECT count(*) FROM "Workout ""Logs"" 2" WHERE hashint8extended("User Id", 0) BETWEEN -4611686018427387904 AND -1)");
  EXPECT_EQ(Json::parse(r.out)["pairs"][0]["tables"][0]["missing"].dump(), expected_missing);
}

TEST_F(VerifyTest, PlanFileMovesAreVerified) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithPk);
  Sql(0, kFill);
  // Two nodes, both ranges on a; plan by ranges moves one range to b (which owns nothing, so
  // only --use-empty-nodes gives it ranges).
  ShardMapConfig c = MapConfig(2, {0, 0}, {{kTable, "User Id"}});
  const std::string map = WriteMap(c);
  CommandResult r = Run({"rebalance", "plan", "--map", map, "--by", "ranges", "--use-empty-nodes",
                         "-o", Path("p.toml")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  auto plan = migrate::LoadPlanFile(Path("p.toml"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->plan.moves.size(), 1u);
  const migrate::RangeMove& m = plan->plan.moves[0];
  ASSERT_EQ(m.from, "a");
  ASSERT_EQ(m.to, "b");
  r = Run({"verify", "--plan", Path("p.toml")});  // nothing copied yet
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("missing on target"));
  Sql(1, fmt::format("{} WHERE hashint8extended(u, 0) BETWEEN {} AND {}", kFill, m.lo, m.hi));
  r = Run({"verify", "--plan", Path("p.toml")});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("result: clean"));
}

TEST_F(VerifyTest, OrphansAreCountedAndNamedPerNodeAndTable) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithPk);
  // a owns ranges 0 and 1 (hash < 0), b owns 2 and 3; every row is on a, plus one on b in a's half.
  const std::string map = WriteMap(MapConfig(4, {0, 0, 1, 1}, {{kTable, "User Id"}}));
  Sql(0, kFill);
  const std::string b_key = Scalar(
      0, R"(SELECT min(u) FROM generate_series(1, 300) u WHERE hashint8extended(u, 0) < 0)");
  Sql(1, fmt::format(R"(INSERT INTO "Workout ""Logs"" 2" VALUES ({}, 1, 'stray', NULL))", b_key));
  const std::string a_orphans = Scalar(
      0, R"(SELECT count(*) FROM "Workout ""Logs"" 2" WHERE hashint8extended("User Id", 0) >= 0)");
  const CommandResult r = Run({"verify", "--map", map, "--orphans", "--json"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("rows on nodes that do not own their range"));
  const Json j = Json::parse(r.out);
  ASSERT_EQ(j["orphans"].size(), 2u);
  EXPECT_EQ(j["orphans"][0]["node"], "a");
  EXPECT_EQ(j["orphans"][0]["table"], kTable);
  EXPECT_EQ(j["orphans"][0]["rows"].dump(), a_orphans);
  EXPECT_EQ(j["orphans"][1]["node"], "b");
  EXPECT_EQ(j["orphans"][1]["rows"], 1);
  EXPECT_THAT(j["orphans"][1]["first_keys"].get<std::vector<std::string>>(),
              ElementsAre(fmt::format("({},1)", b_key)));

  // Once a holds only its own ranges, there are no orphans on it.
  Sql(0, R"(DELETE FROM "Workout ""Logs"" 2" WHERE hashint8extended("User Id", 0) >= 0)");
  Sql(1, R"(DELETE FROM "Workout ""Logs"" 2")");
  const CommandResult clean = Run({"verify", "--map", map, "--orphans"});
  EXPECT_EQ(clean.exit_code, 0) << Describe(clean);
  EXPECT_THAT(clean.out, HasSubstr("result: no orphans"));
}

TEST_F(VerifyTest, TextKeysAreVerifiedAndRepaired) {
  for (int n : {0, 1}) {
    Sql(n, R"(CREATE TABLE "Users" ("E-Mail" text PRIMARY KEY, "Name" text))");
    Sql(n, R"(INSERT INTO "Users" SELECT 'user' || i || '@example.com', 'n' || i FROM generate_series(1, 200) i)");
  }
  Sql(1, R"(DELETE FROM "Users" WHERE "E-Mail" = 'user3@example.com')");
  Sql(1, R"(UPDATE "Users" SET "Name" = 'x' WHERE "E-Mail" = 'user4@example.com')");
  Sql(1, R"(INSERT INTO "Users" VALUES ('it''s "odd"@example.com', 'extra'))");
  const std::string map =
      WriteMap(MapConfig(4, {0, 0, 0, 0}, {{"Users", "E-Mail"}}, KeyType::kText));
  CommandResult r =
      Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--json"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  const Json t = Json::parse(r.out)["pairs"][0]["tables"][0];
  EXPECT_THAT(t["missing_keys"].get<std::vector<std::string>>(), ElementsAre("user3@example.com"));
  EXPECT_THAT(t["different_keys"].get<std::vector<std::string>>(),
              ElementsAre("user4@example.com"));
  EXPECT_THAT(t["extra_keys"].get<std::vector<std::string>>(),
              ElementsAre(R"(it's "odd"@example.com)"));
  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--repair"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(Scalar(1, R"(SELECT string_agg("E-Mail" || '=' || "Name", ',' ORDER BY "E-Mail") FROM "Users")"),
            Scalar(0, R"(SELECT string_agg("E-Mail" || '=' || "Name", ',' ORDER BY "E-Mail") FROM "Users")"));
}

TEST_F(VerifyTest, UuidKeysAreVerifiedAndRepaired) {
  for (int n : {0, 1}) {
    Sql(n, "CREATE TABLE devices (id uuid PRIMARY KEY, label text, seen bytea)");
    Sql(n, "INSERT INTO devices SELECT md5(i::text)::uuid, 'd' || i, decode(md5(i::text), 'hex') "
           "FROM generate_series(1, 200) i");
  }
  Sql(1, "DELETE FROM devices WHERE id = md5('9')::uuid");
  Sql(1, "UPDATE devices SET seen = NULL WHERE id = md5('10')::uuid");
  const std::string missing = Scalar(0, "SELECT md5('9')::uuid::text");
  const std::string changed = Scalar(0, "SELECT md5('10')::uuid::text");
  const std::string map = WriteMap(MapConfig(2, {0, 0}, {{"devices", "id"}}, KeyType::kUuid));
  CommandResult r =
      Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--json"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  const Json t = Json::parse(r.out)["pairs"][0]["tables"][0];
  EXPECT_THAT(t["missing_keys"].get<std::vector<std::string>>(), ElementsAre(missing));
  EXPECT_THAT(t["different_keys"].get<std::vector<std::string>>(), ElementsAre(changed));
  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--repair"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("deleted 1 rows, copied 2 rows"));
}

TEST_F(VerifyTest, SourceSnapshotComparesAgainstTheExportedPoint) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithPk);
  Sql(0, kFill);
  Sql(1, kFill);
  auto exporter = ConnectOrDie(db_.node_dsn(0));
  ASSERT_TRUE(exporter->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ").ok());
  auto snap = exporter->Exec("SELECT pg_export_snapshot()");
  ASSERT_TRUE(snap.ok()) << snap.status();
  Sql(0, R"(INSERT INTO "Workout ""Logs"" 2" VALUES (100000, 1, 'after the snapshot', NULL))");

  auto map = ShardMap::Create(MapConfig(4, {0, 0, 0, 0}, {{kTable, "User Id"}}));
  ASSERT_TRUE(map.ok()) << map.status();
  auto source = ConnectOrDie(db_.node_dsn(0));
  auto target = ConnectOrDie(db_.node_dsn(1));
  migrate::VerifyOptions options;
  options.source_snapshot = snap->String(0, 0);
  const migrate::HashRanges all = {{kMinHash, kMaxHash}};
  auto at_snapshot = migrate::VerifyRanges(*source, *target, **map, all, options);
  ASSERT_TRUE(at_snapshot.ok()) << at_snapshot.status();
  EXPECT_TRUE(at_snapshot->clean());
  EXPECT_EQ(at_snapshot->tables.at(0).source_rows, 300);

  auto latest = migrate::VerifyRanges(*source, *target, **map, all, {});
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_FALSE(latest->clean());
  EXPECT_THAT(latest->tables.at(0).missing_keys, ElementsAre("(100000,1)"));

  options.source_snapshot = "00000003-0000001B-1";  // not an exported snapshot
  auto bad = migrate::VerifyRanges(*source, *target, **map, all, options);
  EXPECT_THAT(bad.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                     AllOf(HasSubstr("source snapshot 00000003-0000001B-1"),
                                           HasSubstr("invalid snapshot identifier"))));
}

TEST_F(VerifyTest, ValuesEqualByTheirTypeButNotByTheirTextAreDifferent) {
  for (int n : {0, 1}) {
    Sql(n, "CREATE TABLE vals (k bigint PRIMARY KEY, num numeric, f float8, iv interval, "
           "ts timestamptz, j jsonb, arr int[])");
    Sql(n, "INSERT INTO vals SELECT i, 1.5, 0, '1 day', '2026-01-01', '{\"a\": 1}', '{1,2}' "
           "FROM generate_series(1, 10) i");
  }
  Sql(1, "UPDATE vals SET num = 1.50 WHERE k = 1");
  Sql(1, "UPDATE vals SET f = '-0' WHERE k = 2");
  Sql(1, "UPDATE vals SET iv = '24 hours' WHERE k = 3");
  Sql(1, "UPDATE vals SET ts = '2026-01-01 00:00:00.000001' WHERE k = 4");
  Sql(1, "UPDATE vals SET j = '{\"a\": 2}' WHERE k = 5");
  Sql(1, "UPDATE vals SET arr = '{2,1}' WHERE k = 6");
  const std::string map = WriteMap(MapConfig(2, {0, 0}, {{"vals", "k"}}));
  const CommandResult r =
      Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull, "--json"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  const Json t = Json::parse(r.out)["pairs"][0]["tables"][0];
  std::vector<std::string> keys = t["different_keys"].get<std::vector<std::string>>();
  std::sort(keys.begin(), keys.end());
  EXPECT_THAT(keys, ElementsAre("1", "2", "3", "4", "5", "6"));
}

TEST_F(VerifyTest, ManyMissingRowsAreCountedExactlyThroughTheCursor) {
  Sql(0, kCreateWithPk);
  Sql(1, kCreateWithPk);
  // More rows than one FETCH (10,000) of the drill-down, all missing on the target but one.
  Sql(0, R"(INSERT INTO "Workout ""Logs"" 2" SELECT u, i, 'n', NULL FROM generate_series(1, 5000) u, )"
         R"(generate_series(1, 5) i)");
  Sql(1, R"(INSERT INTO "Workout ""Logs"" 2" VALUES (1, 1, 'n', NULL))");
  const CommandResult r = Run({"verify", "--map", Map(), "--from", "a", "--to", "b", "--range",
                               kFull, "--json", "--max-keys", "3"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  const Json t = Json::parse(r.out)["pairs"][0]["tables"][0];
  EXPECT_EQ(t["missing"], 24999);
  EXPECT_EQ(t["extra"], 0);
  EXPECT_EQ(t["different"], 0);
  EXPECT_EQ(t["missing_keys"].size(), 3u);
}

TEST_F(VerifyTest, MissingTableAndBadFlagsAreNamed) {
  Sql(0, kCreateWithPk);
  const std::string map = Map();
  CommandResult r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", kFull});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(R"(node b: table "Workout ""Logs"" 2" does not exist)"));
  r = Run({"verify", "--map", map, "--from", "a", "--to", "b", "--range", "5:1"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("--range 5:1: LO is greater than HI"));
  r = Run({"verify", "--map", map, "--from", "a"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  r = Run({"verify", "--map", map, "--from", "a", "--to", "zz", "--range", kFull});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("node zz is not a node of the map"));
}

}  // namespace
}  // namespace shardline::testing
