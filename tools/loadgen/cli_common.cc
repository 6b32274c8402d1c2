// Shared flags and helpers of the `shardline-loadgen` subcommands (see cli_common.h).
#include "cli_common.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "shardline/id_gen.h"

namespace shardline::loadgen {

void AddRouterFlags(CLI::App& cmd, RouterFlags& flags) {
  migrate::AddMapSourceOptions(cmd, flags.source);
  cmd.add_option("--application-name", flags.application_name,
                 "application_name of every connection (pg_stat_activity)")
      ->capture_default_str();
  cmd.add_option("--checkout-timeout", flags.checkout_timeout_s,
                 "Seconds a call waits for a pooled connection before failing")
      ->capture_default_str();
  cmd.add_option("--connect-timeout", flags.connect_timeout_s,
                 "Seconds one connection attempt may take")
      ->capture_default_str();
  cmd.add_option("--statement-timeout", flags.statement_timeout_s,
                 "statement_timeout in seconds on every connection (0: server default)")
      ->capture_default_str();
  cmd.add_option("--fence-retries", flags.fence_retries,
                 "Retries of a write rejected by a fence (the range moved) on the new owner")
      ->capture_default_str();
  cmd.add_option("--pool-min", flags.pool_min,
                 "Connections kept open per node (0: the map's pool_min)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd.add_option("--pool-max", flags.pool_max,
                 "Connections at most per node (0: the map's pool_max); size it to --workers")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  cmd.add_flag("--no-register", flags.no_register,
               "With --catalog: do not register in the catalog's router registry (a rollout "
               "then does not wait for this process to apply new maps)");
  cmd.add_option("--worker-id", flags.worker_id,
                 "Id-generator worker id (0..1023) for the ids of new rows. Needed with --map (a "
                 "map file has no router registry to lease one from): unique among the live "
                 "routers and loadgens writing to these nodes. With --catalog one is leased "
                 "from the registry unless given")
      ->check(CLI::Range(0, kMaxWorkerId));
}

absl::Status CheckCanGenerateIds(Router& router) {
  absl::StatusOr<std::int64_t> id = router.NextId();
  if (id.ok()) return absl::OkStatus();
  if (id.status().code() == absl::StatusCode::kFailedPrecondition) {
    return migrate::UsageError(fmt::format(
        "{}: this command writes rows with generated ids; pass --worker-id N (0..{}, unique "
        "among the live writers), or --catalog without --no-register",
        std::string(id.status().message()), kMaxWorkerId));
  }
  return id.status();
}

absl::StatusOr<RouterOptions> MakeRouterOptions(const RouterFlags& flags, const char* env_catalog) {
  RouterOptions o;
  if (!flags.source.map_file.empty()) {
    o.map_file = flags.source.map_file;
  } else {
    absl::StatusOr<std::string> catalog =
        migrate::ResolveCatalog(flags.source.catalog_dsn, env_catalog);
    if (!catalog.ok()) {
      return migrate::UsageError(
          "give the shard map with --map FILE or --catalog DSN (or set $SHARDLINE_CATALOG)");
    }
    o.catalog_dsn = *catalog;
  }
  if (flags.checkout_timeout_s < 0 || flags.connect_timeout_s < 0 ||
      flags.statement_timeout_s < 0) {
    return absl::InvalidArgumentError("timeouts must not be negative");
  }
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000)); };
  o.application_name = flags.application_name;
  o.pool.checkout_timeout = ms(flags.checkout_timeout_s);
  o.pool.connect_timeout = ms(flags.connect_timeout_s);
  o.statement_timeout = ms(flags.statement_timeout_s);
  o.fence_retries = flags.fence_retries;
  o.pool.min_size_override = flags.pool_min;
  o.pool.max_size_override = flags.pool_max;
  o.register_in_catalog = !flags.no_register;
  o.worker_id = flags.worker_id;
  o.log_sink = [](LogLevel level, std::string_view line) {
    if (level == LogLevel::kDebug || level == LogLevel::kInfo) return;
    fmt::print(stderr, "{}: router: {}\n", kProgram, line);
  };
  return o;
}

absl::StatusOr<double> ParseDurationSeconds(std::string_view text, std::string_view flag) {
  const std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  const std::string_view unit(end);
  double factor = -1;
  if (end == s.c_str()) {
    factor = -1;
  } else if (unit.empty() || unit == "s") {
    factor = 1;
  } else if (unit == "ms") {
    factor = 1e-3;
  } else if (unit == "m" || unit == "min") {
    factor = 60;
  } else if (unit == "h") {
    factor = 3600;
  }
  if (factor < 0 || !(v >= 0) || v > 1e9) {
    return absl::InvalidArgumentError(fmt::format(
        "{} '{}': expected a duration such as 30s, 500ms, 2m (a bare number is seconds)", flag,
        text));
  }
  return v * factor;
}

void PrintError(const absl::Status& status) {
  const std::string message(status.message());
  std::size_t pos = 0;
  while (pos <= message.size()) {
    std::size_t nl = message.find('\n', pos);
    if (nl == std::string::npos) nl = message.size();
    fmt::print(stderr, "{}: error: {}\n", kProgram, message.substr(pos, nl - pos));
    pos = nl + 1;
  }
}

}  // namespace shardline::loadgen
