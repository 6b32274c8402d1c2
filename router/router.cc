// shardline::Router and internal::RouterImpl: routing table snapshots, the single-key hot path
// with fence retries, transactions, sessions, map following and the maintenance thread. See
// router_impl.h. (Fan-out is in fanout.cc, statement execution in statement.cc.)
//
// Retry policy, deliberately narrow:
//  - A write rejected as fenced (SQLSTATE SLF01) is retried on the new owner, up to
//    fence_retries times, after the map has moved the range: the fence guarantees the
//    statement did not take effect.
//  - A write that fails with Unavailable (connection lost, breaker open) is NOT retried: the
//    statement may have committed before the connection dropped, and writes are not assumed
//    idempotent. The caller decides.
//  - A read (ExecuteRead) that loses its connection is retried once on a fresh connection,
//    and a read replica that is unavailable falls back to the node's primary.
#include <libpq-fe.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include <fmt/format.h>
#include "absl/strings/cord.h"
#include "status_text.h"
#include "router_impl.h"
#include "session_impl.h"
#include "shardline/dsn.h"
#include "shardline/errors.h"
#include "statement.h"

namespace shardline {
namespace internal {
namespace {

using Clock = std::chrono::steady_clock;

// absl::Status::message() is Debian abseil's own string_view, which fmt cannot format.
// How often the pools are maintained: idle connections refilled, and an open breaker's node
// probed once its cool-down is over (a node heals within breaker_open_for plus this), idle
// connections past max_lifetime closed.
constexpr std::chrono::milliseconds kMaintainEvery{500};
// While waiting for a map that moves a fenced range: how often to re-read the source, and how
// recent another thread's refresh may be to be reused instead.
constexpr std::chrono::milliseconds kFenceRecheckEvery{50};

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
    default:
      return "log";
  }
}

PoolSample SampleOf(const ConnPool& pool) {
  PoolStats s = pool.Stats();
  PoolSample out;
  out.in_use = s.in_use;
  out.idle = s.idle;
  out.waiters = s.waiters;
  out.checkout_timeouts = s.checkout_timeouts;
  out.breaker_open = s.breaker != BreakerState::kClosed;
  return out;
}

// Where RouterImpl::Log and the pools' logs go: `sink`, or warnings and errors to stderr.
void LogTo(const LogSink& sink, LogLevel level, std::string_view message) {
  if (sink) {
    sink(level, message);
    return;
  }
  if (level >= LogLevel::kWarning) {
    std::fprintf(stderr, "shardline %s: %.*s\n", LevelName(level),
                 static_cast<int>(message.size()), message.data());
  }
}

}  // namespace

RouterImpl::RouterImpl(RouterOptions options) : options_(std::move(options)) {}

void RouterImpl::Log(LogLevel level, std::string_view message) const {
  LogTo(options_.log_sink, level, message);
}

absl::Status RouterImpl::CheckOptions(const RouterOptions& o) {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(fmt::format("RouterOptions: {}", what));
  };
  if (o.map_file.empty() == o.catalog_dsn.empty()) {
    return bad("set exactly one of map_file and catalog_dsn");
  }
  if (o.pool.checkout_timeout.count() <= 0) return bad("pool.checkout_timeout must be > 0");
  if (o.pool.connect_timeout.count() <= 0) return bad("pool.connect_timeout must be > 0");
  if (o.pool.health_check_after_idle.count() < 0) {
    return bad("pool.health_check_after_idle must be >= 0");
  }
  if (o.pool.max_lifetime.count() <= 0) return bad("pool.max_lifetime must be > 0");
  if (o.pool.backoff_initial.count() <= 0 || o.pool.backoff_max < o.pool.backoff_initial) {
    return bad("pool.backoff_initial must be > 0 and <= pool.backoff_max");
  }
  if (o.pool.breaker_failures < 1) return bad("pool.breaker_failures must be >= 1");
  if (o.pool.breaker_open_for.count() <= 0) return bad("pool.breaker_open_for must be > 0");
  if (o.statement_timeout.count() < 0) return bad("statement_timeout must be >= 0");
  if (o.call_timeout.count() <= 0) return bad("call_timeout must be > 0 (calls never wait forever)");
  if (o.pool.max_waiters < 0) return bad("pool.max_waiters must be >= 0");
  if (o.map_poll_interval.count() <= 0) return bad("map_poll_interval must be > 0");
  if (o.heartbeat_interval.count() <= 0) return bad("heartbeat_interval must be > 0");
  if (o.fence_retries < 0) return bad("fence_retries must be >= 0");
  if (o.worker_id < -1 || o.worker_id > kMaxWorkerId) {
    return bad(fmt::format("worker_id {} is outside -1..{}", o.worker_id, kMaxWorkerId));
  }
  if (o.worker_id_lease > std::chrono::hours(24)) {
    return bad(fmt::format("worker_id_lease ({} ms) must be at most 24 h", o.worker_id_lease.count()));
  }
  if (o.worker_id_lease < 3 * o.heartbeat_interval) {
    return bad(fmt::format("worker_id_lease ({} ms) must be at least 3 heartbeat_intervals ({} ms)",
                           o.worker_id_lease.count(), 3 * o.heartbeat_interval.count()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RouterImpl>> RouterImpl::Create(RouterOptions options) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  std::unique_ptr<RouterImpl> r(new RouterImpl(std::move(options)));
  const RouterOptions& o = r->options_;
  LogSink log = [raw = r.get()](LogLevel level, std::string_view m) { raw->Log(level, m); };

  r->metrics_registry_ = std::make_unique<MetricsRegistry>();
  absl::StatusOr<RouterMetrics> rm = RouterMetrics::Register(*r->metrics_registry_);
  if (!rm.ok()) return rm.status();
  r->metrics_ = *rm;

  if (!o.map_file.empty()) {
    r->source_ = MakeFileMapSource(o.map_file, log);
  } else {
    r->source_ = MakeCatalogMapSource(o.catalog_dsn, o.pool, log);
  }
  absl::StatusOr<std::shared_ptr<const ShardMap>> map = r->source_->Load();
  if (!map.ok()) return map.status();

  const int nodes = static_cast<int>((*map)->nodes().size());
  // Fan-out workers: two per node (4..16), of which one node's parts may take at most half,
  // so that a hung node leaves the others at least half of them.
  r->workers_ = std::make_unique<WorkerPool>(std::clamp(2 * nodes, 4, 16));
  r->fanout_per_node_ = std::max(1, r->workers_->size() / 2);
  r->maintenance_workers_ = std::make_unique<WorkerPool>(2);
  {
    MutexLock lock(&r->apply_mu_);
    r->table_.Store(r->BuildTable(*map, nullptr));
  }
  r->metrics_.map_version.Set(static_cast<double>((*map)->version()));

  // Open pool_min connections everywhere, in parallel; unreachable nodes only cost their
  // connect timeout and leave their breaker counting.
  {
    std::shared_ptr<const RoutingTable> t = r->table();
    std::vector<std::shared_ptr<ConnPool>> pools;
    for (const NodeRoute& n : t->nodes) {
      pools.push_back(n.pool);
      for (const auto& p : n.replicas) pools.push_back(p);
    }
    Latch done(static_cast<int>(pools.size()));
    for (const auto& p : pools) {
      r->workers_->Submit([p, &done] {
        p->Maintain();
        done.CountDown();
      });
    }
    done.Wait();
  }

  if (!o.catalog_dsn.empty() && o.register_in_catalog) {
    // The worker id is leased from the registry (an explicit worker_id is leased too, so that
    // two routers given the same one are refused).
    r->ids_ = IdLease::Leased(o.worker_id_lease);
    absl::StatusOr<std::unique_ptr<RouterRegistry>> reg = RouterRegistry::Register(
        o.catalog_dsn, o.pool, o.worker_id, (*map)->version(), r->ids_.get(), log);
    if (!reg.ok()) return reg.status();
    r->registry_ = std::move(*reg);
  } else if (o.worker_id >= 0) {
    r->ids_ = IdLease::Fixed(o.worker_id);
  } else {
    // No registry to lease a worker id from: refuse to generate ids rather than guess one
    // (two processes guessing alike, e.g. from their pids, would generate the same ids).
    r->ids_ = IdLease::Refusing(fmt::format(
        "NextId: this router has no id-generator worker id: it {} and RouterOptions::worker_id "
        "is not set; set worker_id (0..{}, unique among live routers){}",
        o.catalog_dsn.empty() ? "follows a map file, which has no router registry to lease one from"
                              : "does not register in the catalog (register_in_catalog = false)",
        kMaxWorkerId,
        o.catalog_dsn.empty() ? ", or follow a catalog, whose registry leases one"
                              : ", or register in the catalog, whose registry leases one"));
  }

  r->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->wake_fd_ < 0) return absl::InternalError("eventfd failed");
  r->Log(LogLevel::kInfo, fmt::format("router started: map version {} from {}, {} nodes",
                                      (*map)->version(), r->source_->Describe(), nodes));
  r->maintenance_ = std::thread([raw = r.get()] { raw->MaintenanceLoop(); });
  return r;
}

RouterImpl::~RouterImpl() {
  {
    MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  stopping_flag_.store(true, std::memory_order_relaxed);
  if (maintenance_.joinable()) {
    Wake();
    maintenance_.join();
  }
  maintenance_workers_.reset();  // queued maintenance tasks see stopping_flag_ and return
  workers_.reset();
  if (registry_) registry_->Deregister();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void RouterImpl::Wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

bool RouterImpl::TransactionPooler(const NodeConfig& node) const {
  const Pooler p = node.pooler != Pooler::kUnset ? node.pooler : options_.default_pooler;
  return p == Pooler::kTransaction;
}

std::shared_ptr<ConnPool> RouterImpl::MakePool(const std::string& node, const std::string& dsn,
                                               int min_size, int max_size,
                                               bool transaction_pooler) const {
  PoolConfig cfg;
  cfg.node = node;
  cfg.max_size = options_.pool.max_size_override > 0 ? options_.pool.max_size_override : max_size;
  cfg.min_size = std::min(
      options_.pool.min_size_override > 0 ? options_.pool.min_size_override : min_size,
      cfg.max_size);
  cfg.options = options_.pool;
  // Breaker transitions reach the router's log. The sink is copied, not `this`: a pool can
  // outlive the router while a Session still holds one of its connections.
  cfg.log = [sink = options_.log_sink](LogLevel level, std::string_view m) {
    LogTo(sink, level, m);
  };
  const std::string app = options_.application_name;
  const std::chrono::milliseconds statement_timeout = options_.statement_timeout;
  cfg.transaction_pooler = transaction_pooler;
  if (transaction_pooler) {
    // Behind a transaction pooler a session SET would reach whichever client is handed the
    // server connection next: application_name travels in the startup packet (the pooler
    // forwards it), statement_timeout is set per transaction (statement.cc), and
    // client_connection_check_interval is left to the server's configuration.
    if (statement_timeout.count() > 0) {
      cfg.local_statement_timeout = fmt::format("{}ms", statement_timeout.count());
    }
    ConnectorFn connect = [dsn, node, app](std::chrono::milliseconds timeout) {
      return pg::Conn::Connect(dsn, node, timeout, app);
    };
    return ConnPool::Create(std::move(cfg), std::move(connect));
  }
  ConnectorFn connect = [dsn, node, app, statement_timeout](std::chrono::milliseconds timeout)
      -> absl::StatusOr<std::unique_ptr<pg::Conn>> {
    absl::StatusOr<std::unique_ptr<pg::Conn>> conn = pg::Conn::Connect(dsn, node, timeout);
    if (!conn.ok()) return conn.status();
    // Session settings as parameters (never spliced): one round trip per new connection.
    std::string sql = "SELECT pg_catalog.set_config('application_name', $1, false)";
    pg::Params params{app};
    if (statement_timeout.count() > 0) {
      sql += ", pg_catalog.set_config('statement_timeout', $2, false)";
      params.emplace_back(fmt::format("{}ms", statement_timeout.count()));
    }
    if (PQserverVersion((*conn)->raw()) >= 140000) {
      // A call past its deadline closes its connection (statement.cc); with this the server
      // notices within 1 s and cancels the statement instead of running it to the end.
      sql += fmt::format(", pg_catalog.set_config('client_connection_check_interval', ${}, "
                         "false)",
                         params.size() + 1);
      params.emplace_back("1000");
    }
    absl::StatusOr<pg::Result> set = (*conn)->Exec(sql, params);
    if (!set.ok()) return set.status();
    return conn;
  };
  return ConnPool::Create(std::move(cfg), std::move(connect));
}

std::shared_ptr<const RoutingTable> RouterImpl::BuildTable(std::shared_ptr<const ShardMap> map,
                                                           const RoutingTable* previous) {
  auto t = std::make_shared<RoutingTable>();
  t->map = map;
  t->nodes.reserve(map->nodes().size());
  for (const NodeConfig& node : map->nodes()) {
    NodeRoute route;
    route.name = node.name;
    const NodeRoute* old = nullptr;
    const NodeConfig* old_cfg = nullptr;
    if (previous != nullptr) {
      const int i = previous->map->NodeIndex(node.name);
      if (i >= 0) {
        old = &previous->nodes[static_cast<std::size_t>(i)];
        old_cfg = &previous->map->nodes()[static_cast<std::size_t>(i)];
      }
    }
    route.transaction_pooler = TransactionPooler(node);
    // A node whose pooler changed gets new pools: a connection's statement cache and session
    // settings belong to the mode it was opened in.
    const bool same_pools = old != nullptr && old_cfg->dsn == node.dsn &&
                            old_cfg->pool_min == node.pool_min &&
                            old_cfg->pool_max == node.pool_max &&
                            old->transaction_pooler == route.transaction_pooler;
    if (same_pools) {
      route.pool = old->pool;
    } else {
      route.pool = MakePool(node.name, node.dsn, node.pool_min, node.pool_max,
                            route.transaction_pooler);
    }
    auto register_metrics = [this](const std::string& name, std::shared_ptr<ConnPool> pool) {
      absl::StatusOr<NodeMetrics> m = NodeMetrics::Register(
          *metrics_registry_, name, [pool] { return SampleOf(*pool); });
      if (!m.ok()) {
        Log(LogLevel::kError, fmt::format("metrics for node {}: {}", name, Msg(m.status())));
        return NodeMetrics{};
      }
      return *m;
    };
    route.metrics = register_metrics(node.name, route.pool);
    for (std::size_t j = 0; j < node.replicas.size(); ++j) {
      const std::string name = fmt::format("{}/replica{}", node.name, j + 1);
      std::shared_ptr<ConnPool> pool;
      if (same_pools && j < old_cfg->replicas.size() &&
          old_cfg->replicas[j] == node.replicas[j]) {
        pool = old->replicas[j];
      } else {
        // A node's replicas are taken to sit behind the same kind of pooler as the node.
        pool = MakePool(name, node.replicas[j], node.pool_min, node.pool_max,
                        route.transaction_pooler);
      }
      route.replica_metrics.push_back(register_metrics(name, pool));
      route.replicas.push_back(std::move(pool));
    }
    t->nodes.push_back(std::move(route));
  }
  if (previous != nullptr) {
    // Nodes (and replicas) gone from the map: stop rendering their pool gauges. Their pools
    // close once the last call that started on the old map returns its lease.
    for (std::size_t i = 0; i < previous->nodes.size(); ++i) {
      const NodeRoute& old = previous->nodes[i];
      const int j = map->NodeIndex(old.name);
      const std::size_t kept =
          j < 0 ? 0 : map->nodes()[static_cast<std::size_t>(j)].replicas.size();
      if (j < 0) metrics_registry_->RemoveCallbacks("node", old.name);
      for (std::size_t k = kept; k < old.replicas.size(); ++k) {
        metrics_registry_->RemoveCallbacks("node", fmt::format("{}/replica{}", old.name, k + 1));
      }
    }
  }
  return t;
}

bool RouterImpl::Apply(std::shared_ptr<const ShardMap> map, std::string_view why) {
  std::shared_ptr<const RoutingTable> t;
  std::int64_t old_version = 0;
  {
    MutexLock lock(&apply_mu_);
    std::shared_ptr<const RoutingTable> current = table();
    old_version = current->map->version();
    if (map->version() <= old_version) return false;
    t = BuildTable(map, current.get());
    table_.Store(t);
    last_refused_ = 0;
    metrics_.map_version.Set(static_cast<double>(map->version()));
    metrics_.map_reloads_ok.Inc();
    map_changed_.SignalAll();
  }
  Log(LogLevel::kInfo, fmt::format("shard map version {} applied (was {}) from {} ({})",
                                   map->version(), old_version, source_->Describe(), why));
  StartPoolMaintenance(*t);
  return true;
}

void RouterImpl::Refuse(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnavailable) {
    Log(LogLevel::kWarning, fmt::format("cannot read the shard map from {}: {}",
                                        source_->Describe(), Msg(status)));
    return;
  }
  const std::size_t h = std::hash<std::string>()(std::string(Msg(status)));
  std::int64_t version = 0;
  {
    MutexLock lock(&apply_mu_);
    metrics_.map_reloads_refused.Inc();
    if (h == last_refused_) return;
    last_refused_ = h;
    version = table()->map->version();
  }
  Log(LogLevel::kError, fmt::format("new shard map from {} refused, keeping version {}: {}",
                                    source_->Describe(), version, Msg(status)));
}

absl::Status RouterImpl::RefreshMap() {
  absl::StatusOr<std::shared_ptr<const ShardMap>> map;
  {
    MutexLock lock(&refresh_mu_);
    // The time the load began: a load that began after a write was refused saw every map
    // deployed before that refusal (AwaitNewOwner).
    const auto started = Clock::now();
    map = source_->Load();
    last_refresh_.store(started.time_since_epoch().count(), std::memory_order_relaxed);
  }
  if (!map.ok()) {
    Refuse(map.status());
    return map.status();
  }
  Apply(*map, "refresh");
  return absl::OkStatus();
}

std::shared_ptr<const RoutingTable> RouterImpl::AwaitNewOwner(
    std::int64_t stale_version, std::int64_t hash, const std::string& fenced_node,
    Clock::time_point deadline, bool any_newer) {
  auto moved = [&](const RoutingTable& t) {
    if (t.map->version() <= stale_version) return false;
    if (any_newer) return true;
    const int owner = t.map->OwnerNodeIndex(t.map->RangeIndex(hash));
    return t.nodes[static_cast<std::size_t>(owner)].name != fenced_node;
  };
  const auto refused_at = Clock::now();
  for (;;) {
    std::shared_ptr<const RoutingTable> t = table();
    if (moved(*t)) return t;
    const auto last =
        Clock::time_point(Clock::duration(last_refresh_.load(std::memory_order_relaxed)));
    if (!source_->Live()) {
      // A file changes only when someone deploys one: one re-read that began after this write
      // was refused (another thread's will do), then no waiting.
      if (last < refused_at) {
        (void)RefreshMap();  // failures are logged
        t = table();
        if (moved(*t)) return t;
      }
      return nullptr;
    }
    // Re-read the catalog unless another thread just did (many writers hit the same fence).
    if (Clock::now() - last >= kFenceRecheckEvery) {
      const absl::Status refreshed = RefreshMap();  // failures are logged
      t = table();
      if (moved(*t)) return t;
      // An unreachable catalog publishes nothing to us: no waiting either.
      if (!refreshed.ok()) return nullptr;
    }
    const auto now = Clock::now();
    if (now >= deadline) return nullptr;
    MutexLock lock(&apply_mu_);
    if (table()->map->version() == t->map->version()) {
      map_changed_.WaitUntil(&apply_mu_, std::min(deadline, now + kFenceRecheckEvery));
    }
  }
}

absl::Status RouterImpl::NoNewerMap(const absl::Status& fenced, std::int64_t version) const {
  absl::Status out(fenced.code(),
                   fmt::format("{}; this router's shard map (version {}, from {}) has no newer "
                               "map that moves the range: the node refuses writes routed on it. "
                               "Deploy or publish the current map (`shardline map show`)",
                               Msg(fenced), version, source_->Describe()));
  fenced.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

absl::Status RouterImpl::CheckKeyType(const ShardMap& map, const ShardKey& key) const {
  if (key.type() == map.key_type()) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format("key {} is {} but the map's key_type is {}",
                                                key.ToString(), KeyTypeName(key.type()),
                                                KeyTypeName(map.key_type())));
}

Clock::time_point RouterImpl::DeadlineOf(std::chrono::milliseconds timeout) const {
  return Clock::now() + (timeout.count() > 0 ? timeout : options_.call_timeout);
}

absl::StatusOr<Lease> RouterImpl::AcquireFrom(const std::shared_ptr<ConnPool>& pool,
                                              const NodeMetrics& metrics,
                                              Clock::time_point deadline,
                                              std::int64_t map_version) const {
  const auto start = Clock::now();
  absl::StatusOr<Lease> lease =
      pool->Acquire(std::min(deadline, start + options_.pool.checkout_timeout));
  metrics.checkout_wait.Observe(SecondsSince(start));
  if (lease.ok()) {
    lease->set_deadline(deadline);
    lease->set_map_version(map_version);
  }
  return lease;
}

absl::StatusOr<Result> RouterImpl::RunOnce(const RoutingTable& t, std::int64_t hash, bool read,
                                           std::string_view sql, ParamList params,
                                           int* node_index, Clock::time_point deadline) {
  const std::size_t range = t.map->RangeIndex(hash);
  *node_index = read ? t.map->ReadNodeIndex(range) : t.map->OwnerNodeIndex(range);
  const NodeRoute& route = t.nodes[static_cast<std::size_t>(*node_index)];
  if (!read) {
    absl::StatusOr<Lease> lease =
        AcquireFrom(route.pool, route.metrics, deadline, t.map->version());
    if (!lease.ok()) return lease.status();
    return ExecPrepared(*lease, sql, params);
  }
  if (!route.replicas.empty()) {
    const std::size_t j =
        replica_rr_.fetch_add(1, std::memory_order_relaxed) % route.replicas.size();
    absl::StatusOr<Lease> lease = AcquireFrom(route.replicas[j], route.replica_metrics[j], deadline);
    if (lease.ok()) {
      absl::StatusOr<Result> r = ExecPrepared(*lease, sql, params);
      if (r.ok() || !IsConnectionFailure(r.status())) return r;
    }
    // The replica is unavailable: the node's primary serves the read.
  }
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<Lease> lease = AcquireFrom(route.pool, route.metrics, deadline);
    if (!lease.ok()) return lease.status();
    absl::StatusOr<Result> r = ExecPrepared(*lease, sql, params);
    if (r.ok() || attempt > 0 || !IsConnectionFailure(r.status())) return r;
    // A read is safe to repeat: the connection had died (e.g. node restarted) — once more on
    // a fresh one.
  }
}

absl::StatusOr<Result> RouterImpl::Execute(ShardKey key, std::string_view sql, ParamList params,
                                           CallOptions call) {
  const Clock::time_point deadline = DeadlineOf(call.timeout);
  std::shared_ptr<const RoutingTable> t = table();
  if (absl::Status s = CheckKeyType(*t->map, key); !s.ok()) return s;
  const std::int64_t hash = key.Hash();
  auto start = Clock::now();
  for (int attempt = 0;; ++attempt) {
    int node = 0;
    absl::StatusOr<Result> r = RunOnce(*t, hash, /*read=*/false, sql, params, &node, deadline);
    const NodeRoute& route = t->nodes[static_cast<std::size_t>(node)];
    if (!r.ok() && IsFenced(r.status()) && attempt < options_.fence_retries) {
      std::shared_ptr<const RoutingTable> next =
          AwaitNewOwner(t->map->version(), hash, route.name,
                        std::min(deadline, Clock::now() + options_.pool.checkout_timeout),
                        IsStaleMap(r.status()));
      if (next != nullptr) {
        route.metrics.RecordQuery(QueryKind::kExecute, QueryOutcome::kFencedRetry, r.status(),
                                  SecondsSince(start));
        metrics_.fence_retries.Inc();
        Log(LogLevel::kDebug, fmt::format("write fenced on node {}; retrying on map version {}",
                                          route.name, next->map->version()));
        t = std::move(next);
        start = Clock::now();
        continue;
      }
      r = NoNewerMap(r.status(), t->map->version());
    }
    route.metrics.RecordQuery(QueryKind::kExecute, OutcomeOf(r.status()), r.status(),
                              SecondsSince(start));
    return r;
  }
}

absl::StatusOr<Result> RouterImpl::ExecuteRead(ShardKey key, std::string_view sql,
                                               ParamList params, CallOptions call) {
  const Clock::time_point deadline = DeadlineOf(call.timeout);
  std::shared_ptr<const RoutingTable> t = table();
  if (absl::Status s = CheckKeyType(*t->map, key); !s.ok()) return s;
  const auto start = Clock::now();
  int node = 0;
  absl::StatusOr<Result> r =
      RunOnce(*t, key.Hash(), /*read=*/true, sql, params, &node, deadline);
  if (!r.ok()) {
    // A read has no write outcome to doubt: it is safe to repeat.
    absl::Status s = r.status();
    SetWriteOutcome(s, WriteOutcome::kNotApplicable);
    r = std::move(s);
  }
  t->nodes[static_cast<std::size_t>(node)].metrics.RecordQuery(
      QueryKind::kRead, OutcomeOf(r.status()), r.status(), SecondsSince(start));
  return r;
}

absl::Status RouterImpl::Transaction(ShardKey key,
                                     const std::function<absl::Status(Session&)>& fn,
                                     CallOptions call) {
  const Clock::time_point deadline = DeadlineOf(call.timeout);
  std::shared_ptr<const RoutingTable> t = table();
  if (absl::Status s = CheckKeyType(*t->map, key); !s.ok()) return s;
  const std::int64_t hash = key.Hash();
  auto start = Clock::now();
  for (int attempt = 0;; ++attempt) {
    const int node = t->map->OwnerNodeIndex(t->map->RangeIndex(hash));
    const NodeRoute& route = t->nodes[static_cast<std::size_t>(node)];
    absl::Status status;
    bool retry = false;
    bool commit_sent = false;
    {
      absl::StatusOr<Lease> lease =
          AcquireFrom(route.pool, route.metrics, deadline, t->map->version());
      if (!lease.ok()) {
        route.metrics.RecordQuery(QueryKind::kTxn, OutcomeOf(lease.status()), lease.status(),
                                  SecondsSince(start));
        return lease.status();
      }
      auto owned = std::make_unique<SessionImpl>(std::move(*lease), route.metrics,
                                                 QueryKind::kExecute);
      // Used after fn returns: fn gets the Session by reference and must not move it away.
      SessionImpl* impl = owned.get();
      Session session(std::move(owned));
      status = ExecBegin(impl->lease());
      if (status.ok()) {
        // No exception crosses the public API, and none may leave the connection inside the
        // transaction: the rollback below runs either way.
        try {
          status = fn(session);
        } catch (const std::exception& e) {
          status = absl::InternalError(
              fmt::format("node {}: the transaction function threw: {}", route.name, e.what()));
        } catch (...) {
          status = absl::InternalError(
              fmt::format("node {}: the transaction function threw", route.name));
        }
      }
      PGconn* conn = impl->lease().conn().raw();
      if (status.ok()) {
        switch (PQtransactionStatus(conn)) {
          case PQTRANS_INTRANS:
            status = CommitAndResolve(impl->lease(), route, deadline);
            commit_sent = true;
            break;
          case PQTRANS_IDLE:
            break;  // fn ended the transaction itself
          case PQTRANS_INERROR:
            // fn ignored a failed statement: PostgreSQL would turn COMMIT into ROLLBACK.
            status = impl->last_error().ok()
                         ? absl::AbortedError(fmt::format(
                               "node {}: transaction failed and was rolled back", route.name))
                         : impl->last_error();
            (void)ExecControl(impl->lease(), "ROLLBACK");
            break;
          default:
            impl->lease().MarkBroken();
            status = absl::UnavailableError(
                fmt::format("node {}: connection lost during the transaction", route.name));
            SetNode(status, route.name);
            break;
        }
      } else if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        if (!ExecControl(impl->lease(), "ROLLBACK").ok()) impl->lease().MarkBroken();
      }
      // Before COMMIT nothing can have been applied: a statement's lost connection only
      // rolled the transaction back.
      if (!commit_sent) SetWriteOutcome(status, WriteOutcome::kNotApplicable);
      retry = !status.ok() && IsFenced(status) && impl->ok_statements() == 0 &&
              attempt < options_.fence_retries;
    }  // the session ends here: its connection returns to the pool before any retry
    if (retry) {
      std::shared_ptr<const RoutingTable> next =
          AwaitNewOwner(t->map->version(), hash, route.name,
                        std::min(deadline, Clock::now() + options_.pool.checkout_timeout),
                        IsStaleMap(status));
      if (next != nullptr) {
        route.metrics.RecordQuery(QueryKind::kTxn, QueryOutcome::kFencedRetry, status,
                                  SecondsSince(start));
        metrics_.fence_retries.Inc();
        t = std::move(next);
        start = Clock::now();
        continue;
      }
      status = NoNewerMap(status, t->map->version());
    }
    route.metrics.RecordQuery(QueryKind::kTxn, OutcomeOf(status), status, SecondsSince(start));
    return status;
  }
}

absl::Status RouterImpl::CommitAndResolve(Lease& lease, const NodeRoute& route,
                                          Clock::time_point deadline) {
  // The transaction id, if it has one (a transaction that wrote nothing has none, and then
  // its COMMIT's fate does not matter): one extra round trip per transaction.
  absl::StatusOr<Result> xid =
      ExecPrepared(lease, "SELECT pg_catalog.pg_current_xact_id_if_assigned()::text", {});
  if (!xid.ok()) {
    // COMMIT was not sent: the transaction is rolled back whatever became of this query.
    absl::Status not_committed = xid.status();
    SetWriteOutcome(not_committed, WriteOutcome::kNotApplicable);
    return not_committed;
  }
  std::string txid;
  if (xid->rows() == 1 && !xid->IsNull(0, 0)) txid = std::string(*xid->GetString(0, 0));
  if (before_commit_) before_commit_();
  absl::Status status = ExecControl(lease, "COMMIT");
  if (status.ok() || !IsOutcomeUnknown(status)) return status;
  if (txid.empty()) {
    // Nothing was written: whatever happened to COMMIT, nothing was applied.
    SetWriteOutcome(status, WriteOutcome::kNotCommitted);
    return status;
  }
  // Ask the node on another connection. A fresh connection is needed, so it gets the connect
  // timeout even when the call's deadline has passed.
  const auto resolve_by = std::max(deadline, Clock::now() + options_.pool.connect_timeout);
  absl::StatusOr<Lease> other = AcquireFrom(route.pool, route.metrics, resolve_by);
  if (!other.ok()) return status;
  const Param txid_param[] = {Param(txid)};
  absl::StatusOr<Result> fate = ExecPrepared(
      *other, "SELECT pg_catalog.pg_xact_status($1::text::xid8)", txid_param);
  if (!fate.ok() || fate->rows() != 1 || fate->IsNull(0, 0)) return status;
  const std::string verdict(*fate->GetString(0, 0));
  if (verdict == "committed") {
    Log(LogLevel::kInfo,
        fmt::format("node {}: COMMIT of transaction {} lost its answer ({}); pg_xact_status "
                    "says committed",
                    route.name, txid, Msg(status)));
    return absl::OkStatus();
  }
  if (verdict == "aborted") {
    absl::Status aborted = absl::AbortedError(fmt::format(
        "node {}: COMMIT of transaction {} lost its answer ({}); pg_xact_status says it did "
        "not commit (safe to retry)",
        route.name, txid, Msg(status)));
    SetNode(aborted, route.name);
    SetWriteOutcome(aborted, WriteOutcome::kNotCommitted);
    return aborted;
  }
  return status;  // "in progress": the server has not finished with it yet: still unknown
}

absl::StatusOr<Session> RouterImpl::Borrow(ShardKey key) {
  std::shared_ptr<const RoutingTable> t = table();
  if (absl::Status s = CheckKeyType(*t->map, key); !s.ok()) return s;
  const int node = t->map->OwnerNodeIndex(t->map->RangeIndex(key.Hash()));
  const NodeRoute& route = t->nodes[static_cast<std::size_t>(node)];
  if (route.transaction_pooler) {
    // A borrowed session's settings, temp tables, advisory locks and prepared statements would
    // outlive its transactions on a server connection the pooler hands to other clients.
    absl::Status refused = absl::FailedPreconditionError(fmt::format(
        "node {}: Borrow is refused: the node sits behind a transaction-mode pooler "
        "(pooler = \"transaction\" in its [[nodes]] entry, or RouterOptions::default_pooler), "
        "where a session does not outlive one transaction; use Router::Transaction",
        route.name));
    SetNode(refused, route.name);
    return refused;
  }
  absl::StatusOr<Lease> lease =
      AcquireFrom(route.pool, route.metrics, DeadlineOf({}), t->map->version());
  if (!lease.ok()) return lease.status();
  // Each statement of a borrowed session gets the router's call deadline.
  return Session(std::make_unique<SessionImpl>(std::move(*lease), route.metrics,
                                               QueryKind::kExecute, options_.call_timeout,
                                               /*reset_on_end=*/true));
}

absl::StatusOr<Location> RouterImpl::Locate(ShardKey key) const {
  std::shared_ptr<const RoutingTable> t = table();
  if (absl::Status s = CheckKeyType(*t->map, key); !s.ok()) return s;
  Location loc;
  loc.hash = key.Hash();
  const std::size_t i = t->map->RangeIndex(loc.hash);
  const RangeConfig& range = t->map->ranges()[i];
  loc.lo = range.lo;
  loc.hi = range.hi;
  loc.node = t->map->nodes()[static_cast<std::size_t>(t->map->OwnerNodeIndex(i))].name;
  loc.read_node = t->map->nodes()[static_cast<std::size_t>(t->map->ReadNodeIndex(i))].name;
  loc.map_version = t->map->version();
  return loc;
}

std::string RouterImpl::MetricsText() const { return metrics_registry_->RenderText(); }

void RouterImpl::StartPoolMaintenance(const RoutingTable& t) {
  // One pass at a time: a pass stuck connecting to a black-holed node must not pile up.
  int expected = 0;
  int count = 0;
  for (const NodeRoute& n : t.nodes) count += 1 + static_cast<int>(n.replicas.size());
  if (!maintenance_in_flight_.compare_exchange_strong(expected, count)) return;
  auto submit = [this](std::shared_ptr<ConnPool> pool) {
    maintenance_workers_->Submit([this, pool] {
      if (!stopping_flag_.load(std::memory_order_relaxed)) pool->Maintain();
      maintenance_in_flight_.fetch_sub(1);
    });
  };
  for (const NodeRoute& n : t.nodes) {
    submit(n.pool);
    for (const auto& p : n.replicas) submit(p);
  }
}

bool RouterImpl::CheckSource() {
  const std::int64_t current = map_version();
  absl::StatusOr<std::shared_ptr<const ShardMap>> map = source_->Check(current);
  if (!map.ok()) {
    Refuse(map.status());
    return false;
  }
  if (*map == nullptr) return false;
  if (Apply(*map, "change detected")) return true;
  Log(LogLevel::kWarning,
      fmt::format("{} changed but its map version {} is not greater than the current version "
                  "{}: ignored (publish every change under a greater version)",
                  source_->Describe(), (*map)->version(), current));
  return false;
}

void RouterImpl::MaintenanceLoop() {
  auto now = Clock::now();
  auto next_poll = now;  // at once: the catalog source starts LISTENing on its first check
  auto next_heartbeat = now + options_.heartbeat_interval;
  auto next_maintain = now + kMaintainEvery;
  for (;;) {
    next_poll = source_->NextCheckBy(next_poll);
    auto deadline = std::min(next_poll, next_maintain);
    if (registry_) deadline = std::min(deadline, next_heartbeat);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    // Waiting on descriptors rather than a condition variable: the catalog's LISTEN socket
    // must wake us as well as the destructor (through the eventfd), whichever comes first.
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {source_->WaitFd(), POLLIN, 0}};
    const nfds_t nfds = fds[1].fd >= 0 ? 2 : 1;
    const std::int64_t timeout_ms = std::clamp<std::int64_t>(wait.count() + 1, 0, 60'000);
    const int rc = ::poll(fds, nfds, static_cast<int>(timeout_ms));
    if (rc > 0 && (fds[0].revents & POLLIN)) {
      std::uint64_t v = 0;
      [[maybe_unused]] ssize_t n = ::read(wake_fd_, &v, sizeof(v));
    }
    {
      MutexLock lock(&stop_mu_);
      if (stopping_) return;
    }
    now = Clock::now();
    const bool notified = rc > 0 && nfds == 2 && fds[1].revents != 0;
    bool applied = false;
    if (notified || now >= next_poll) {
      applied = CheckSource();
      now = Clock::now();
      next_poll = now + options_.map_poll_interval;
    }
    if (now >= next_maintain) {
      StartPoolMaintenance(*table());
      next_maintain = now + kMaintainEvery;
    }
    if (registry_ && (applied || now >= next_heartbeat)) {
      registry_->Heartbeat(map_version());
      now = Clock::now();
      next_heartbeat = now + options_.heartbeat_interval;
    }
  }
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------
// Router: the public face, forwarding to RouterImpl.

absl::StatusOr<std::unique_ptr<Router>> Router::Create(RouterOptions options) {
  absl::StatusOr<std::unique_ptr<internal::RouterImpl>> impl =
      internal::RouterImpl::Create(std::move(options));
  if (!impl.ok()) return impl.status();
  return std::make_unique<Router>(std::move(*impl));
}

Router::Router(std::unique_ptr<internal::RouterImpl> impl) : impl_(std::move(impl)) {}
Router::~Router() = default;

absl::StatusOr<Result> Router::Execute(ShardKey key, std::string_view sql,
                                       std::initializer_list<Param> params, CallOptions call) {
  return impl_->Execute(key, sql, ParamList(params.begin(), params.size()), call);
}
absl::StatusOr<Result> Router::Execute(ShardKey key, std::string_view sql, ParamList params,
                                       CallOptions call) {
  return impl_->Execute(key, sql, params, call);
}
absl::StatusOr<Result> Router::ExecuteRead(ShardKey key, std::string_view sql,
                                           std::initializer_list<Param> params,
                                           CallOptions call) {
  return impl_->ExecuteRead(key, sql, ParamList(params.begin(), params.size()), call);
}
absl::StatusOr<Result> Router::ExecuteRead(ShardKey key, std::string_view sql, ParamList params,
                                           CallOptions call) {
  return impl_->ExecuteRead(key, sql, params, call);
}
absl::Status Router::Transaction(ShardKey key, const std::function<absl::Status(Session&)>& fn,
                                 CallOptions call) {
  return impl_->Transaction(key, fn, call);
}
absl::StatusOr<Session> Router::Borrow(ShardKey key) { return impl_->Borrow(key); }
absl::StatusOr<std::vector<NodeResult>> Router::FanOut(std::string_view sql,
                                                       std::initializer_list<Param> params,
                                                       FanOutOptions options) {
  return impl_->FanOut(sql, ParamList(params.begin(), params.size()), options);
}
absl::StatusOr<std::vector<NodeResult>> Router::FanOut(std::string_view sql, ParamList params,
                                                       FanOutOptions options) {
  return impl_->FanOut(sql, params, options);
}
absl::StatusOr<Location> Router::Locate(ShardKey key) const { return impl_->Locate(key); }
std::shared_ptr<const ShardMap> Router::map() const { return impl_->map(); }
std::int64_t Router::map_version() const { return impl_->map_version(); }
absl::Status Router::RefreshMap() { return impl_->RefreshMap(); }
absl::StatusOr<std::int64_t> Router::NextId() { return impl_->NextId(); }
std::string Router::MetricsText() const { return impl_->MetricsText(); }

}  // namespace shardline
