// Unit tests of the load generator's operation mix (tools/loadgen/mix.h): parsing, errors and
// the share of draws each operation gets.
#include "mix.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "status_matchers.h"

namespace shardline::loadgen {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;

TEST(LoadgenMix, ParsesWeightsAndLeavesUnnamedOperationsAtZero) {
  auto mix = ParseMix("profile=40, feed=30,log=20");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_EQ(mix->weight(Op::kProfile), 40);
  EXPECT_EQ(mix->weight(Op::kFeed), 30);
  EXPECT_EQ(mix->weight(Op::kLog), 20);
  EXPECT_EQ(mix->weight(Op::kUpdate), 0);
  EXPECT_EQ(mix->weight(Op::kLeaderboard), 0);
  EXPECT_EQ(mix->total(), 90);
  EXPECT_EQ(mix->ToString(), "profile=40,feed=30,log=20");
}

TEST(LoadgenMix, DefaultIsTheDocumentedMix) {
  EXPECT_EQ(Mix::Default().ToString(), "profile=40,feed=30,log=20,update=8,leaderboard=2");
  auto parsed = ParseMix(Mix::Default().ToString());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->total(), 100);
}

TEST(LoadgenMix, UnknownOperationIsRefusedListingTheKnownOnes) {
  EXPECT_THAT(ParseMix("profile=1,login=2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mix item 'login=2': unknown operation 'login' (known: profile, "
                                 "feed, log, update, leaderboard)")));
}

TEST(LoadgenMix, BadWeightsAndShapesAreRefused) {
  EXPECT_THAT(ParseMix("profile=x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("weight 'x' is not an integer in 0..1000000")));
  EXPECT_THAT(ParseMix("profile=-1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight '-1'")));
  EXPECT_THAT(ParseMix("profile"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("mix item 'profile': expected OP=WEIGHT")));
  EXPECT_THAT(ParseMix("feed=1,feed=2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("operation 'feed' given twice")));
  EXPECT_THAT(ParseMix("feed=0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the weights sum to 0")));
  EXPECT_THAT(ParseMix(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the weights sum to 0")));
}

TEST(LoadgenMix, PickGivesEachOperationItsShareOfTheRandomSpace) {
  auto mix = ParseMix("profile=3,update=1");
  ASSERT_TRUE(mix.ok());
  int counts[kNumOps] = {};
  for (std::uint64_t r = 0; r < 400; ++r) ++counts[static_cast<int>(mix->Pick(r))];
  EXPECT_EQ(counts[static_cast<int>(Op::kProfile)], 300);
  EXPECT_EQ(counts[static_cast<int>(Op::kUpdate)], 100);
  EXPECT_EQ(counts[static_cast<int>(Op::kFeed)], 0);
  EXPECT_EQ(mix->Pick(~std::uint64_t{0}), Op::kUpdate);  // 2^64-1 mod 4 = 3: the update slot
}

TEST(LoadgenMix, OpNamesRoundTrip) {
  for (Op op : kAllOps) EXPECT_EQ(ParseOpName(OpName(op)), op);
  EXPECT_EQ(ParseOpName("PROFILE"), std::nullopt);
  EXPECT_TRUE(IsWrite(Op::kLog));
  EXPECT_TRUE(IsWrite(Op::kUpdate));
  EXPECT_FALSE(IsWrite(Op::kLeaderboard));
}

}  // namespace
}  // namespace shardline::loadgen
