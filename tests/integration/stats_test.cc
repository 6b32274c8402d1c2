// `shardline stats` and `rebalance plan --by size / --catalog` end to end on the devcluster: rows
// and bytes per range and node from one bucketed pass, orphans kept apart from the owner's rows,
// identifiers that need quoting, and a size-skewed map planned by size.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "migrate_test_util.h"
#include "plan_toml.h"
#include "stats.h"

namespace shardline::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr const char* kCreate =
    R"(CREATE TABLE "Big ""Events"" T" ("Owner Id" bigint NOT NULL, id bigint NOT NULL, )"
    R"("Body" text, PRIMARY KEY ("Owner Id", id)))";
constexpr const char* kTable = R"(Big "Events" T)";

class StatsTest : public MigrateTest {};

TEST_F(StatsTest, CountsRowsAndBytesPerRangeAndNodeAndKeepsOrphansApart) {
  Sql(0, kCreate);
  Sql(1, kCreate);
  Sql(0, "CREATE TABLE small (k bigint PRIMARY KEY)");
  Sql(1, "CREATE TABLE small (k bigint PRIMARY KEY)");
  // 4 ranges: a owns 0 and 1 (hash < 0), b owns 2 and 3.
  const std::string map =
      WriteMap(MapConfig(4, {0, 0, 1, 1}, {{kTable, "Owner Id"}, {"small", "k"}}));
  Sql(0, R"(INSERT INTO "Big ""Events"" T" SELECT u, 1, repeat('x', 50) FROM generate_series(1, 1000) u)"
         R"( WHERE hashint8extended(u, 0) < 0)");
  Sql(1, R"(INSERT INTO "Big ""Events"" T" SELECT u, 1, repeat('x', 50) FROM generate_series(1, 1000) u)"
         R"( WHERE hashint8extended(u, 0) >= 0)");
  // Orphans: b also holds 3 rows of a's ranges.
  Sql(1, R"(INSERT INTO "Big ""Events"" T" SELECT u, 2, 'o' FROM generate_series(1, 1000) u)"
         R"( WHERE hashint8extended(u, 0) < 0 ORDER BY u LIMIT 3)");
  Sql(0, "INSERT INTO small SELECT generate_series(1, 10)");

  const CommandResult r = Run({"stats", "--map", map, "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const Json j = Json::parse(r.out);
  const std::string a_rows = Scalar(
      0, R"(SELECT count(*) FROM "Big ""Events"" T")");
  const std::string a_bytes = Scalar(
      0, R"(SELECT sum(pg_column_size(t.*)) FROM "Big ""Events"" T" t)");
  const Json& big = j["tables"][0];
  EXPECT_EQ(big["table"], kTable);
  EXPECT_EQ(big["nodes"][0]["node"], "a");
  EXPECT_EQ(big["nodes"][0]["owned"]["rows"].dump(), a_rows);
  // Bytes are an estimate: pg_column_size of a row read through the aggregate can differ from a
  // plain scan's by a few bytes per thousand rows (header forms), so compare within 0.5%.
  EXPECT_NEAR(big["nodes"][0]["owned"]["bytes"].get<double>(), std::stod(a_bytes),
              std::stod(a_bytes) * 0.005);
  EXPECT_EQ(big["nodes"][0]["orphans"]["rows"], 0);
  EXPECT_EQ(big["nodes"][1]["owned"]["rows"].get<std::int64_t>() + std::stoll(a_rows), 1000);
  EXPECT_EQ(big["nodes"][1]["orphans"]["rows"], 3);
  // Per range: the rows of range 0 on a match the server's own count.
  const std::int64_t lo1 = (*ShardMap::Create(MapConfig(4, {0, 0, 1, 1}, {})))->ranges()[1].lo;
  EXPECT_EQ(big["nodes"][0]["ranges"][0]["rows"].dump(),
            Scalar(0, fmt::format(R"(SELECT count(*) FROM "Big ""Events"" T" WHERE )"
                                  R"(hashint8extended("Owner Id", 0) < {})",
                                  lo1)));
  EXPECT_EQ(j["tables"][1]["table"], "small");
  EXPECT_EQ(j["nodes"][0]["rows"].get<std::int64_t>(),
            std::stoll(a_rows) + std::stoll(Scalar(0, "SELECT count(*) FROM small WHERE "
                                                      "hashint8extended(k, 0) < 0")));
  EXPECT_EQ(j["nodes"][0]["orphans"]["rows"].dump(),
            Scalar(0, "SELECT count(*) FROM small WHERE hashint8extended(k, 0) >= 0"));
  EXPECT_EQ(j["total"]["rows"].get<std::int64_t>(), 1000 + 10 - j["nodes"][0]["orphans"]["rows"].get<std::int64_t>());
  EXPECT_EQ(j["ranges"].size(), 4u);

  const CommandResult text = Run({"stats", "--map", map, "--table", kTable});
  ASSERT_EQ(text.exit_code, 0) << Describe(text);
  EXPECT_THAT(text.out, AllOf(HasSubstr(std::string("table ") + kTable), HasSubstr("orphan_rows"),
                              HasSubstr("node b holds 2 rows"), HasSubstr("node b holds 1 row ("),
                              HasSubstr("-4611686018427387904..-1 owned by a")));
}

TEST_F(StatsTest, MissingTableAndUnknownTableAreNamed) {
  Sql(0, kCreate);
  const std::string map = WriteMap(MapConfig(2, {0, 1}, {{kTable, "Owner Id"}}));
  CommandResult r = Run({"stats", "--map", map});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(R"(node b: table "Big ""Events"" T" does not exist)"));
  r = Run({"stats", "--map", map, "--table", "nope"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(R"(table "nope" is not a table of the shard map)"));
  // A node that cannot be reached is named, without its password.
  ShardMapConfig c = MapConfig(2, {0, 1}, {{kTable, "Owner Id"}});
  c.nodes[1].dsn = "host=127.0.0.1 port=1 dbname=app password=secret connect_timeout=2";
  r = Run({"stats", "--map", WriteMap(c, "down.toml")});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("node b"), ::testing::Not(HasSubstr("secret"))));
}

TEST_F(StatsTest, TextAndUuidKeysAreBucketedByTheServerHash) {
  Sql(0, R"(CREATE TABLE "E Mails" ("Addr" text PRIMARY KEY))");
  Sql(0, R"(INSERT INTO "E Mails" SELECT 'u' || i || '@x.org' FROM generate_series(1, 300) i)");
  Sql(1, R"(CREATE TABLE "E Mails" ("Addr" text PRIMARY KEY))");
  CommandResult r = Run({"stats", "--json", "--map",
                         WriteMap(MapConfig(2, {0, 1}, {{"E Mails", "Addr"}}, KeyType::kText),
                                  "text.toml")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  Json j = Json::parse(r.out);
  EXPECT_EQ(j["nodes"][0]["rows"].dump(),
            Scalar(0, R"(SELECT count(*) FROM "E Mails" WHERE hashtextextended("Addr", 0) < 0)"));
  EXPECT_EQ(j["nodes"][0]["orphans"]["rows"].dump(),
            Scalar(0, R"(SELECT count(*) FROM "E Mails" WHERE hashtextextended("Addr", 0) >= 0)"));

  Sql(0, "CREATE TABLE devices (id uuid PRIMARY KEY)");
  Sql(1, "CREATE TABLE devices (id uuid PRIMARY KEY)");
  Sql(1, "INSERT INTO devices SELECT md5(i::text)::uuid FROM generate_series(1, 300) i");
  r = Run({"stats", "--json", "--map",
           WriteMap(MapConfig(2, {0, 1}, {{"devices", "id"}}, KeyType::kUuid), "uuid.toml")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  j = Json::parse(r.out);
  EXPECT_EQ(j["nodes"][1]["rows"].dump(),
            Scalar(1, "SELECT count(*) FROM devices WHERE uuid_hash_extended(id, 0) >= 0"));
  EXPECT_EQ(j["nodes"][1]["orphans"]["rows"].dump(),
            Scalar(1, "SELECT count(*) FROM devices WHERE uuid_hash_extended(id, 0) < 0"));
}

TEST_F(StatsTest, RebalanceBySizeMovesTheBigRanges) {
  Sql(0, kCreate);
  Sql(1, kCreate);
  // 8 ranges, a owns 0-3, b owns 4-7. Range 0 holds most of the data; the others a few rows.
  const ShardMapConfig config = MapConfig(8, {0, 0, 0, 0, 1, 1, 1, 1}, {{kTable, "Owner Id"}});
  const std::string map = WriteMap(config);
  const std::int64_t hi0 = (*ShardMap::Create(config))->ranges()[0].hi;
  Sql(0, fmt::format(R"(INSERT INTO "Big ""Events"" T" SELECT u, i, repeat('x', 100) )"
                     R"(FROM generate_series(1, 3000) u, generate_series(1, 3) i )"
                     R"(WHERE hashint8extended(u, 0) <= {})",
                     hi0));
  Sql(0, fmt::format(R"(INSERT INTO "Big ""Events"" T" SELECT u, 1, 'x' FROM generate_series(1, 3000) u )"
                     R"(WHERE hashint8extended(u, 0) > {} AND hashint8extended(u, 0) < 0 LIMIT 20)",
                     hi0));
  Sql(1, R"(INSERT INTO "Big ""Events"" T" SELECT u, 1, 'x' FROM generate_series(1, 3000) u )"
         R"(WHERE hashint8extended(u, 0) >= 0 LIMIT 40)");

  CommandResult r = Run({"rebalance", "plan", "--map", map, "--by", "size", "-o", Path("size.toml")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  auto plan = migrate::LoadPlanFile(Path("size.toml"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_FALSE(plan->plan.moves.empty());
  std::int64_t moved_rows = 0;
  std::int64_t moved_from_big_range = 0;
  for (const migrate::RangeMove& m : plan->plan.moves) {
    EXPECT_EQ(m.from, "a") << "only the big node gives data away";
    moved_rows += m.rows;
    if (m.hi <= hi0) moved_from_big_range += m.rows;
  }
  // The big range is split and most of what moves comes out of it.
  EXPECT_GT(moved_from_big_range, moved_rows / 2);
  const std::int64_t total = std::stoll(Scalar(0, R"(SELECT count(*) FROM "Big ""Events"" T")")) + 40;
  // Balanced: about half of everything leaves a (the estimates are the real counts).
  EXPECT_GT(moved_rows, total / 3);
  EXPECT_LT(moved_rows, total * 2 / 3);

  // By ranges, the sizes are ignored: the two nodes already have 4 ranges each.
  r = Run({"rebalance", "plan", "--map", map, "--by", "ranges", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("Moves (0)"));
}

TEST_F(StatsTest, RebalancePlanReadsTheMapFromTheCatalog) {
  Sql(0, kCreate);
  Sql(1, kCreate);
  const std::string map = WriteMap(MapConfig(4, {0, 0, 0, 0}, {{kTable, "Owner Id"}}));
  CommandResult r = Run({"catalog", "init", "--catalog", db_.control_dsn()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  r = Run({"map", "publish", "--catalog", db_.control_dsn(), map, "--comment", "test"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  Sql(0, R"(INSERT INTO "Big ""Events"" T" SELECT u, 1, 'x' FROM generate_series(1, 400) u)");
  r = Run({"rebalance", "plan", "--catalog", db_.control_dsn(), "--by", "size",
           "--use-empty-nodes", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("map version 1 -> 2"), HasSubstr("balanced by size")));
  r = Run({"stats", "--catalog", db_.control_dsn()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("400"));
}

}  // namespace
}  // namespace shardline::testing
