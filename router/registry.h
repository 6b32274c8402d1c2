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
#include "id_lease.h"
#include "pg_conn.h"
#include "shardline/router_options.h"

namespace shardline::internal {

// A registration of this process's router. Single-threaded: created by Router::Create, then
// used by the maintenance thread only, deregistered by the router's destructor after the
// thread stopped.
//
// Worker ids are leases: each row carries its lease (lease_ms); a row whose last heartbeat is
// older than its lease is expired, and is deleted by the next router that registers, so a
// crashed router's id is reused only after its lease. Every heartbeat renews the router's
// IdLease (id_lease.h) from the time the heartbeat was sent, so the router stops generating
// ids before the catalog can hand its worker id to another router. The worker id is the
// lowest one in 0..1023 not held; a unique index makes two routers that register at once
// collide on the insert, and the loser retries with the next free id.
class RouterRegistry {
 public:
  // Connects to `dsn`, deletes stale rows and inserts this router's row. With
  // `requested_worker_id` >= 0 that id is used (AlreadyExists naming the router that holds it
  // when another live router does); with -1 the lowest free id is allocated
  // (ResourceExhausted when all 1024 are taken). Unavailable when the catalog cannot be
  // reached; the catalog's errors otherwise. Blocks for a connect and a few round trips.
  // `lease` (leased, outliving the registry) is renewed on success and by every heartbeat.
  static absl::StatusOr<std::unique_ptr<RouterRegistry>> Register(
      const std::string& dsn, const PoolOptions& pool, int requested_worker_id,
      std::int64_t map_version, IdLease* lease, LogSink log);

  ~RouterRegistry();  // does not deregister: call Deregister()

  // Updates last_heartbeat and map_version and renews the lease. When the row was deleted
  // (its lease expired during a long pause or a partition), the lease is lost at once and the
  // row inserted again, with the same worker id if it is still free and with the lowest free
  // one otherwise. Reconnects with backoff when the catalog went away; failures are logged
  // once per outage and noted on the lease, never returned.
  void Heartbeat(std::int64_t map_version);
  // Deletes the row (best effort, logged on failure).
  void Deregister();

  int worker_id() const { return worker_id_; }
  const std::string& router_id() const { return router_id_; }

 private:
  RouterRegistry(std::string dsn, const PoolOptions& pool, IdLease* lease, LogSink log);
  absl::Status Connect();
  // Deletes expired rows and inserts ours with `worker_id` (>= 0) or the lowest free id (-1);
  // renews the lease on success.
  absl::Status Insert(int worker_id, std::int64_t map_version);
  // A catalog error about the missing lease_ms column as a FailedPrecondition saying to run
  // `shardline catalog init`; other errors unchanged.
  absl::Status WithSchemaHint(absl::Status status) const;
  void Failed(const absl::Status& status);

  const std::string dsn_;
  const PoolOptions pool_;
  IdLease* const lease_;
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
