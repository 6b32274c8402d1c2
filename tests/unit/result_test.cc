// Unit tests of Result/Row (include/shardline/result.h) over PGresults built without a server:
// typed getters, exact errors for NULL, garbage and bad indexes, bytea, the empty Result.
#include "shardline/result.h"

#include <string>
#include <vector>

#include "fake_result.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardline {
namespace {

using ::shardline::testing::MakeFakeResult;
using ::testing::HasSubstr;

Result Users() {
  return MakeFakeResult(
      "n1", {"user_id", "name", "score", "active", "avatar", "Mixed Case"},
      {
          {"42", "alice", "1.5", "t", "\\x00ff10", "a"},
          {"-7", "bob", "Infinity", "f", "\\x", "b"},
          {std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt},
          {"12x", "", "abc", "true", "\\x0g", "c"},
      });
}

TEST(Result, TypedGettersParseTextValues) {
  Result r = Users();
  EXPECT_EQ(r.rows(), 4);
  EXPECT_EQ(r.columns(), 6);
  EXPECT_EQ(r.node(), "n1");
  EXPECT_EQ(*r.GetInt64(0, 0), 42);
  EXPECT_EQ(*r.GetInt64(1, 0), -7);
  EXPECT_EQ(*r.GetString(0, 1), "alice");
  EXPECT_EQ(*r.GetDouble(0, 2), 1.5);
  EXPECT_EQ(*r.GetDouble(1, 2), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(*r.GetBool(0, 3));
  EXPECT_FALSE(*r.GetBool(1, 3));
  EXPECT_EQ(*r.GetBytes(0, 4), std::string("\x00\xff\x10", 3));
  EXPECT_EQ(*r.GetBytes(1, 4), "");
}

TEST(Result, ColumnLookupIsExact) {
  Result r = Users();
  EXPECT_EQ(r.column_name(1), "name");
  EXPECT_EQ(r.column_index("score"), 2);
  EXPECT_EQ(r.column_index("Mixed Case"), 5);
  EXPECT_EQ(r.column_index("mixed case"), -1);  // no case folding, unlike PQfnumber
  EXPECT_EQ(r.column_index("nope"), -1);
  EXPECT_EQ(r.column_name(6), "");
  EXPECT_EQ(r.column_name(-1), "");
}

TEST(Result, NullValuesAreErrorsNamingColumnAndRow) {
  Result r = Users();
  EXPECT_TRUE(r.IsNull(2, 0));
  EXPECT_FALSE(r.IsNull(0, 0));
  EXPECT_EQ(r.GetInt64(2, 0).status(),
            absl::InvalidArgumentError("node n1: column \"user_id\" (row 2) is NULL"));
  EXPECT_EQ(r.GetDouble(2, 2).status(),
            absl::InvalidArgumentError("node n1: column \"score\" (row 2) is NULL"));
  EXPECT_EQ(r.GetBool(2, 3).status(),
            absl::InvalidArgumentError("node n1: column \"active\" (row 2) is NULL"));
  EXPECT_EQ(r.GetBytes(2, 4).status(),
            absl::InvalidArgumentError("node n1: column \"avatar\" (row 2) is NULL"));
  // GetString reads NULL as empty (IsNull tells them apart from '').
  EXPECT_EQ(*r.GetString(2, 1), "");
  EXPECT_EQ(*r.GetString(3, 1), "");
  EXPECT_FALSE(r.IsNull(3, 1));
}

TEST(Result, UnparsableValuesAreErrorsNamingColumnAndRow) {
  Result r = Users();
  EXPECT_EQ(r.GetInt64(3, 0).status(),
            absl::InvalidArgumentError(
                "node n1: column \"user_id\" (row 3): \"12x\" is not a 64-bit integer"));
  EXPECT_EQ(r.GetInt64(0, 1).status(),
            absl::InvalidArgumentError(
                "node n1: column \"name\" (row 0): \"alice\" is not a 64-bit integer"));
  EXPECT_EQ(r.GetInt64(0, 2).status(),
            absl::InvalidArgumentError(
                "node n1: column \"score\" (row 0): \"1.5\" is not a 64-bit integer"));
  EXPECT_EQ(r.GetDouble(3, 2).status(),
            absl::InvalidArgumentError(
                "node n1: column \"score\" (row 3): \"abc\" is not a number"));
  EXPECT_EQ(r.GetBool(3, 3).status(),
            absl::InvalidArgumentError(
                "node n1: column \"active\" (row 3): \"true\" is not a boolean ('t' or 'f')"));
  EXPECT_EQ(r.GetBytes(3, 4).status(),
            absl::InvalidArgumentError(
                "node n1: column \"avatar\" (row 3): \"\\x0g\" is not a bytea in hex format "
                "(\\x...)"));
  EXPECT_EQ(r.GetBytes(0, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Result, IntegerOverflowIsAnError) {
  Result r = MakeFakeResult("n2", {"big"}, {{"9223372036854775807"}, {"9223372036854775808"}});
  EXPECT_EQ(*r.GetInt64(0, 0), 9223372036854775807);
  EXPECT_EQ(r.GetInt64(1, 0).status(),
            absl::InvalidArgumentError("node n2: column \"big\" (row 1): "
                                       "\"9223372036854775808\" is not a 64-bit integer"));
}

TEST(Result, BadIndexesAreOutOfRange) {
  Result r = Users();
  EXPECT_EQ(r.GetInt64(4, 0).status(),
            absl::OutOfRangeError("node n1: row 4 is out of range (the result has 4)"));
  EXPECT_EQ(r.GetInt64(-1, 0).status(),
            absl::OutOfRangeError("node n1: row -1 is out of range (the result has 4)"));
  EXPECT_EQ(r.GetString(0, 6).status(),
            absl::OutOfRangeError("node n1: column 6 is out of range (the result has 6)"));
  EXPECT_EQ(r.GetBool(0, -1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(r.GetBytes(9, 9).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(r.IsNull(9, 0));  // IsNull has no status: out of range reads as NULL
}

TEST(Result, EmptyResultWorks) {
  Result r;
  EXPECT_EQ(r.rows(), 0);
  EXPECT_EQ(r.columns(), 0);
  EXPECT_EQ(r.node(), "");
  EXPECT_EQ(r.affected_rows(), 0);
  EXPECT_EQ(r.column_index("x"), -1);
  EXPECT_EQ(r.column_name(0), "");
  EXPECT_EQ(r.begin(), r.end());
  EXPECT_EQ(r.GetInt64(0, 0).status(),
            absl::OutOfRangeError("column 0 is out of range (the result has 0)"));
  int n = 0;
  for (Row row : r) {
    (void)row;
    ++n;
  }
  EXPECT_EQ(n, 0);
}

TEST(Result, RowsIterateInOrderAndCopiesShareData) {
  Result r = MakeFakeResult("n3", {"id"}, {{"1"}, {"2"}, {"3"}});
  Result copy = r;
  std::vector<std::int64_t> ids;
  for (Row row : copy) {
    EXPECT_EQ(&row.result(), &copy);
    ids.push_back(*row.GetInt64(0));
  }
  EXPECT_EQ(ids, (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(copy.impl(), r.impl());
  Row second = r.row(1);
  EXPECT_EQ(second.index(), 1);
  EXPECT_EQ(*second.GetString(0), "2");
  EXPECT_FALSE(second.IsNull(0));
  EXPECT_EQ(second.GetBool(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(second.GetDouble(0).value(), 2.0);
  EXPECT_EQ(second.GetBytes(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Result, BinaryFormatBytesAreReturnedRaw) {
  Result r = MakeFakeResult("n1", {"blob"}, {{std::string("\x01\x00\x02", 3)}},
                            {17 /* bytea */}, {1 /* binary */});
  EXPECT_EQ(*r.GetBytes(0, 0), std::string("\x01\x00\x02", 3));
}

TEST(Result, DoublesAcceptPostgresSpellings) {
  Result r = MakeFakeResult("n1", {"d"}, {{"-Infinity"}, {"NaN"}, {"1e-300"}, {"12.5000"}});
  EXPECT_EQ(*r.GetDouble(0, 0), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(*r.GetDouble(1, 0)));
  EXPECT_EQ(*r.GetDouble(2, 0), 1e-300);
  EXPECT_EQ(*r.GetDouble(3, 0), 12.5);
}

}  // namespace
}  // namespace shardline
