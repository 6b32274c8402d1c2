// `shardline catalog init`: creates the control catalog (schemas/catalog.sql, embedded in the
// binary) in a database, or checks that it is there. Idempotent and safe to run concurrently.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"

namespace shardline::migrate {

struct CatalogInitOptions {
  std::string catalog_dsn;  // --catalog DSN ($SHARDLINE_CATALOG)
};

// Adds `init` to the `catalog` group; flags are stored into `options`.
CLI::App* SetupCatalogInit(CLI::App& catalog, CatalogInitOptions& options);

// Catalog::Init's errors; prints whether the catalog was created or already there.
absl::Status RunCatalogInit(const CatalogInitOptions& options);

}  // namespace shardline::migrate
