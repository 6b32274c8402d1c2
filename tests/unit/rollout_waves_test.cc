// Unit tests of the rollout's pure decisions (migrate/rollout_waves.h): wave shares, how moves
// are cut into waves, the map published at each stage, object names and lock keys.
#include "rollout_waves.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rollout.h"
#include "status_matchers.h"

namespace shardline::migrate {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

RangeMove Move(std::int64_t lo, std::int64_t hi, std::int64_t bytes) {
  return RangeMove{.lo = lo, .hi = hi, .from = "a", .to = "c", .rows = bytes / 10, .bytes = bytes};
}

TEST(ParseWavePercents, AcceptsCumulativeSharesEndingAtOneHundred) {
  auto p = ParseWavePercents("1%,10%, 50% ,100");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(*p, ElementsAre(1, 10, 50, 100));
}

TEST(ParseWavePercents, RefusesSharesThatDoNotIncrease) {
  EXPECT_THAT(
      ParseWavePercents("10%,5%,100%"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must increase (5% after 10%)")));
}

TEST(ParseWavePercents, RefusesALastWaveBelowOneHundred) {
  EXPECT_THAT(ParseWavePercents("1%,50%"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("last wave must be 100%")));
}

TEST(ParseWavePercents, RefusesGarbageAndOutOfRange) {
  EXPECT_THAT(ParseWavePercents("1%,x,100%"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x' is not a percentage")));
  EXPECT_THAT(ParseWavePercents("0%,100%"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside (0%, 100%]")));
  EXPECT_THAT(ParseWavePercents("150%"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside (0%, 100%]")));
}

TEST(SplitIntoWaves, PilotIsTheSmallestMoveAndSharesAreCumulativeByBytes) {
  // Bytes 10, 20, 30, 40 (total 100): 1% -> the pilot (smallest move, at least one);
  // 40% -> up to 40 bytes (10 + 20 = 30; adding 30 would exceed); 100% -> the rest.
  std::vector<RangeMove> moves = {Move(300, 399, 40), Move(0, 99, 30), Move(100, 199, 10),
                                  Move(200, 299, 20)};
  auto waves = SplitIntoWaves(moves, {1, 40, 100});
  ASSERT_EQ(waves.size(), 3u);
  EXPECT_THAT(waves[0], ElementsAre(2));     // lo 100, 10 bytes
  EXPECT_THAT(waves[1], ElementsAre(3));     // lo 200, 20 bytes
  EXPECT_THAT(waves[2], ElementsAre(1, 0));  // sorted by lo: 0..99, 300..399
}

TEST(SplitIntoWaves, DropsWavesLeftEmptyAndCountsMovesWithoutSizes) {
  std::vector<RangeMove> moves = {Move(0, 9, 0), Move(10, 19, 0)};
  auto waves = SplitIntoWaves(moves, {1, 10, 50, 100});
  // Counting moves: 1% -> one move (the pilot); 10% -> share already reached; 50% -> reached;
  // 100% -> the other.
  ASSERT_EQ(waves.size(), 2u);
  EXPECT_THAT(waves[0], ElementsAre(0));
  EXPECT_THAT(waves[1], ElementsAre(1));
}

TEST(SplitIntoWaves, OneWaveTakesEverything) {
  std::vector<RangeMove> moves = {Move(0, 9, 5), Move(10, 19, 7), Move(20, 29, 1)};
  auto waves = SplitIntoWaves(moves, {100});
  ASSERT_EQ(waves.size(), 1u);
  EXPECT_THAT(waves[0], ElementsAre(0, 1, 2));
}

NodeConfig Node(const std::string& name) {
  NodeConfig n;
  n.name = name;
  n.dsn = "host=" + name;
  return n;
}

RangeConfig Range(std::int64_t lo, std::int64_t hi, const std::string& node) {
  RangeConfig r;
  r.lo = lo;
  r.hi = hi;
  r.node = node;
  return r;
}

ShardMapConfig Result() {
  ShardMapConfig c;
  c.version = 2;
  c.nodes = {Node("a"), Node("b"), Node("c")};
  c.ranges = {Range(kMinHash, -1, "c"), Range(0, 99, "b"), Range(100, kMaxHash, "c")};
  TableConfig t;
  t.name = "users";
  t.key = "user_id";
  c.tables = {t};
  return c;
}

TEST(MapAtStage, OwnersFollowTheStepOfEachMovesWave) {
  RangeMove first = Move(kMinHash, -1, 0);
  RangeMove second = Move(100, kMaxHash, 0);
  second.from = "b";
  std::vector<RangeMove> moves = {first, second};
  const std::vector<int> move_waves = {0, 1};
  ShardMapConfig m = MapAtStage(Result(), moves, move_waves,
                                {WaveStep::kWritesSwitched, WaveStep::kReadsSwitched}, 7);
  EXPECT_EQ(m.version, 7);
  EXPECT_EQ(m.ranges[0].node, "c");
  EXPECT_EQ(m.ranges[0].state, RangeState::kStable);
  EXPECT_EQ(m.ranges[1].node, "b");  // not moved
  EXPECT_EQ(m.ranges[2].node, "b");
  EXPECT_EQ(m.ranges[2].read_node, "c");
  EXPECT_EQ(m.ranges[2].state, RangeState::kReadsSwitched);
  EXPECT_TRUE(ValidateShardMapConfig(m).ok());

  ShardMapConfig base =
      MapAtStage(Result(), moves, move_waves, {WaveStep::kVerified, WaveStep::kPending}, 8);
  EXPECT_EQ(base.ranges[0].node, "a");
  EXPECT_EQ(base.ranges[2].node, "b");
  EXPECT_TRUE(base.ranges[2].read_node.empty());
  EXPECT_TRUE(SameMapContent(
      base, MapAtStage(Result(), moves, move_waves, {WaveStep::kPending, WaveStep::kPending}, 9)));
  EXPECT_FALSE(SameMapContent(base, m));
}

TEST(WithoutNodes, DropsOnlyNamedNodesThatOwnAndServeNothing) {
  ShardMapConfig m = Result();  // a owns nothing; b owns 0..99; c the rest
  ShardMapConfig out = WithoutNodes(m, {"a", "b"});
  ASSERT_EQ(out.nodes.size(), 2u);  // b still owns a range: kept
  EXPECT_EQ(out.nodes[0].name, "b");
  EXPECT_EQ(out.nodes[1].name, "c");
  EXPECT_TRUE(ValidateShardMapConfig(out).ok());
  m.ranges[1].read_node = "a";  // a serves reads of 0..99: kept too
  m.ranges[1].state = RangeState::kReadsSwitched;
  EXPECT_EQ(WithoutNodes(m, {"a"}).nodes.size(), 3u);
  EXPECT_EQ(WithoutNodes(Result(), {}).nodes.size(), 3u);
}

TEST(NextAction, AFailedRollbackSaysToFixItsCauseAndRunItAgain) {
  MigrationState st;
  st.migration.id = 4;
  st.migration.state = std::string(kMigrationRollingBack);
  st.migration.last_error = "rollback: ... subscription x is disabled";
  EXPECT_THAT(NextAction(st), HasSubstr("fix what stopped the last attempt"));
  EXPECT_THAT(NextAction(st), HasSubstr("`rollback --migration 4` finishes the rollback"));
}

TEST(ReplicationName, IsAValidSlotNameUniquePerWaveDirectionAndPair) {
  const std::string prefix = ReplicationPrefix(12, "1f3a9c0b");
  EXPECT_EQ(prefix, "shardline_m12_1f3a9c0b_");
  EXPECT_EQ(ReplicationName(prefix, 3, 0, 2, false), "shardline_m12_1f3a9c0b_w3_fwd_0_2");
  EXPECT_EQ(ReplicationName(prefix, 3, 0, 2, true), "shardline_m12_1f3a9c0b_w3_rev_0_2");
  EXPECT_LT(ReplicationName(prefix, 99, 99, 99, true).size(), 64u);
}

TEST(PauseLockKey, DependsOnTheTagOnly) {
  EXPECT_EQ(PauseLockKey("00000001") & 0xffffffff, 1);
  EXPECT_NE(PauseLockKey("1f3a9c0b"), PauseLockKey("1f3a9c0c"));
  EXPECT_EQ(static_cast<std::uint64_t>(PauseLockKey("1f3a9c0b")) >> 32, 0x53485244u);
}

TEST(CoalesceRanges, JoinsTouchingRangesOnly) {
  EXPECT_THAT(CoalesceRanges({{10, 19}, {0, 9}, {30, 39}, {kMaxHash - 1, kMaxHash}}),
              ElementsAre(std::pair<std::int64_t, std::int64_t>{0, 19},
                          std::pair<std::int64_t, std::int64_t>{30, 39},
                          std::pair<std::int64_t, std::int64_t>{kMaxHash - 1, kMaxHash}));
}

MigrationState StateWithSteps(std::vector<WaveStep> steps, bool last_soak_over) {
  MigrationState st;
  st.migration.id = 4;
  st.migration.state = std::string(kMigrationRunning);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    WaveRecord w;
    w.wave = static_cast<int>(i + 1);
    w.step = steps[i];
    w.soak_over = steps[i] == WaveStep::kWritesSwitched && (i + 1 < steps.size() || last_soak_over);
    w.writes_version = 9;
    st.waves.push_back(w);
  }
  return st;
}

TEST(NextAction, NamesTheNextStepOfTheCurrentWave) {
  EXPECT_THAT(NextAction(StateWithSteps({WaveStep::kWritesSwitched, WaveStep::kCatchingUp}, true)),
              HasSubstr("`advance --migration 4` runs wave 2's gate"));
  EXPECT_THAT(NextAction(StateWithSteps({WaveStep::kVerified}, true)),
              HasSubstr("switches wave 1's reads"));
  EXPECT_THAT(NextAction(StateWithSteps({WaveStep::kWritesSwitched}, false)),
              HasSubstr("wait for the soak"));
  EXPECT_THAT(NextAction(StateWithSteps({WaveStep::kWritesSwitched}, true)),
              HasSubstr("`cleanup --migration 4` once every live router applies map version 9"));
  MigrationState done = StateWithSteps({WaveStep::kPending}, true);
  done.migration.state = std::string(kMigrationAborted);
  EXPECT_THAT(NextAction(done), HasSubstr("nothing: migration 4 is aborted"));
}

TEST(NextAction, NamesAnInterruptedWriteWindowAndHowToEndIt) {
  MigrationState st = StateWithSteps({WaveStep::kReadsSwitched}, true);
  EXPECT_THAT(NextAction(st), HasSubstr("switches wave 1's writes"));
  st.waves[0].fenced_at = "2026-12-08 01:02:03+00";
  EXPECT_THAT(NextAction(st), HasSubstr("wave 1's switch of writes was interrupted: its sources "
                                        "have refused writes to the wave's ranges since "
                                        "2026-12-08 01:02:03+00"));
  EXPECT_THAT(NextAction(st), HasSubstr("`advance --migration 4` finishes the switch"));
}

TEST(NextAction, WaitsForThePreviousWavesSoak) {
  MigrationState st = StateWithSteps({WaveStep::kWritesSwitched, WaveStep::kPending}, true);
  st.waves[0].soak_over = false;
  st.waves[0].soak_left_seconds = 42;
  EXPECT_THAT(NextAction(st), HasSubstr("wait for wave 1's soak (42 s left)"));
}

TEST(NextAction, AnEndingThatBeganIsOnlyEverContinuedByItsOwnCommand) {
  // Waves still say writes_switched while a rollback runs: cleanup must never be named then.
  MigrationState st = StateWithSteps({WaveStep::kWritesSwitched}, true);
  st.migration.state = std::string(kMigrationRollingBack);
  EXPECT_THAT(NextAction(st), HasSubstr("`rollback --migration 4` finishes the rollback"));
  EXPECT_THAT(NextAction(st), ::testing::Not(HasSubstr("cleanup")));
  st.migration.state = std::string(kMigrationAborting);
  EXPECT_THAT(NextAction(st), HasSubstr("`abort --migration 4` finishes the abort"));
  st.migration.state = std::string(kMigrationCleaning);
  EXPECT_THAT(NextAction(st), HasSubstr("`cleanup --migration 4` finishes the cleanup"));
  EXPECT_THAT(NextAction(st), HasSubstr("rollback is no longer possible"));
}

TEST(PartsHeldBy, KeepsOnlyWhatTheMapGivesWhollyToTheNode) {
  auto map = ShardMap::Create(Result());
  ASSERT_TRUE(map.ok()) << map.status();
  // c owns kMinHash..-1 and 100..kMaxHash; b owns 0..99.
  EXPECT_THAT(PartsHeldBy(**map, {{-10, 150}}, "c"),
              ElementsAre(std::pair<std::int64_t, std::int64_t>{-10, -1},
                          std::pair<std::int64_t, std::int64_t>{100, 150}));
  EXPECT_THAT(PartsHeldBy(**map, {{-10, 150}}, "b"),
              ElementsAre(std::pair<std::int64_t, std::int64_t>{0, 99}));
  EXPECT_TRUE(PartsHeldBy(**map, {{0, 99}}, "a").empty());
  // Reads switched to b: c still owns it but no longer holds it wholly.
  ShardMapConfig c = Result();
  c.ranges[2].read_node = "b";
  c.ranges[2].state = RangeState::kReadsSwitched;
  auto reads = ShardMap::Create(c);
  ASSERT_TRUE(reads.ok()) << reads.status();
  EXPECT_TRUE(PartsHeldBy(**reads, {{100, 200}}, "c").empty());
}

TEST(PartsNotServedBy, DropsWhatTheNodeOwnsOrServesReadsFor) {
  ShardMapConfig c = Result();
  c.ranges[2].read_node = "b";
  c.ranges[2].state = RangeState::kReadsSwitched;
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  // b owns 0..99 and serves reads of 100..kMaxHash: only the part of kMinHash..-1 is free of b.
  EXPECT_THAT(PartsNotServedBy(**map, {{-10, 150}}, "b"),
              ElementsAre(std::pair<std::int64_t, std::int64_t>{-10, -1}));
  // a serves nothing: everything is a copy nobody routes to.
  EXPECT_THAT(PartsNotServedBy(**map, {{-10, 150}}, "a"),
              ElementsAre(std::pair<std::int64_t, std::int64_t>{-10, 150}));
}

TEST(ReplicationNeeds, PeakIsTheLargestWavePlusEveryReversePairSoFar) {
  // Wave 1: a -> c. Wave 2: a -> c and b -> c. Wave 3: b -> c.
  RangeMove m1 = Move(0, 9, 10), m2 = Move(10, 19, 10), m3 = Move(20, 29, 10),
            m4 = Move(30, 39, 10);
  m3.from = "b";
  m4.from = "b";
  const std::vector<RangeMove> moves = {m1, m2, m3, m4};
  auto need = ReplicationNeeds(moves, {{0}, {1, 2}, {3}}, /*sync_workers=*/2);
  // a: wave 2's forward slot + 2 sync slots, and no reverse slot (a is never a target).
  EXPECT_EQ(need["a"].slots, 3);
  // a subscribes in reverse once per switched pair it is the source of: waves 1 and 2.
  EXPECT_EQ(need["a"].workers, 2);
  // b: a forward slot + 2 sync slots in waves 2 and 3; reverse workers 1 then 2.
  EXPECT_EQ(need["b"].slots, 3);
  EXPECT_EQ(need["b"].workers, 2);
  // c: wave 2 has two forward subscriptions (2 x 3 workers) and three reverse slots by then
  // (wave 1's, and wave 2's two made before its window); wave 3 has 4 reverse slots.
  EXPECT_EQ(need["c"].workers, 6);
  EXPECT_EQ(need["c"].slots, 4);
}

}  // namespace
}  // namespace shardline::migrate
