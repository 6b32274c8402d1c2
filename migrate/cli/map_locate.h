// `shardline map locate`: which hash, range and node each given key maps to, as a table or as
// JSON. Keys are parsed as the map's key_type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/common.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

struct MapLocateOptions {
  MapSourceOptions source;        // --map FILE | --catalog DSN ($SHARDLINE_CATALOG)
  bool json = false;              // --json
  std::vector<std::string> keys;  // KEY...
};

// Where one key lives.
struct KeyLocation {
  std::string key;  // as given
  std::int64_t hash = 0;
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::string node;       // the owner (takes writes)
  std::string read_node;  // serves reads (the owner unless reads were switched mid-move)
};

// Adds `locate` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapLocate(CLI::App& map, MapLocateOptions& options);

// Locates every key. InvalidArgument naming each key that does not parse as the map's
// key_type (all of them, one per line), and nothing located then.
absl::StatusOr<std::vector<KeyLocation>> LocateKeys(const ShardMap& map,
                                                    const std::vector<std::string>& keys);

// Loads the map, locates the keys and prints a table (KEY HASH RANGE NODE) or, with --json, a
// JSON array of {"key", "hash", "lo", "hi", "node", "read_node"} (key and nodes as strings, the
// rest as integers). Errors as LocateKeys and the map loader.
absl::Status RunMapLocate(const MapLocateOptions& options);

}  // namespace shardline::migrate
