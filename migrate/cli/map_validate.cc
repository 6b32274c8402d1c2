// `shardline map validate` (see map_validate.h).
#include "cli/map_validate.h"

#include <fmt/format.h>

#include "cli/common.h"
#include "shardline/map_toml.h"

namespace shardline::migrate {

CLI::App* SetupMapValidate(CLI::App& map, MapValidateOptions& options) {
  CLI::App* cmd = map.add_subcommand("validate", "Check a shard map file and summarise it");
  cmd->add_option("FILE", options.file, "Shard map file (TOML)")->required();
  cmd->footer(
      "Every problem is reported with FILE:line (gaps and overlaps name both ranges); unknown\n"
      "fields are warnings. Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.\n"
      "\n"
      "Example:\n"
      "  shardline map validate maps/prod.toml\n"
      "  OK: version 3, 3 nodes, 256 ranges, 2 tables");
  return cmd;
}

absl::Status RunMapValidate(const MapValidateOptions& options) {
  absl::StatusOr<ParsedShardMap> parsed = LoadShardMapFile(options.file);
  if (!parsed.ok()) return parsed.status();
  PrintWarnings(parsed->warnings);
  const ShardMap& m = *parsed->map;
  fmt::print("OK: version {}, {} nodes, {} ranges, {} tables\n", m.version(), m.nodes().size(),
             m.ranges().size(), m.tables().size());
  return absl::OkStatus();
}

}  // namespace shardline::migrate
