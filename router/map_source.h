// Where a router's shard map comes from, and how it notices a new one: a TOML file (re-read
// and compared by content every poll) or the control catalog (a dedicated connection
// LISTENing on the publish channel, plus polling of the current version as a fallback,
// reconnecting with backoff). Sources only load and detect; deciding whether to apply a map
// (version must increase) is the router's job.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "mutex.h"
#include "pg_conn.h"
#include "shardline/router_options.h"
#include "shardline/shard_map.h"

namespace shardline::internal {

// A map source. Load() is thread-safe; Check() and WaitFd() belong to the router's
// maintenance thread.
class MapSource {
 public:
  virtual ~MapSource() = default;

  // Loads and validates the source's current map now (RefreshMap, start-up). The map's own
  // errors (InvalidArgument naming file:line / catalog version), NotFound for a missing file,
  // Unavailable when the catalog cannot be reached. Blocks for one read / a few round trips.
  virtual absl::StatusOr<std::shared_ptr<const ShardMap>> Load() = 0;

  // Checks whether the source changed since the last Check(). Returns a new map (possibly not
  // newer than `current_version`; the caller decides), nullptr when nothing changed, or the
  // error of a changed source that does not load. Each distinct broken content (file content /
  // catalog version) is reported once; later checks of the same content return nullptr.
  // Source connection problems are logged through the source's sink, not returned.
  virtual absl::StatusOr<std::shared_ptr<const ShardMap>> Check(std::int64_t current_version) = 0;

  // A descriptor that becomes readable when the source may have changed (the catalog's LISTEN
  // socket), or -1. Valid until the next Check().
  virtual int WaitFd() const { return -1; }

  // When Check() should run next at the latest, given the regular poll deadline: earlier when
  // the source lost its connection and a reconnect is due (the catalog's backoff).
  virtual std::chrono::steady_clock::time_point NextCheckBy(
      std::chrono::steady_clock::time_point poll_deadline) const {
    return poll_deadline;
  }

  // For log lines: the path, or the catalog DSN without its password.
  virtual std::string Describe() const = 0;

  // Whether a newer map may arrive soon by itself (the catalog: a rollout publishes the owner
  // map right after it fences). A file changes only when someone deploys one: a fenced write
  // re-reads it once, then fails at once instead of waiting for a map that will not come.
  virtual bool Live() const { return false; }
};

// Follows a TOML file. Change detection reads the file and compares a hash of its content
// with the last one seen (mtime and size alone miss same-size rewrites within one timestamp
// tick). Writers should write a temporary file and rename it over the map; a half-written file
// read mid-write is refused like any invalid map and picked up complete on the next poll.
std::unique_ptr<MapSource> MakeFileMapSource(std::string path, LogSink log);

// Follows the control catalog at `dsn`: LISTEN shardline_map on a dedicated connection and on
// every Check() (each notification and every poll interval) compares the catalog's current
// version with `current_version`, loading the current map when it is newer. Reconnects with
// exponential backoff (backoff_initial..backoff_max of `pool`). Load() uses its own connection.
std::unique_ptr<MapSource> MakeCatalogMapSource(std::string dsn, const PoolOptions& pool,
                                                LogSink log);

}  // namespace shardline::internal
