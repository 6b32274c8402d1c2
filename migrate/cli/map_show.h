// `shardline map show`: a shard map (from a file or the catalog) summarised for people: nodes
// with their number of ranges and share of the hash space, the ranges as contiguous runs per
// owner, moving ranges, tables; or the whole map as JSON or TOML. Passwords are always masked.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "cli/common.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

struct MapShowOptions {
  MapSourceOptions source;  // --map FILE | --catalog DSN ($SHARDLINE_CATALOG)
  bool json = false;        // --json: the whole map as one JSON object
  bool toml = false;        // --toml: the whole map as TOML (passwords masked)
};

// Adds `show` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapShow(CLI::App& map, MapShowOptions& options);

// The human-readable summary (ends with a newline). `origin` says where the map came from.
std::string MapShowText(const ShardMap& map, const std::string& origin);
// {"version", "key_type", "nodes": [{"name", "dsn" (masked), "pool_min", "pool_max",
// "replicas" (masked), "ranges" (count), "share" (0..1)}], "ranges": [{"lo", "hi", "node",
// "read_node", "state"}], "tables": [{"name", "key", "primary_key", "reference"}]}.
nlohmann::ordered_json MapShowJson(const ShardMap& map);

// Loads the map and prints it. The loader's errors; a UsageError without a map source.
absl::Status RunMapShow(const MapShowOptions& options);

}  // namespace shardline::migrate
