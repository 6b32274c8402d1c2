// `shardline map revert`: publishes a new catalog version (current + 1) with the content of an
// earlier version, e.g. to undo a bad publish. History is never rewritten.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"

namespace shardline::migrate {

struct MapRevertOptions {
  std::string catalog_dsn;   // --catalog DSN ($SHARDLINE_CATALOG)
  std::int64_t to = 0;       // --to VERSION: the version whose content to republish
  std::string comment;       // --comment TEXT
  bool force = false;        // --force: revert during a migration / onto fenced ranges
};

// Adds `revert` to the `map` group; flags are stored into `options`.
CLI::App* SetupMapRevert(CLI::App& map, MapRevertOptions& options);

// FailedPrecondition while a migration is active or when version `to` routes a range to a node
// that fences it, unless --force (publish_guard.h); Catalog::Revert's errors (NotFound for an unknown version, FailedPrecondition when it is
// already current); prints the new version.
absl::Status RunMapRevert(const MapRevertOptions& options);

}  // namespace shardline::migrate
