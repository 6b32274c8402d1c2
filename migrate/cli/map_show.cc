// `shardline map show` (see map_show.h).
#include "cli/map_show.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "map_diff.h"  // HashShare
#include "shardline/map_toml.h"

namespace shardline::migrate {
namespace {

struct NodeUsage {
  std::size_t ranges = 0;
  double share = 0;
};

std::vector<NodeUsage> UsageByNode(const ShardMap& map) {
  std::vector<NodeUsage> usage(map.nodes().size());
  for (std::size_t i = 0; i < map.ranges().size(); ++i) {
    NodeUsage& u = usage[static_cast<std::size_t>(map.OwnerNodeIndex(i))];
    ++u.ranges;
    u.share += HashShare(map.ranges()[i].lo, map.ranges()[i].hi);
  }
  return usage;
}

}  // namespace

CLI::App* SetupMapShow(CLI::App& map, MapShowOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "show", "Summarise a shard map: nodes, their share of the hash space, ranges, tables");
  AddMapSourceOptions(*cmd, options.source);
  CLI::Option* json = cmd->add_flag("--json", options.json, "Print the whole map as JSON");
  CLI::Option* toml =
      cmd->add_flag("--toml", options.toml, "Print the whole map as TOML (passwords masked)");
  json->excludes(toml);
  cmd->footer(
      "Connection strings are shown with their password masked (password=********), in every\n"
      "output form. Consecutive ranges of one owner are shown as one run.\n"
      "\n"
      "Examples:\n"
      "  shardline map show --map maps/prod.toml\n"
      "  shardline map show --catalog 'host=10.0.0.9 dbname=control' --json\n"
      "  SHARDLINE_CATALOG='host=10.0.0.9 dbname=control' shardline map show --toml");
  return cmd;
}

std::string MapShowText(const ShardMap& map, const std::string& origin) {
  std::string out = fmt::format("shard map version {} (key_type {}), from {}\n", map.version(),
                                KeyTypeName(map.key_type()), origin);

  const std::vector<NodeUsage> usage = UsageByNode(map);
  std::vector<std::vector<std::string>> rows = {{"NAME", "RANGES", "SHARE", "POOL", "DSN"}};
  for (std::size_t n = 0; n < map.nodes().size(); ++n) {
    const NodeConfig& node = map.nodes()[n];
    std::string dsn = MaskedDsn(node.dsn);
    if (!node.replicas.empty()) dsn += fmt::format(" (+{} read replicas)", node.replicas.size());
    rows.push_back({node.name, std::to_string(usage[n].ranges), FormatShare(usage[n].share),
                    fmt::format("{}..{}", node.pool_min, node.pool_max), dsn});
  }
  out += fmt::format("\nnodes ({}):\n", map.nodes().size());
  out += FormatTable(rows, {false, true, true, false, false});

  // Runs of consecutive ranges with the same owner.
  rows = {{"LO", "HI", "OWNER", "RANGES", "SHARE"}};
  std::size_t runs = 0;
  const std::vector<RangeConfig>& ranges = map.ranges();
  for (std::size_t i = 0; i < ranges.size();) {
    std::size_t j = i;
    while (j + 1 < ranges.size() && ranges[j + 1].node == ranges[i].node) ++j;
    rows.push_back({std::to_string(ranges[i].lo), std::to_string(ranges[j].hi), ranges[i].node,
                    std::to_string(j - i + 1), FormatShare(HashShare(ranges[i].lo, ranges[j].hi))});
    ++runs;
    i = j + 1;
  }
  out += fmt::format("\nranges ({} in {} run{} of one owner):\n", ranges.size(), runs,
                     runs == 1 ? "" : "s");
  out += FormatTable(rows, {true, true, false, true, true});

  rows = {{"LO", "HI", "OWNER", "READS", "STATE"}};
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].state == RangeState::kStable) continue;
    rows.push_back({std::to_string(ranges[i].lo), std::to_string(ranges[i].hi), ranges[i].node,
                    map.nodes()[static_cast<std::size_t>(map.ReadNodeIndex(i))].name,
                    std::string(RangeStateName(ranges[i].state))});
  }
  if (rows.size() > 1) {
    out += fmt::format("\nmoving ranges ({}):\n", rows.size() - 1);
    out += FormatTable(rows, {true, true, false, false, false});
  }

  out += fmt::format("\ntables ({}):\n", map.tables().size());
  rows = {};
  for (const TableConfig& t : map.tables()) {
    std::string what;
    if (t.reference) {
      what = "reference table (a full copy on every node)";
    } else {
      what = fmt::format("key {}", t.key);
      if (!t.primary_key.empty()) {
        std::string pk;
        for (const std::string& c : t.primary_key) pk += (pk.empty() ? "" : ", ") + c;
        what += fmt::format(", primary key ({})", pk);
      }
    }
    rows.push_back({t.name, what});
  }
  if (rows.empty()) {
    out += "  (none)\n";
  } else {
    out += FormatTable(rows, {false, false});
  }
  return out;
}

nlohmann::ordered_json MapShowJson(const ShardMap& map) {
  const std::vector<NodeUsage> usage = UsageByNode(map);
  nlohmann::ordered_json nodes = nlohmann::ordered_json::array();
  for (std::size_t n = 0; n < map.nodes().size(); ++n) {
    const NodeConfig& node = map.nodes()[n];
    nlohmann::ordered_json replicas = nlohmann::ordered_json::array();
    for (const std::string& r : node.replicas) replicas.push_back(MaskedDsn(r));
    nodes.push_back({{"name", node.name},
                     {"dsn", MaskedDsn(node.dsn)},
                     {"pool_min", node.pool_min},
                     {"pool_max", node.pool_max},
                     {"replicas", std::move(replicas)},
                     {"ranges", usage[n].ranges},
                     {"share", usage[n].share}});
  }
  nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < map.ranges().size(); ++i) {
    const RangeConfig& r = map.ranges()[i];
    ranges.push_back({{"lo", r.lo},
                      {"hi", r.hi},
                      {"node", r.node},
                      {"read_node", map.nodes()[static_cast<std::size_t>(map.ReadNodeIndex(i))].name},
                      {"state", std::string(RangeStateName(r.state))}});
  }
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (const TableConfig& t : map.tables()) {
    tables.push_back({{"name", t.name},
                      {"key", t.key},
                      {"primary_key", t.primary_key},
                      {"reference", t.reference}});
  }
  return {{"version", map.version()},
          {"key_type", std::string(KeyTypeName(map.key_type()))},
          {"nodes", std::move(nodes)},
          {"ranges", std::move(ranges)},
          {"tables", std::move(tables)}};
}

absl::Status RunMapShow(const MapShowOptions& options) {
  absl::StatusOr<LoadedMap> loaded = LoadMapFromSource(options.source, std::getenv(kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  PrintWarnings(loaded->parsed.warnings);
  const ShardMap& map = *loaded->parsed.map;
  if (options.json) {
    fmt::print("{}\n", MapShowJson(map).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  } else if (options.toml) {
    std::fputs(ShardMapToToml(map.config(), PasswordMode::kMask).c_str(), stdout);
  } else {
    std::fputs(MapShowText(map, loaded->origin).c_str(), stdout);
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
