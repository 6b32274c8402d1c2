// `shardline-loadgen schema`: applies schemas/app.sql on every node of the map (idempotent).
#pragma once

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "cli_common.h"

namespace shardline::loadgen {

struct SchemaOptions {
  migrate::MapSourceOptions source;
  std::string application_name = "shardline-loadgen";
};

CLI::App* SetupSchema(CLI::App& app, SchemaOptions& options);
// Loads the map, applies the schema on every node; prints one line per node. Errors: the map
// source's, or the first node's that fails (naming it).
absl::Status RunSchema(const SchemaOptions& options);

}  // namespace shardline::loadgen
