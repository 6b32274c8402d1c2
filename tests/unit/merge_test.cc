// Unit tests of the fan-out merge helpers (include/shardline/merge.h) over PGresults built
// without a server.
#include "shardline/merge.h"

#include <string>
#include <utility>
#include <vector>

#include "fake_result.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shardline/errors.h"

namespace shardline {
namespace {

using ::shardline::testing::MakeNodeResult;
using ::testing::HasSubstr;

// (name, score) pairs of merged rows.
std::vector<std::pair<std::string, std::int64_t>> Pairs(const MergedRows& m) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const Row& row : m) {
    out.emplace_back(std::string(*row.GetString(0)), *row.GetInt64(1));
  }
  return out;
}

// Three nodes' leaderboards, each sorted by score descending (as ORDER BY score DESC would).
std::vector<NodeResult> Leaderboards() {
  std::vector<NodeResult> v;
  v.push_back(MakeNodeResult("n1", {"name", "score"}, {{"a", "90"}, {"b", "70"}, {"c", "10"}}));
  v.push_back(MakeNodeResult("n2", {"name", "score"}, {{"d", "95"}, {"e", "70"}, {"f", "50"}}));
  v.push_back(MakeNodeResult("n3", {"name", "score"}, {{"g", "80"}, {"h", "70"}}));
  return v;
}

bool ScoreDesc(const Row& a, const Row& b) { return *a.GetInt64(1) > *b.GetInt64(1); }

TEST(Merge, ConcatenateKeepsNodeThenRowOrder) {
  auto m = Concatenate(Leaderboards());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->size(), 8u);
  EXPECT_EQ(Pairs(*m), (std::vector<std::pair<std::string, std::int64_t>>{
                           {"a", 90}, {"b", 70}, {"c", 10}, {"d", 95}, {"e", 70}, {"f", 50},
                           {"g", 80}, {"h", 70}}));
  EXPECT_EQ((*m)[3].result().node(), "n2");
}

TEST(Merge, ConcatenateOfNothingIsEmpty) {
  auto m = Concatenate({});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 0u);
  EXPECT_EQ(m->begin(), m->end());
}

TEST(Merge, OrderedMergeOfThreeNodesWithLimit) {
  auto m = MergeOrdered(Leaderboards(), ScoreDesc, 4);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(Pairs(*m), (std::vector<std::pair<std::string, std::int64_t>>{
                           {"d", 95}, {"a", 90}, {"g", 80}, {"b", 70}}));
}

TEST(Merge, OrderedMergeWithoutLimitReturnsEverythingAndTiesInNodeOrder) {
  auto m = MergeOrdered(Leaderboards(), ScoreDesc, 0);
  ASSERT_TRUE(m.ok()) << m.status();
  // The three 70s come out in node order n1, n2, n3.
  EXPECT_EQ(Pairs(*m), (std::vector<std::pair<std::string, std::int64_t>>{
                           {"d", 95}, {"a", 90}, {"g", 80}, {"b", 70}, {"e", 70}, {"h", 70},
                           {"f", 50}, {"c", 10}}));
}

TEST(Merge, TiesWithinOneNodeKeepRowOrder) {
  std::vector<NodeResult> v;
  v.push_back(MakeNodeResult("n1", {"name", "score"}, {{"x1", "5"}, {"x2", "5"}, {"x3", "5"}}));
  v.push_back(MakeNodeResult("n2", {"name", "score"}, {{"y1", "5"}}));
  auto m = MergeOrdered(v, ScoreDesc, 0);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Pairs(*m), (std::vector<std::pair<std::string, std::int64_t>>{
                           {"x1", 5}, {"x2", 5}, {"x3", 5}, {"y1", 5}}));
}

TEST(Merge, LimitLargerThanRowsAndEmptyNodes) {
  std::vector<NodeResult> v;
  v.push_back(MakeNodeResult("n1", {"name", "score"}, {}));
  v.push_back(MakeNodeResult("n2", {"name", "score"}, {{"only", "1"}}));
  auto m = MergeOrdered(v, ScoreDesc, 100);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Pairs(*m), (std::vector<std::pair<std::string, std::int64_t>>{{"only", 1}}));
}

TEST(Merge, MergedRowsOutliveTheNodeResults) {
  MergedRows kept;
  {
    auto m = MergeOrdered(Leaderboards(), ScoreDesc, 2);  // the input vector dies here
    ASSERT_TRUE(m.ok());
    kept = *m;  // a copy shares the Result handles
  }
  EXPECT_EQ(Pairs(kept), (std::vector<std::pair<std::string, std::int64_t>>{{"d", 95}, {"a", 90}}));
}

TEST(Merge, NodeErrorPropagatesWithItsNodeName) {
  std::vector<NodeResult> v = Leaderboards();
  absl::Status err = absl::UnavailableError("connection refused");
  v[1] = NodeResult{"n2", err};
  for (int which = 0; which < 3; ++which) {
    absl::Status s;
    if (which == 0) s = Concatenate(v).status();
    if (which == 1) s = MergeOrdered(v, ScoreDesc, 3).status();
    if (which == 2) s = SumInt64(v, 1).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << which;
    EXPECT_EQ(s.message(), "node n2: connection refused") << which;
    EXPECT_EQ(NodeOf(s), "n2") << which;
  }
}

TEST(Merge, NodeErrorThatNamesItsNodeKeepsMessageAndPayloads) {
  absl::Status err = absl::AlreadyExistsError("node n3: insert: duplicate key (SQLSTATE 23505)");
  SetSqlState(err, "23505");
  SetNode(err, "n3");
  std::vector<NodeResult> v = Leaderboards();
  v[2] = NodeResult{"n3", err};
  absl::Status s = Concatenate(v).status();
  EXPECT_EQ(s, err);
  EXPECT_EQ(SqlStateOf(s), "23505");

  // A status naming no node gets the prefix but keeps its SQLSTATE payload.
  absl::Status bare = absl::AbortedError("could not serialize access");
  SetSqlState(bare, "40001");
  v[2] = NodeResult{"n3", bare};
  s = Concatenate(v).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(s.message(), "node n3: could not serialize access");
  EXPECT_EQ(SqlStateOf(s), "40001");
  EXPECT_EQ(NodeOf(s), "n3");
}

TEST(Merge, SumInt64CountsNullsAsZero) {
  std::vector<NodeResult> v;
  v.push_back(MakeNodeResult("n1", {"count"}, {{"10"}}));
  v.push_back(MakeNodeResult("n2", {"count"}, {{std::nullopt}}));  // e.g. sum() over no rows
  v.push_back(MakeNodeResult("n3", {"count"}, {{"32"}, {"-2"}}));
  v.push_back(MakeNodeResult("n4", {"count"}, {}));
  auto sum = SumInt64(v, 0);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 40);
  auto none = SumInt64({}, 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
}

TEST(Merge, SumInt64ErrorsNameNodeColumnAndRow) {
  std::vector<NodeResult> v;
  v.push_back(MakeNodeResult("n1", {"count"}, {{"10"}}));
  v.push_back(MakeNodeResult("n2", {"count"}, {{"1"}, {"ten"}}));
  EXPECT_EQ(SumInt64(v, 0).status(),
            absl::InvalidArgumentError(
                "node n2: column \"count\" (row 1): \"ten\" is not a 64-bit integer"));
  EXPECT_EQ(SumInt64(v, 1).status(),
            absl::OutOfRangeError("node n1: column 1 is out of range (the result has 1)"));

  std::vector<NodeResult> big;
  big.push_back(MakeNodeResult("n1", {"c"}, {{"9223372036854775807"}}));
  big.push_back(MakeNodeResult("n2", {"c"}, {{"1"}}));
  EXPECT_EQ(SumInt64(big, 0).status(),
            absl::OutOfRangeError("node n2: sum of column 0 overflows a 64-bit integer (row 0)"));
}

}  // namespace
}  // namespace shardline
