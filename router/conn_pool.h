// Per-node connection pool: bounded size, FIFO checkout with a deadline, health check of idle
// connections, discard on error, reconnect with exponential backoff and jitter, max lifetime,
// and a circuit breaker so that a dead node fails fast for its own keys only.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "mutex.h"
#include "breaker.h"
#include "pg_conn.h"
#include "shardline/router_options.h"

namespace shardline::internal {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
// Injectable time source (tests drive time by hand). Must be thread-safe.
using ClockFn = std::function<TimePoint()>;
// Opens one connection to the pool's node within `timeout`. Injectable (tests use fakes).
// Must be thread-safe. Errors: Unavailable / DeadlineExceeded naming the node.
using ConnectorFn = std::function<absl::StatusOr<std::unique_ptr<pg::Conn>>(std::chrono::milliseconds timeout)>;
// Checks that an idle connection still works. Runs outside the pool's lock. Must be
// thread-safe (it is called for different connections at once). Default:
// DefaultHealthCheck(conn, connect_timeout).
using HealthCheckFn = std::function<bool(pg::Conn&)>;

// The default health check: the connection is OK and idle in transaction terms, and an empty
// query ("", the cheapest round trip: no parse, no plan, PGRES_EMPTY_QUERY) comes back within
// `timeout`. Why a round trip and not only PQstatus/PQconsumeInput: a backend killed by
// pg_terminate_backend or a server restart leaves a FATAL message and an EOF that libpq only
// notices on the next read, and a black-holed peer (network partition) shows nothing at all
// until TCP gives up minutes later; the bounded round trip catches all three. It costs one
// round trip only for connections idle longer than health_check_after_idle (default 30 s), so
// the hot path never pays it. False for a null PGconn.
bool DefaultHealthCheck(pg::Conn& conn, std::chrono::milliseconds timeout);

// A pooled connection and what belongs to it for its whole life.
struct PooledConnection {
  std::unique_ptr<pg::Conn> conn;
  // SQL text -> prepared statement name ("s1", "s2", ...), prepared on this connection.
  absl::flat_hash_map<std::string, std::string> prepared;
  TimePoint created_at;
  TimePoint last_used;
  bool broken = false;  // set by the user on connection-level errors: discarded on return
  // Set by the user when a call's deadline passed waiting for this connection's node (the
  // connection is then also broken): counts as a failure of the node in its breaker.
  bool timed_out = false;
  // Set by the user when a round trip on this connection succeeded during the lease: evidence
  // that the node answers (resets the breaker's count of timeouts).
  bool answered = false;
  // The shard map version last set as this session's shardline.map_version (0: none), so the
  // setting costs a round trip only when the router's map changes (statement.cc).
  std::int64_t map_version_sent = 0;
  // The node sits behind a transaction-mode pooler (PoolConfig::transaction_pooler): nothing
  // may outlive one transaction on this connection (statement.cc).
  bool transaction_pooler = false;
  // statement_timeout to set per transaction ("250ms"; empty: none): behind a transaction
  // pooler a session setting would land on whichever client gets the server connection next.
  std::string local_statement_timeout;
};

struct PoolConfig {
  std::string node;  // for messages and metrics
  int min_size = 1;
  int max_size = 16;
  PoolOptions options;
  // The node sits behind a transaction-mode pooler: every connection is marked so (see
  // PooledConnection::transaction_pooler), with `local_statement_timeout`.
  bool transaction_pooler = false;
  std::string local_statement_timeout;
  // Seed of the backoff and breaker jitter; 0 = random (RandomSeed()). Tests fix it.
  std::uint64_t jitter_seed = 0;
  // Receives breaker transitions (opened, closed again) at kWarning / kInfo; called outside
  // the pool's lock. Optional.
  LogSink log;
};

// Snapshot of a pool's state for metrics.
struct PoolStats {
  int in_use = 0;
  int idle = 0;
  int waiters = 0;
  int connecting = 0;
  std::int64_t checkouts = 0;
  std::int64_t checkout_timeouts = 0;
  std::int64_t connect_failures = 0;
  std::int64_t discarded = 0;
  std::int64_t call_timeouts = 0;   // leases returned timed out (counted by the breaker)
  std::int64_t waiters_refused = 0;  // Acquire refused at once: max_waiters reached
  double checkout_wait_seconds_total = 0;  // sum of time spent waiting in Acquire
  BreakerState breaker = BreakerState::kClosed;
};

class ConnPool;

// A connection leased from a pool: move-only; returns itself to the pool on destruction (and
// keeps the pool alive until then). Call MarkBroken() after a connection-level error so the
// connection is discarded instead of reused. Single-threaded.
class Lease {
 public:
  Lease() = default;
  Lease(std::shared_ptr<ConnPool> pool, std::unique_ptr<PooledConnection> pc);
  Lease(Lease&&) noexcept = default;
  Lease& operator=(Lease&&) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  pg::Conn& conn() { return *pc_->conn; }
  PooledConnection& pooled() { return *pc_; }
  void MarkBroken() { pc_->broken = true; }
  // The call's deadline passed waiting for the node: discarded, and counted by the breaker.
  void MarkTimedOut() {
    pc_->broken = true;
    pc_->timed_out = true;
  }
  void MarkAnswered() { pc_->answered = true; }
  // Deadline of the statements run on this lease (statement.h); max() = none. Set by the
  // router per call.
  TimePoint deadline() const { return deadline_; }
  void set_deadline(TimePoint deadline) { deadline_ = deadline; }
  // The shard map version the call was routed on (0: none, e.g. a replica read): sent to the
  // node as shardline.map_version before the lease's first statement outside a transaction,
  // when the session's value differs (statement.cc), so the node can refuse a statement routed
  // on an older map than its map epoch (schemas/node.sql). Set by the router per call.
  std::int64_t map_version() const { return map_version_; }
  void set_map_version(std::int64_t version) { map_version_ = version; }
  explicit operator bool() const { return pc_ != nullptr; }
  // Returns the connection to the pool now (idempotent).
  void Release();

 private:
  std::shared_ptr<ConnPool> pool_;
  std::unique_ptr<PooledConnection> pc_;
  TimePoint deadline_ = TimePoint::max();
  std::int64_t map_version_ = 0;
};

// One node's pool. Thread-safe. Created through Create() as a shared_ptr (leases keep it alive).
//
//   auto pool = ConnPool::Create(cfg, connector);
//   auto lease = pool->Acquire(SteadyClock::now() + 1s);
//   if (!lease.ok()) return lease.status();   // Unavailable (breaker open / connect failed)
//                                              // or DeadlineExceeded (no free connection)
//   lease->conn().Exec(...);
class ConnPool : public std::enable_shared_from_this<ConnPool> {
 public:
  static std::shared_ptr<ConnPool> Create(PoolConfig config, ConnectorFn connector,
                                          ClockFn clock = {}, HealthCheckFn health_check = {});
  ~ConnPool();

  // Checks out a connection: an idle one (health-checked when idle longer than
  // health_check_after_idle; over max_lifetime ones are closed), else a new one when below
  // max_size (connecting outside the lock, bounded by connect_timeout and the deadline), else
  // waits FIFO until one is returned or `deadline` passes (DeadlineExceeded naming the node,
  // the pool size and the wait). After a failed connect the next attempt waits for a
  // full-jitter backoff (within the deadline). A failed connect returns the connector's status
  // (Unavailable / DeadlineExceeded, node attached). When max_waiters callers already wait,
  // fails at once with Unavailable (no queueing behind a dead node). While the breaker is not
  // closed (open, or half-open), fails at once with Unavailable naming the node and when it
  // will retry, without any connection attempt: only Maintain probes (in the background, with
  // the full connect_timeout). Blocks at most until `deadline`, except that a connect or a
  // health check in progress is bounded by at least 1 ms / connect_timeout respectively.
  absl::StatusOr<Lease> Acquire(TimePoint deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Opens connections up to min_size when the backoff allows, and probes a breaker that is not
  // closed (while open no attempt; once half-open one connect with the full connect_timeout,
  // whatever min_size is: the only probe there is, so a pool heals by itself); closes idle
  // connections past max_lifetime. Called periodically by the router's maintenance thread
  // (every 500 ms). Blocks for at most one connect_timeout per missing connection; stops at the
  // first failure.
  void Maintain() ABSL_LOCKS_EXCLUDED(mu_);

  // Closes idle connections and refuses further checkouts (Unavailable); leases still out are
  // closed when returned. Used when a node leaves the map.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  PoolStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& node() const { return config_.node; }

  // Test hooks. Blocks (real time, at most `timeout`) until at least `n` callers wait in
  // Acquire; true if they do.
  bool AwaitWaitersForTest(int n, std::chrono::milliseconds timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // Makes every waiter re-read the clock (after a test advanced its fake clock).
  void WakeWaitersForTest() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class Lease;
  struct Waiter;
  using Trash = std::vector<std::unique_ptr<PooledConnection>>;

  ConnPool(PoolConfig config, ConnectorFn connector, ClockFn clock, HealthCheckFn health_check);
  void Return(std::unique_ptr<PooledConnection> pc) ABSL_LOCKS_EXCLUDED(mu_);

  // Bookkeeping after a connection attempt (the slot was counted in `connecting`).
  std::unique_ptr<PooledConnection> OnConnectedLocked(std::unique_ptr<pg::Conn> conn,
                                                      TimePoint now, std::string* log_line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `counts`: whether the failure is evidence against the node (feeds the breaker and the
  // backoff); see Acquire in conn_pool.cc.
  void OnConnectFailedLocked(const absl::Status& status, bool counts, TimePoint now, Trash* trash,
                             std::string* log_line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives `pc` to the longest waiter, or keeps it idle.
  void PutBackLocked(std::unique_ptr<PooledConnection> pc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Wakes the longest waiter to re-evaluate (a slot freed, the queue head changed).
  void KickFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DequeueLocked(Waiter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int TotalLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BreakerErrorLocked(BreakerState state, TimePoint now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DeadlineErrorLocked(TimePoint start, TimePoint now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Log(LogLevel level, const std::string& line) const;

  const PoolConfig config_;
  const ConnectorFn connector_;
  const ClockFn clock_;
  const HealthCheckFn health_check_;

  mutable Mutex mu_;  // internal::Mutex (router/mutex.h): TSan-visible, see there
  // Implementation state (idle list, waiter queue, counts, breaker, backoff) is private to
  // conn_pool.cc; see there.
  struct State;
  std::unique_ptr<State> state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shardline::internal
