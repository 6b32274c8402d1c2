// `shardline map revert` (see map_revert.h).
#include "cli/map_revert.h"

#include <cstdlib>

#include <fmt/format.h>

#include "catalog.h"
#include "cli/common.h"

namespace shardline::migrate {

CLI::App* SetupMapRevert(CLI::App& map, MapRevertOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "revert", "Publish a new version with the content of an earlier version");
  cmd->add_option("--catalog", options.catalog_dsn,
                  fmt::format("Control database (default: ${})", kCatalogEnv));
  cmd->add_option("--to", options.to, "The earlier version whose content to publish again")
      ->required();
  cmd->add_option("--comment", options.comment, "Why: kept in the audit trail (map history)");
  cmd->add_flag("--force", options.force,
                "Publish even while a migration is active or onto ranges a node fences (says "
                "what it breaks)");
  cmd->footer(
      "The new version is the current version + 1; routers move to it like to any publish.\n"
      "Reverting a map is not a data rollback: rows already moved between nodes stay where\n"
      "they are (use the rollout's rollback for that). Refused while a rollout migration is\n"
      "active, and when version --to routes a range to a node that fences it (a cleanup\n"
      "emptied it there), unless --force.\n"
      "\n"
      "Example:\n"
      "  shardline map revert --catalog 'host=10.0.0.9 dbname=control' --to 3 \\\n"
      "      --comment 'version 4 routes to a node that is down'");
  return cmd;
}

absl::Status RunMapRevert(const MapRevertOptions& options) {
  absl::StatusOr<std::string> dsn = ResolveCatalog(options.catalog_dsn, std::getenv(kCatalogEnv));
  if (!dsn.ok()) return dsn.status();
  absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Create(*dsn);
  if (!catalog.ok()) return catalog.status();
  absl::StatusOr<ParsedShardMap> target = (*catalog)->Load(options.to);
  if (!target.ok()) return target.status();
  if (absl::Status s = GuardHandPublish(**catalog, *target->map, options.force); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::int64_t> version =
      (*catalog)->Revert(options.to, options.comment, Actor{CurrentOsUser()});
  if (!version.ok()) return version.status();
  fmt::print("published map version {} with the content of version {} to catalog {}\n",
             *version, options.to, (*catalog)->where());
  return absl::OkStatus();
}

}  // namespace shardline::migrate
