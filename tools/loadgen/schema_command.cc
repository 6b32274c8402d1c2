// `shardline-loadgen schema` (see schema_command.h).
#include "schema_command.h"

#include <cstdlib>

#include <fmt/format.h>

#include "app_tables.h"

namespace shardline::loadgen {

CLI::App* SetupSchema(CLI::App& app, SchemaOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "schema", "Create the fitness-app tables (schemas/app.sql) on every node of the map");
  migrate::AddMapSourceOptions(*cmd, options.source);
  cmd->add_option("--application-name", options.application_name,
                  "application_name of the connections")
      ->capture_default_str();
  cmd->footer(
      "Idempotent (CREATE ... IF NOT EXISTS). `load` runs it too.\n"
      "\n"
      "Example:\n"
      "  shardline-loadgen schema --map schemas/maps/app_3_nodes.toml");
  return cmd;
}

absl::Status RunSchema(const SchemaOptions& options) {
  absl::StatusOr<migrate::LoadedMap> loaded =
      migrate::LoadMapFromSource(options.source, std::getenv(migrate::kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  const ShardMap& map = *loaded->parsed.map;
  if (absl::Status s = ApplyAppSchema(map, options.application_name); !s.ok()) return s;
  for (const NodeConfig& node : map.nodes()) {
    fmt::print("schema applied on node {}\n", node.name);
  }
  return absl::OkStatus();
}

}  // namespace shardline::loadgen
