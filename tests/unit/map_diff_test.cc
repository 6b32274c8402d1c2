// Tests of migrate/map_diff.h: differences by hash coverage, independent of how ranges split.
#include "map_diff.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace shardline::migrate {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::int64_t kQuarter = std::int64_t{1} << 62;  // 2^62

// A sharded table, or a reference table when `key` is empty.
TableConfig Table(const std::string& name, const std::string& key) {
  TableConfig t;
  t.name = name;
  t.key = key;
  t.reference = key.empty();
  return t;
}

// A valid map: `nodes` by name (dsn "host=<name>"), `cuts` are the his of every range but the
// last, `owners` one per range.
std::shared_ptr<const ShardMap> Map(std::int64_t version, const std::vector<std::string>& nodes,
                                    const std::vector<std::int64_t>& cuts,
                                    const std::vector<std::string>& owners) {
  ShardMapConfig c;
  c.version = version;
  for (const std::string& n : nodes) {
    NodeConfig node;
    node.name = n;
    node.dsn = "host=" + n;
    c.nodes.push_back(node);
  }
  std::int64_t lo = kMinHash;
  for (std::size_t i = 0; i < owners.size(); ++i) {
    const std::int64_t hi = i < cuts.size() ? cuts[i] : kMaxHash;
    RangeConfig r;
    r.lo = lo;
    r.hi = hi;
    r.node = owners[i];
    c.ranges.push_back(r);
    if (hi != kMaxHash) lo = hi + 1;
  }
  c.tables.push_back(Table("users", "user_id"));
  auto m = ShardMap::Create(std::move(c));
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

TEST(MapDiff, IdenticalMapsDifferOnlyInVersion) {
  auto a = Map(1, {"a", "b"}, {-1}, {"a", "b"});
  auto b = Map(2, {"a", "b"}, {-1}, {"a", "b"});
  const MapDiff d = DiffMaps(*a, *b);
  EXPECT_TRUE(d.Empty());
  EXPECT_EQ(d.version_a, 1);
  EXPECT_EQ(d.version_b, 2);
}

TEST(MapDiff, RangesSplitDifferentlyWithTheSameOwnersAreNoChange) {
  auto a = Map(1, {"a", "b"}, {-1}, {"a", "b"});
  auto b = Map(2, {"a", "b"}, {-kQuarter - 1, -1, kQuarter - 1}, {"a", "a", "b", "b"});
  EXPECT_TRUE(DiffMaps(*a, *b).Empty());
  EXPECT_TRUE(DiffMaps(*b, *a).Empty());
}

TEST(MapDiff, MovedRangeIsReportedWithItsBoundsAndTheAddedNode) {
  auto a = Map(3, {"a", "b"}, {-kQuarter - 1, -1, kQuarter - 1}, {"a", "a", "b", "b"});
  auto b = Map(4, {"a", "b", "c"}, {-kQuarter - 1, -1, kQuarter - 1}, {"a", "c", "b", "b"});
  const MapDiff d = DiffMaps(*a, *b);
  EXPECT_THAT(d.owner_changes, ElementsAre(HashStretchChange{-kQuarter, -1, "a", "c"}));
  EXPECT_THAT(d.nodes_added, ElementsAre("c"));
  EXPECT_THAT(d.nodes_removed, IsEmpty());
  EXPECT_THAT(d.read_changes, IsEmpty());
  EXPECT_DOUBLE_EQ(HashShare(d.owner_changes), 0.25);
}

TEST(MapDiff, DifferentlySplitMovesYieldTheExactStretches) {
  // a: two halves. b: three ranges; the middle one (straddling 0) moved to c.
  auto a = Map(1, {"a", "b", "c"}, {-1}, {"a", "b"});
  auto b = Map(2, {"a", "b", "c"}, {-kQuarter - 1, kQuarter - 1}, {"a", "c", "b"});
  const MapDiff d = DiffMaps(*a, *b);
  EXPECT_THAT(d.owner_changes, ElementsAre(HashStretchChange{-kQuarter, -1, "a", "c"},
                                           HashStretchChange{0, kQuarter - 1, "b", "c"}));
  EXPECT_DOUBLE_EQ(HashShare(d.owner_changes), 0.5);
}

TEST(MapDiff, AdjacentStretchesWithTheSameChangeAreCoalesced) {
  auto a = Map(1, {"a", "b", "c"}, {-kQuarter - 1, -1, kQuarter - 1}, {"a", "a", "b", "b"});
  auto b = Map(2, {"a", "b", "c"}, {-kQuarter - 1, -1, kQuarter - 1}, {"c", "c", "b", "b"});
  EXPECT_THAT(DiffMaps(*a, *b).owner_changes,
              ElementsAre(HashStretchChange{kMinHash, -1, "a", "c"}));
}

TEST(MapDiff, ChangeOfTheLastRangeEndsAtMaxHash) {
  auto a = Map(1, {"a", "b"}, {-1}, {"a", "b"});
  auto b = Map(2, {"a", "b"}, {-1}, {"a", "a"});
  EXPECT_THAT(DiffMaps(*a, *b).owner_changes,
              ElementsAre(HashStretchChange{0, kMaxHash, "b", "a"}));
}

TEST(MapDiff, RemovedAndChangedNodesAreNamedWithoutTheirConnectionStrings) {
  ShardMapConfig ca = Map(1, {"a", "b", "c"}, {-1}, {"a", "b"})->config();
  ShardMapConfig cb = ca;
  cb.version = 2;
  cb.nodes.pop_back();                        // c removed (it owned nothing)
  cb.nodes[1].dsn = "host=b2 password=secret";  // b moved
  cb.nodes[1].pool_max = 32;
  auto a = ShardMap::Create(ca);
  auto b = ShardMap::Create(cb);
  ASSERT_TRUE(a.ok() && b.ok());
  const MapDiff d = DiffMaps(**a, **b);
  EXPECT_THAT(d.nodes_removed, ElementsAre("c"));
  EXPECT_THAT(d.nodes_changed,
              ElementsAre(ElementChange{"b", {"dsn", "pool_max"}}));
  EXPECT_THAT(d.owner_changes, IsEmpty());
}

TEST(MapDiff, TablesAddedRemovedAndChangedAreListed) {
  ShardMapConfig ca = Map(1, {"a"}, {}, {"a"})->config();
  ca.tables = {Table("users", "user_id"), Table("old", "user_id")};
  ShardMapConfig cb = ca;
  cb.version = 2;
  cb.tables = {Table("users", "account_id"), Table("exercises", "")};
  auto a = ShardMap::Create(ca);
  auto b = ShardMap::Create(cb);
  ASSERT_TRUE(a.ok() && b.ok());
  const MapDiff d = DiffMaps(**a, **b);
  EXPECT_THAT(d.tables_added, ElementsAre("exercises"));
  EXPECT_THAT(d.tables_removed, ElementsAre("old"));
  EXPECT_THAT(d.tables_changed, ElementsAre(ElementChange{"users", {"key"}}));
}

TEST(MapDiff, KeyTypeChangeIsReported) {
  ShardMapConfig ca = Map(1, {"a"}, {}, {"a"})->config();
  ShardMapConfig cb = ca;
  cb.key_type = KeyType::kText;
  auto a = ShardMap::Create(ca);
  auto b = ShardMap::Create(cb);
  ASSERT_TRUE(a.ok() && b.ok());
  const MapDiff d = DiffMaps(**a, **b);
  EXPECT_TRUE(d.key_type_changed);
  EXPECT_EQ(d.key_type_b, KeyType::kText);
  EXPECT_FALSE(d.Empty());
}

TEST(MapDiff, SwitchedReadsAreAReadChangeNotAnOwnerChange) {
  ShardMapConfig ca = Map(1, {"a", "b"}, {-1}, {"a", "b"})->config();
  ShardMapConfig cb = ca;
  cb.version = 2;
  cb.ranges[0].read_node = "b";
  cb.ranges[0].state = RangeState::kReadsSwitched;
  auto a = ShardMap::Create(ca);
  auto b = ShardMap::Create(cb);
  ASSERT_TRUE(a.ok() && b.ok());
  const MapDiff d = DiffMaps(**a, **b);
  EXPECT_THAT(d.owner_changes, IsEmpty());
  EXPECT_THAT(d.read_changes, ElementsAre(HashStretchChange{kMinHash, -1, "a", "b"}));
}

TEST(MapDiff, HashShareCountsInclusiveBounds) {
  EXPECT_DOUBLE_EQ(HashShare(kMinHash, kMaxHash), 1.0);
  EXPECT_DOUBLE_EQ(HashShare(kMinHash, -1), 0.5);
  EXPECT_DOUBLE_EQ(HashShare(0, 0), 1.0 / 18446744073709551616.0);
  EXPECT_DOUBLE_EQ(HashShare(5, 4), 0.0);
}

// Random maps split at random points: at every boundary of either map (and next to it) the
// diff says a change exactly when the owners differ; stretches are sorted, disjoint and
// maximal.
TEST(MapDiff, RandomMapsAgreeWithPointLookups) {
  const unsigned seed = std::random_device{}();
  std::printf("MapDiff.RandomMapsAgreeWithPointLookups seed: %u\n", seed);
  std::mt19937_64 rng(seed);
  const std::vector<std::string> nodes = {"a", "b", "c", "d"};
  auto random_map = [&](std::int64_t version) {
    std::uniform_int_distribution<int> count(1, 40);
    std::vector<std::int64_t> cuts(static_cast<std::size_t>(count(rng)) - 1);
    // Small cut values are more likely to coincide between the two maps.
    for (auto& c : cuts) {  // one of 64 evenly spaced points: kMinHash + k * 2^58
      c = static_cast<std::int64_t>(static_cast<std::uint64_t>(kMinHash) +
                                    (rng() % 64) * (std::uint64_t{1} << 58));
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    while (!cuts.empty() && cuts.back() == kMaxHash) cuts.pop_back();
    std::vector<std::string> owners(cuts.size() + 1);
    for (auto& o : owners) o = nodes[rng() % 3];  // d never owns: tests "no range" nodes too
    return Map(version, nodes, cuts, owners);
  };
  for (int round = 0; round < 200; ++round) {
    auto a = random_map(1);
    auto b = random_map(2);
    const MapDiff d = DiffMaps(*a, *b);
    std::vector<std::int64_t> probes = {kMinHash, kMaxHash, 0, -1};
    for (const auto* m : {a.get(), b.get()}) {
      for (const RangeConfig& r : m->ranges()) {
        probes.push_back(r.lo);
        probes.push_back(r.hi);
        if (r.hi != kMaxHash) probes.push_back(r.hi + 1);
        if (r.lo != kMinHash) probes.push_back(r.lo - 1);
      }
    }
    for (std::int64_t h : probes) {
      const std::string& owner_a = a->nodes()[a->OwnerNodeIndex(a->RangeIndex(h))].name;
      const std::string& owner_b = b->nodes()[b->OwnerNodeIndex(b->RangeIndex(h))].name;
      const HashStretchChange* found = nullptr;
      for (const HashStretchChange& c : d.owner_changes) {
        if (c.lo <= h && h <= c.hi) found = &c;
      }
      if (owner_a == owner_b) {
        EXPECT_EQ(found, nullptr) << "seed " << seed << " hash " << h;
      } else {
        ASSERT_NE(found, nullptr) << "seed " << seed << " hash " << h;
        EXPECT_EQ(found->from, owner_a) << "seed " << seed;
        EXPECT_EQ(found->to, owner_b) << "seed " << seed;
      }
    }
    for (std::size_t i = 1; i < d.owner_changes.size(); ++i) {
      const HashStretchChange& p = d.owner_changes[i - 1];
      const HashStretchChange& c = d.owner_changes[i];
      EXPECT_LT(p.hi, c.lo) << "seed " << seed;
      EXPECT_FALSE(p.hi + 1 == c.lo && p.from == c.from && p.to == c.to)
          << "seed " << seed << ": adjacent stretches not coalesced";
    }
  }
}

}  // namespace
}  // namespace shardline::migrate
