// Tests of migrate/cli/common.h: exit codes (0 ok, 1 failure / invalid input, 2 usage error),
// catalog resolution with $SHARDLINE_CATALOG, NAME=DSN parsing, map references.
#include "cli/common.h"

#include <algorithm>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/map_init.h"
#include "cli/map_locate.h"
#include "status_matchers.h"

namespace shardline::migrate {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

using ::shardline::testing::StatusIs;

TEST(CliExitCode, OkIsZeroFailuresAreOneUsageErrorsAreTwo) {
  EXPECT_EQ(ExitCodeForStatus(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeForStatus(absl::InvalidArgumentError("m.toml:3: bad")), 1);
  EXPECT_EQ(ExitCodeForStatus(absl::FailedPreconditionError("catalog is at version 4")), 1);
  EXPECT_EQ(ExitCodeForStatus(absl::UnavailableError("node catalog: connection refused")), 1);
  EXPECT_EQ(ExitCodeForStatus(absl::NotFoundError("no such file")), 1);
  EXPECT_EQ(ExitCodeForStatus(absl::InternalError("bug")), 1);
  EXPECT_EQ(ExitCodeForStatus(UsageError("give --map or --catalog")), 2);
}

TEST(CliExitCode, UsageErrorIsInvalidArgumentWithAMarker) {
  const absl::Status s = UsageError("give --map");
  EXPECT_TRUE(IsUsageError(s));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsUsageError(absl::InvalidArgumentError("give --map")));
}

// What CLI11 throws for real command lines of our subcommands maps to 2, --help to 0.
class CliParseTest : public ::testing::Test {
 protected:
  int ExitCodeOf(std::vector<std::string> args) {
    CLI::App app("test", "shardline");
    CLI::App* map = app.add_subcommand("map");
    map->require_subcommand(1);
    SetupMapInit(*map, init_);
    SetupMapLocate(*map, locate_);
    std::reverse(args.begin(), args.end());  // CLI11 takes the vector in reverse order
    try {
      app.parse(args);
    } catch (const CLI::ParseError& e) {
      return ExitCodeForParseError(e.get_exit_code());
    }
    return 0;
  }
  MapInitOptions init_;
  MapLocateOptions locate_;
};

TEST_F(CliParseTest, MissingRequiredOptionIsAUsageError) {
  EXPECT_EQ(ExitCodeOf({"map", "init", "--ranges", "4"}), 2);
}

TEST_F(CliParseTest, UnknownOptionIsAUsageError) {
  EXPECT_EQ(ExitCodeOf({"map", "locate", "--map", "m.toml", "--colour", "1"}), 2);
}

TEST_F(CliParseTest, NonIntegerRangesIsAUsageError) {
  EXPECT_EQ(ExitCodeOf({"map", "init", "--node", "a=host=x", "--ranges", "many"}), 2);
}

TEST_F(CliParseTest, ConflictingMapSourcesAreAUsageError) {
  EXPECT_EQ(ExitCodeOf({"map", "locate", "--map", "m.toml", "--catalog", "host=x", "1"}), 2);
}

TEST_F(CliParseTest, MissingSubcommandIsAUsageError) { EXPECT_EQ(ExitCodeOf({"map"}), 2); }

TEST_F(CliParseTest, HelpExitsZero) { EXPECT_EQ(ExitCodeOf({"map", "init", "--help"}), 0); }

TEST_F(CliParseTest, NegativeBigintKeysAreKeysNotOptions) {
  EXPECT_EQ(ExitCodeOf({"map", "locate", "--map", "m.toml", "-5", "42"}), 0);
  EXPECT_EQ(locate_.keys, (std::vector<std::string>{"-5", "42"}));
}

TEST_F(CliParseTest, RepeatedNodeFlagsKeepTheirOrder) {
  EXPECT_EQ(ExitCodeOf({"map", "init", "--node", "b=host=y", "--node", "a=host=x", "--ranges",
                        "2"}),
            0);
  EXPECT_EQ(init_.nodes, (std::vector<std::string>{"b=host=y", "a=host=x"}));
}

TEST(CliCatalog, FlagWinsOverEnvironment) {
  EXPECT_EQ(*ResolveCatalog("host=flag", "host=env"), "host=flag");
}

TEST(CliCatalog, EnvironmentStandsInForTheFlag) {
  EXPECT_EQ(*ResolveCatalog("", "host=env"), "host=env");
}

TEST(CliCatalog, NeitherFlagNorEnvironmentIsAUsageErrorNamingBoth) {
  for (const char* env : {static_cast<const char*>(nullptr), ""}) {
    absl::StatusOr<std::string> dsn = ResolveCatalog("", env);
    EXPECT_THAT(dsn, StatusIs(absl::StatusCode::kInvalidArgument,
                              AllOf(HasSubstr("--catalog"), HasSubstr("SHARDLINE_CATALOG"))));
    EXPECT_TRUE(IsUsageError(dsn.status()));
  }
}

TEST(CliMapSource, NoSourceIsAUsageErrorNamingEveryWay) {
  absl::StatusOr<LoadedMap> m = LoadMapFromSource({}, nullptr);
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("--map FILE"), HasSubstr("--catalog DSN"),
                                HasSubstr("SHARDLINE_CATALOG"))));
  EXPECT_TRUE(IsUsageError(m.status()));
}

TEST(CliMapSource, MissingFileIsNotFoundNamingIt) {
  MapSourceOptions source;
  source.map_file = "/nonexistent/m.toml";
  EXPECT_THAT(LoadMapFromSource(source, "host=ignored"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/m.toml")));
}

TEST(CliMapRef, CatalogReferenceWithoutCatalogIsAUsageError) {
  absl::StatusOr<LoadedMap> m = LoadMapRef("@current", "");
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("'@current'"), HasSubstr("--catalog"))));
  EXPECT_TRUE(IsUsageError(m.status()));
}

TEST(CliMapRef, MalformedReferenceIsAUsageError) {
  for (const char* ref : {"@", "@x", "@0", "@-2", "@3x"}) {
    absl::StatusOr<LoadedMap> m = LoadMapRef(ref, "host=x");
    EXPECT_THAT(m, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("@current or @N")))
        << ref;
    EXPECT_TRUE(IsUsageError(m.status())) << ref;
  }
}

TEST(CliNameEqualsDsn, SplitsAtTheFirstEquals) {
  auto p = ParseNameEqualsDsn("a=host=10.0.0.1 port=5432", "--node");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first, "a");
  EXPECT_EQ(p->second, "host=10.0.0.1 port=5432");
}

TEST(CliNameEqualsDsn, MissingNameOrDsnIsInvalidArgumentNamingTheFlag) {
  EXPECT_THAT(ParseNameEqualsDsn("=host=x", "--node"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--node expects NAME=DSN")));
  EXPECT_THAT(ParseNameEqualsDsn("a", "--node"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--node expects NAME=DSN")));
  EXPECT_THAT(ParseNameEqualsDsn("a=", "--node"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--node a=")));
}

TEST(CliNameEqualsDsn, ConnectionStringWithoutNameIsRefusedWithoutEchoingIt) {
  EXPECT_THAT(ParseNameEqualsDsn("password=secret host=x", "--node"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("without a node name"), Not(HasSubstr("secret")))));
  EXPECT_THAT(ParseNameEqualsDsn("host=x password=secret", "--node"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("starts with 'host='"), Not(HasSubstr("secret")))));
}

TEST(CliFormat, TableAlignsColumnsAndRightAlignsNumbers) {
  EXPECT_EQ(FormatTable({{"NAME", "RANGES", "DSN"}, {"a", "86", "host=x"}, {"bb", "5", "h"}},
                        {false, true, false}, 1),
            " NAME  RANGES  DSN\n"
            " a         86  host=x\n"
            " bb         5  h\n");
}

TEST(CliFormat, ShareIsAPercentageWithTwoDecimals) {
  EXPECT_EQ(FormatShare(1.0 / 3), "33.33%");
  EXPECT_EQ(FormatShare(1.0), "100.00%");
}

TEST(CliFormat, MaskedDsnHidesPasswordsAndKeepsOthersAsWritten) {
  EXPECT_EQ(MaskedDsn("host=x   dbname=app"), "host=x   dbname=app");
  EXPECT_THAT(MaskedDsn("host=x password=secret"),
              AllOf(HasSubstr("password=********"), Not(HasSubstr("secret"))));
  EXPECT_THAT(MaskedDsn("postgresql://u:secret@h/db"), Not(HasSubstr("secret")));
  EXPECT_THAT(MaskedDsn("host='unterminated password=secret"), Not(HasSubstr("secret")));
}

}  // namespace
}  // namespace shardline::migrate
