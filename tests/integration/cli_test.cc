// Tests of the `shardline` binary's map and catalog commands, run as a user would run them
// (RunCommand: real process, real exit code, stdout and stderr apart): output forms, exit codes
// (0 ok, 1 failure or invalid input, 2 usage error), masking of passwords, $SHARDLINE_CATALOG.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cluster.h"
#include "shardline/key.h"
#include "shardline/map_toml.h"

namespace shardline::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

// Prints everything the command wrote when an assertion about it fails.
std::string Describe(const CommandResult& r) {
  return fmt::format("exit {}\n--- stdout ---\n{}--- stderr ---\n{}", r.exit_code, r.out, r.err);
}

// Every test runs in its own temporary directory and with no $SHARDLINE_CATALOG inherited
// (empty counts as unset).
class CliTest : public ::testing::Test {
 protected:
  CliTest() {
    std::string tmpl = (fs::temp_directory_path() / "shardline-cli-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
  }
  ~CliTest() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  CommandResult Run(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), BinPath("shardline"));
    env.try_emplace("SHARDLINE_CATALOG", "");
    return RunCommand(args, env);
  }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(Path(name)) << text;
    return Path(name);
  }

  // `map init` of a three-node, 8-range bigint map (node a's DSN holds password=secret).
  std::string InitMap(const std::string& name, std::vector<std::string> extra = {},
                      const std::string& ranges = "8") {
    std::vector<std::string> args = {"map", "init",
                                     "--node", "a=host=127.0.0.1 port=1 dbname=app password=secret",
                                     "--node", "b=host=127.0.0.1 port=2 dbname=app",
                                     "--node", "c=host=127.0.0.1 port=3 dbname=app",
                                     "--ranges", ranges, "--table", "users:user_id",
                                     "-o", Path(name)};
    args.insert(args.end(), extra.begin(), extra.end());
    const CommandResult r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return Path(name);
  }

  fs::path dir_;
};

TEST_F(CliTest, MapInitWritesAValidPrivateFileAndRefusesToOverwriteIt) {
  const std::string m = InitMap("m.toml");
  struct stat st {};
  ASSERT_EQ(::stat(m.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // it holds the connection strings
  CommandResult r = Run({"map", "validate", m});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, "OK: version 1, 3 nodes, 8 ranges, 1 tables\n");

  r = Run({"map", "init", "--node", "a=host=x", "--ranges", "2", "-o", m});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(fmt::format("shardline: error: {} already exists", m)));
  r = Run({"map", "init", "--node", "a=host=x", "--ranges", "2", "-o", m, "--force"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(Run({"map", "validate", m}).out, "OK: version 1, 1 nodes, 2 ranges, 0 tables\n");
}

TEST_F(CliTest, MapInitToAPipeWritesTheMapWithItsPasswords) {
  // Not a terminal: the output is storage (`> map.toml`), so it must be complete.
  const CommandResult r = Run({"map", "init", "--node", "a=host=x password=pw", "--ranges", "4",
                               "--key-type", "text", "--version", "3"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  absl::StatusOr<ParsedShardMap> parsed = ParseShardMapToml(r.out, "stdout");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->map->version(), 3);
  EXPECT_EQ(parsed->map->key_type(), KeyType::kText);
  EXPECT_EQ(parsed->map->nodes()[0].dsn, "host=x password=pw");
}

TEST_F(CliTest, LocatePrintsKeyHashRangeAndNodePerLine) {
  const std::string m = InitMap("m.toml");
  const CommandResult r = Run({"map", "locate", "--map", m, "42", "-5", "0"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  absl::StatusOr<ParsedShardMap> map = LoadShardMapFile(m);
  ASSERT_TRUE(map.ok()) << map.status();
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[0], AllOf(StartsWith("KEY"), HasSubstr("HASH"), HasSubstr("RANGE"),
                              HasSubstr("NODE")));
  const std::vector<std::string> keys = {"42", "-5", "0"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::int64_t hash = *HashKeyText(KeyType::kBigint, keys[i]);
    const RangeConfig& range = map->map->RangeFor(hash);
    std::istringstream fields(lines[i + 1]);
    std::string key, hash_text, range_text, node;
    fields >> key >> hash_text >> range_text >> node;
    EXPECT_EQ(key, keys[i]);
    EXPECT_EQ(hash_text, std::to_string(hash));
    EXPECT_EQ(range_text, fmt::format("{}..{}", range.lo, range.hi));
    EXPECT_EQ(node, range.node);
  }
}

TEST_F(CliTest, LocateJsonIsAnArrayWithTypedFieldsMatchingTheMapLookup) {
  const std::string m = InitMap("m.toml");
  const CommandResult r = Run({"map", "locate", "--map", m, "--json", "1", "2", "3", "-9"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  absl::StatusOr<ParsedShardMap> map = LoadShardMapFile(m);
  ASSERT_TRUE(map.ok()) << map.status();
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 4u);
  const std::vector<std::string> keys = {"1", "2", "3", "-9"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const nlohmann::json& e = j[i];
    ASSERT_TRUE(e["key"].is_string());
    ASSERT_TRUE(e["hash"].is_number_integer());
    ASSERT_TRUE(e["lo"].is_number_integer());
    ASSERT_TRUE(e["hi"].is_number_integer());
    ASSERT_TRUE(e["node"].is_string());
    EXPECT_EQ(e["key"].get<std::string>(), keys[i]);
    const std::int64_t hash = *HashKeyText(KeyType::kBigint, keys[i]);
    const RangeConfig& range = map->map->RangeFor(hash);
    EXPECT_EQ(e["hash"].get<std::int64_t>(), hash);
    EXPECT_EQ(e["lo"].get<std::int64_t>(), range.lo);
    EXPECT_EQ(e["hi"].get<std::int64_t>(), range.hi);
    EXPECT_EQ(e["node"].get<std::string>(), range.node);
  }
}

TEST_F(CliTest, LocateAgreesWithTheServerHashOnANode) {
  const std::string m = InitMap("m.toml");
  const CommandResult r = Run({"map", "locate", "--map", m, "--json", "123456789"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  auto conn = ConnectOrDie(Cluster().node_dsns[0]);
  auto server = conn->Exec("SELECT hashint8extended(123456789, 0)");
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(std::to_string(j[0]["hash"].get<std::int64_t>()), server->String(0, 0));
}

TEST_F(CliTest, LocateRefusesAKeyThatDoesNotParseNamingItAndPrintsNothing) {
  const std::string m = InitMap("m.toml");
  const CommandResult r = Run({"map", "locate", "--map", m, "42", "12x"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("shardline: error: key '12x'"), HasSubstr("bigint")));
  EXPECT_THAT(r.out, IsEmpty());
  const std::string u = InitMap("u.toml", {"--key-type", "uuid", "--force"});
  const CommandResult ru = Run({"map", "locate", "--map", u, "not-a-uuid"});
  EXPECT_EQ(ru.exit_code, 1) << Describe(ru);
  EXPECT_THAT(ru.err, HasSubstr("not-a-uuid"));
}

TEST_F(CliTest, ShowNeverPrintsAPasswordInAnyForm) {
  const std::string m = InitMap("m.toml");
  for (const std::vector<std::string>& form :
       {std::vector<std::string>{}, {"--json"}, {"--toml"}}) {
    std::vector<std::string> args = {"map", "show", "--map", m};
    args.insert(args.end(), form.begin(), form.end());
    const CommandResult r = Run(args);
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, AllOf(Not(HasSubstr("secret")), HasSubstr("password=********")))
        << (form.empty() ? "text" : form[0]);
    EXPECT_THAT(r.err, Not(HasSubstr("secret")));
  }
}

TEST_F(CliTest, ShowJsonSummarisesNodesAndListsRanges) {
  const std::string m = InitMap("m.toml");
  const CommandResult r = Run({"map", "show", "--map", m, "--json"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["key_type"], "bigint");
  ASSERT_EQ(j["nodes"].size(), 3u);
  std::int64_t ranges = 0;
  double share = 0;
  for (const auto& n : j["nodes"]) {
    ranges += n["ranges"].get<std::int64_t>();
    share += n["share"].get<double>();
  }
  EXPECT_EQ(ranges, 8);
  EXPECT_DOUBLE_EQ(share, 1.0);
  EXPECT_EQ(j["ranges"].size(), 8u);
  EXPECT_EQ(j["ranges"][0]["lo"].get<std::int64_t>(), kMinHash);
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  const std::string m = InitMap("m.toml");
  const std::vector<std::vector<std::string>> cases = {
      {},                                                  // no command
      {"map"},                                             // no subcommand
      {"map", "frobnicate"},                               // unknown subcommand
      {"map", "init", "--ranges", "4"},                    // missing --node
      {"map", "init", "--node", "a=host=x", "--ranges", "four"},  // not an integer
      {"map", "locate", "42"},                             // no map source, no env
      {"map", "locate", "--map", m},                       // no key
      {"map", "locate", "--map", m, "--catalog", "host=x", "1"},  // both sources
      {"map", "history"},                                  // no catalog, no env
      {"map", "show", "--map", m, "--colour"},             // unknown flag
  };
  for (const auto& args : cases) {
    const CommandResult r = Run(args);
    EXPECT_EQ(r.exit_code, 2) << fmt::format("{}", fmt::join(args, " ")) << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("shardline: error: ")) << fmt::format("{}", fmt::join(args, " "));
  }
}

TEST_F(CliTest, HelpExitsZeroAndShowsExamplesForEveryCommand) {
  const std::vector<std::vector<std::string>> commands = {
      {},
      {"map", "init"},    {"map", "validate"}, {"map", "show"},    {"map", "locate"},
      {"map", "diff"},    {"map", "publish"},  {"map", "history"}, {"map", "revert"},
      {"catalog", "init"}};
  for (std::vector<std::string> args : commands) {
    args.push_back("--help");
    const CommandResult r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr("Example")) << fmt::format("{}", fmt::join(args, " "));
  }
}

TEST_F(CliTest, InvalidMapExitsOneNamingFileAndLine) {
  const std::string bad = Write("bad.toml",
                                "version = 1\n"
                                "[[nodes]]\n"
                                "name = \"a\"\n"
                                "dsn = \"host=x\"\n"
                                "[[ranges]]\n"
                                "lo = -9223372036854775808\n"
                                "hi = 9223372036854775807\n"
                                "node = \"zz\"\n");
  CommandResult r = Run({"map", "validate", bad});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr(fmt::format("shardline: error: {}:5:", bad)),
                           HasSubstr("'zz'")));
  EXPECT_THAT(r.out, IsEmpty());
  const std::string garbage = Write("garbage.toml", "version = 1\nnodes = [\n");
  r = Run({"map", "show", "--map", garbage});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(fmt::format("{}:", garbage)));
  r = Run({"map", "validate", Path("missing.toml")});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("missing.toml"));
}

TEST_F(CliTest, DiffListsMovedStretchesAndAddedNodes) {
  const std::string a = Write("a.toml",
                              "version = 1\n"
                              "[[nodes]]\nname = \"a\"\ndsn = \"host=x\"\n"
                              "[[ranges]]\nlo = -9223372036854775808\nhi = -1\nnode = \"a\"\n"
                              "[[ranges]]\nlo = 0\nhi = 9223372036854775807\nnode = \"a\"\n");
  const std::string b = Write("b.toml",
                              "version = 2\n"
                              "[[nodes]]\nname = \"a\"\ndsn = \"host=x\"\n"
                              "[[nodes]]\nname = \"n2\"\ndsn = \"host=y password=secret\"\n"
                              "[[ranges]]\nlo = -9223372036854775808\nhi = 99\nnode = \"a\"\n"
                              "[[ranges]]\nlo = 100\nhi = 9223372036854775807\nnode = \"n2\"\n");
  const CommandResult r = Run({"map", "diff", a, b});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("map version 1 -> 2"), HasSubstr("nodes added: n2"),
                           HasSubstr("owner changes: 1 stretch"),
                           HasSubstr("100  9223372036854775807  a     n2"),
                           Not(HasSubstr("secret"))));
  const CommandResult same = Run({"map", "diff", a, a});
  EXPECT_THAT(same.out, HasSubstr("no differences"));
}

TEST_F(CliTest, CatalogCommandsWorkThroughTheEnvironmentVariable) {
  ScratchDatabases db(1);
  const std::map<std::string, std::string> env = {{"SHARDLINE_CATALOG", db.control_dsn()}};
  const std::string m1 = InitMap("m1.toml");
  CommandResult r = Run({"catalog", "init"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("created the shardline catalog"));
  r = Run({"catalog", "init"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("up to date"));
  EXPECT_THAT(r.err, IsEmpty());  // no "already exists, skipping" notices

  r = Run({"map", "publish", m1, "--comment", "first map"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("published map version 1"));

  r = Run({"map", "locate", "--json", "42"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const CommandResult from_file = Run({"map", "locate", "--map", m1, "--json", "42"});
  EXPECT_EQ(r.out, from_file.out);

  r = Run({"map", "show"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("version 1"), Not(HasSubstr("secret"))));

  // Version 3 when the catalog is at 1: refused, naming both.
  const std::string m3 = InitMap("m3.toml", {"--version", "3"});
  r = Run({"map", "publish", m3}, env);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("catalog is at version 1; this map has version 3; expected 2"));

  const std::string m2 = InitMap("m2.toml", {"--version", "2"}, "4");
  ASSERT_EQ(Run({"map", "publish", m2}, env).exit_code, 0);
  r = Run({"map", "diff", "@1", "@current"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("map version 1 -> 2"));

  r = Run({"map", "revert", "--to", "1", "--comment", "undo"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("published map version 3 with the content of version 1"));

  r = Run({"map", "history"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("init"), HasSubstr("first map"),
                           HasSubstr("content of version 1: undo")));
  r = Run({"map", "history", "--json"}, env);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const nlohmann::json h = nlohmann::json::parse(r.out);
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h[3]["action"], "revert");
  EXPECT_EQ(h[3]["version"], 3);
  EXPECT_EQ(h[3]["reverted_from"], 1);

  // The flag wins over the environment.
  r = Run({"map", "history", "--catalog", "host=127.0.0.1 port=1 dbname=nowhere"}, env);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("shardline: error: "));
}

TEST_F(CliTest, CatalogErrorsNameTheCatalogWithoutItsPassword) {
  const CommandResult r =
      Run({"map", "show", "--catalog", "host=127.0.0.1 port=1 dbname=x password=secret"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("shardline: error: "), Not(HasSubstr("secret"))));
}

TEST_F(CliTest, PublishRefusesAnInvalidMapFileNamingTheLine) {
  ScratchDatabases db(1);
  ASSERT_EQ(Run({"catalog", "init", "--catalog", db.control_dsn()}).exit_code, 0);
  const std::string bad = Write("bad.toml",
                                "version = 1\n"
                                "[[nodes]]\nname = \"a\"\ndsn = \"host=x\"\n"
                                "[[ranges]]\nlo = 0\nhi = 9223372036854775807\nnode = \"a\"\n");
  const CommandResult r = Run({"map", "publish", "--catalog", db.control_dsn(), bad});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(fmt::format("{}:", bad)));
  EXPECT_THAT(Run({"map", "history", "--catalog", db.control_dsn()}).out,
              Not(HasSubstr("publish")));
}

}  // namespace
}  // namespace shardline::testing
