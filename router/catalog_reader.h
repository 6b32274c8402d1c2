// The read side of the control catalog (schemas/catalog.sql): the current map version, and a
// stored map version loaded and validated. Shared by the router (which follows the catalog,
// router/map_source.h) and the CLI's catalog (migrate/catalog.h, which also writes), so that
// both read the catalog the same way. A stored map is parsed with the source name
// "catalog version N", so every validation message names the version it came from.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/map_toml.h"
#include "shardline/shard_map.h"

namespace shardline::internal {

// The schema the catalog lives in, and the NOTIFY channel a publish signals on (payload: the
// new version as decimal text).
inline constexpr const char* kCatalogSchema = "shardline";
inline constexpr const char* kCatalogMapChannel = "shardline_map";

// The catalog's current map version, 0 when nothing has been published yet.
// FailedPrecondition ("... is not initialised; run `shardline catalog init`") when the catalog
// schema is missing; the connection's error otherwise (Unavailable when it is broken).
// One round trip.
absl::StatusOr<std::int64_t> ReadCurrentMapVersion(pg::Conn& conn);

// Loads and validates stored version `version`. NotFound naming the version when it was never
// published; InvalidArgument with "catalog version N: ..." messages when the stored text does
// not validate (e.g. written by a newer shardline), or when the text's own version differs
// from the row's; FailedPrecondition when the catalog is not initialised. Warnings of the
// parse (unknown fields) are in the result. One round trip.
absl::StatusOr<ParsedShardMap> LoadParsedMapVersion(pg::Conn& conn, std::int64_t version);
// The same for the current version, read with the pointer in one statement (a consistent
// snapshot even while another client publishes). NotFound when nothing has been published.
absl::StatusOr<ParsedShardMap> LoadParsedCurrentMap(pg::Conn& conn);

// As above, for callers that only want the map.
absl::StatusOr<std::shared_ptr<const ShardMap>> LoadMapVersion(pg::Conn& conn,
                                                               std::int64_t version);
absl::StatusOr<std::shared_ptr<const ShardMap>> LoadCurrentMap(pg::Conn& conn);

// Connects to the catalog at `dsn` (errors name it without its password) and loads the
// current map. Blocks for a connect (at most `connect_timeout`) and one round trip.
absl::StatusOr<ParsedShardMap> LoadCurrentMapFromCatalog(
    const std::string& dsn,
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10));

// True when `status` says the catalog schema or one of its tables does not exist (SQLSTATE
// 3F000 / 42P01): the catalog was never initialised.
bool IsCatalogMissing(const absl::Status& status);

}  // namespace shardline::internal
