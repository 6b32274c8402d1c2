// The implementation behind shardline::Router: the routing table (the current map snapshot and
// one pool per node, swapped atomically as one immutable value), the hot path, transactions,
// fan-out, map following, the router registry and metrics, and the maintenance thread that
// drives map following, pool upkeep and heartbeats.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "conn_pool.h"
#include "map_source.h"
#include "metrics.h"
#include "mutex.h"
#include "id_lease.h"
#include "registry.h"
#include "snapshot.h"
#include "shardline/id_gen.h"
#include "shardline/router.h"
#include "shardline/router_options.h"
#include "shardline/shard_map.h"
#include "worker_pool.h"

namespace shardline::internal {

// One node of a routing table: the pool of its primary, the pools of its read replicas, and
// the metric handles of each.
// What the router learned about a node while routing on one table.
struct NodeFacts {
  // Until when (steady_clock ticks) the node is known to lack shardline's node objects
  // (schemas/node.sql: no migration ever touched it), so a fan-out's `$owned` runs there
  // without the map version check it could not call (fanout.cc). 0: not known to lack them.
  std::atomic<std::int64_t> no_node_objects_until{0};
};

struct NodeRoute {
  std::string name;
  bool transaction_pooler = false;  // pooler = "transaction" (RouterImpl::TransactionPooler)
  std::shared_ptr<NodeFacts> facts = std::make_shared<NodeFacts>();
  std::shared_ptr<ConnPool> pool;
  NodeMetrics metrics;
  std::vector<std::shared_ptr<ConnPool>> replicas;
  std::vector<NodeMetrics> replica_metrics;
};

// What the hot path reads: a map and the pools of its nodes, indexed like map->nodes().
// Immutable once published; a call keeps the table it started with (and so its map and
// pools) alive until it finishes.
struct RoutingTable {
  std::shared_ptr<const ShardMap> map;
  std::vector<NodeRoute> nodes;
};

// Thread-safe. Lock order: apply_mu_ before stop_mu_ (never held together in practice).
class RouterImpl {
 public:
  static absl::StatusOr<std::unique_ptr<RouterImpl>> Create(RouterOptions options);
  // Stops the maintenance thread (immediately: it waits on a wake-up descriptor), removes the
  // router's registry row, and lets the pools close as their last leases return.
  ~RouterImpl();
  RouterImpl(const RouterImpl&) = delete;
  RouterImpl& operator=(const RouterImpl&) = delete;

  absl::StatusOr<Result> Execute(ShardKey key, std::string_view sql, ParamList params,
                                 CallOptions call = {});
  absl::StatusOr<Result> ExecuteRead(ShardKey key, std::string_view sql, ParamList params,
                                     CallOptions call = {});
  absl::Status Transaction(ShardKey key, const std::function<absl::Status(Session&)>& fn,
                           CallOptions call = {});
  absl::StatusOr<Session> Borrow(ShardKey key);
  absl::StatusOr<std::vector<NodeResult>> FanOut(std::string_view sql, ParamList params,
                                                 FanOutOptions options);
  absl::StatusOr<Location> Locate(ShardKey key) const;
  std::shared_ptr<const ShardMap> map() const { return table()->map; }
  std::int64_t map_version() const { return table()->map->version(); }
  absl::Status RefreshMap();
  absl::StatusOr<std::int64_t> NextId() { return ids_->Next(); }
  std::string MetricsText() const;

  // Test hook: runs in Transaction after the transaction id was read and before COMMIT is
  // sent (a test breaks the connection there). Set before any call; not thread-safe.
  void SetBeforeCommitForTest(std::function<void()> hook) { before_commit_ = std::move(hook); }

  // The current routing table (never null after Create). Readers take no mutex (snapshot.h).
  std::shared_ptr<const RoutingTable> table() const { return table_.Load(); }
  void Log(LogLevel level, std::string_view message) const;

 private:
  explicit RouterImpl(RouterOptions options);

  // Validates `options`. InvalidArgument naming the field.
  static absl::Status CheckOptions(const RouterOptions& options);
  // Builds a routing table for `map`, reusing the pools of `previous` for nodes (and replicas)
  // whose name, DSN and limits are unchanged.
  std::shared_ptr<const RoutingTable> BuildTable(std::shared_ptr<const ShardMap> map,
                                                 const RoutingTable* previous)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  std::shared_ptr<ConnPool> MakePool(const std::string& node, const std::string& dsn,
                                     int min_size, int max_size, bool transaction_pooler) const;
  // Whether `node` sits behind a transaction-mode pooler (its map entry, else the options').
  bool TransactionPooler(const NodeConfig& node) const;
  // Publishes `map` if its version is greater than the current one. Returns true if applied.
  bool Apply(std::shared_ptr<const ShardMap> map, std::string_view why)
      ABSL_LOCKS_EXCLUDED(apply_mu_);
  // Handles a map that failed to load: logs it once, counts it, keeps the current map.
  void Refuse(const absl::Status& status) ABSL_LOCKS_EXCLUDED(apply_mu_);
  // After a fenced write on a map of version `stale_version`: refreshes the map (once per
  // version across all threads) and waits, up to `deadline`, for a map in which the range of
  // `hash` is no longer owned by `fenced_node`. Returns the newer table, or null: on timeout,
  // or at once after one re-read when the source cannot produce a newer map by itself (a
  // file, MapSource::Live) or cannot be read (the catalog unreachable). With `any_newer` (the
  // node refused the map, not the range: kStaleMapSqlState) any newer map will do.
  std::shared_ptr<const RoutingTable> AwaitNewOwner(std::int64_t stale_version,
                                                    std::int64_t hash,
                                                    const std::string& fenced_node,
                                                    std::chrono::steady_clock::time_point deadline,
                                                    bool any_newer);
  // The status of a fenced call for which AwaitNewOwner found no newer owner: `fenced` (its
  // code, SQLSTATE and node kept) with the router's map version and source named.
  absl::Status NoNewerMap(const absl::Status& fenced, std::int64_t version) const;
  // Runs `sql` once on the owner (or, for reads, the read node / a replica) of `hash`.
  absl::StatusOr<Result> RunOnce(const RoutingTable& t, std::int64_t hash, bool read,
                                 std::string_view sql, ParamList params, int* node_index,
                                 std::chrono::steady_clock::time_point deadline);
  // Checks out a connection within min(deadline, now + checkout_timeout); the lease carries
  // `deadline` for its statements, and `map_version` (the map the call was routed on; 0 for
  // none) for the node's stale-map check (Lease::map_version).
  absl::StatusOr<Lease> AcquireFrom(const std::shared_ptr<ConnPool>& pool,
                                    const NodeMetrics& metrics,
                                    std::chrono::steady_clock::time_point deadline,
                                    std::int64_t map_version = 0) const;
  // One round of a fan-out on table `t`: every node's part (the `$owned` expansion, with the
  // map version check where the node has shardline's objects), in parallel, until `deadline`.
  std::vector<NodeResult> FanOutOnce(const RoutingTable& t, std::string_view sql,
                                     ParamList params, bool expand,
                                     std::chrono::steady_clock::time_point deadline);
  // COMMITs the transaction open on `lease` (on `route`'s node). When the COMMIT was sent and
  // no answer came (connection broken, deadline passed), asks the node on a fresh connection
  // for pg_xact_status of the transaction id read before COMMIT: OK when it committed, Aborted
  // + WriteOutcome::kNotCommitted when not, else the failure + WriteOutcome::kUnknown. The
  // resolution may take up to connect_timeout past `deadline` (it needs a new connection).
  absl::Status CommitAndResolve(Lease& lease, const NodeRoute& route,
                                std::chrono::steady_clock::time_point deadline);
  // The deadline of a call started now with `timeout` (0 = options_.call_timeout).
  std::chrono::steady_clock::time_point DeadlineOf(std::chrono::milliseconds timeout) const;
  absl::Status CheckKeyType(const ShardMap& map, const ShardKey& key) const;
  // Queues one Maintain() per pool on the maintenance workers, unless a pass is still running.
  void StartPoolMaintenance(const RoutingTable& t);
  // Asks the source whether the map changed and applies a newer one. True if applied.
  bool CheckSource();
  void MaintenanceLoop();
  void Wake();

  const RouterOptions options_;
  std::unique_ptr<MetricsRegistry> metrics_registry_;
  RouterMetrics metrics_;
  std::unique_ptr<MapSource> source_;
  std::unique_ptr<WorkerPool> workers_;              // fan-out (and start-up connects)
  int fanout_per_node_ = 1;  // most fan-out parts of one node running on workers_ at once
  std::unique_ptr<WorkerPool> maintenance_workers_;  // pool upkeep, off the maintenance thread
  std::unique_ptr<IdLease> ids_;  // before registry_: the registry renews it
  std::unique_ptr<RouterRegistry> registry_;  // null unless registering; maintenance thread
  int wake_fd_ = -1;                          // eventfd: wakes the maintenance thread
  std::atomic<std::uint64_t> replica_rr_{0};
  std::atomic<int> maintenance_in_flight_{0};
  std::atomic<bool> stopping_flag_{false};          // read by queued maintenance tasks
  std::atomic<std::int64_t> last_refresh_{0};       // steady_clock ticks of the last RefreshMap
  SnapshotSlot<RoutingTable> table_;
  std::function<void()> before_commit_;  // SetBeforeCommitForTest

  mutable Mutex refresh_mu_;  // serialises RefreshMap's loads (one catalog round trip at a time)

  mutable Mutex apply_mu_;
  CondVar map_changed_;  // signalled under apply_mu_ when a new table is published
  std::size_t last_refused_ ABSL_GUARDED_BY(apply_mu_) = 0;  // hash of the last logged refusal

  Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread maintenance_;
};

}  // namespace shardline::internal
