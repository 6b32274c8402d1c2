// `shardline map diff A B`: what changes from map A to map B: stretches of the hash space whose
// owner (or read node) changes, nodes and tables added, removed or changed. A and B are files,
// or @current / @N for versions in the catalog. (Named map_diff_command, not map_diff: a
// cli/map_diff.h would shadow the engine's map_diff.h for every #include "map_diff.h" in cli/.)
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "map_diff.h"

namespace shardline::migrate {

struct MapDiffOptions {
  std::string a;            // A: file, @current or @N
  std::string b;            // B: likewise
  std::string catalog_dsn;  // --catalog DSN ($SHARDLINE_CATALOG) for @ references
};

// Adds `diff` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapDiff(CLI::App& map, MapDiffOptions& options);

// The diff as text (ends with a newline); "no differences ..." when MapDiff::Empty().
std::string MapDiffText(const MapDiff& diff);

// Loads both maps and prints the diff. Exit status 0 whether or not they differ.
absl::Status RunMapDiff(const MapDiffOptions& options);

}  // namespace shardline::migrate
