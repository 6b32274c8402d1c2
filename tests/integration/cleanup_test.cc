// `shardline cleanup` end to end on the devcluster: refuses ranges the node still owns (or still
// serves reads of), deletes exactly the rows of unowned ranges in batches, works through a plan
// file, and quotes identifiers.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "migrate_test_util.h"

namespace shardline::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr const char* kCreate =
    R"(CREATE TABLE "Old ""Rows"" X" ("Key Col" bigint NOT NULL, "Seq" bigint NOT NULL, )"
    R"(v text, PRIMARY KEY ("Key Col", "Seq")))";
constexpr const char* kFill =
    R"(INSERT INTO "Old ""Rows"" X" SELECT u, s, 'v' FROM generate_series(1, 500) u, )"
    R"(generate_series(1, 3) s)";
constexpr const char* kTable = R"(Old "Rows" X)";

class CleanupTest : public MigrateTest {
 protected:
  // 4 ranges: a owns 0 and 1 (hash < 0), b owns 2 and 3; a holds a copy of everything.
  std::string MakeTables() {
    Sql(0, kCreate);
    Sql(1, kCreate);
    Sql(0, kFill);
    Sql(1, std::string(kFill) + R"( WHERE hashint8extended(u, 0) >= 0)");
    config_ = MapConfig(4, {0, 0, 1, 1}, {{kTable, "Key Col"}});
    return WriteMap(config_);
  }
  std::string Count(int node, const std::string& where) {
    return Scalar(node, std::string(R"(SELECT count(*) FROM "Old ""Rows"" X" WHERE )") + where);
  }
  ShardMapConfig config_;
};

TEST_F(CleanupTest, RefusesARangeTheNodeStillOwns) {
  const std::string map = MakeTables();
  const std::string before = Count(0, "true");
  // Range 1 (-4611686018427387904..-1) is a's; the request overlaps it by one hash value.
  CommandResult r = Run({"cleanup", "--map", map, "--node", "a", "--range", "-1:100"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("node a still owns range -1..-1 (map version 1)"));
  // Several ranges: refused before anything is deleted.
  r = Run({"cleanup", "--map", map, "--node", "a", "--range", "0:100", "--range",
           "-4611686018427387904:-4611686018427387000"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("node a still owns range -4611686018427387904..-4611686018427387000"));
  EXPECT_EQ(Count(0, "true"), before);
  r = Run({"cleanup", "--map", map, "--node", "zz", "--range", "0:100"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("node zz is not a node of the map"));
}

TEST_F(CleanupTest, RefusesARangeWhoseReadsTheNodeServes) {
  MakeTables();
  ShardMapConfig c = config_;
  c.ranges[2].read_node = "a";
  c.ranges[2].state = RangeState::kReadsSwitched;
  const std::string map = WriteMap(c, "switched.toml");
  const CommandResult r = Run({"cleanup", "--map", map, "--node", "a", "--range",
                               fmt::format("{}:{}", c.ranges[2].lo, c.ranges[2].hi)});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("it serves the range's reads"));
}

TEST_F(CleanupTest, DeletesExactlyTheUnownedRowsInBatches) {
  const std::string map = MakeTables();
  const std::string owned_before = Count(0, R"(hashint8extended("Key Col", 0) < 0)");
  const std::string unowned = Count(0, R"(hashint8extended("Key Col", 0) >= 0)");
  const std::string b_before = Count(1, "true");
  ASSERT_NE(unowned, "0");
  const CommandResult r = Run({"cleanup", "--map", map, "--node", "a", "--range",
                               "0:9223372036854775807", "--batch", "7", "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j["nodes"][0]["node"], "a");
  EXPECT_EQ(j["nodes"][0]["deleted"].dump(), unowned);
  EXPECT_EQ(j["nodes"][0]["tables"][0]["table"], kTable);
  EXPECT_GE(j["nodes"][0]["tables"][0]["batches"].get<std::int64_t>(), std::stoll(unowned) / 7);
  EXPECT_EQ(Count(0, R"(hashint8extended("Key Col", 0) >= 0)"), "0");
  EXPECT_EQ(Count(0, R"(hashint8extended("Key Col", 0) < 0)"), owned_before);
  EXPECT_EQ(Count(1, "true"), b_before);
  // Nothing left: a second run deletes nothing and succeeds.
  const CommandResult again =
      Run({"cleanup", "--map", map, "--node", "a", "--range", "0:9223372036854775807"});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  EXPECT_THAT(again.out, HasSubstr("cleanup node a: 0 rows deleted from 1 range"));
  // The orphans are gone too.
  const CommandResult orphans = Run({"verify", "--map", map, "--orphans"});
  EXPECT_EQ(orphans.exit_code, 0) << Describe(orphans);
}

TEST_F(CleanupTest, TextAndUuidKeysAreDeletedInKeysetBatches) {
  Sql(0, R"(CREATE TABLE "E Mails" ("Addr" text PRIMARY KEY, n int))");
  Sql(0, R"(INSERT INTO "E Mails" SELECT 'u' || i || '@x.org', i FROM generate_series(1, 300) i)");
  Sql(0, "CREATE TABLE devices (id uuid, seq int, PRIMARY KEY (id, seq))");
  Sql(0, "INSERT INTO devices SELECT md5(i::text)::uuid, s FROM generate_series(1, 100) i, "
         "generate_series(1, 2) s");
  for (KeyType type : {KeyType::kText, KeyType::kUuid}) {
    const bool text = type == KeyType::kText;
    const std::string table = text ? "E Mails" : "devices";
    const std::string key = text ? "Addr" : "id";
    const std::string hash = text ? R"(hashtextextended("Addr", 0))" : "uuid_hash_extended(id, 0)";
    const std::string quoted = text ? R"("E Mails")" : "devices";
    const std::string map = WriteMap(MapConfig(2, {0, 1}, {{table, key}}, type),
                                     table + ".toml");
    const std::string owned = Scalar(0, fmt::format("SELECT count(*) FROM {} WHERE {} < 0",
                                                    quoted, hash));
    const std::string unowned = Scalar(0, fmt::format("SELECT count(*) FROM {} WHERE {} >= 0",
                                                      quoted, hash));
    const CommandResult r = Run({"cleanup", "--map", map, "--node", "a", "--range",
                                 "0:9223372036854775807", "--batch", "3"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr(fmt::format("cleanup node a: {} rows deleted", unowned)));
    EXPECT_EQ(Scalar(0, fmt::format("SELECT count(*) FROM {}", quoted)), owned);
    EXPECT_EQ(Scalar(0, fmt::format("SELECT count(*) FROM {} WHERE {} >= 0", quoted, hash)), "0");
  }
}

TEST_F(CleanupTest, PlanFileCleansEachMoveFromItsSource) {
  Sql(0, kCreate);
  Sql(1, kCreate);
  Sql(0, kFill);
  // Before: a owns everything. Plan by ranges moves one range to b; "after" is the plan's map.
  // (b owns nothing, so only --use-empty-nodes gives it ranges.)
  const std::string before = WriteMap(MapConfig(2, {0, 0}, {{kTable, "Key Col"}}), "before.toml");
  CommandResult r = Run({"rebalance", "plan", "--map", before, "--by", "ranges",
                         "--use-empty-nodes", "-o", Path("p.toml")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  // Against the current map (a still owns it): refused.
  r = Run({"cleanup", "--map", before, "--plan", Path("p.toml")});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("node a still owns range"));
  // Against the resulting map: deletes the moved range from a.
  const std::string after = WriteMap(MapConfig(2, {0, 1}, {{kTable, "Key Col"}}), "after.toml");
  const std::string moved = Count(0, R"(hashint8extended("Key Col", 0) >= 0)");
  r = Run({"cleanup", "--map", after, "--plan", Path("p.toml"), "--rate", "100000"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(fmt::format("cleanup node a: {} rows deleted", moved)));
  EXPECT_EQ(Count(0, R"(hashint8extended("Key Col", 0) >= 0)"), "0");
}

}  // namespace
}  // namespace shardline::testing
