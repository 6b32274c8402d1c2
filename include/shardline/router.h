// The router: routes each user-scoped statement to the node that owns the key, over pooled
// connections, following the shard map as it changes. The library's main entry point.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shardline/key.h"
#include "shardline/param.h"
#include "shardline/result.h"
#include "shardline/router_options.h"
#include "shardline/shard_map.h"

namespace shardline {

namespace internal {
class RouterImpl;
class SessionImpl;
}  // namespace internal

using ParamList = std::span<const Param>;

// A connection borrowed from a node's pool for a sequence of statements (a session). Move-only;
// returns the connection to its pool on destruction (the pool outlives it). Single-threaded.
class Session {
 public:
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  absl::StatusOr<Result> Execute(std::string_view sql, std::initializer_list<Param> params = {});
  absl::StatusOr<Result> Execute(std::string_view sql, ParamList params);
  const std::string& node() const;

  explicit Session(std::unique_ptr<internal::SessionImpl> impl);

 private:
  std::unique_ptr<internal::SessionImpl> impl_;
};

// Where a key lives under the current map.
struct Location {
  std::int64_t hash = 0;
  std::int64_t lo = 0, hi = 0;  // the range
  std::string node;             // owner (writes)
  std::string read_node;        // serves reads (== node unless a move switched reads)
  std::int64_t map_version = 0;
};

// The result of one node in a fan-out.
struct NodeResult {
  std::string node;
  absl::StatusOr<Result> result;
};

struct FanOutOptions {
  // Fail the whole call when any node fails (default), or return per-node statuses.
  bool fail_on_any_error = true;
  // Deadline of each node's part (checkout + statement); 0 = RouterOptions::call_timeout.
  // A node that does not answer in time gets DeadlineExceeded; the others' rows are kept.
  std::chrono::milliseconds timeout{0};
};

// Per-call options.
struct CallOptions {
  // Deadline of the call (checkout + send + wait; for Transaction the whole transaction,
  // fn included); 0 = RouterOptions::call_timeout. On expiry: DeadlineExceeded naming the
  // node, the connection closed (so the statement is cancelled), never a hang.
  std::chrono::milliseconds timeout{0};
};

// Routes statements by shard key. Thread-safe: one Router serves all threads of a process.
// Owns one connection pool per node; a background thread follows the map source.
//
//   RouterOptions opts;
//   opts.catalog_dsn = "host=10.0.0.5 dbname=control user=app";
//   auto router = Router::Create(std::move(opts));
//   if (!router.ok()) return router.status();
//   auto r = (*router)->Execute(user_id, "SELECT name FROM users WHERE user_id = $1", {user_id});
class Router {
 public:
  // Loads the map (file or catalog), builds the pools (opening pool_min connections per node
  // without failing on unreachable nodes) and starts following the map source.
  // InvalidArgument for bad options, the map's own errors when it does not load or validate.
  static absl::StatusOr<std::unique_ptr<Router>> Create(RouterOptions options);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Runs one statement on the node that owns `key` (its owner: writes go there). A write into
  // a range fenced by a migration refreshes the map and retries on the new owner (fence_retries).
  // Errors carry the node and SQLSTATE (shardline/errors.h); InvalidArgument when the key's type
  // is not the map's key_type. Blocks at most until the call's deadline (CallOptions, default
  // RouterOptions::call_timeout): DeadlineExceeded naming the node past it, the connection
  // closed. A write sent whose answer was lost carries WriteOutcome::kUnknown (errors.h):
  // never retry it blindly.
  absl::StatusOr<Result> Execute(ShardKey key, std::string_view sql,
                                 std::initializer_list<Param> params = {},
                                 CallOptions call = {});
  absl::StatusOr<Result> Execute(ShardKey key, std::string_view sql, ParamList params,
                                 CallOptions call = {});
  // Read-only: runs on the range's read node (the move target once reads switched) or one of
  // its replicas when the map lists them.
  absl::StatusOr<Result> ExecuteRead(ShardKey key, std::string_view sql,
                                     std::initializer_list<Param> params = {},
                                     CallOptions call = {});
  absl::StatusOr<Result> ExecuteRead(ShardKey key, std::string_view sql, ParamList params,
                                     CallOptions call = {});

  // Runs `fn` inside BEGIN ... COMMIT on the owner of `key`; commits when fn returns OK, rolls
  // back otherwise (and on any error). Returns fn's status or the commit's. A fenced error
  // before any statement succeeded is retried on the new owner like Execute. The deadline
  // (CallOptions) covers the whole transaction; an exception thrown by fn is caught (Internal)
  // and the transaction rolled back, so no connection is left mid-transaction.
  absl::Status Transaction(ShardKey key, const std::function<absl::Status(Session&)>& fn,
                           CallOptions call = {});

  // Borrows a connection to the owner of `key` for several statements (e.g. session settings,
  // cursors). The caller must not keep it longer than needed: it holds a pool slot. Each
  // statement of the session has the router's call_timeout as its deadline.
  absl::StatusOr<Session> Borrow(ShardKey key);

  // Runs `sql` on every node in parallel. In `sql`, `$owned(col)` expands to a predicate true
  // exactly for rows whose key column `col` hashes into a range the node owns under the map the
  // call started with, so rows a node still holds but no longer owns (mid-move) are never
  // counted twice. Parameters are shared by all nodes.
  // Which nodes a call reaches: a fan-out whose `sql` contains `$owned(` (a sharded fan-out) goes
  // only to the nodes that own at least one range of the call's map, since on the others the
  // expansion is `false`; so a node drained by a move (owning nothing, its server perhaps already
  // shut down) costs nothing, and the results list only the nodes the call went to. A fan-out
  // without `$owned` goes to every node of the map, owning or not: reference tables are on every
  // node, a node being added included, and a write to them must reach it.
  absl::StatusOr<std::vector<NodeResult>> FanOut(std::string_view sql,
                                                 std::initializer_list<Param> params = {},
                                                 FanOutOptions options = {});
  absl::StatusOr<std::vector<NodeResult>> FanOut(std::string_view sql, ParamList params,
                                                 FanOutOptions options = {});

  // Where `key` lives under the current map (InvalidArgument for a key of the wrong type).
  absl::StatusOr<Location> Locate(ShardKey key) const;
  // The current map snapshot and its version.
  std::shared_ptr<const ShardMap> map() const;
  std::int64_t map_version() const;
  // Re-reads the map source now. The old map stays when the new one is invalid (the status
  // says why).
  absl::Status RefreshMap();
  // A new globally unique id (see shardline/id_gen.h) from this router's generator, whose
  // worker id is leased from the catalog's router registry (or given as
  // RouterOptions::worker_id). Never a duplicate: FailedPrecondition when this router has no
  // worker id (following a map file, or not registering, without worker_id: a configuration
  // error, not worth retrying); Unavailable while the lease is not held (the heartbeat has not
  // reached the catalog for longer than worker_id_lease: retry later, ids resume once it
  // does). Lock-free on success.
  absl::StatusOr<std::int64_t> NextId();
  // Metrics in the Prometheus text exposition format (no passwords).
  std::string MetricsText() const;

  explicit Router(std::unique_ptr<internal::RouterImpl> impl);
  // Test and benchmark hook (tools/bench/router_bench uses the router's own pooled connections
  // for its libpq baseline): the implementation, declared in router/ (not installed).
  internal::RouterImpl& ImplForTest() { return *impl_; }

 private:
  std::unique_ptr<internal::RouterImpl> impl_;
};

}  // namespace shardline
