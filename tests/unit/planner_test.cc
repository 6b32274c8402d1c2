// Unit tests of the rebalance planner (migrate/planner.cc), its plan file (migrate/plan_toml.cc)
// and its dry-run table (migrate/plan_report.cc): minimal movement and the tolerance for 1..8
// equal nodes plus one, skewed sizes, a hot range split, a drained node, balancing by range count,
// exact errors for invalid input, determinism, a valid resulting map, and the plan file's round
// trip with file:line errors. Node loads after a plan are recomputed here from the resulting map
// and the stats (uniform hashing), independently of the planner's own bookkeeping.
// Randomised cases print their seed; set SHARDLINE_TEST_SEED to rerun one.
#include "planner.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "plan_report.h"
#include "plan_toml.h"
#include "shardline/map_toml.h"
#include "status_matchers.h"

namespace shardline::migrate {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using ::shardline::testing::StatusIs;

constexpr std::string_view kPassword = "s3cret-Pw";

std::string NodeName(int i) { return fmt::format("n{}", i); }

NodeConfig Node(const std::string& name) {
  NodeConfig n;
  n.name = name;
  n.dsn = fmt::format("host=127.0.0.1 port=5432 dbname=app user=app password={}", kPassword);
  return n;
}

// A map of `nodes` nodes and `ranges` equal ranges in contiguous blocks.
ShardMapConfig MakeMap(int nodes, int ranges, std::int64_t version = 7) {
  ShardMapConfig c;
  c.version = version;
  std::vector<std::string> names;
  for (int i = 0; i < nodes; ++i) {
    names.push_back(NodeName(i));
    c.nodes.push_back(Node(names.back()));
  }
  absl::StatusOr<std::vector<RangeConfig>> r = EqualRanges(ranges, names);
  EXPECT_TRUE(r.ok()) << r.status();
  c.ranges = *r;
  TableConfig t;
  t.name = "public.users";
  t.key = "user_id";
  c.tables.push_back(t);
  return c;
}

// Stats with `bytes_of(i)` bytes and bytes/100 rows for range i of `map`.
template <typename F>
std::vector<RangeStats> MakeStats(const ShardMapConfig& map, F bytes_of) {
  std::vector<RangeStats> out;
  for (std::size_t i = 0; i < map.ranges.size(); ++i) {
    const std::int64_t b = bytes_of(i);
    out.push_back(RangeStats{map.ranges[i].lo, map.ranges[i].hi, b / 100, b});
  }
  return out;
}

// Stats giving every node `per_node` bytes, shared over its ranges by `weights` (>0).
std::vector<RangeStats> EqualNodeStats(const ShardMapConfig& map, std::int64_t per_node,
                                       const std::vector<double>& weights) {
  std::map<std::string, double> sum;
  for (std::size_t i = 0; i < map.ranges.size(); ++i) sum[map.ranges[i].node] += weights[i];
  return MakeStats(map, [&](std::size_t i) {
    return static_cast<std::int64_t>(std::llround(per_node * weights[i] /
                                                  sum[map.ranges[i].node]));
  });
}

long double Span(std::int64_t lo, std::int64_t hi) {
  return static_cast<long double>(static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo)) +
         1.0L;
}

// Bytes per node of `map` when each stats entry is spread uniformly over its hash span.
std::map<std::string, long double> LoadsOf(const ShardMapConfig& map,
                                           const std::vector<RangeStats>& stats) {
  std::map<std::string, long double> loads;
  for (const NodeConfig& n : map.nodes) loads[n.name] = 0;
  std::vector<RangeConfig> ranges = map.ranges;
  std::sort(ranges.begin(), ranges.end(),
            [](const RangeConfig& a, const RangeConfig& b) { return a.lo < b.lo; });
  for (const RangeStats& s : stats) {
    for (const RangeConfig& r : ranges) {
      const std::int64_t lo = std::max(r.lo, s.lo);
      const std::int64_t hi = std::min(r.hi, s.hi);
      if (lo > hi) continue;
      loads[r.node] += s.bytes * Span(lo, hi) / Span(s.lo, s.hi);
    }
  }
  return loads;
}

// Checks the invariants every plan must meet: the result validates, has the next version, keeps
// the hash space, and the moves are exactly the ranges whose owner changed.
void ExpectConsistent(const ShardMapConfig& current, const PlanRequest& request,
                      const RebalancePlan& plan) {
  absl::StatusOr<std::shared_ptr<const ShardMap>> before = ShardMap::Create(current);
  ASSERT_TRUE(before.ok()) << before.status();
  absl::StatusOr<std::shared_ptr<const ShardMap>> after = ShardMap::Create(plan.result);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(plan.result.version, current.version + 1);
  EXPECT_EQ(plan.source_map_version, current.version);
  EXPECT_EQ(plan.result.nodes.size(), current.nodes.size() + request.add_nodes.size());
  EXPECT_TRUE(std::is_sorted(plan.result.ranges.begin(), plan.result.ranges.end(),
                             [](const RangeConfig& a, const RangeConfig& b) { return a.lo < b.lo; }));
  std::size_t m = 0;
  std::int64_t bytes_moved = 0;
  for (const RangeConfig& r : plan.result.ranges) {
    EXPECT_EQ(r.state, RangeState::kStable);
    // A result range lies inside one current range (splits only, no merges across ranges).
    const RangeConfig& old_lo = (*before)->RangeFor(r.lo);
    const RangeConfig& old_hi = (*before)->RangeFor(r.hi);
    EXPECT_EQ(old_lo.lo, old_hi.lo) << "range " << r.lo << ".." << r.hi << " spans two ranges";
    if (old_lo.node != r.node) {
      ASSERT_LT(m, plan.moves.size());
      const RangeMove& mv = plan.moves[m++];
      EXPECT_EQ(mv.lo, r.lo);
      EXPECT_EQ(mv.hi, r.hi);
      EXPECT_EQ(mv.from, old_lo.node);
      EXPECT_EQ(mv.to, r.node);
      bytes_moved += mv.bytes;
    }
  }
  EXPECT_EQ(m, plan.moves.size());
  EXPECT_EQ(plan.bytes_moved, bytes_moved);
  EXPECT_EQ(plan.ranges_moved, static_cast<std::int64_t>(plan.moves.size()));
  EXPECT_EQ(plan.splits, static_cast<std::int64_t>(plan.result.ranges.size()) -
                             static_cast<std::int64_t>(current.ranges.size()));
  for (const std::string& name : request.remove_nodes) {
    EXPECT_TRUE((*after)->OwnedRanges((*after)->NodeIndex(name)).empty())
        << "removed node " << name << " still owns ranges";
  }
}

// Every remaining node's load (recomputed from the stats) is within `tolerance` % of the mean.
void ExpectWithinTolerance(const RebalancePlan& plan, const std::vector<RangeStats>& stats,
                           const std::vector<std::string>& removed, double tolerance) {
  std::map<std::string, long double> loads = LoadsOf(plan.result, stats);
  long double total = 0;
  int active = 0;
  for (const auto& [name, load] : loads) {
    total += load;
    if (std::find(removed.begin(), removed.end(), name) == removed.end()) ++active;
  }
  const long double mean = total / active;
  for (const auto& [name, load] : loads) {
    if (std::find(removed.begin(), removed.end(), name) != removed.end()) {
      EXPECT_EQ(load, 0) << name;
      continue;
    }
    EXPECT_LE(std::fabs(static_cast<double>((load - mean) / mean * 100)), tolerance)
        << "node " << name << " has " << static_cast<double>(load) << " bytes, mean "
        << static_cast<double>(mean);
  }
  EXPECT_LE(plan.max_deviation_percent, tolerance);
}

std::uint32_t Seed(std::uint32_t fallback) {
  if (const char* env = std::getenv("SHARDLINE_TEST_SEED")) {
    return static_cast<std::uint32_t>(std::strtoul(env, nullptr, 10));
  }
  return fallback;
}

TEST(Planner, AddingOneNodeToEqualNodesMovesNearTheMinimumAndBalances) {
  for (int n = 1; n <= 8; ++n) {
    for (int ranges : {64, 256, 1024}) {
      SCOPED_TRACE(fmt::format("{} equal nodes + 1, {} ranges", n, ranges));
      const ShardMapConfig map = MakeMap(n, ranges);
      const std::int64_t per_node = 10'000'000'000;
      PlanRequest req;
      req.stats = EqualNodeStats(map, per_node, std::vector<double>(map.ranges.size(), 1.0));
      req.add_nodes.push_back(Node("new"));
      absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
      ASSERT_TRUE(plan.ok()) << plan.status();
      ExpectConsistent(map, req, *plan);
      const double total = static_cast<double>(per_node) * n;
      EXPECT_NEAR(plan->min_bytes_moved, total / (n + 1), 2.0 * ranges);
      EXPECT_LE(plan->bytes_moved, 1.05 * total / (n + 1));
      ExpectWithinTolerance(*plan, req.stats, {}, 5.0);
      EXPECT_THAT(plan->warnings, IsEmpty());
      for (const RangeMove& m : plan->moves) EXPECT_EQ(m.to, "new");
    }
  }
}

TEST(Planner, AddingOneNodeToEqualNodesWithRandomRangeSizesMovesNearTheMinimum) {
  const std::uint32_t seed = Seed(std::random_device{}());
  std::cout << "seed " << seed << " (rerun with SHARDLINE_TEST_SEED=" << seed << ")\n";
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  for (int n = 1; n <= 8; ++n) {
    SCOPED_TRACE(fmt::format("{} equal nodes + 1", n));
    const ShardMapConfig map = MakeMap(n, 256);
    std::lognormal_distribution<double> size(0.0, 1.0);
    std::vector<double> weights;
    for (std::size_t i = 0; i < map.ranges.size(); ++i) weights.push_back(size(rng));
    PlanRequest req;
    req.stats = EqualNodeStats(map, 1'000'000'000, weights);
    req.add_nodes.push_back(Node("new"));
    absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ExpectConsistent(map, req, *plan);
    const double total = 1e9 * n;
    EXPECT_LE(plan->bytes_moved, 1.05 * total / (n + 1));
    ExpectWithinTolerance(*plan, req.stats, {}, 5.0);
  }
}

TEST(Planner, SkewedNodesAreBalancedMovingLittleMoreThanTheExcess) {
  const std::uint32_t seed = Seed(std::random_device{}());
  std::cout << "seed " << seed << " (rerun with SHARDLINE_TEST_SEED=" << seed << ")\n";
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  // Four nodes holding 1x, 2x, 3x and 0.5x; random range sizes inside each node.
  const ShardMapConfig map = MakeMap(4, 512);
  const double node_scale[] = {1.0, 2.0, 3.0, 0.5};
  std::uniform_real_distribution<double> size(0.2, 1.8);
  std::map<std::string, int> index = {{"n0", 0}, {"n1", 1}, {"n2", 2}, {"n3", 3}};
  PlanRequest req;
  req.stats = MakeStats(map, [&](std::size_t i) {
    return static_cast<std::int64_t>(1e7 * size(rng) * node_scale[index[map.ranges[i].node]]);
  });
  for (double tol : {1.0, 5.0, 20.0}) {
    SCOPED_TRACE(fmt::format("tolerance {}%", tol));
    req.tolerance_percent = tol;
    absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ExpectConsistent(map, req, *plan);
    ExpectWithinTolerance(*plan, req.stats, {}, tol);
    EXPECT_LE(plan->bytes_moved, 1.05 * plan->min_bytes_moved);
    // Only the nodes above the mean give; only those below receive.
    for (const RangeMove& m : plan->moves) {
      EXPECT_THAT(m.from, AnyOf(std::string("n1"), std::string("n2")));
      EXPECT_THAT(m.to, AnyOf(std::string("n0"), std::string("n3")));
    }
  }
}

TEST(Planner, HotRangeIsSplitAndSpread) {
  // One range holds 60% of the data; the other 63 share the rest.
  const ShardMapConfig map = MakeMap(4, 64);
  const std::size_t hot = 5;
  PlanRequest req;
  req.stats = MakeStats(map, [&](std::size_t i) -> std::int64_t {
    return i == hot ? 600'000'000 : 400'000'000 / 63;
  });
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  ExpectWithinTolerance(*plan, req.stats, {}, 5.0);
  EXPECT_GT(plan->splits, 0);
  EXPECT_LE(plan->bytes_moved, 1.05 * plan->min_bytes_moved);
  // The hot range no longer exists as one range; its pieces sit on several nodes.
  std::set<std::string> owners;
  for (const RangeConfig& r : plan->result.ranges) {
    EXPECT_FALSE(r.lo == map.ranges[hot].lo && r.hi == map.ranges[hot].hi);
    if (r.lo >= map.ranges[hot].lo && r.hi <= map.ranges[hot].hi) owners.insert(r.node);
  }
  EXPECT_GE(owners.size(), 3u);
  // Estimated rows and bytes of the moves add up to the summary.
  std::int64_t bytes = 0;
  for (const RangeMove& m : plan->moves) bytes += m.bytes;
  EXPECT_EQ(bytes, plan->bytes_moved);
}

TEST(Planner, RangeAboveTheTargetIsSplitEvenWhenNothingIsAdded) {
  // Two nodes, one range each; node n0's range holds 90%: its range must be split to balance.
  const ShardMapConfig map = MakeMap(2, 2);
  PlanRequest req;
  req.stats = MakeStats(map, [](std::size_t i) -> std::int64_t { return i == 0 ? 900 : 100; });
  req.stats[0].bytes = 900'000'000;
  req.stats[1].bytes = 100'000'000;
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  ExpectWithinTolerance(*plan, req.stats, {}, 5.0);
  EXPECT_GT(plan->splits, 0);
  EXPECT_LE(plan->bytes_moved, 1.05 * plan->min_bytes_moved);
  EXPECT_EQ(plan->min_bytes_moved, 400'000'000);
}

TEST(Planner, RemovedNodeIsDrainedCompletelyAndStaysListed) {
  const ShardMapConfig map = MakeMap(4, 256);
  PlanRequest req;
  req.stats = MakeStats(map, [](std::size_t i) -> std::int64_t {
    return 1'000'000 + static_cast<std::int64_t>(i % 7) * 100'000;
  });
  req.remove_nodes = {"n2"};
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  ExpectWithinTolerance(*plan, req.stats, {"n2"}, 5.0);
  ASSERT_EQ(plan->nodes.size(), 4u);
  EXPECT_EQ(plan->nodes[2].name, "n2");
  EXPECT_EQ(plan->nodes[2].role, NodeRole::kRemoved);
  EXPECT_EQ(plan->nodes[2].ranges_after, 0);
  EXPECT_EQ(plan->nodes[2].bytes_after, 0);
  EXPECT_EQ(plan->result.nodes[2].name, "n2");  // kept for its dsn (copy, cleanup)
  // Everything n2 held moved, and nothing else had to.
  EXPECT_EQ(plan->min_bytes_moved, plan->nodes[2].bytes_before);
  EXPECT_LE(plan->bytes_moved, 1.05 * plan->min_bytes_moved);
  for (const RangeMove& m : plan->moves) EXPECT_EQ(m.from, "n2");
}

TEST(Planner, ReplacingANodeMovesItsRangesToTheNewOne) {
  const ShardMapConfig map = MakeMap(3, 96);
  PlanRequest req;
  req.stats = MakeStats(map, [](std::size_t) -> std::int64_t { return 1'000'000; });
  req.remove_nodes = {"n0"};
  req.add_nodes = {Node("n9")};
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  ExpectWithinTolerance(*plan, req.stats, {"n0"}, 5.0);
  // Each of n0's 32 ranges moves whole to the new node (ranges are never merged).
  ASSERT_EQ(plan->moves.size(), 32u);
  for (const RangeMove& m : plan->moves) {
    EXPECT_EQ(m.from, "n0");
    EXPECT_EQ(m.to, "n9");
  }
  EXPECT_EQ(plan->bytes_moved, 32'000'000);
  EXPECT_EQ(plan->splits, 0);
}

TEST(Planner, ReplicasGoToTheNamedNodesOfTheResultOnce) {
  const ShardMapConfig map = MakeMap(2, 16);
  PlanRequest req;
  req.mode = BalanceMode::kRanges;
  req.add_nodes.push_back(Node("n9"));
  req.replicas = {{"n9", "host=r9a"}, {"n1", "host=r1"}, {"n9", "host=r9b"}, {"n9", "host=r9a"}};
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->result.nodes.size(), 3u);
  EXPECT_THAT(plan->result.nodes[0].replicas, IsEmpty());
  EXPECT_THAT(plan->result.nodes[1].replicas, ElementsAre("host=r1"));
  EXPECT_THAT(plan->result.nodes[2].replicas, ElementsAre("host=r9a", "host=r9b"));
}

TEST(Planner, ReplicaOfAnUnknownNodeOrWithoutDsnIsRefused) {
  const ShardMapConfig map = MakeMap(2, 16);
  PlanRequest req;
  req.mode = BalanceMode::kRanges;
  req.replicas = {{"n7", "host=r7"}};
  EXPECT_THAT(PlanRebalance(map, req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("replica for node 'n7': map version 7 has no such node")));
  req.replicas = {{"n1", ""}};
  EXPECT_THAT(PlanRebalance(map, req), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("replica for node 'n1': its dsn is empty")));
}

TEST(Planner, ByRangesBalancesRangeCountsWithoutStatsOrSplits) {
  const ShardMapConfig map = MakeMap(3, 256);
  PlanRequest req;
  req.mode = BalanceMode::kRanges;
  req.add_nodes.push_back(Node("new"));
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  EXPECT_EQ(plan->splits, 0);
  // 85, 85, 86 ranges: 64 would be exact; the tolerance (5% of 64 = 3.2 ranges) allows less.
  EXPECT_EQ(plan->min_ranges_moved, 64);
  EXPECT_LE(plan->ranges_moved, 64);
  for (const NodeBalance& n : plan->nodes) {
    EXPECT_LE(std::abs(n.ranges_after - 64), 3) << n.name;
    EXPECT_EQ(n.bytes_after, 0);
  }
  EXPECT_LE(plan->max_deviation_percent, 5.0);
  EXPECT_THAT(plan->warnings, IsEmpty());
}

TEST(Planner, ByRangesWarnsWhenTooFewRangesToReachTheTolerance) {
  const ShardMapConfig map = MakeMap(2, 8);
  PlanRequest req;
  req.mode = BalanceMode::kRanges;
  req.add_nodes.push_back(Node("new"));
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  std::vector<std::int64_t> counts;
  for (const NodeBalance& n : plan->nodes) counts.push_back(n.ranges_after);
  std::sort(counts.begin(), counts.end());
  EXPECT_EQ(counts, (std::vector<std::int64_t>{2, 3, 3}));
  EXPECT_EQ(plan->ranges_moved, 2);
  ASSERT_EQ(plan->warnings.size(), 1u);
  EXPECT_THAT(plan->warnings[0],
              AllOf(HasSubstr("beyond the tolerance of 5%"),
                    HasSubstr("8 ranges cannot be spread over 3 nodes more evenly")));
}

TEST(Planner, BySizeWithoutStatsDrainsOnlyAndWarns) {
  const ShardMapConfig map = MakeMap(3, 30);
  PlanRequest req;
  req.remove_nodes = {"n1"};
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  EXPECT_EQ(plan->nodes[0].ranges_after, 15);  // the empty ranges are shared by count
  EXPECT_EQ(plan->nodes[2].ranges_after, 15);
  ASSERT_EQ(plan->warnings.size(), 1u);
  EXPECT_THAT(plan->warnings[0], HasSubstr("no size estimates"));
}

TEST(Planner, SingleHashValueRangeThatCannotBeSplitIsReportedInAWarning) {
  ShardMapConfig map = MakeMap(2, 2);
  // n0 owns [min, -1] as [min, -2] + [-1, -1]; the one-value range holds everything.
  auto range = [](std::int64_t lo, std::int64_t hi, const char* node) {
    RangeConfig r;
    r.lo = lo;
    r.hi = hi;
    r.node = node;
    return r;
  };
  map.ranges = {range(kMinHash, -2, "n0"), range(-1, -1, "n0"), range(0, kMaxHash, "n1")};
  PlanRequest req;
  req.stats = {RangeStats{-1, -1, 10, 1000}};
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  ASSERT_EQ(plan->warnings.size(), 1u);
  EXPECT_THAT(plan->warnings[0],
              HasSubstr("range -1..-1 is a single hash value holding 1000 bytes and cannot be "
                        "split"));
  // Draining its node moves it all the same.
  req.remove_nodes = {"n0"};
  req.add_nodes = {Node("n2")};
  plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectConsistent(map, req, *plan);
  EXPECT_EQ(plan->nodes[0].ranges_after, 0);
  EXPECT_EQ(plan->bytes_moved, 1000);
}

TEST(Planner, StatsStraddlingRangesAreSharedByHashSpan) {
  const ShardMapConfig map = MakeMap(2, 4);
  PlanRequest req;
  req.stats = {RangeStats{kMinHash, kMaxHash, 4000, 400'000}};  // one entry for everything
  req.mode = BalanceMode::kRanges;
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->total_bytes, 400'000);
  EXPECT_EQ(plan->total_rows, 4000);
  EXPECT_EQ(plan->nodes[0].bytes_before, 200'000);
  EXPECT_EQ(plan->nodes[1].bytes_before, 200'000);
  EXPECT_THAT(plan->moves, IsEmpty());
}

TEST(Planner, InvalidInputsAreRefusedWithExactMessages) {
  const ShardMapConfig map = MakeMap(3, 12);
  auto plan = [&map](PlanRequest req) { return PlanRebalance(map, req).status(); };
  PlanRequest req;
  req.remove_nodes = {"zz"};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "cannot remove node 'zz': map version 7 has no such node"));
  req = {};
  req.remove_nodes = {"n1", "n1"};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "node 'n1' is named twice in the nodes to remove"));
  req = {};
  req.add_nodes = {Node("n1")};
  EXPECT_THAT(plan(req),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "cannot add node 'n1': map version 7 already has a node of that name"));
  req = {};
  req.add_nodes = {Node("x"), Node("x")};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "node 'x' is named twice in the nodes to add"));
  req = {};
  req.add_nodes = {Node("")};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "cannot add a node with an empty name"));
  req = {};
  req.add_nodes = {Node("x")};
  req.add_nodes[0].dsn.clear();
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "cannot add node 'x': its dsn is empty"));
  req = {};
  req.add_nodes = {Node("x")};
  req.add_nodes[0].dsn = "host='unterminated";
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("the resulting map is invalid: node 'x': dsn is not "
                                            "a valid libpq connection string")));
  req = {};
  req.remove_nodes = {"n0", "n1", "n2"};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "cannot remove every node: no node would be left to own the "
                                  "ranges"));
  req.add_nodes = {Node("x")};  // replacing every node is fine
  EXPECT_TRUE(plan(req).ok()) << plan(req);
  for (double tol : {0.0, 0.05, 100.5, -5.0, std::nan("")}) {
    req = {};
    req.tolerance_percent = tol;
    EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                    fmt::format("tolerance must be between 0.1 and 100 percent, "
                                                "got {}", tol)));
  }
  req = {};
  req.stats = {RangeStats{5, 4, 0, 0}};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "stats for range 5..4: lo is greater than hi"));
  req.stats = {RangeStats{4, 5, 1, -1}};
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                  "stats for range 4..5: rows (1) and bytes (-1) must not be "
                                  "negative"));
  req = {};
  req.mode = static_cast<BalanceMode>(9);
  EXPECT_THAT(plan(req), StatusIs(absl::StatusCode::kInvalidArgument, "unknown balance mode 9"));

  ShardMapConfig moving = map;
  moving.ranges[3].state = RangeState::kCopying;
  moving.ranges[3].read_node = "n2";
  EXPECT_THAT(PlanRebalance(moving, {}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(fmt::format("range {}..{} is copying (moving from node "
                                                   "'n0' to node 'n2')",
                                                   map.ranges[3].lo, map.ranges[3].hi)),
                             HasSubstr("finish it or roll it back"))));
  ShardMapConfig broken = map;
  broken.ranges.pop_back();
  EXPECT_THAT(PlanRebalance(broken, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("the current map (version 7) is invalid: "),
                             HasSubstr("not covered"))));
}

TEST(Planner, SameInputGivesTheSamePlanWhateverTheOrderOfRangesAndStats) {
  const std::uint32_t seed = Seed(std::random_device{}());
  std::cout << "seed " << seed << " (rerun with SHARDLINE_TEST_SEED=" << seed << ")\n";
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  const ShardMapConfig map = MakeMap(5, 300);
  std::uniform_int_distribution<std::int64_t> size(0, 50'000'000);
  PlanRequest req;
  req.stats = MakeStats(map, [&](std::size_t) { return size(rng); });
  req.add_nodes = {Node("x"), Node("y")};
  req.remove_nodes = {"n3"};
  absl::StatusOr<RebalancePlan> a = PlanRebalance(map, req);
  absl::StatusOr<RebalancePlan> b = PlanRebalance(map, req);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  ShardMapConfig shuffled = map;
  std::shuffle(shuffled.ranges.begin(), shuffled.ranges.end(), rng);
  std::shuffle(req.stats.begin(), req.stats.end(), rng);
  absl::StatusOr<RebalancePlan> c = PlanRebalance(shuffled, req);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*a, *c);
}

TEST(Planner, RandomMapsKeepEveryInvariant) {
  const std::uint32_t seed = Seed(std::random_device{}());
  std::cout << "seed " << seed << " (rerun with SHARDLINE_TEST_SEED=" << seed << ")\n";
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 rng(seed);
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    const int nodes = std::uniform_int_distribution<int>(1, 12)(rng);
    const int ranges = std::uniform_int_distribution<int>(nodes, 400)(rng);
    const ShardMapConfig map = MakeMap(nodes, ranges);
    std::lognormal_distribution<double> size(10.0, 2.0);
    PlanRequest req;
    req.stats = MakeStats(map, [&](std::size_t) {
      return static_cast<std::int64_t>(std::min(size(rng), 1e12));
    });
    req.tolerance_percent = std::uniform_real_distribution<double>(1.0, 25.0)(rng);
    const int add = std::uniform_int_distribution<int>(0, 3)(rng);
    for (int i = 0; i < add; ++i) req.add_nodes.push_back(Node(fmt::format("add{}", i)));
    for (int i = 0; i < nodes; ++i) {
      if (nodes + add - static_cast<int>(req.remove_nodes.size()) > 1 &&
          std::uniform_int_distribution<int>(0, 4)(rng) == 0) {
        req.remove_nodes.push_back(NodeName(i));
      }
    }
    absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ExpectConsistent(map, req, *plan);
    ExpectWithinTolerance(*plan, req.stats, req.remove_nodes, req.tolerance_percent);
    EXPECT_THAT(plan->warnings, IsEmpty());
    // No plan within the tolerance can move less than what lies above mean * (1 + tolerance).
    long double must_move = 0;
    const long double mean = static_cast<long double>(plan->total_bytes) /
                             (nodes + add - static_cast<int>(req.remove_nodes.size()));
    for (const NodeBalance& n : plan->nodes) {
      must_move += n.role == NodeRole::kRemoved
                       ? n.bytes_before
                       : std::max(0.0L, n.bytes_before - mean * (1 + req.tolerance_percent / 100));
    }
    EXPECT_GE(plan->bytes_moved, must_move - ranges);
    EXPECT_LE(plan->bytes_moved, 1.05 * plan->min_bytes_moved + 1);
    if (plan->bytes_moved > 1.05 * plan->min_bytes_moved + 1) {
      std::cout << PlanReportText(*plan, {.max_moves = 200});
    }
    std::int64_t total = 0;
    for (const NodeBalance& n : plan->nodes) total += n.bytes_after;
    EXPECT_EQ(total, plan->total_bytes);
  }
}

// ---- plan file ----

RebalancePlan SamplePlan() {
  const ShardMapConfig map = MakeMap(3, 48);
  PlanRequest req;
  req.stats = MakeStats(map, [](std::size_t i) -> std::int64_t {
    return i == 7 ? 90'000'000 : 1'000'000 + static_cast<std::int64_t>(i) * 1000;
  });
  req.add_nodes = {Node("new")};
  req.remove_nodes = {"n1"};
  absl::StatusOr<RebalancePlan> plan = PlanRebalance(map, req);
  EXPECT_TRUE(plan.ok()) << plan.status();
  plan->created_at = "2026-11-28T10:15:00Z";
  plan->warnings.push_back("a \"quoted\" warning\nwith a newline");
  return *plan;
}

TEST(PlanToml, RoundTripsEveryField) {
  const RebalancePlan plan = SamplePlan();
  ASSERT_FALSE(plan.moves.empty());
  const std::string text = PlanToToml(plan);
  absl::StatusOr<ParsedPlan> parsed = ParsePlanToml(text, "plan.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->plan, plan);
  EXPECT_THAT(parsed->warnings, IsEmpty());
  ASSERT_NE(parsed->result_map, nullptr);
  EXPECT_EQ(parsed->result_map->config(), plan.result);
  // The plan keeps passwords (backfill connects with them).
  EXPECT_THAT(text, HasSubstr(kPassword));
}

TEST(PlanToml, MapTextWithTripleQuotesIsEmbeddedEscaped) {
  RebalancePlan plan = SamplePlan();
  plan.result.tables[0].name = "we'''ird\\\"name";
  const std::string text = PlanToToml(plan);
  EXPECT_THAT(text, HasSubstr("toml = \"\"\""));
  absl::StatusOr<ParsedPlan> parsed = ParsePlanToml(text, "plan.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->plan, plan);
}

int LineOfText(const std::string& text, std::string_view needle) {
  const std::size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + pos, '\n'));
}

TEST(PlanToml, ErrorsInsideTheResultMapNameThePlanFileLine) {
  std::string text = PlanToToml(SamplePlan());
  const std::string from = "key_type = \"bigint\"";
  const int line = LineOfText(text, from);
  text.replace(text.find(from), from.size(), "key_type = \"float\"");
  EXPECT_THAT(ParsePlanToml(text, "p.toml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(fmt::format("p.toml:{}: ", line)),
                             HasSubstr("float"))));
}

TEST(PlanToml, UnknownFieldsWarnWithTheirLine) {
  std::string text = PlanToToml(SamplePlan());
  const int line = LineOfText(text, "mode = ") + 1;
  text.insert(text.find("mode = "), "colour = 1\n");
  absl::StatusOr<ParsedPlan> parsed = ParsePlanToml(text, "p.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->warnings,
              Contains(fmt::format("p.toml:{}: unknown field 'colour' in [plan] (ignored)", line - 1)));
}

TEST(PlanToml, MovesInconsistentWithTheResultMapAreRefused) {
  const RebalancePlan plan = SamplePlan();
  const RangeMove& m = plan.moves[0];
  {
    RebalancePlan bad = plan;
    bad.moves[0].to = bad.moves[0].from;
    const std::string text = PlanToToml(bad);
    EXPECT_THAT(ParsePlanToml(text, "p.toml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(fmt::format("moves[0] (range {}..{}): from and to are "
                                                     "both '{}'", m.lo, m.hi, m.from)),
                               HasSubstr(fmt::format("gives this range to '{}', not to '{}'",
                                                     m.to, m.from)))));
  }
  {
    RebalancePlan bad = plan;
    bad.moves[0].hi = bad.moves[0].lo;
    const std::string text = PlanToToml(bad);
    const int line = LineOfText(text, "[[moves]]");
    EXPECT_THAT(ParsePlanToml(text, "p.toml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(fmt::format("p.toml:{}: moves[0] (range {}..{}): not a range "
                                               "of the map in [result_map]",
                                               line, m.lo, m.lo))));
  }
  {
    RebalancePlan bad = plan;
    bad.moves.push_back(bad.moves[0]);
    EXPECT_THAT(ParsePlanToml(PlanToToml(bad), "p.toml").status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(fmt::format("moves[{}] (range {}..{}): moved twice (also "
                                               "moves[0])", bad.moves.size() - 1, m.lo, m.hi))));
  }
}

TEST(PlanToml, HeaderProblemsAreRefused) {
  const std::string text = PlanToToml(SamplePlan());
  std::string future = text;
  future.replace(future.find("format_version = 1"), 18, "format_version = 2");
  EXPECT_THAT(ParsePlanToml(future, "p.toml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("p.toml:5: plan.format_version: unsupported plan format 2 (this "
                                 "shardline reads format 1)")));
  std::string no_mode = text;
  no_mode.replace(no_mode.find("mode = \"size\""), 13, "mode = 3");
  EXPECT_THAT(ParsePlanToml(no_mode, "p.toml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("plan.mode: expected a string, got integer")));
  EXPECT_THAT(ParsePlanToml("[plan]\nformat_version = 1\n", "p.toml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("p.toml:1: plan: missing 'mode'"),
                             HasSubstr("p.toml: missing [result_map] table"))));
  EXPECT_THAT(ParsePlanToml("[plan\n", "p.toml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("p.toml:1:")));
}

TEST(PlanToml, WrittenFileIsPrivateAndLoadsBack) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / fmt::format("planner_test_{}", ::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "plan.toml").string();
  const RebalancePlan plan = SamplePlan();
  ASSERT_TRUE(WritePlanFile(path, plan).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<ParsedPlan> loaded = LoadPlanFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->plan, plan);
  EXPECT_THAT(LoadPlanFile((dir / "missing.toml").string()).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.toml")));
  EXPECT_THAT(WritePlanFile((dir / "no" / "such" / "plan.toml").string(), plan),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no/such/plan.toml")));
  std::filesystem::remove_all(dir);
}

TEST(PlanReport, ShowsMovesAndNodesButNoPassword) {
  const RebalancePlan plan = SamplePlan();
  const std::string text = PlanReportText(plan);
  EXPECT_THAT(text, Not(HasSubstr(kPassword)));
  EXPECT_THAT(text, Not(HasSubstr("host=")));
  EXPECT_THAT(text, HasSubstr(fmt::format("Moves ({}):", plan.moves.size())));
  EXPECT_THAT(text, HasSubstr("map version 7 -> 8, balanced by size, tolerance 5%"));
  EXPECT_THAT(text, HasSubstr("removed"));
  EXPECT_THAT(text, HasSubstr("warning: a \"quoted\" warning"));
  const std::string short_text = PlanReportText(plan, {.max_moves = 1});
  EXPECT_THAT(short_text, HasSubstr(fmt::format("... and {} more moves", plan.moves.size() - 1)));
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(std::int64_t{5} << 30), "5.0 GiB");
}

}  // namespace
}  // namespace shardline::migrate
