// The control catalog (schemas/catalog.sql) as the CLI uses it: create it, publish and revert
// shard map versions, read them back and list the audit trail. Publishing is one transaction
// that checks the version is exactly current + 1, inserts the version, moves the current
// pointer, writes the audit row and NOTIFYs routers; of two concurrent publishers exactly one
// wins. Reads go through router/catalog_reader.h, which the router uses too.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pg_conn.h"
#include "shardline/map_toml.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// The catalog schema version this build writes (shardline.schema_version).
inline constexpr int kCatalogSchemaVersion = 3;

// Who makes a change, for the audit trail. The database role is recorded by the server
// (current_user); the OS user is what the client says (informational, not authenticated).
struct Actor {
  std::string os_user;  // e.g. $USER; empty = unknown
};

// One row of the audit trail.
struct HistoryEntry {
  absl::Time at;
  std::string action;  // "init", "publish" or "revert"
  std::int64_t version = 0;  // the version published; 0 for init
  std::int64_t reverted_from = 0;  // for a revert: the version whose content was republished
  std::string db_user;
  std::string os_user;
  std::string comment;
};

// A connection to a control catalog. Thread-compatible: one Catalog per thread (it owns one
// libpq connection); several Catalogs, in any processes, may work on the same database at
// once (Init and Publish/Revert are safe under concurrency).
//
//   auto catalog = Catalog::Create(dsn);
//   if (!catalog.ok()) return catalog.status();
//   if (auto s = (*catalog)->Publish(config, "add node d", {.os_user = "alice"}); !s.ok()) ...
class Catalog {
 public:
  // Connects (at most `connect_timeout`). Unavailable / DeadlineExceeded naming the DSN
  // without its password. Does not check that the catalog is initialised.
  static absl::StatusOr<std::unique_ptr<Catalog>> Create(
      const std::string& dsn,
      std::chrono::milliseconds connect_timeout = std::chrono::seconds(10));

  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;
  ~Catalog();

  // Applies schemas/catalog.sql (embedded in the binary) in one transaction, serialised with
  // other Init calls by an advisory transaction lock, so concurrent Inits are safe. Idempotent;
  // the first Init writes an "init" audit row. Returns true when it created the catalog, false
  // when it already existed. FailedPrecondition when the catalog was created by a newer
  // shardline (schema version above kCatalogSchemaVersion); the server's error otherwise.
  absl::StatusOr<bool> Init(const Actor& who = {});

  // The current version, 0 when nothing was published. FailedPrecondition when the catalog is
  // not initialised.
  absl::StatusOr<std::int64_t> CurrentVersion();

  // Loads and validates a stored version / the current one ("catalog version N: ..." in
  // messages). NotFound when it does not exist / nothing was published.
  absl::StatusOr<ParsedShardMap> Load(std::int64_t version);
  absl::StatusOr<ParsedShardMap> LoadCurrent();

  // Publishes `config` as the new current version: validates it (InvalidArgument naming the
  // problem), checks config.version == current + 1 (FailedPrecondition "catalog is at version
  // 4; this map has version 6; expected 5"), then in one transaction inserts the version,
  // moves the pointer, writes the audit row and sends NOTIFY shardline_map '<version>'.
  // The very first publish (empty catalog) accepts any positive version, so a deployment that
  // followed map files can move to the catalog without renumbering (routers refuse a version
  // that does not increase); `map init` writes version 1. Of two concurrent publishers of the
  // same version exactly one succeeds; the other gets the FailedPrecondition above. The map is
  // stored as canonical TOML (ShardMapToToml, passwords kept), which is checked to read back
  // to the same map before it is stored. Blocks for a few round trips, and while another
  // publisher holds the pointer row.
  absl::Status Publish(const ShardMapConfig& config, const std::string& comment,
                       const Actor& who);

  // Publishes a new version (current + 1) whose content is stored version `to_version`'s (with
  // the version number rewritten), recorded as a "revert". Returns the new version.
  // NotFound when `to_version` does not exist; FailedPrecondition when it is the current
  // version or nothing was published; the stored map's validation errors otherwise.
  absl::StatusOr<std::int64_t> Revert(std::int64_t to_version, const std::string& comment,
                                      const Actor& who);

  // The audit trail, oldest first.
  absl::StatusOr<std::vector<HistoryEntry>> History();

  // The connection (for tests and for tools that read other catalog tables).
  pg::Conn& conn() { return *conn_; }
  // The DSN without its password, for messages.
  const std::string& where() const { return where_; }

 private:
  Catalog(std::unique_ptr<pg::Conn> conn, std::string where);

  // Inserts `config` (validated) as version config.version in an open transaction that holds
  // the pointer row lock, with `current` the locked current version.
  absl::Status InsertLocked(const ShardMapConfig& config, std::int64_t current,
                            const std::string& action, std::int64_t reverted_from,
                            const std::string& comment, const Actor& who);
  // Begins a transaction and locks the pointer row; returns the current version (0 = none).
  absl::StatusOr<std::int64_t> BeginAndLockPointer();
  absl::Status Rollback();
  // Maps "schema missing" to FailedPrecondition naming the catalog.
  absl::Status Fail(absl::Status status);

  std::unique_ptr<pg::Conn> conn_;
  std::string where_;
};

// The OS user running this process ($USER, else the passwd entry, else ""), for Actor.
std::string CurrentOsUser();

}  // namespace shardline::migrate
