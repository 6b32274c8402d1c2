// Tests of the pure parts of the map subcommands (migrate/cli/): building `map init`'s map,
// locating keys, and `map show`'s output never holding a password.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/map_init.h"
#include "cli/map_locate.h"
#include "cli/map_show.h"
#include "shardline/key.h"
#include "status_matchers.h"

namespace shardline::migrate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using ::shardline::testing::StatusIs;

MapInitOptions TwoNodes() {
  MapInitOptions o;
  o.nodes = {"a=host=10.0.0.1 dbname=app password=secret", "b=host=10.0.0.2 dbname=app"};
  o.ranges = 4;
  o.tables = {"users:user_id", "app.workouts:user_id"};
  o.reference_tables = {"exercises"};
  return o;
}

TEST(MapInit, BuildsEqualRangesInContiguousBlocksPerNode) {
  absl::StatusOr<ShardMapConfig> c = BuildInitialMap(TwoNodes());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->version, 1);
  EXPECT_EQ(c->key_type, KeyType::kBigint);
  ASSERT_EQ(c->ranges.size(), 4u);
  EXPECT_EQ(c->ranges[0].lo, kMinHash);
  EXPECT_EQ(c->ranges[0].node, "a");
  EXPECT_EQ(c->ranges[1].node, "a");
  EXPECT_EQ(c->ranges[2].node, "b");
  EXPECT_EQ(c->ranges[3].hi, kMaxHash);
  ASSERT_EQ(c->tables.size(), 3u);
  EXPECT_EQ(c->tables[1].name, "app.workouts");
  EXPECT_EQ(c->tables[1].key, "user_id");
  EXPECT_TRUE(c->tables[2].reference);
  EXPECT_EQ(c->nodes[0].dsn, "host=10.0.0.1 dbname=app password=secret");
}

TEST(MapInit, VersionAndKeyTypeComeFromTheFlags) {
  MapInitOptions o = TwoNodes();
  o.version = 7;
  o.key_type = "uuid";
  absl::StatusOr<ShardMapConfig> c = BuildInitialMap(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->version, 7);
  EXPECT_EQ(c->key_type, KeyType::kUuid);
}

TEST(MapInit, TableWithoutKeyIsRefusedNamingIt) {
  MapInitOptions o = TwoNodes();
  o.tables = {"users"};
  EXPECT_THAT(BuildInitialMap(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("--table 'users': expected NAME:KEY")));
}

TEST(MapInit, FewerRangesThanNodesIsRefused) {
  MapInitOptions o = TwoNodes();
  o.ranges = 1;
  EXPECT_THAT(BuildInitialMap(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1")));
}

TEST(MapInit, DuplicateNodeIsRefusedNamingIt) {
  MapInitOptions o = TwoNodes();
  o.nodes.push_back("a=host=10.0.0.3");
  EXPECT_THAT(BuildInitialMap(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'a'")));
}

std::shared_ptr<const ShardMap> Built(const MapInitOptions& o) {
  absl::StatusOr<ShardMapConfig> c = BuildInitialMap(o);
  EXPECT_TRUE(c.ok()) << c.status();
  auto m = ShardMap::Create(*c);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(MapLocate, LocatesEachKeyOnTheNodeTheMapLookupGives) {
  auto map = Built(TwoNodes());
  absl::StatusOr<std::vector<KeyLocation>> got = LocateKeys(*map, {"42", "-7", "0"});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  for (const KeyLocation& k : *got) {
    const std::int64_t hash = *HashKeyText(KeyType::kBigint, k.key);
    EXPECT_EQ(k.hash, hash);
    const RangeConfig& r = map->RangeFor(hash);
    EXPECT_EQ(k.lo, r.lo);
    EXPECT_EQ(k.hi, r.hi);
    EXPECT_EQ(k.node, r.node);
    EXPECT_EQ(k.read_node, r.node);
    EXPECT_LE(k.lo, k.hash);
    EXPECT_LE(k.hash, k.hi);
  }
  EXPECT_EQ((*got)[1].key, "-7");
}

TEST(MapLocate, KeysThatDoNotParseAreAllNamed) {
  auto map = Built(TwoNodes());
  EXPECT_THAT(LocateKeys(*map, {"42", "12x", "abc"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'12x'"), HasSubstr("'abc'"), HasSubstr("bigint"))));
}

TEST(MapLocate, UuidKeysParseAsUuids) {
  MapInitOptions o = TwoNodes();
  o.key_type = "uuid";
  auto map = Built(o);
  EXPECT_TRUE(LocateKeys(*map, {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}).ok());
  EXPECT_THAT(LocateKeys(*map, {"not-a-uuid"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not-a-uuid")));
}

TEST(MapShow, TextAndJsonNeverHoldAPassword) {
  MapInitOptions o = TwoNodes();
  o.nodes[1] = "b=postgresql://app:secret@10.0.0.2/app";
  auto map = Built(o);
  const std::string text = MapShowText(*map, "map file m.toml");
  EXPECT_THAT(text, Not(HasSubstr("secret")));
  EXPECT_THAT(text, HasSubstr("password=********"));
  const std::string json = MapShowJson(*map).dump();
  EXPECT_THAT(json, Not(HasSubstr("secret")));
}

TEST(MapShow, NodesShowRangeCountsAndShares) {
  auto map = Built(TwoNodes());
  const nlohmann::ordered_json j = MapShowJson(*map);
  ASSERT_EQ(j["nodes"].size(), 2u);
  EXPECT_EQ(j["nodes"][0]["ranges"], 2);
  EXPECT_DOUBLE_EQ(j["nodes"][0]["share"].get<double>(), 0.5);
  EXPECT_EQ(j["ranges"].size(), 4u);
  EXPECT_EQ(j["ranges"][0]["lo"].get<std::int64_t>(), kMinHash);
  const std::string text = MapShowText(*map, "map file m.toml");
  EXPECT_THAT(text, HasSubstr("50.00%"));
  EXPECT_THAT(text, HasSubstr("4 in 2 runs"));
}

}  // namespace
}  // namespace shardline::migrate
