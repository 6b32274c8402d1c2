// `shardline map validate FILE`: checks a shard map file against every rule of the format
// (docs/map-format.md), prints its warnings and a one-line summary.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"

namespace shardline::migrate {

struct MapValidateOptions {
  std::string file;  // FILE: the map to check
};

// Adds `validate` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapValidate(CLI::App& map, MapValidateOptions& options);

// Loads and validates the file. Prints warnings (unknown fields) to stderr and
// "OK: version V, N nodes, R ranges, T tables" to stdout. The loader's errors otherwise
// (InvalidArgument with FILE:line for every problem, NotFound / PermissionDenied naming FILE).
absl::Status RunMapValidate(const MapValidateOptions& options);

}  // namespace shardline::migrate
