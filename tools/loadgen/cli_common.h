// What the `shardline-loadgen` subcommands share: the map source and router flags, building
// RouterOptions from them, durations on the command line ("30s", "500ms", "2m"), and printing
// errors as "shardline-loadgen: error: ...". Exit codes are the `shardline` CLI's (0 ok,
// 1 failure or broken budget, 2 usage error: migrate/cli/common.h).
#pragma once

#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/common.h"
#include "shardline/router.h"
#include "shardline/router_options.h"

namespace shardline::loadgen {

inline constexpr const char* kProgram = "shardline-loadgen";

// Where the map comes from and how the router connects.
struct RouterFlags {
  migrate::MapSourceOptions source;  // --map FILE | --catalog DSN ($SHARDLINE_CATALOG)
  std::string application_name = "shardline-loadgen";
  double checkout_timeout_s = 1.0;
  double connect_timeout_s = 2.0;
  double statement_timeout_s = 0;  // 0: the server's default
  int fence_retries = 1;
  int pool_min = 0;                // per-node pool limits instead of the map's (0: the map's)
  int pool_max = 0;
  bool no_register = false;        // do not register in the catalog's router registry
  int worker_id = -1;              // id-generator worker id (-1: leased from the registry)
};

// Adds --map, --catalog, --application-name, --checkout-timeout, --connect-timeout,
// --statement-timeout, --fence-retries, --pool-min, --pool-max, --no-register, --worker-id to
// `cmd`.
void AddRouterFlags(CLI::App& cmd, RouterFlags& flags);

// Checks that `router` can generate ids (the commands that write new rows call it before any
// work): a router without a worker id (--map without --worker-id) is a UsageError saying what
// to pass; other failures (the lease not held yet) are returned as they are.
absl::Status CheckCanGenerateIds(Router& router);

// RouterOptions for the flags: the map file, else the catalog (flag or $SHARDLINE_CATALOG,
// `env_catalog`, may be null). A UsageError when neither is given; InvalidArgument for a
// negative timeout. The router logs warnings and errors to stderr, prefixed with the program.
absl::StatusOr<RouterOptions> MakeRouterOptions(const RouterFlags& flags, const char* env_catalog);

// Seconds in "30", "30s", "1.5s", "500ms", "2m", "1h" (a bare number is seconds).
// InvalidArgument naming `flag` and the text otherwise, or for a negative value.
absl::StatusOr<double> ParseDurationSeconds(std::string_view text, std::string_view flag);

// Prints `status` to stderr, one "shardline-loadgen: error: <line>" per line of its message.
void PrintError(const absl::Status& status);

}  // namespace shardline::loadgen
