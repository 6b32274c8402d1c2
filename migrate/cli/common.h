// What the `shardline` subcommands share: where the map comes from (--map FILE, --catalog DSN,
// or $SHARDLINE_CATALOG), usage errors and the mapping of statuses to exit codes (0 ok,
// 1 failure or invalid input, 2 usage error), and printing errors and warnings to stderr as
// "shardline: error: ...". No state: every function is thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shardline/map_toml.h"

namespace shardline::migrate {

// The environment variable that stands in for --catalog.
inline constexpr const char* kCatalogEnv = "SHARDLINE_CATALOG";

// Exit codes of the CLI.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command failed, or its input is invalid
inline constexpr int kExitUsage = 2;    // the command line is wrong

// An InvalidArgument status marked as a usage error (exit code 2): a missing or conflicting
// flag that CLI11 cannot express, e.g. neither --map nor --catalog nor $SHARDLINE_CATALOG.
absl::Status UsageError(std::string message);
bool IsUsageError(const absl::Status& status);

// The exit code for the status a Run function returned: 0 for OK, 2 for a UsageError, else 1.
int ExitCodeForStatus(const absl::Status& status);
// The exit code after CLI11 parsing failed with an exception whose own exit code (what
// CLI::App::exit returned after printing it) is `cli11_exit_code`: 0 stays 0 (--help,
// --version), anything else is a usage error (2).
int ExitCodeForParseError(int cli11_exit_code);

// Prints `status` to stderr, one "shardline: error: <line>" per line of its message.
void PrintError(const absl::Status& status);
// Prints each warning as "shardline: warning: <warning>" to stderr.
void PrintWarnings(const std::vector<std::string>& warnings);

class Catalog;
// Before `map publish` / `map revert` put `candidate` in place: CheckHandPublish against the
// catalog's current map (publish_guard.h), its warnings printed (with `force`). Its
// FailedPrecondition otherwise; nothing is published then.
absl::Status GuardHandPublish(Catalog& catalog, const ShardMap& candidate, bool force);

// The catalog DSN: `flag` when given, else `env_value` ($SHARDLINE_CATALOG, may be null) when
// non-empty, else a UsageError naming both.
absl::StatusOr<std::string> ResolveCatalog(const std::string& flag, const char* env_value);

// Where a command reads the map from: exactly one of a file and a catalog.
struct MapSourceOptions {
  std::string map_file;     // --map FILE
  std::string catalog_dsn;  // --catalog DSN
};
// Adds --map and --catalog (mutually exclusive) to `cmd`.
void AddMapSourceOptions(CLI::App& cmd, MapSourceOptions& options);

// A loaded map and where it came from, for messages ("map file m.toml", "catalog
// host=... dbname=control, version 4").
struct LoadedMap {
  ParsedShardMap parsed;
  std::string origin;
};
// Loads the map from --map, else --catalog, else `env_value` ($SHARDLINE_CATALOG). A
// UsageError when none is given; the loader's error otherwise (NotFound naming the file,
// InvalidArgument naming file:line, Unavailable naming the catalog without password).
absl::StatusOr<LoadedMap> LoadMapFromSource(const MapSourceOptions& options,
                                            const char* env_value);

// A map reference as `map diff` takes it: a file path, or "@current" / "@N" for the current /
// N-th version in the catalog `catalog_dsn` (which must then be non-empty; else a UsageError).
absl::StatusOr<LoadedMap> LoadMapRef(const std::string& ref, const std::string& catalog_dsn);

// "NAME=DSN" split at the first '=' (the DSN itself contains '='). InvalidArgument naming
// `flag` when the name or the DSN is empty; the DSN is never echoed (it may hold a password).
absl::StatusOr<std::pair<std::string, std::string>> ParseNameEqualsDsn(std::string_view arg,
                                                                       std::string_view flag);

// A share of the hash space as a percentage with two decimals: "33.59%".
std::string FormatShare(double share);

// A connection string for display: through DsnWithoutPassword when it holds a password or does
// not parse, otherwise as written.
std::string MaskedDsn(const std::string& dsn);

// Rows (the first is the header) as aligned columns separated by two spaces, each line
// prefixed by `indent` spaces and ending in a newline; columns whose `right_align` entry is
// true are right-aligned (numbers). The last column is not padded.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows,
                        const std::vector<bool>& right_align, int indent = 2);

}  // namespace shardline::migrate
