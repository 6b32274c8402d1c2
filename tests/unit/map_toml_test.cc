// Unit tests of the shard map's TOML form (router/map_toml.cc): every rule's message names the
// fault and its file:line; type errors say which key expected what; unknown fields warn;
// syntax errors carry line and column; files that cannot be read name their path; printing
// round-trips and never shows a password in kMask mode; the example maps in schemas/maps parse.
#include "shardline/map_toml.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include "status_matchers.h"

namespace shardline {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using ::shardline::testing::StatusIs;

// The line numbers below are relied on by the tests.
constexpr std::string_view kBase = R"(version = 3
key_type = "bigint"

[[nodes]]
name = "a"
dsn = "host=127.0.0.1 port=55432 dbname=app user=app"

[[nodes]]
name = "b"
dsn = "host=127.0.0.1 port=55433 dbname=app user=app"

[[ranges]]
lo = -9223372036854775808
hi = -1
node = "a"

[[ranges]]
lo = 0
hi = 9223372036854775807
node = "b"

[[tables]]
name = "workout_logs"
key = "user_id"
)";

// kBase with the first occurrence of `from` replaced by `to` (which must exist).
std::string With(std::string_view from, std::string_view to, std::string text = std::string(kBase)) {
  const std::size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << from << "' not in the document";
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

absl::Status ParseStatus(const std::string& text) {
  return ParseShardMapToml(text, "m.toml").status();
}

TEST(MapToml, ParsesTheIssueExample) {
  auto parsed = ParseShardMapToml(kBase, "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ShardMap& map = *parsed->map;
  EXPECT_THAT(parsed->warnings, IsEmpty());
  EXPECT_EQ(map.version(), 3);
  EXPECT_EQ(map.key_type(), KeyType::kBigint);
  ASSERT_EQ(map.nodes().size(), 2u);
  EXPECT_EQ(map.nodes()[1].name, "b");
  EXPECT_EQ(map.nodes()[1].dsn, "host=127.0.0.1 port=55433 dbname=app user=app");
  EXPECT_EQ(map.nodes()[1].pool_min, kDefaultPoolMin);
  EXPECT_EQ(map.nodes()[1].pool_max, kDefaultPoolMax);
  ASSERT_EQ(map.ranges().size(), 2u);
  EXPECT_EQ(map.ranges()[0].lo, kMinHash);  // -9223372036854775808 is a valid TOML integer
  EXPECT_EQ(map.ranges()[1].hi, kMaxHash);
  ASSERT_EQ(map.tables().size(), 1u);
  EXPECT_EQ(map.tables()[0].key, "user_id");
  EXPECT_FALSE(map.tables()[0].reference);
}

TEST(MapToml, ParsesEveryOptionalField) {
  std::string text = With("[[ranges]]\nlo = 0", R"([[nodes]]
name = "c"
dsn = "postgresql://app@127.0.0.1:55434/app"
pool_min = 0
pool_max = 4
replicas = ["host=127.0.0.1 port=55435", "host=127.0.0.1 port=55436"]

[[ranges]]
lo = 0)");
  text = With("node = \"b\"", "node = \"b\"\nread_node = \"c\"\nstate = \"reads_switched\"", text);
  text = With("key_type = \"bigint\"", "key_type = \"text\"", text);
  text += R"(primary_key = ["user_id", "id"]

[[tables]]
name = "public.countries"
reference = true
)";
  auto parsed = ParseShardMapToml(text, "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ShardMap& map = *parsed->map;
  EXPECT_THAT(parsed->warnings, IsEmpty());
  EXPECT_EQ(map.key_type(), KeyType::kText);
  const NodeConfig& c = map.nodes()[2];
  EXPECT_EQ(c.pool_min, 0);
  EXPECT_EQ(c.pool_max, 4);
  EXPECT_THAT(c.replicas, ElementsAre("host=127.0.0.1 port=55435", "host=127.0.0.1 port=55436"));
  EXPECT_EQ(map.ranges()[1].read_node, "c");
  EXPECT_EQ(map.ranges()[1].state, RangeState::kReadsSwitched);
  EXPECT_EQ(map.ReadNodeIndex(1), 2);
  EXPECT_THAT(map.tables()[0].primary_key, ElementsAre("user_id", "id"));
  EXPECT_TRUE(map.tables()[1].reference);
}

TEST(MapToml, AcceptsRangesInAnyOrder) {
  const std::string text = R"(version = 1
[[nodes]]
name = "a"
dsn = "host=h"
[[ranges]]
lo = 0
hi = 9223372036854775807
node = "a"
[[ranges]]
lo = -9223372036854775808
hi = -1
node = "a"
)";
  auto parsed = ParseShardMapToml(text, "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->map->ranges()[0].lo, kMinHash);
}

TEST(MapToml, AcceptsInlineTableArrays) {
  const std::string text = R"(version = 1
nodes = [{ name = "a", dsn = "host=h" }]
ranges = [{ lo = -9223372036854775808, hi = 9223372036854775807, node = "a" }]
)";
  auto parsed = ParseShardMapToml(text, "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->map->nodes()[0].name, "a");
}

TEST(MapToml, MissingVersionIsAnError) {
  EXPECT_THAT(ParseStatus(With("version = 3\n", "")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml: missing 'version' (a positive integer")));
}

TEST(MapToml, NonPositiveVersionNamesItsLine) {
  EXPECT_THAT(ParseStatus(With("version = 3", "version = 0")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:1: version must be a positive integer, got 0")));
}

TEST(MapToml, UnknownKeyTypeListsTheAllowedValues) {
  EXPECT_THAT(ParseStatus(With("\"bigint\"", "\"int4\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:2: unknown key_type 'int4' (expected bigint, text or "
                                 "uuid)")));
}

TEST(MapToml, WrongValueTypeSaysWhichKeyExpectedWhat) {
  EXPECT_THAT(ParseStatus(With("lo = 0", "lo = \"0\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:18: ranges[1].lo: expected an integer, got string")));
  EXPECT_THAT(ParseStatus(With("version = 3", "version = 3.0")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:1: version: expected an integer, got float")));
  EXPECT_THAT(ParseStatus(With("name = \"b\"", "name = 2")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:9: nodes[1].name: expected a string, got integer")));
  EXPECT_THAT(ParseStatus(With("key = \"user_id\"", "key = \"user_id\"\nreference = \"no\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:25: tables[0].reference: expected a boolean (true or "
                                 "false), got string")));
  EXPECT_THAT(ParseStatus(With("name = \"a\"", "name = \"a\"\nreplicas = \"host=r\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:6: nodes[0].replicas: expected an array of strings, got "
                                 "string")));
  EXPECT_THAT(ParseStatus(With("name = \"a\"", "name = \"a\"\nreplicas = [\"host=r\", 5]")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:6: nodes[0].replicas[1]: expected a string, got "
                                 "integer")));
  EXPECT_THAT(ParseStatus(With("name = \"a\"", "name = \"a\"\npool_max = 1e3")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:6: nodes[0].pool_max: expected an integer, got float")));
}

TEST(MapToml, TablesWrittenAsASingleTableAreATypeError) {
  EXPECT_THAT(ParseStatus(With("[[tables]]", "[tables]")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tables: expected an array of tables ([[tables]]), got table")));
}

TEST(MapToml, PoolLimitOutOfIntRangeIsAnError) {
  EXPECT_THAT(ParseStatus(With("name = \"a\"", "name = \"a\"\npool_max = 5000000000")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:6: nodes[0].pool_max: 5000000000 is out of range")));
}

TEST(MapToml, MissingRequiredFieldsNameTheElementLine) {
  EXPECT_THAT(ParseStatus(With("dsn = \"host=127.0.0.1 port=55433 dbname=app user=app\"\n", "")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:8: nodes[1]: missing 'dsn'")));
  EXPECT_THAT(ParseStatus(With("lo = 0\n", "")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: ranges[1]: missing 'lo'")));
  EXPECT_THAT(ParseStatus(With("node = \"a\"\n", "")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:12: ranges[0]: missing 'node'")));
}

TEST(MapToml, GapNamesBothRangesAndLines) {
  EXPECT_THAT(ParseStatus(With("lo = 0", "lo = 10")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: gap between range -9223372036854775808..-1 (line 12) "
                                 "and range 10..9223372036854775807 (line 17): hash values 0..9 "
                                 "are not covered")));
}

TEST(MapToml, OverlapNamesBothRangesAndLines) {
  EXPECT_THAT(ParseStatus(With("hi = -1", "hi = 5")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: range 0..9223372036854775807 (line 17) overlaps "
                                 "range -9223372036854775808..5 (line 12): hash values 0..5 are "
                                 "in both")));
}

TEST(MapToml, LoGreaterThanHiNamesItsLine) {
  const std::string text = With("lo = 0\nhi = 9223372036854775807",
                                "lo = 0\nhi = -7\nnode = \"b\"\n\n[[ranges]]\nlo = 0\n"
                                "hi = 9223372036854775807");
  EXPECT_THAT(ParseStatus(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("m.toml:17: range 0..-7: lo is greater than "
                                                    "hi")));
}

TEST(MapToml, UncoveredStartSaysWhichPartIsMissing) {
  EXPECT_THAT(ParseStatus(With("lo = -9223372036854775808", "lo = -100")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:12: no range starts at -9223372036854775808: hash values "
                                 "-9223372036854775808..-101 are not covered")));
}

TEST(MapToml, UncoveredEndSaysWhichPartIsMissing) {
  EXPECT_THAT(ParseStatus(With("hi = 9223372036854775807", "hi = 1000")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: no range ends at 9223372036854775807: hash values "
                                 "1001..9223372036854775807 are not covered")));
}

TEST(MapToml, UnknownNodeNamesTheRangeAndItsLine) {
  EXPECT_THAT(ParseStatus(With("node = \"b\"", "node = \"x\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: range 0..9223372036854775807: unknown node 'x' "
                                 "(nodes: a, b)")));
}

TEST(MapToml, DuplicateNodeNamesNameBothLines) {
  EXPECT_THAT(ParseStatus(With("name = \"b\"", "name = \"a\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:8: duplicate node name 'a' (first defined as nodes[0] "
                                 "(line 4))")));
}

TEST(MapToml, DuplicateTableNamesNameBothLines) {
  EXPECT_THAT(ParseStatus(std::string(kBase) + "\n[[tables]]\nname = \"workout_logs\"\nkey = "
                                               "\"id\"\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:26: duplicate table name 'workout_logs' (first defined "
                                 "as tables[0] (line 22))")));
}

TEST(MapToml, PoolLimitsAreChecked) {
  EXPECT_THAT(ParseStatus(With("name = \"a\"", "name = \"a\"\npool_min = 9\npool_max = 3")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:4: node 'a': pool_min (9) is greater than pool_max "
                                 "(3)")));
  EXPECT_THAT(ParseStatus(With("name = \"a\"", "name = \"a\"\npool_min = 0\npool_max = 0")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:4: node 'a': pool_max must be at least 1, got 0")));
}

TEST(MapToml, EmptyNodeNameOrDsnIsAnError) {
  EXPECT_THAT(ParseStatus(With("dsn = \"host=127.0.0.1 port=55432 dbname=app user=app\"",
                               "dsn = \"\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:4: node 'a': dsn is empty")));
  EXPECT_THAT(ParseStatus(With("name = \"b\"", "name = \"\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:8: nodes[1]: name is empty")));
}

TEST(MapToml, ShardedTableWithoutKeyNamesTheTableAndLine) {
  EXPECT_THAT(ParseStatus(With("key = \"user_id\"\n", "")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:22: table 'workout_logs': key is missing")));
}

TEST(MapToml, ReadNodeRulesNameTheRangeAndLine) {
  EXPECT_THAT(ParseStatus(With("node = \"b\"", "node = \"b\"\nread_node = \"z\"\n"
                                               "state = \"copying\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: range 0..9223372036854775807: unknown read_node "
                                 "'z' (nodes: a, b)")));
  EXPECT_THAT(ParseStatus(With("node = \"b\"", "node = \"b\"\nread_node = \"a\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:17: range 0..9223372036854775807: read_node 'a' is set "
                                 "but state is stable")));
}

TEST(MapToml, UnknownStateListsTheAllowedValues) {
  EXPECT_THAT(ParseStatus(With("node = \"b\"", "node = \"b\"\nstate = \"moving\"")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:21: ranges[1].state: unknown range state 'moving' "
                                 "(expected stable, copying or reads_switched)")));
}

TEST(MapToml, UnknownFieldsAreWarningsWithLineAndHint) {
  std::string text = With("name = \"a\"", "name = \"a\"\npool_maxx = 3\ncolour = \"red\"");
  text = With("version = 3", "version = 3\nowner = \"dba\"", text);
  auto parsed = ParseShardMapToml(text, "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->warnings,
              ElementsAre("m.toml:2: unknown field 'owner' (ignored)",
                          "m.toml:7: unknown field 'pool_maxx' in nodes[0] (ignored); did you "
                          "mean 'pool_max'?",
                          "m.toml:8: unknown field 'colour' in nodes[0] (ignored)"));
  EXPECT_EQ(parsed->map->nodes()[0].pool_max, kDefaultPoolMax);
}

TEST(MapToml, NodeOwningNoRangeIsValid) {
  auto parsed = ParseShardMapToml(
      With("[[ranges]]", "[[nodes]]\nname = \"new\"\ndsn = \"host=h\"\n\n[[ranges]]"), "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->map->nodes().size(), 3u);
}

TEST(MapToml, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_THAT(ParseStatus(With("hi = -1", "hi = -1 x")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:14:9: invalid TOML: ")));
  EXPECT_THAT(ParseStatus(With("name = \"b\"", "name = \"b")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("m.toml:9:")));
  EXPECT_THAT(ParseStatus("\x01\x02 not toml at all"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("m.toml:1:1: invalid TOML")));
}

TEST(MapToml, IntegerBeyond64BitsIsASyntaxErrorWithItsPlace) {
  EXPECT_THAT(ParseStatus(With("hi = 9223372036854775807", "hi = 9223372036854775808")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("m.toml:19:"), HasSubstr("not representable in 64 "
                                                                "bits"))));
}

class MapFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shardline_map_toml_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, std::string_view text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

TEST_F(MapFileTest, LoadsAFileAndNamesItInMessages) {
  const std::string path = Write("good.toml", kBase);
  auto parsed = LoadShardMapFile(path);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->map->version(), 3);
  const std::string bad = Write("bad.toml", With("lo = 0", "lo = 10"));
  EXPECT_THAT(LoadShardMapFile(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad + ":17: gap between")));
}

TEST_F(MapFileTest, MissingFileIsNotFoundNamingThePath) {
  const std::string path = dir_ + "/nope.toml";
  EXPECT_THAT(LoadShardMapFile(path).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("cannot read shard map file '" + path + "': No such file or "
                                 "directory")));
}

TEST_F(MapFileTest, DirectoryIsAnErrorNamingThePath) {
  EXPECT_THAT(LoadShardMapFile(dir_).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot read shard map file '" + dir_ + "': it is a directory")));
}

TEST_F(MapFileTest, UnreadableFileIsPermissionDeniedNamingThePath) {
  const std::string path = Write("secret.toml", kBase);
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  if (::geteuid() != 0) {
    EXPECT_THAT(LoadShardMapFile(path).status(),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         HasSubstr("cannot read shard map file '" + path + "': Permission "
                                   "denied")));
    return;
  }
  // Root reads any file: check as an unprivileged user in a child process.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    const absl::Status s = LoadShardMapFile(path).status();
    const bool ok = s.code() == absl::StatusCode::kPermissionDenied &&
                    std::string(s.message()).find("'" + path + "': Permission denied") !=
                        std::string::npos;
    ::_exit(ok ? 0 : 1);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  if (WEXITSTATUS(wstatus) == 3) {
    GTEST_SKIP() << "cannot drop root privileges here";
  }
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "expected PermissionDenied naming " << path;
}

ShardMapConfig RichConfig() {
  ShardMapConfig c;
  c.version = 42;
  c.key_type = KeyType::kUuid;
  NodeConfig a;
  a.name = "a";
  a.dsn = "host=127.0.0.1 port=55432 dbname=app user=app password=secret";
  a.pool_min = 2;
  a.pool_max = 32;
  a.replicas = {"postgres://ro:secret@127.0.0.1:55440/app"};
  NodeConfig b;
  b.name = "shard \"b\"\\ é";
  b.dsn = "postgres://app:secret@127.0.0.1:55433/app?sslmode=disable";
  NodeConfig c3;
  c3.name = "c";
  c3.dsn = "host=127.0.0.1 port=55434";
  c.nodes = {a, b, c3};
  auto ranges = EqualRanges(7, {"a", b.name});
  c.ranges = *ranges;
  c.ranges[4].read_node = "c";
  c.ranges[4].state = RangeState::kCopying;
  c.ranges[5].read_node = "c";
  c.ranges[5].state = RangeState::kReadsSwitched;
  std::swap(c.ranges[0], c.ranges[6]);  // Create sorts them
  TableConfig t;
  t.name = "app.workout_logs";
  t.key = "user_id";
  t.primary_key = {"user_id", "id"};
  TableConfig r;
  r.name = "countries";
  r.reference = true;
  c.tables = {t, r};
  return c;
}

TEST(MapTomlPrint, RoundTripsToTheSameConfig) {
  auto map = ShardMap::Create(RichConfig());
  ASSERT_TRUE(map.ok()) << map.status();
  const std::string text = ShardMapToToml((*map)->config(), PasswordMode::kKeep);
  auto parsed = ParseShardMapToml(text, "printed");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  EXPECT_THAT(parsed->warnings, IsEmpty());
  EXPECT_TRUE(parsed->map->config() == (*map)->config()) << text;
  EXPECT_EQ(ShardMapToToml(parsed->map->config(), PasswordMode::kKeep), text);
}

TEST(MapTomlPrint, RoundTripsAnEqualSplitOf65536Ranges) {
  ShardMapConfig c = RichConfig();
  c.ranges = *EqualRanges(65536, {"a", "c"});
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  auto parsed = ParseShardMapToml(ShardMapToToml(c, PasswordMode::kKeep), "printed");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->map->config() == (*map)->config());
}

TEST(MapTomlPrint, PrintsFieldsInAStableOrder) {
  ShardMapConfig c;
  c.version = 2;
  NodeConfig a;
  a.name = "a";
  a.dsn = "host=h";
  a.replicas = {"host=r"};
  c.nodes = {a};
  RangeConfig r;
  r.lo = kMinHash;
  r.hi = kMaxHash;
  r.node = "a";
  c.ranges = {r};
  TableConfig t;
  t.name = "logs";
  t.key = "user_id";
  t.primary_key = {"user_id", "id"};
  c.tables = {t};
  EXPECT_EQ(ShardMapToToml(c, PasswordMode::kKeep), R"(version = 2
key_type = "bigint"

[[nodes]]
name = "a"
dsn = "host=h"
pool_min = 1
pool_max = 16
replicas = ["host=r"]

[[ranges]]
lo = -9223372036854775808
hi = 9223372036854775807
node = "a"

[[tables]]
name = "logs"
key = "user_id"
primary_key = ["user_id", "id"]
)");
}

TEST(MapTomlPrint, MaskPrintsAnUnparseableDsnAsAPlaceholder) {
  ShardMapConfig c = RichConfig();
  c.nodes[2].dsn = "host=h password='secret";  // unterminated quote: libpq cannot parse it
  const std::string masked = ShardMapToToml(c, PasswordMode::kMask);
  EXPECT_THAT(masked, AllOf(Not(HasSubstr("secret")),
                            HasSubstr("dsn = \"<unparseable connection string>\"")));
}

TEST(MapTomlPrint, MaskNeverPrintsAPassword) {
  const ShardMapConfig c = RichConfig();
  const std::string masked = ShardMapToToml(c, PasswordMode::kMask);
  EXPECT_THAT(masked, Not(HasSubstr("secret")));
  EXPECT_THAT(masked, HasSubstr("password=********"));  // key=value form
  EXPECT_THAT(masked, HasSubstr("user=app"));           // URI form, rest kept
  EXPECT_THAT(masked, HasSubstr("user=ro"));            // replicas too
  EXPECT_THAT(masked, HasSubstr("dsn = \"host=127.0.0.1 port=55434\"\n"));  // no password: as is
  // The masked text is still a valid map (e.g. for `map show`).
  auto parsed = ParseShardMapToml(masked, "masked");
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  // kKeep is for storage and keeps them.
  EXPECT_THAT(ShardMapToToml(c, PasswordMode::kKeep),
              AllOf(HasSubstr("password=secret"), HasSubstr("postgres://app:secret@")));
}

constexpr std::string_view kDsnA = "dsn = \"host=127.0.0.1 port=55432 dbname=app user=app\"";

TEST(MapTomlPooler, ParsesPoolerAndAdminDsn) {
  std::string text = With(kDsnA, std::string(kDsnA) +
                                     "\npooler = \"transaction\"\n"
                                     "admin_dsn = \"host=127.0.0.1 port=5432 dbname=app user=dba\"");
  text = With("dsn = \"host=127.0.0.1 port=55433 dbname=app user=app\"",
              "dsn = \"host=127.0.0.1 port=55433 dbname=app user=app\"\npooler = \"none\"", text);
  auto parsed = ParseShardMapToml(text, "m.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->warnings, IsEmpty());
  const NodeConfig& a = parsed->map->nodes()[0];
  EXPECT_EQ(a.pooler, Pooler::kTransaction);
  EXPECT_EQ(a.admin_dsn, "host=127.0.0.1 port=5432 dbname=app user=dba");
  EXPECT_EQ(parsed->map->nodes()[1].pooler, Pooler::kNone);
  EXPECT_TRUE(parsed->map->nodes()[1].admin_dsn.empty());
  // Not said: the router's default decides.
  auto base = ParseShardMapToml(kBase, "m.toml");
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->map->nodes()[0].pooler, Pooler::kUnset);
}

TEST(MapTomlPooler, UnknownPoolerIsRefusedWithFileLineAndTheAcceptedValues) {
  const std::string text = With(kDsnA, std::string(kDsnA) + "\npooler = \"statement\"");
  EXPECT_THAT(ParseStatus(text),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:7: nodes[0].pooler: unknown pooler 'statement' "
                                 "(expected \"none\" or \"transaction\"")));
  EXPECT_THAT(ParseStatus(With(kDsnA, std::string(kDsnA) + "\npooler = true")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:7: nodes[0].pooler: expected a string, got boolean")));
}

TEST(MapTomlPooler, UnparseableAdminDsnNamesTheNodeAndLine) {
  const std::string text = With(kDsnA, std::string(kDsnA) + "\nadmin_dsn = \"host=h password='x\"");
  EXPECT_THAT(ParseStatus(text),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("m.toml:4: node 'a': admin_dsn is not a valid libpq connection "
                                 "string")));
}

TEST(MapTomlPooler, PrintsPoolerAndAdminDsnRoundTripAndMasksTheAdminPassword) {
  ShardMapConfig c = RichConfig();
  c.nodes[0].pooler = Pooler::kTransaction;
  c.nodes[0].admin_dsn = "host=127.0.0.1 port=5432 dbname=app user=dba password=topsecret";
  c.nodes[1].pooler = Pooler::kNone;
  auto map = ShardMap::Create(c);
  ASSERT_TRUE(map.ok()) << map.status();
  const std::string text = ShardMapToToml((*map)->config(), PasswordMode::kKeep);
  EXPECT_THAT(text, HasSubstr("pooler = \"transaction\"\n"));
  EXPECT_THAT(text, HasSubstr("pooler = \"none\"\n"));
  auto parsed = ParseShardMapToml(text, "printed");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  EXPECT_TRUE(parsed->map->config() == (*map)->config()) << text;
  const std::string masked = ShardMapToToml(c, PasswordMode::kMask);
  EXPECT_THAT(masked, AllOf(Not(HasSubstr("topsecret")), HasSubstr("user=dba")));
}

TEST(MapTomlPooler, AdminDsnIsTheAdminDsnElseTheDsnAndRefusesATransactionPooler) {
  NodeConfig n;
  n.name = "shard-3";
  n.dsn = "host=bouncer port=6432 dbname=app";
  EXPECT_EQ(*AdminDsn(n), n.dsn);
  n.pooler = Pooler::kNone;
  EXPECT_EQ(*AdminDsn(n), n.dsn);
  n.pooler = Pooler::kTransaction;
  EXPECT_THAT(AdminDsn(n).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("node shard-3"), HasSubstr("pooler = \"transaction\""),
                             HasSubstr("add admin_dsn"))));
  n.admin_dsn = "host=db3 port=5432 dbname=app";
  EXPECT_EQ(*AdminDsn(n), n.admin_dsn);
}

#ifdef SHARDLINE_SOURCE_DIR
TEST(MapTomlExamples, ExampleMapsParseWithoutWarnings) {
  struct Example {
    const char* file;
    KeyType key_type;
    std::size_t nodes;
  };
  for (const Example& e : {Example{"bigint_2_nodes.toml", KeyType::kBigint, 2},
                           Example{"text_3_nodes.toml", KeyType::kText, 3},
                           Example{"uuid.toml", KeyType::kUuid, 2},
                           Example{"app_3_nodes.toml", KeyType::kBigint, 3}}) {
    const std::string path = std::string(SHARDLINE_SOURCE_DIR) + "/schemas/maps/" + e.file;
    auto parsed = LoadShardMapFile(path);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_THAT(parsed->warnings, IsEmpty()) << path;
    EXPECT_EQ(parsed->map->key_type(), e.key_type) << path;
    EXPECT_EQ(parsed->map->nodes().size(), e.nodes) << path;
  }
}
#endif

}  // namespace
}  // namespace shardline
