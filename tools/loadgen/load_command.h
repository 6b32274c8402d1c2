// `shardline-loadgen load`: fills the cluster with generated users and their workouts, logs
// and posts, routed by the map, with COPY (loader.h). Prints rows per table and rows/s.
#pragma once

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli_common.h"
#include "loader.h"

namespace shardline::loadgen {

struct LoadCommandOptions {
  RouterFlags router;
  LoadOptions load;
  bool no_schema = false;
  bool json = false;
};

CLI::App* SetupLoad(CLI::App& app, LoadCommandOptions& options);
// Creates a router (for its map and id generator), applies the schema unless --no-schema,
// loads. Errors: the router's (map source), the schema's, the first COPY's.
absl::Status RunLoad(const LoadCommandOptions& options);

}  // namespace shardline::loadgen
