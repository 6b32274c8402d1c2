// Unit tests of the backfill's pure parts: the framing of checkpoint keys (binary key values
// that go back to the server as binary parameters) and the ranges' job-key text.
#include "backfill_checkpoint.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "backfill.h"
#include "status_matchers.h"

namespace shardline::migrate {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;

TEST(BackfillCheckpoint, KeyFramingRoundTripsBinaryValuesWithNulBytesAndEmptyFields) {
  const std::vector<std::string> fields = {std::string("\0\0\0\x2a", 4), "", "text\xff",
                                           std::string(70000, 'x')};
  const std::string encoded = EncodeKey(fields);
  EXPECT_EQ(encoded.size(), 4 * 4 + 4 + 0 + 5 + 70000);
  auto decoded = DecodeKey(encoded, fields.size());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, fields);
}

TEST(BackfillCheckpoint, DecodeRefusesAKeyWithAnotherColumnCountNamingRestart) {
  const std::string encoded = EncodeKey({"a", "b"});
  EXPECT_THAT(DecodeKey(encoded, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--restart")));
  EXPECT_THAT(DecodeKey(encoded.substr(0, encoded.size() - 1), 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not hold 2 key columns")));
}

TEST(BackfillCheckpoint, FormatRangesListsLoColonHiCommaSeparated) {
  EXPECT_EQ(FormatRanges({{-9223372036854775807 - 1, -1}, {5, 9}}),
            "-9223372036854775808:-1,5:9");
  EXPECT_EQ(FormatRanges({}), "");
}

}  // namespace
}  // namespace shardline::migrate
