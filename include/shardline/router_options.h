// Options of a Router: where the map comes from, pool limits, timeouts, retry policy.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "shardline/shard_map.h"

namespace shardline {

using std::chrono::milliseconds;

inline constexpr milliseconds kDefaultCheckoutTimeout{1000};
inline constexpr milliseconds kDefaultConnectTimeout{2000};
// Default deadline of one router call (Execute, ExecuteRead, Transaction, FanOut, one Session
// statement): checkout + send + wait. Never infinite (issue 10).
inline constexpr milliseconds kDefaultCallTimeout{5000};
inline constexpr int kDefaultMaxWaiters = 64;

// Per-node connection pool behaviour (limits per node come from the map: pool_min/pool_max).
struct PoolOptions {
  // How long a caller waits for a free connection before DeadlineExceeded. Longer hides
  // overload; shorter fails fast. Default 1 s.
  milliseconds checkout_timeout = kDefaultCheckoutTimeout;
  // Hard deadline of one connection attempt (non-blocking connect). Default 2 s.
  milliseconds connect_timeout = kDefaultConnectTimeout;
  // An idle connection unused for this long is checked (a trivial round trip) before being
  // handed out. Default 30 s; 0 checks on every checkout (safe, slower).
  milliseconds health_check_after_idle{30000};
  // Connections older than this are closed when returned (spreads reconnects). Default 30 min.
  milliseconds max_lifetime{30 * 60 * 1000};
  // Reconnect backoff after a failed connect: exponential from initial to max, with full jitter.
  milliseconds backoff_initial{50};
  milliseconds backoff_max{5000};
  // Circuit breaker: after `breaker_failures` consecutive connection failures the node's
  // breaker opens and calls fail immediately (Unavailable) for `breaker_open_for`; then the
  // router probes the node in the background with one connect of the full connect_timeout
  // (half-open; callers still fail fast and never probe), within 500 ms. Default 3 failures,
  // 1 s.
  // Statement timeouts (a call's deadline passed while waiting for the node) count as
  // failures too: a hung node trips its breaker like a node that refuses connections.
  int breaker_failures = 3;
  milliseconds breaker_open_for{1000};
  // Most callers queued for a connection of one node; past it Acquire fails at once with
  // Unavailable instead of queueing behind a dead node. 0 = unbounded. Default 64.
  int max_waiters = kDefaultMaxWaiters;
  // Per-node pool limits for this router instead of the map's pool_min / pool_max (0 = the
  // map's). For processes whose concurrency differs from the services the map was sized for
  // (e.g. shardline-loadgen --pool-max). A min above the max is lowered to the max. Default 0.
  int min_size_override = 0;
  int max_size_override = 0;
};

enum class LogLevel { kDebug, kInfo, kWarning, kError };
// Receives the router's log lines (map reloads, refused maps, breaker transitions). Must be
// thread-safe. Messages never contain passwords. Default: warnings and errors to stderr.
using LogSink = std::function<void(LogLevel, std::string_view)>;

struct RouterOptions {
  // Where the shard map comes from: exactly one of these.
  std::string map_file;     // a TOML file, re-read when it changes
  std::string catalog_dsn;  // the control database: LISTEN shardline_map + polling fallback

  PoolOptions pool;
  // Deadline of every call that does not give its own (CallOptions::timeout): covers the
  // checkout, sending and waiting for the result. On expiry the connection is closed (the
  // server cancels the statement when it notices, within client_connection_check_interval =
  // 1 s, set on every connection) and the call fails with DeadlineExceeded naming the node.
  // Kept to within 10 ms (one thread per process watches every waiting call's deadline).
  // Must be > 0. Default 5 s.
  milliseconds call_timeout = kDefaultCallTimeout;
  // statement_timeout set on every connection; 0 = server default. Default 0. Behind a
  // transaction-mode pooler it is set per transaction instead (set_config(..., true) sent in
  // the statement's own round trip).
  milliseconds statement_timeout{0};
  // What sits in front of a node whose [[nodes]] entry has no `pooler` field: kNone (the
  // server itself, or a session-mode pooler) or kTransaction (pgbouncer pool_mode =
  // transaction). For a kTransaction node the router keeps nothing on a server connection
  // beyond one transaction: statements are unnamed (parsed on every call: one round trip, no
  // prepared-statement cache), the map version and statement_timeout are set per transaction
  // (pipelined with the statement, or with BEGIN), client_connection_check_interval is not set
  // (set it on the server), and Borrow is refused (FailedPrecondition; use Transaction).
  // kUnset means kNone. Default kNone.
  Pooler default_pooler = Pooler::kNone;
  // application_name on every connection (shows in pg_stat_activity). Default "shardline".
  std::string application_name = "shardline";
  // How often the map source is polled (file mtime / catalog current version) in addition
  // to LISTEN. Default 1 s.
  milliseconds map_poll_interval{1000};
  // How many times a write rejected as fenced (the range moved) is retried on the refreshed
  // map's owner. Default 1 (DESIGN.md); 0 disables.
  int fence_retries = 1;
  // Register in the catalog's router registry (id, host, pid, applied map version, heartbeat)
  // so migrations can wait for every live router. Only with catalog_dsn. Default true.
  bool register_in_catalog = true;
  milliseconds heartbeat_interval{1000};
  // Id generator worker id (0..1023). -1 = lease the lowest free one from the catalog's
  // router registry. Following a map file (or with register_in_catalog = false) there is no
  // registry: set it, unique among live routers, or NextId() refuses (FailedPrecondition).
  // With the registry a given id is leased too (Create fails when a live router holds it).
  int worker_id = -1;
  // How long a registry row holds its worker id without a heartbeat. NextId() stops (Unavailable)
  // once the heartbeat has not reached the catalog for this long minus a margin (a tenth, at
  // most 5 s); only after it may another router get the id. Longer rides out longer catalog
  // outages; shorter frees a crashed router's id sooner. At least 3 heartbeat_intervals; keep
  // it at most 60 s while routers older than leases still run (they keep ids 60 s).
  // Default 60 s.
  milliseconds worker_id_lease{60000};
  LogSink log_sink;
};

}  // namespace shardline
