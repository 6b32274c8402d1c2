// `shardline map publish`: makes a map file the catalog's current map (version must be exactly
// current + 1), recorded in the audit trail and announced to routers (NOTIFY shardline_map).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"

namespace shardline::migrate {

struct MapPublishOptions {
  std::string catalog_dsn;  // --catalog DSN ($SHARDLINE_CATALOG)
  std::string file;         // FILE: the map to publish
  std::string comment;      // --comment TEXT: why (kept in the audit trail)
  bool force = false;       // --force: publish during a migration / onto fenced ranges
};

// Adds `publish` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapPublish(CLI::App& map, MapPublishOptions& options);

// Loads and validates FILE (InvalidArgument with FILE:line), refuses (FailedPrecondition) while
// a migration is active or when FILE routes a range to a node that fences it, unless --force
// (publish_guard.h), publishes it (Catalog::Publish's
// errors: FailedPrecondition for a wrong version or a lost race, naming both versions) and
// prints what changed against the previous version.
absl::Status RunMapPublish(const MapPublishOptions& options);

}  // namespace shardline::migrate
