// `shardline map publish` (see map_publish.h).
#include "cli/map_publish.h"

#include <cstdlib>

#include <fmt/format.h>

#include "catalog.h"
#include "cli/common.h"
#include "map_diff.h"
#include "shardline/map_toml.h"

namespace shardline::migrate {

CLI::App* SetupMapPublish(CLI::App& map, MapPublishOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "publish", "Publish a map file as the catalog's next version (routers follow it)");
  cmd->add_option("--catalog", options.catalog_dsn,
                  fmt::format("Control database (default: ${})", kCatalogEnv));
  cmd->add_option("FILE", options.file, "Shard map file (TOML) to publish")->required();
  cmd->add_option("--comment", options.comment, "Why: kept in the audit trail (map history)");
  cmd->add_flag("--force", options.force,
                "Publish even while a migration is active or onto ranges a node fences (says "
                "what it breaks)");
  cmd->footer(
      "The map must validate and its version must be exactly the catalog's current version\n"
      "+ 1 (the first publish may have any positive version). Publishing is one transaction:\n"
      "of two concurrent publishers exactly one wins, the other is told the version it lost\n"
      "to. Routers following the catalog are notified (NOTIFY shardline_map) and swap maps.\n"
      "Refused while a rollout migration is active (its own steps publish), and when the map\n"
      "routes a range to a node that fences it (a cleanup emptied it there), unless --force.\n"
      "\n"
      "Examples:\n"
      "  shardline map publish --catalog 'host=10.0.0.9 dbname=control' maps/v4.toml \\\n"
      "      --comment 'add node d'\n"
      "  export SHARDLINE_CATALOG='host=10.0.0.9 dbname=control'\n"
      "  shardline map diff @current maps/v5.toml && shardline map publish maps/v5.toml");
  return cmd;
}

absl::Status RunMapPublish(const MapPublishOptions& options) {
  absl::StatusOr<std::string> dsn = ResolveCatalog(options.catalog_dsn, std::getenv(kCatalogEnv));
  if (!dsn.ok()) return dsn.status();
  absl::StatusOr<ParsedShardMap> parsed = LoadShardMapFile(options.file);
  if (!parsed.ok()) return parsed.status();
  PrintWarnings(parsed->warnings);
  absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Create(*dsn);
  if (!catalog.ok()) return catalog.status();
  // For the summary only: the publish itself re-checks the version under a lock.
  absl::StatusOr<ParsedShardMap> previous = (*catalog)->LoadCurrent();
  const ShardMap& map = *parsed->map;
  if (absl::Status s = GuardHandPublish(**catalog, map, options.force); !s.ok()) return s;
  if (absl::Status s =
          (*catalog)->Publish(map.config(), options.comment, Actor{CurrentOsUser()});
      !s.ok()) {
    return s;
  }
  fmt::print("published map version {} to catalog {} ({} nodes, {} ranges, {} tables)\n",
             map.version(), (*catalog)->where(), map.nodes().size(), map.ranges().size(),
             map.tables().size());
  if (previous.ok()) {
    const MapDiff d = DiffMaps(*previous->map, map);
    fmt::print("since version {}: {} owner change{} ({} of the hash space)", d.version_a,
               d.owner_changes.size(), d.owner_changes.size() == 1 ? "" : "s",
               FormatShare(HashShare(d.owner_changes)));
    if (!d.nodes_added.empty()) fmt::print(", {} node(s) added", d.nodes_added.size());
    if (!d.nodes_removed.empty()) fmt::print(", {} node(s) removed", d.nodes_removed.size());
    fmt::print("\n");
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
