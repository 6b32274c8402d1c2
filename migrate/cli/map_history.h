// `shardline map history`: the catalog's audit trail: every init, publish and revert with its
// time, database role, OS user and comment.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"

namespace shardline::migrate {

struct MapHistoryOptions {
  std::string catalog_dsn;  // --catalog DSN ($SHARDLINE_CATALOG)
  bool json = false;        // --json: an array of {at, action, version, reverted_from, ...}
};

// Adds `history` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapHistory(CLI::App& map, MapHistoryOptions& options);

// Prints the audit trail, oldest first. Catalog errors (FailedPrecondition when it is not
// initialised).
absl::Status RunMapHistory(const MapHistoryOptions& options);

}  // namespace shardline::migrate
