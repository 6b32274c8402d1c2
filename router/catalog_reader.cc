// Reading the control catalog: see catalog_reader.h.
#include "catalog_reader.h"
#include "status_text.h"

#include <utility>

#include <fmt/format.h>

#include "shardline/dsn.h"
#include "shardline/errors.h"

namespace shardline::internal {
namespace {

// absl::Status::message() is Debian abseil's own string_view, which fmt cannot format.
// "catalog 127.0.0.1:5432/control": where the connection points, for messages (no password).
std::string Where(const pg::Conn& conn) {
  PGconn* raw = conn.raw();
  if (raw == nullptr) return "catalog";
  const char* host = PQhost(raw);
  const char* port = PQport(raw);
  const char* db = PQdb(raw);
  return fmt::format("catalog {}:{}/{}", host ? host : "?", port ? port : "?", db ? db : "?");
}

absl::Status NotInitialised(const pg::Conn& conn) {
  return absl::FailedPreconditionError(
      fmt::format("{} is not initialised (no schema shardline); run `shardline catalog init "
                  "--catalog DSN` first",
                  Where(conn)));
}

// A failed catalog statement: "not initialised" when the schema is missing, else as is.
absl::Status CatalogError(const pg::Conn& conn, absl::Status status) {
  if (IsCatalogMissing(status)) return NotInitialised(conn);
  return status;
}

// Parses stored text of `version`, checking that the text says the same version as its row.
absl::StatusOr<ParsedShardMap> ParseStored(std::int64_t version, std::string_view content) {
  const std::string source = fmt::format("catalog version {}", version);
  absl::StatusOr<ParsedShardMap> parsed = ParseShardMapToml(content, source);
  if (!parsed.ok()) return parsed.status();
  if (parsed->map->version() != version) {
    return absl::InvalidArgumentError(
        fmt::format("{}: the stored map says version = {}; the catalog row is version {}", source,
                    parsed->map->version(), version));
  }
  return parsed;
}

}  // namespace

bool IsCatalogMissing(const absl::Status& status) {
  std::optional<std::string> state = SqlStateOf(status);
  return state && (*state == "3F000" || *state == "42P01");
}

absl::StatusOr<std::int64_t> ReadCurrentMapVersion(pg::Conn& conn) {
  absl::StatusOr<pg::Result> res =
      conn.Exec("SELECT coalesce(version, 0) FROM shardline.current_map");
  if (!res.ok()) return CatalogError(conn, res.status());
  if (res->rows() != 1) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: shardline.current_map has {} rows, expected 1; run `shardline catalog init`",
        Where(conn), res->rows()));
  }
  return res->Int64(0, 0);
}

absl::StatusOr<ParsedShardMap> LoadParsedMapVersion(pg::Conn& conn, std::int64_t version) {
  absl::StatusOr<pg::Result> res = conn.Exec(
      "SELECT content FROM shardline.map_versions WHERE version = $1::bigint",
      {std::to_string(version)});
  if (!res.ok()) return CatalogError(conn, res.status());
  if (res->rows() == 0) {
    return absl::NotFoundError(
        fmt::format("{}: map version {} was never published", Where(conn), version));
  }
  return ParseStored(version, res->Text(0, 0));
}

absl::StatusOr<ParsedShardMap> LoadParsedCurrentMap(pg::Conn& conn) {
  // One statement: the pointer and the content come from the same snapshot.
  absl::StatusOr<pg::Result> res = conn.Exec(
      "SELECT v.version, v.content FROM shardline.current_map c "
      "JOIN shardline.map_versions v ON v.version = c.version");
  if (!res.ok()) return CatalogError(conn, res.status());
  if (res->rows() == 0) {
    return absl::NotFoundError(fmt::format(
        "{}: no map has been published yet; publish one with `shardline map publish`",
        Where(conn)));
  }
  absl::StatusOr<std::int64_t> version = res->Int64(0, 0);
  if (!version.ok()) return version.status();
  return ParseStored(*version, res->Text(0, 1));
}

absl::StatusOr<std::shared_ptr<const ShardMap>> LoadMapVersion(pg::Conn& conn,
                                                               std::int64_t version) {
  absl::StatusOr<ParsedShardMap> parsed = LoadParsedMapVersion(conn, version);
  if (!parsed.ok()) return parsed.status();
  return std::move(parsed->map);
}

absl::StatusOr<std::shared_ptr<const ShardMap>> LoadCurrentMap(pg::Conn& conn) {
  absl::StatusOr<ParsedShardMap> parsed = LoadParsedCurrentMap(conn);
  if (!parsed.ok()) return parsed.status();
  return std::move(parsed->map);
}

absl::StatusOr<ParsedShardMap> LoadCurrentMapFromCatalog(
    const std::string& dsn, std::chrono::milliseconds connect_timeout) {
  absl::StatusOr<std::unique_ptr<pg::Conn>> conn =
      pg::Conn::Connect(dsn, "catalog", connect_timeout);
  if (!conn.ok()) return conn.status();
  absl::StatusOr<ParsedShardMap> parsed = LoadParsedCurrentMap(**conn);
  if (!parsed.ok() && !(*conn)->IsOk()) {
    return absl::UnavailableError(fmt::format("catalog {}: {}", DsnWithoutPassword(dsn),
                                              Msg(parsed.status())));
  }
  return parsed;
}

}  // namespace shardline::internal
