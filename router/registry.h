// The router registry in the control catalog: each live router keeps a row (random id, host,
// pid, id-generator worker id, applied map version, heartbeat) so that the migration tool can
// wait until every live router applies a map version, and so that routers get distinct worker
// ids for the id generator.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/router_options.h"

namespace shardline::internal {

// A registration of this process's router. Single-threaded: created by Router::Create, then
// used by the maintenance thread only, deregistered by the router's destructor after the
// thread stopped.
//
// Worker ids: the lowest id in 0..1023 not held by a registered router; rows whose heartbeat
// is older than the staleness limit (max(60 s, 10 heartbeat intervals)) are deleted first, so
// a crashed router's id is reused only after that. A unique index makes two routers that
// register at once collide on the insert; the loser retries with the next free id.
class RouterRegistry {
 public:
  // Connects to `dsn`, deletes stale rows and inserts this router's row. With
  // `requested_worker_id` >= 0 that id is used (AlreadyExists naming the router that holds it
  // when another live router does); with -1 the lowest free id is allocated
  // (ResourceExhausted when all 1024 are taken). Unavailable when the catalog cannot be
  // reached; the catalog's errors otherwise. Blocks for a connect and a few round trips.
  static absl::StatusOr<std::unique_ptr<RouterRegistry>> Register(
      const std::string& dsn, const PoolOptions& pool, std::chrono::milliseconds heartbeat,
      int requested_worker_id, std::int64_t map_version, LogSink log);

  ~RouterRegistry();  // does not deregister: call Deregister()

  // Updates last_heartbeat and map_version (re-inserting the row if it was deleted, e.g. as
  // stale after a long pause). Reconnects with backoff when the catalog went away; failures
  // are logged once per outage, never returned.
  void Heartbeat(std::int64_t map_version);
  // Deletes the row (best effort, logged on failure).
  void Deregister();

  int worker_id() const { return worker_id_; }
  const std::string& router_id() const { return router_id_; }

 private:
  RouterRegistry(std::string dsn, const PoolOptions& pool, std::chrono::milliseconds heartbeat,
                 LogSink log);
  absl::Status Connect();
  // Deletes stale rows and inserts ours with `worker_id` (>= 0) or the lowest free id (-1).
  absl::Status Insert(int worker_id, std::int64_t map_version);
  void Failed(const absl::Status& status);

  const std::string dsn_;
  const PoolOptions pool_;
  const std::chrono::milliseconds stale_after_;
  const LogSink log_;
  std::string router_id_;
  std::string host_;
  int pid_ = 0;
  int worker_id_ = -1;
  std::unique_ptr<pg::Conn> conn_;
  bool down_ = false;
  std::chrono::milliseconds backoff_;
  std::chrono::steady_clock::time_point next_connect_{};
  std::mt19937_64 rng_;
};

}  // namespace shardline::internal
