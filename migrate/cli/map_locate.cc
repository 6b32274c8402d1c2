// `shardline map locate` (see map_locate.h).
#include "cli/map_locate.h"
#include "status_text.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace shardline::migrate {
namespace {

}  // namespace

CLI::App* SetupMapLocate(CLI::App& map, MapLocateOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "locate", "Show the hash, range and node of shard keys");
  AddMapSourceOptions(*cmd, options.source);
  cmd->add_flag("--json", options.json,
                "Print a JSON array of {key, hash, lo, hi, node, read_node}");
  cmd->add_option("KEY", options.keys,
                  "Shard keys, parsed as the map's key_type (bigint, text or uuid)")
      ->required();
  cmd->footer(
      "The hash is PostgreSQL's own (hashint8extended / hashtextextended / uuid_hash_extended\n"
      "with seed 0), so the server agrees: SELECT hashint8extended(42, 0). A node in\n"
      "parentheses serves the key's reads while its range is being moved. Put -- before keys\n"
      "that start with '-' and are not numbers.\n"
      "\n"
      "Examples:\n"
      "  shardline map locate --map maps/prod.toml 42 1001 -7\n"
      "  shardline map locate --catalog 'host=10.0.0.9 dbname=control' --json 42\n"
      "  [{\"key\": \"42\", \"hash\": -7609377575929766917, \"lo\": ..., \"hi\": ..., \"node\": "
      "\"a\", ...}]");
  return cmd;
}

absl::StatusOr<std::vector<KeyLocation>> LocateKeys(const ShardMap& map,
                                                    const std::vector<std::string>& keys) {
  std::vector<KeyLocation> out;
  std::string errors;
  for (const std::string& key : keys) {
    absl::StatusOr<std::int64_t> hash = HashKeyText(map.key_type(), key);
    if (!hash.ok()) {
      if (!errors.empty()) errors += '\n';
      errors += Msg(hash.status());
      continue;
    }
    const std::size_t i = map.RangeIndex(*hash);
    const RangeConfig& r = map.ranges()[i];
    out.push_back({key, *hash, r.lo, r.hi,
                   map.nodes()[static_cast<std::size_t>(map.OwnerNodeIndex(i))].name,
                   map.nodes()[static_cast<std::size_t>(map.ReadNodeIndex(i))].name});
  }
  if (!errors.empty()) return absl::InvalidArgumentError(errors);
  return out;
}

absl::Status RunMapLocate(const MapLocateOptions& options) {
  absl::StatusOr<LoadedMap> loaded = LoadMapFromSource(options.source, std::getenv(kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  PrintWarnings(loaded->parsed.warnings);
  absl::StatusOr<std::vector<KeyLocation>> located = LocateKeys(*loaded->parsed.map, options.keys);
  if (!located.ok()) return located.status();
  if (options.json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const KeyLocation& k : *located) {
      out.push_back({{"key", k.key},
                     {"hash", k.hash},
                     {"lo", k.lo},
                     {"hi", k.hi},
                     {"node", k.node},
                     {"read_node", k.read_node}});
    }
    fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {{"KEY", "HASH", "RANGE", "NODE"}};
  for (const KeyLocation& k : *located) {
    std::string node = k.node;
    if (k.read_node != k.node) node += fmt::format(" (reads: {})", k.read_node);
    rows.push_back({k.key, std::to_string(k.hash), fmt::format("{}..{}", k.lo, k.hi), node});
  }
  std::fputs(FormatTable(rows, {false, true, false, false}, 0).c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
