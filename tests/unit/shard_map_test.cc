// Unit tests of the shard map model (router/shard_map.cc): one test per validation rule, each
// asserting that the message names the fault and its place; the range lookup against a linear
// scan on random hashes and maps; that lookup allocates nothing; owned/read ranges; EqualRanges.
#include "shardline/shard_map.h"

#include <cstdlib>
#include <iostream>
#include <random>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "shardline/hash.h"
#include "shardline/key.h"
#include "alloc_counter.h"
#include "status_matchers.h"

namespace shardline {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using ::shardline::testing::StatusIs;

NodeConfig Node(std::string name) {
  NodeConfig n;
  n.dsn = "host=127.0.0.1 port=5432 dbname=" + name;
  n.name = std::move(name);
  return n;
}

RangeConfig Range(std::int64_t lo, std::int64_t hi, std::string node) {
  RangeConfig r;
  r.lo = lo;
  r.hi = hi;
  r.node = std::move(node);
  return r;
}

TableConfig Table(std::string name, std::string key) {
  TableConfig t;
  t.name = std::move(name);
  t.key = std::move(key);
  return t;
}

// version 1, nodes a and b, a owns the negative half and b the rest, one sharded table.
ShardMapConfig TwoNodes() {
  ShardMapConfig c;
  c.version = 1;
  c.nodes = {Node("a"), Node("b")};
  c.ranges = {Range(kMinHash, -1, "a"), Range(0, kMaxHash, "b")};
  c.tables = {Table("workout_logs", "user_id")};
  return c;
}

// Locations as a TOML parser would report them: version on line 1, nodes from line 10,
// ranges from line 20, tables from line 40 (one line apart).
SourceLocations Lines(const ShardMapConfig& c) {
  SourceLocations loc;
  loc.file = "m.toml";
  loc.version_line = 1;
  loc.key_type_line = 2;
  for (std::size_t i = 0; i < c.nodes.size(); ++i) loc.node_lines.push_back(10 + int(i));
  for (std::size_t i = 0; i < c.ranges.size(); ++i) loc.range_lines.push_back(20 + int(i));
  for (std::size_t i = 0; i < c.tables.size(); ++i) loc.table_lines.push_back(40 + int(i));
  return loc;
}

absl::Status Validate(const ShardMapConfig& c) {
  SourceLocations loc = Lines(c);
  return ValidateShardMapConfig(c, &loc);
}

std::uint64_t TestSeed() {
  if (const char* env = std::getenv("SHARDLINE_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

TEST(ShardMapValidation, AcceptsAValidMap) { EXPECT_TRUE(Validate(TwoNodes()).ok()); }

TEST(ShardMapValidation, RejectsZeroVersionNamingItsLine) {
  ShardMapConfig c = TwoNodes();
  c.version = 0;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:1: version must be a positive integer, "
                                              "got 0")));
}

TEST(ShardMapValidation, RejectsNegativeVersion) {
  ShardMapConfig c = TwoNodes();
  c.version = -4;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("version must be a positive integer, got -4")));
}

TEST(ShardMapValidation, RejectsUnknownKeyTypeListingTheAllowedOnes) {
  ShardMapConfig c = TwoNodes();
  c.key_type = static_cast<KeyType>(7);
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:2: unknown key_type 7 (expected bigint, "
                                              "text or uuid)")));
}

TEST(ShardMapValidation, GapNamesBothRangesBothLinesAndTheMissingValues) {
  ShardMapConfig c = TwoNodes();
  c.ranges = {Range(kMinHash, -1, "a"), Range(10, kMaxHash, "b")};
  EXPECT_THAT(Validate(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:21: gap between range -9223372036854775808..-1 (line "
                                 "20) and range 10..9223372036854775807 (line 21): hash values "
                                 "0..9 are not covered")));
}

TEST(ShardMapValidation, OverlapNamesBothRangesBothLinesAndTheSharedValues) {
  ShardMapConfig c = TwoNodes();
  c.ranges = {Range(-5, kMaxHash, "b"), Range(kMinHash, 100, "a")};  // file order is free
  EXPECT_THAT(Validate(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:20: range -5..9223372036854775807 (line 20) overlaps "
                                 "range -9223372036854775808..100 (line 21): hash values -5..100 "
                                 "are in both")));
}

TEST(ShardMapValidation, DuplicateRangeIsAnOverlap) {
  ShardMapConfig c = TwoNodes();
  c.ranges.push_back(Range(0, kMaxHash, "a"));
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("hash values 0..9223372036854775807 are in both")));
}

TEST(ShardMapValidation, RejectsLoGreaterThanHi) {
  ShardMapConfig c = TwoNodes();
  c.ranges = {Range(kMinHash, -1, "a"), Range(0, 99, "b"), Range(200, 100, "b"),
              Range(100, kMaxHash, "b")};
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:22: range 200..100: lo is greater than hi")));
}

TEST(ShardMapValidation, RejectsUnknownNodeListingTheKnownOnes) {
  ShardMapConfig c = TwoNodes();
  c.ranges[1].node = "z";
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:21: range 0..9223372036854775807: unknown "
                                              "node 'z' (nodes: a, b)")));
}

TEST(ShardMapValidation, RejectsRangeWithoutNode) {
  ShardMapConfig c = TwoNodes();
  c.ranges[0].node = "";
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:20: range -9223372036854775808..-1: node "
                                              "is missing")));
}

TEST(ShardMapValidation, RejectsDuplicateNodeNamesNamingBothLines) {
  ShardMapConfig c = TwoNodes();
  c.nodes.push_back(Node("a"));
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:12: duplicate node name 'a' (first defined "
                                              "as nodes[0] (line 10))")));
}

TEST(ShardMapValidation, RejectsDuplicateTableNamesNamingBothLines) {
  ShardMapConfig c = TwoNodes();
  c.tables.push_back(Table("users", "id"));
  c.tables.push_back(Table("workout_logs", "user_id"));
  EXPECT_THAT(Validate(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:42: duplicate table name 'workout_logs' (first defined "
                                 "as tables[0] (line 40))")));
}

TEST(ShardMapValidation, RejectsMapWithoutNodes) {
  ShardMapConfig c = TwoNodes();
  c.nodes.clear();
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml: the map has no nodes")));
}

TEST(ShardMapValidation, RejectsMapWithoutRanges) {
  ShardMapConfig c = TwoNodes();
  c.ranges.clear();
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("the map has no ranges: hash values "
                                              "-9223372036854775808..9223372036854775807 are "
                                              "not covered")));
}

TEST(ShardMapValidation, SaysThatNoRangeStartsAtTheMinimum) {
  ShardMapConfig c = TwoNodes();
  c.ranges[0].lo = -1000;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:20: no range starts at -9223372036854775808: "
                                              "hash values -9223372036854775808..-1001 are not "
                                              "covered (the lowest is range -1000..-1)")));
}

TEST(ShardMapValidation, SaysThatNoRangeEndsAtTheMaximum) {
  ShardMapConfig c = TwoNodes();
  c.ranges[1].hi = 1 << 20;
  EXPECT_THAT(Validate(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:21: no range ends at 9223372036854775807: hash values "
                                 "1048577..9223372036854775807 are not covered (the highest is "
                                 "range 0..1048576)")));
}

TEST(ShardMapValidation, RejectsPoolMinAbovePoolMax) {
  ShardMapConfig c = TwoNodes();
  c.nodes[1].pool_min = 8;
  c.nodes[1].pool_max = 4;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:11: node 'b': pool_min (8) is greater than "
                                              "pool_max (4)")));
}

TEST(ShardMapValidation, RejectsPoolMaxBelowOne) {
  ShardMapConfig c = TwoNodes();
  c.nodes[0].pool_min = 0;
  c.nodes[0].pool_max = 0;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:10: node 'a': pool_max must be at least 1, "
                                              "got 0")));
}

TEST(ShardMapValidation, RejectsNegativePoolMin) {
  ShardMapConfig c = TwoNodes();
  c.nodes[0].pool_min = -1;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:10: node 'a': pool_min must not be "
                                              "negative, got -1")));
}

TEST(ShardMapValidation, RejectsEmptyNodeName) {
  ShardMapConfig c = TwoNodes();
  c.nodes.push_back(Node(""));
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:12: nodes[2]: name is empty")));
}

TEST(ShardMapValidation, RejectsEmptyDsn) {
  ShardMapConfig c = TwoNodes();
  c.nodes[1].dsn = "";
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:11: node 'b': dsn is empty")));
}

TEST(ShardMapValidation, RejectsUnparseableDsnWithoutEchoingIt) {
  ShardMapConfig c = TwoNodes();
  c.nodes[1].dsn = "host=h password='secret";  // unterminated quote
  absl::Status s = Validate(c);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("m.toml:11: node 'b': dsn is not a valid libpq "
                                          "connection string"),
                                Not(HasSubstr("secret")))));
}

TEST(ShardMapValidation, RejectsEmptyReplicaDsn) {
  ShardMapConfig c = TwoNodes();
  c.nodes[0].replicas = {"host=r1", ""};
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:10: node 'a': replicas[1] is empty")));
}

TEST(ShardMapValidation, RejectsShardedTableWithoutKey) {
  ShardMapConfig c = TwoNodes();
  c.tables.push_back(Table("profiles", ""));
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:41: table 'profiles': key is missing")));
}

TEST(ShardMapValidation, AcceptsReferenceTableWithoutKey) {
  ShardMapConfig c = TwoNodes();
  TableConfig t = Table("countries", "");
  t.reference = true;
  c.tables.push_back(t);
  EXPECT_TRUE(Validate(c).ok());
}

TEST(ShardMapValidation, RejectsReferenceTableWithKey) {
  ShardMapConfig c = TwoNodes();
  TableConfig t = Table("countries", "code");
  t.reference = true;
  c.tables.push_back(t);
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:41: table 'countries': a reference table "
                                              "has no shard key, but key = 'code' is set")));
}

TEST(ShardMapValidation, RejectsEmptyTableName) {
  ShardMapConfig c = TwoNodes();
  c.tables.push_back(Table("", "id"));
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:41: tables[1]: name is empty")));
}

TEST(ShardMapValidation, RejectsRepeatedPrimaryKeyColumn) {
  ShardMapConfig c = TwoNodes();
  c.tables[0].primary_key = {"user_id", "id", "user_id"};
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:40: table 'workout_logs': primary_key "
                                              "names column 'user_id' twice")));
}

TEST(ShardMapValidation, RejectsUnknownReadNode) {
  ShardMapConfig c = TwoNodes();
  c.ranges[0].read_node = "c";
  c.ranges[0].state = RangeState::kCopying;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:20: range -9223372036854775808..-1: unknown "
                                              "read_node 'c' (nodes: a, b)")));
}

TEST(ShardMapValidation, RejectsReadNodeOnAStableRange) {
  ShardMapConfig c = TwoNodes();
  c.ranges[0].read_node = "b";
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:20: range -9223372036854775808..-1: "
                                              "read_node 'b' is set but state is stable")));
}

TEST(ShardMapValidation, RejectsMovingStateWithoutReadNode) {
  ShardMapConfig c = TwoNodes();
  c.ranges[1].state = RangeState::kReadsSwitched;
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:21: range 0..9223372036854775807: state "
                                              "reads_switched needs read_node")));
}

TEST(ShardMapValidation, RejectsReadNodeEqualToOwner) {
  ShardMapConfig c = TwoNodes();
  c.ranges[1].state = RangeState::kCopying;
  c.ranges[1].read_node = "b";
  EXPECT_THAT(Validate(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("m.toml:21: range 0..9223372036854775807: read_node "
                                              "'b' is the owner itself")));
}

TEST(ShardMapValidation, NodeOwningNoRangeIsValid) {
  ShardMapConfig c = TwoNodes();
  c.nodes.push_back(Node("new"));
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_TRUE((*map)->OwnedRanges((*map)->NodeIndex("new")).empty());
}

TEST(ShardMapValidation, WithoutLocationsNamesTheRangesOnly) {
  ShardMapConfig c = TwoNodes();
  c.ranges[1].lo = 5;
  EXPECT_THAT(ValidateShardMapConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("gap between range -9223372036854775808..-1 and range "
                                       "5..9223372036854775807: hash values 0..4 are not "
                                       "covered"),
                             Not(HasSubstr("line")))));
}

TEST(ShardMapValidation, ReportsEveryProblemOnItsOwnLine) {
  ShardMapConfig c = TwoNodes();
  c.version = 0;
  c.nodes[1].dsn = "";
  c.ranges[1].node = "z";
  absl::Status s = Validate(c);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("m.toml:1: version must be"),
                                HasSubstr("\nm.toml:11: node 'b': dsn is empty"),
                                HasSubstr("\nm.toml:21: range 0..9223372036854775807: unknown "
                                          "node 'z'"))));
}

TEST(ShardMapValidation, CreateRefusesAnInvalidConfigWithTheSameMessage) {
  ShardMapConfig c = TwoNodes();
  c.ranges[1].lo = 5;
  SourceLocations loc = Lines(c);
  auto map = ShardMap::Create(c, &loc);
  EXPECT_THAT(map.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("m.toml:21: gap between range")));
}

TEST(RangeState, NamesRoundTrip) {
  for (RangeState s : {RangeState::kStable, RangeState::kCopying, RangeState::kReadsSwitched}) {
    auto parsed = ParseRangeState(RangeStateName(s));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, s);
  }
  EXPECT_THAT(ParseRangeState("moving").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown range state 'moving' (expected stable, copying or "
                                 "reads_switched)")));
}

TEST(ShardMap, CreateSortsRangesByLo) {
  ShardMapConfig c = TwoNodes();
  c.ranges = {Range(100, kMaxHash, "b"), Range(kMinHash, -1, "a"), Range(0, 99, "b")};
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  const auto& r = (*map)->ranges();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].lo, kMinHash);
  EXPECT_EQ(r[1].lo, 0);
  EXPECT_EQ(r[2].lo, 100);
  EXPECT_EQ((*map)->RangeIndex(50), 1u);
  EXPECT_EQ((*map)->RangeFor(kMaxHash).node, "b");
  EXPECT_EQ((*map)->OwnerNodeIndex(0), 0);
  EXPECT_EQ((*map)->OwnerNodeIndex(2), 1);
}

TEST(ShardMap, FindsNodesAndTablesByName) {
  ShardMapConfig c = TwoNodes();
  c.tables.push_back(Table("public.profiles", "user_id"));
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ((*map)->NodeIndex("a"), 0);
  EXPECT_EQ((*map)->NodeIndex("b"), 1);
  EXPECT_EQ((*map)->NodeIndex("c"), -1);
  ASSERT_NE((*map)->FindTable("public.profiles"), nullptr);
  EXPECT_EQ((*map)->FindTable("public.profiles")->key, "user_id");
  EXPECT_EQ((*map)->FindTable("workout_logs")->key, "user_id");
  EXPECT_EQ((*map)->FindTable("profiles"), nullptr);
}

TEST(ShardMap, ReadNodeFollowsReadsSwitchedOnly) {
  ShardMapConfig c = TwoNodes();
  c.nodes.push_back(Node("c"));
  c.ranges = {Range(kMinHash, -1, "a"), Range(0, 99, "b"), Range(100, kMaxHash, "b")};
  c.ranges[1].read_node = "c";
  c.ranges[1].state = RangeState::kReadsSwitched;
  c.ranges[2].read_node = "c";
  c.ranges[2].state = RangeState::kCopying;
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ((*map)->OwnerNodeIndex(1), 1);
  EXPECT_EQ((*map)->ReadNodeIndex(1), 2);
  EXPECT_EQ((*map)->ReadNodeIndex(2), 1);  // copying: the owner still serves reads
  using P = std::pair<std::int64_t, std::int64_t>;
  EXPECT_THAT((*map)->OwnedRanges(1), ::testing::ElementsAre(P{0, kMaxHash}));
  EXPECT_THAT((*map)->ReadRanges(1), ::testing::ElementsAre(P{100, kMaxHash}));
  EXPECT_THAT((*map)->ReadRanges(2), ::testing::ElementsAre(P{0, 99}));
}

TEST(ShardMap, OwnedRangesCoalescesAdjacentRanges) {
  ShardMapConfig c = TwoNodes();
  c.ranges = {Range(kMinHash, -101, "a"), Range(-100, -1, "a"), Range(0, 9, "b"),
              Range(10, 19, "a"), Range(20, 29, "a"), Range(30, kMaxHash, "a")};
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  using P = std::pair<std::int64_t, std::int64_t>;
  EXPECT_THAT((*map)->OwnedRanges(0), ::testing::ElementsAre(P{kMinHash, -1}, P{10, kMaxHash}));
  EXPECT_THAT((*map)->OwnedRanges(1), ::testing::ElementsAre(P{0, 9}));
  EXPECT_TRUE((*map)->OwnedRanges(7).empty());
  EXPECT_TRUE((*map)->OwnedRanges(-1).empty());
}

TEST(ShardMap, SingleRangeOwnsEverything) {
  ShardMapConfig c = TwoNodes();
  c.ranges = {Range(kMinHash, kMaxHash, "a")};
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  for (std::int64_t h : {kMinHash, std::int64_t{-1}, std::int64_t{0}, kMaxHash}) {
    EXPECT_EQ((*map)->RangeIndex(h), 0u);
  }
  using P = std::pair<std::int64_t, std::int64_t>;
  EXPECT_THAT((*map)->OwnedRanges(0), ::testing::ElementsAre(P{kMinHash, kMaxHash}));
}

std::size_t LinearRangeIndex(const std::vector<RangeConfig>& ranges, std::int64_t h) {
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].lo <= h && h <= ranges[i].hi) return i;
  }
  return ranges.size();
}

// Ranges cut at `cuts` (sorted, distinct, > kMinHash), owners chosen by rng.
ShardMapConfig CutAt(std::vector<std::int64_t> cuts, std::mt19937_64& rng) {
  ShardMapConfig c = TwoNodes();
  c.nodes.push_back(Node("c"));
  c.ranges.clear();
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::int64_t lo = kMinHash;
  const char* names[] = {"a", "b", "c"};
  for (std::int64_t cut : cuts) {
    if (cut == kMinHash) continue;
    c.ranges.push_back(Range(lo, cut - 1, names[rng() % 3]));
    lo = cut;
  }
  c.ranges.push_back(Range(lo, kMaxHash, names[rng() % 3]));
  return c;
}

void ExpectLookupAgreesWithLinearScan(const ShardMap& map, std::mt19937_64& rng, int probes) {
  const auto& ranges = map.ranges();
  for (std::size_t i = 0; i < ranges.size(); ++i) {  // every bound, against its known index
    ASSERT_EQ(map.RangeIndex(ranges[i].lo), i) << "lo of range " << i;
    ASSERT_EQ(map.RangeIndex(ranges[i].hi), i) << "hi of range " << i;
  }
  std::vector<std::int64_t> hashes = {kMinHash, kMinHash + 1, -1, 0, 1, kMaxHash - 1, kMaxHash};
  for (int i = 0; i < probes; ++i) hashes.push_back(static_cast<std::int64_t>(rng()));
  // Hashes near a random range's bounds, where an off-by-one would show.
  for (int i = 0; i < probes; ++i) {
    const RangeConfig& r = ranges[rng() % ranges.size()];
    const std::int64_t d = static_cast<std::int64_t>(rng() % 3);
    if (r.lo >= kMinHash + d) hashes.push_back(r.lo - d);
    if (r.hi <= kMaxHash - d) hashes.push_back(r.hi + d);
  }
  for (std::int64_t h : hashes) {
    ASSERT_EQ(map.RangeIndex(h), LinearRangeIndex(ranges, h)) << "hash " << h;
  }
}

TEST(ShardMap, RangeIndexAgreesWithLinearScanOnRandomMapsAndHashes) {
  const std::uint64_t seed = TestSeed();
  std::cout << "seed " << seed << " (rerun with SHARDLINE_TEST_SEED=" << seed << ")\n";
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (std::int64_t count : {1, 2, 3, 7, 256, 1000, 65536}) {
    SCOPED_TRACE(::testing::Message() << "equal ranges: " << count);
    auto ranges = EqualRanges(count, count >= 3 ? std::vector<std::string>{"a", "b", "c"}
                                                : std::vector<std::string>{"a"});
    ASSERT_TRUE(ranges.ok()) << ranges.status();
    ShardMapConfig c = TwoNodes();
    c.nodes.push_back(Node("c"));
    c.ranges = *ranges;
    auto map = ShardMap::Create(c);
    ASSERT_TRUE(map.ok()) << map.status();
    ExpectLookupAgreesWithLinearScan(**map, rng, 2000);
  }
  for (int round = 0; round < 30; ++round) {
    // Uniform cuts, and cuts clustered in a narrow window (many ranges in one bucket).
    std::vector<std::int64_t> cuts;
    const int n = static_cast<int>(rng() % 3000);
    const std::int64_t centre = static_cast<std::int64_t>(rng());
    const bool clustered = round % 2 == 1;
    for (int i = 0; i < n; ++i) {
      std::int64_t cut = static_cast<std::int64_t>(rng());
      if (clustered) {
        const std::int64_t offset = static_cast<std::int64_t>(rng() % 100000) - 50000;
        cut = static_cast<std::int64_t>(static_cast<std::uint64_t>(centre) +
                                        static_cast<std::uint64_t>(offset));  // wraps
      }
      cuts.push_back(cut);
    }
    SCOPED_TRACE(::testing::Message() << "round " << round << ", " << n << " cuts"
                                      << (clustered ? " clustered" : ""));
    ShardMapConfig c = CutAt(cuts, rng);
    auto map = ShardMap::Create(c);
    ASSERT_TRUE(map.ok()) << map.status();
    ExpectLookupAgreesWithLinearScan(**map, rng, 2000);
  }
}

TEST(ShardMap, LookupAllocatesNothing) {
#ifdef SHARDLINE_SANITIZED
  GTEST_SKIP() << "allocations are not counted under a sanitizer (see alloc_counter.h)";
#endif
  auto ranges = EqualRanges(65536, {"a", "b"});
  ASSERT_TRUE(ranges.ok());
  ShardMapConfig c = TwoNodes();
  c.ranges = *std::move(ranges);
  auto created = ShardMap::Create(std::move(c));
  ASSERT_TRUE(created.ok()) << created.status();
  const ShardMap& map = **created;
  std::mt19937_64 rng(1);
  std::vector<std::int64_t> ints(10000);
  for (auto& v : ints) v = static_cast<std::int64_t>(rng());
  const std::string text = "alice@example.com";

  // The counter works: a string too long for the small-string buffer allocates.
  volatile std::size_t len = 100;
  const long control_before = ::shardline::testing::AllocationCount();
  { std::string s(len, 'x'); }
  EXPECT_GT(::shardline::testing::AllocationCount(), control_before);

  const long before = ::shardline::testing::AllocationCount();
  std::size_t sum = 0;
  for (std::int64_t k : ints) {
    const std::size_t i = map.RangeIndex(ShardKey(k).Hash());
    sum += i + static_cast<std::size_t>(map.OwnerNodeIndex(i) + map.ReadNodeIndex(i));
    sum += map.RangeIndex(k);  // the raw value as a hash: exercises every bucket
    sum += map.RangeFor(k).hi == k ? 1 : 0;
  }
  sum += map.RangeIndex(ShardKey(text).Hash());
  sum += static_cast<std::size_t>(map.NodeIndex("b"));
  sum += map.FindTable("workout_logs") != nullptr ? 1 : 0;
  const long after = ::shardline::testing::AllocationCount();
  EXPECT_EQ(after - before, 0) << "allocations during lookup (sum " << sum << ")";
}

TEST(EqualRanges, CoverTheWholeSpaceExactlyInEqualContiguousRanges) {
  __extension__ typedef unsigned __int128 U128;
  for (std::int64_t count : {1, 2, 3, 7, 256, 65536}) {
    SCOPED_TRACE(::testing::Message() << "count " << count);
    auto ranges = EqualRanges(count, {"a"});
    ASSERT_TRUE(ranges.ok()) << ranges.status();
    ASSERT_EQ(ranges->size(), static_cast<std::size_t>(count));
    EXPECT_EQ(ranges->front().lo, kMinHash);
    EXPECT_EQ(ranges->back().hi, kMaxHash);
    U128 total = 0;
    U128 smallest = ~U128{0}, largest = 0;
    for (std::size_t i = 0; i < ranges->size(); ++i) {
      const RangeConfig& r = (*ranges)[i];
      ASSERT_LE(r.lo, r.hi) << "range " << i;
      if (i > 0) {
        ASSERT_EQ(r.lo - 1, (*ranges)[i - 1].hi) << "range " << i << " not contiguous";
      }
      const U128 size =
          U128(static_cast<std::uint64_t>(r.hi) - static_cast<std::uint64_t>(r.lo)) + 1;
      total += size;
      smallest = std::min(smallest, size);
      largest = std::max(largest, size);
    }
    EXPECT_TRUE(total == U128{1} << 64) << "sizes do not add up to 2^64";
    EXPECT_TRUE(largest - smallest <= 1) << "ranges are not equal";
    ShardMapConfig c = TwoNodes();
    c.ranges = *ranges;
    EXPECT_TRUE(ShardMap::Create(c).ok());
  }
}

TEST(EqualRanges, TwoRangesSplitAtZero) {
  auto ranges = EqualRanges(2, {"a", "b"});
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0], Range(kMinHash, -1, "a"));
  EXPECT_EQ((*ranges)[1], Range(0, kMaxHash, "b"));
}

TEST(EqualRanges, GivesEachNodeOneContiguousBlockAsEvenlyAsPossible) {
  for (auto [count, nodes] : std::vector<std::pair<int, int>>{
           {3, 3}, {7, 3}, {10, 4}, {256, 3}, {256, 7}, {65536, 5}}) {
    SCOPED_TRACE(::testing::Message() << count << " ranges, " << nodes << " nodes");
    std::vector<std::string> names;
    for (int i = 0; i < nodes; ++i) names.push_back("n" + std::to_string(i));
    auto ranges = EqualRanges(count, names);
    ASSERT_TRUE(ranges.ok()) << ranges.status();
    std::vector<int> per_node(nodes, 0);
    int node = 0;
    for (const RangeConfig& r : *ranges) {
      while (node < nodes && r.node != names[node]) ++node;  // blocks come in node order
      ASSERT_LT(node, nodes) << "node " << r.node << " out of order";
      ++per_node[node];
    }
    const auto [lo, hi] = std::minmax_element(per_node.begin(), per_node.end());
    EXPECT_GE(*lo, 1);
    EXPECT_LE(*hi - *lo, 1);
  }
}

TEST(EqualRanges, RejectsBadCounts) {
  EXPECT_THAT(EqualRanges(0, {"a"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot split the hash space into 0 ranges: the count must be "
                                 "1..1048576")));
  EXPECT_THAT(EqualRanges(kMaxEqualRanges + 1, {"a"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the count must be")));
  EXPECT_THAT(EqualRanges(2, {"a", "b", "c"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot give each of 3 nodes a range with only 2 ranges")));
  EXPECT_THAT(EqualRanges(2, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no node given")));
}

}  // namespace
}  // namespace shardline
