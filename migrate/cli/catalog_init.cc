// `shardline catalog init` (see catalog_init.h).
#include "cli/catalog_init.h"

#include <cstdlib>

#include <fmt/format.h>

#include "catalog.h"
#include "cli/common.h"

namespace shardline::migrate {

CLI::App* SetupCatalogInit(CLI::App& catalog, CatalogInitOptions& options) {
  CLI::App* cmd = catalog.add_subcommand(
      "init", "Create the shardline catalog (schema `shardline`) in the control database");
  cmd->add_option("--catalog", options.catalog_dsn,
                  fmt::format("Control database (default: ${})", kCatalogEnv));
  cmd->footer(
      "Creates the schema `shardline` with the map versions, the current-version pointer, the\n"
      "audit trail and the router registry. Running it again changes nothing. The stored maps\n"
      "hold the nodes' passwords: nothing is granted to PUBLIC (see schemas/catalog.sql for\n"
      "the grants a router role needs).\n"
      "\n"
      "Example:\n"
      "  shardline catalog init --catalog 'host=10.0.0.9 dbname=control user=dba'");
  return cmd;
}

absl::Status RunCatalogInit(const CatalogInitOptions& options) {
  absl::StatusOr<std::string> dsn = ResolveCatalog(options.catalog_dsn, std::getenv(kCatalogEnv));
  if (!dsn.ok()) return dsn.status();
  absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Create(*dsn);
  if (!catalog.ok()) return catalog.status();
  absl::StatusOr<bool> created = (*catalog)->Init(Actor{CurrentOsUser()});
  if (!created.ok()) return created.status();
  absl::StatusOr<std::int64_t> version = (*catalog)->CurrentVersion();
  if (!version.ok()) return version.status();
  if (*created) {
    fmt::print("created the shardline catalog in {} (schema version {})\n",
               (*catalog)->where(), kCatalogSchemaVersion);
  } else {
    fmt::print("the shardline catalog in {} is up to date (schema version {}); current map "
               "version: {}\n",
               (*catalog)->where(), kCatalogSchemaVersion,
               *version == 0 ? std::string("none") : std::to_string(*version));
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
