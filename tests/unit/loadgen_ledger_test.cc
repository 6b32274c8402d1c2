// Unit tests of the load generator's ledger (tools/loadgen/ledger.h): the line format round
// trip, malformed lines named by file:line, the content hash, and appending from threads.
#include "ledger.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "status_matchers.h"

namespace shardline::loadgen {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;

class LoadgenLedgerFile : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             fmt::format("loadgen-ledger-test-{}-{}.ledger", ::getpid(),
                         ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    std::filesystem::remove(path_);
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::binary);
    out << text;
  }
  std::string path_;
};

LedgerEntry Sample() {
  return {.unix_ms = 1795872832501,
          .op = "log",
          .table = "workout_logs",
          .user_id = -42,
          .id = 252426772800135168,
          .hash = 0xef6b5ae8d818d32full,
          .acked = true};
}

TEST(LoadgenLedger, LineFormatIsStableJson) {
  EXPECT_EQ(FormatLedgerLine(Sample()),
            "{\"v\":1,\"t\":1795872832501,\"op\":\"log\",\"table\":\"workout_logs\",\"user_id\":-42,"
            "\"id\":252426772800135168,\"hash\":\"ef6b5ae8d818d32f\",\"acked\":true}\n");
  LedgerEntry users = Sample();
  users.table = "users";
  users.id.reset();
  users.acked = false;
  users.hash = 1;
  EXPECT_EQ(FormatLedgerLine(users),
            "{\"v\":1,\"t\":1795872832501,\"op\":\"log\",\"table\":\"users\",\"user_id\":-42,"
            "\"hash\":\"0000000000000001\",\"acked\":false}\n");
}

TEST(LoadgenLedger, EntriesRoundTripThroughTheirLines) {
  LedgerEntry no_id = Sample();
  no_id.id.reset();
  no_id.acked = false;
  no_id.hash = ~std::uint64_t{0};
  for (const LedgerEntry& e : {Sample(), no_id}) {
    auto back = ParseLedgerLine(FormatLedgerLine(e), "x:1");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, e);
  }
}

TEST(LoadgenLedger, MalformedLinesNameTheirPlace) {
  EXPECT_THAT(ParseLedgerLine("not json", "run.ledger:3"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("run.ledger:3: not a JSON object")));
  EXPECT_THAT(ParseLedgerLine(R"({"v":1,"t":1,"op":"log","table":"t","hash":"0000000000000001",)"
                              R"("acked":true})",
                              "run.ledger:4"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("run.ledger:4: missing \"user_id\"")));
  EXPECT_THAT(ParseLedgerLine(R"({"v":1,"t":1,"op":"log","table":"t","user_id":"7",)"
                              R"("hash":"0000000000000001","acked":true})",
                              "f:5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f:5: \"user_id\" has the wrong type")));
  EXPECT_THAT(ParseLedgerLine(R"({"v":1,"t":1,"op":"log","table":"t","user_id":7,)"
                              R"("hash":"xyz","acked":true})",
                              "f:6"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f:6: \"hash\" 'xyz' is not 16 hex digits")));
  EXPECT_THAT(ParseLedgerLine(R"({"v":2,"t":1,"op":"log","table":"t","user_id":7,)"
                              R"("hash":"0000000000000001","acked":true})",
                              "f:7"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f:7: ledger version 2 (this build reads version 1)")));
}

TEST(LoadgenLedger, ContentHashSeparatesValuesAndNulls) {
  EXPECT_EQ(ContentHash({"a", "b"}), ContentHash({"a", "b"}));
  EXPECT_NE(ContentHash({"ab", "c"}), ContentHash({"a", "bc"}));
  EXPECT_NE(ContentHash({std::nullopt}), ContentHash({""}));
  EXPECT_NE(ContentHash({"1"}), ContentHash({"1", ""}));
  // Pinned: ledgers written by one build are checked by another.
  EXPECT_EQ(ContentHash({}), 14695981039346656037ull);
  EXPECT_EQ(ContentHash({"x"}), ContentHash({std::optional<std::string_view>("x")}));
}

TEST_F(LoadgenLedgerFile, WriterAppendsWholeLinesFromManyThreadsAndReaderReadsThemBack) {
  {
    auto w = LedgerWriter::Open(path_);
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 250; ++i) {
          LedgerEntry e = Sample();
          e.user_id = t;
          e.id = i;
          ASSERT_TRUE((*w)->Append(e).ok());
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ((*w)->appended(), 2000u);
  }
  // A second writer appends to the same file.
  {
    auto w = LedgerWriter::Open(path_);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Sample()).ok());
  }
  bool truncated = true;
  auto entries = ReadLedger(path_, &truncated);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_FALSE(truncated);
  ASSERT_EQ(entries->size(), 2001u);
  std::vector<int> per_thread(8, 0);
  for (std::size_t i = 0; i < 2000; ++i) ++per_thread[static_cast<std::size_t>((*entries)[i].user_id)];
  for (int n : per_thread) EXPECT_EQ(n, 250);
  EXPECT_EQ(entries->back(), Sample());
}

TEST_F(LoadgenLedgerFile, ReaderIgnoresAnIncompleteLastLineAndSaysSo) {
  Write(FormatLedgerLine(Sample()) + "{\"v\":1,\"t\":17958");
  bool truncated = false;
  auto entries = ReadLedger(path_, &truncated);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_EQ(entries->size(), 1u);
  EXPECT_TRUE(truncated);
}

TEST_F(LoadgenLedgerFile, ReaderNamesTheFileAndLineOfABadLine) {
  Write(FormatLedgerLine(Sample()) + "\n" + "garbage\n");
  EXPECT_THAT(ReadLedger(path_), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr(path_ + ":3: not a JSON object")));
}

TEST_F(LoadgenLedgerFile, MissingLedgerIsNotFound) {
  EXPECT_THAT(ReadLedger(path_), StatusIs(absl::StatusCode::kNotFound,
                                          HasSubstr("cannot read ledger '" + path_ + "'")));
}

}  // namespace
}  // namespace shardline::loadgen
