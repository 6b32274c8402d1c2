// `shardline map init`: writes a new shard map: the nodes given with --node, the hash space cut
// into --ranges equal ranges assigned to the nodes in contiguous blocks, and the sharded tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

struct MapInitOptions {
  std::vector<std::string> nodes;             // --node NAME=DSN, repeatable, in order
  std::int64_t ranges = 0;                    // --ranges R: number of equal ranges
  std::string key_type = "bigint";            // --key-type bigint|text|uuid
  std::vector<std::string> tables;            // --table NAME:KEY, repeatable
  std::vector<std::string> reference_tables;  // --reference-table NAME, repeatable
  std::int64_t version = 1;                   // --version V
  std::string output;                         // -o FILE; empty = stdout
  bool force = false;                         // --force: overwrite an existing FILE
};

// Adds `init` to the `map` group; flags are stored into `options`, which must outlive parsing.
CLI::App* SetupMapInit(CLI::App& map, MapInitOptions& options);

// The map the options describe, validated. InvalidArgument naming the flag or the problem
// (e.g. fewer ranges than nodes, a duplicate node, "--table users" without ":KEY").
absl::StatusOr<ShardMapConfig> BuildInitialMap(const MapInitOptions& options);

// Builds the map and writes it as TOML to -o FILE (mode 0600: it holds the connection strings;
// AlreadyExists when FILE exists and --force is not given) or to stdout (passwords masked when
// stdout is a terminal, with a warning). Blocks on the file write.
absl::Status RunMapInit(const MapInitOptions& options);

}  // namespace shardline::migrate
