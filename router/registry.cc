// Router registry rows in the control catalog: see registry.h. The table is defined in
// schemas/catalog.sql.
#include "registry.h"
#include "status_text.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include "absl/strings/match.h"
#include "shardline/dsn.h"
#include "shardline/errors.h"
#include "shardline/id_gen.h"

namespace shardline::internal {
namespace {

// absl::Status::message() is Debian abseil's own string_view, which fmt cannot format.
// Rows of routers older than this build carry no lease_ms: their lease is what those routers
// assumed, max(60 s, 10 heartbeats), of which 60 s is the part every such router honours.
constexpr const char* kDeleteExpired =
    "DELETE FROM shardline.routers "
    "WHERE last_heartbeat + make_interval(secs => coalesce(lease_ms, 60000)::float8 / 1000) "
    "      < now()";
// Inserts our row with the lowest free worker id ($5 = -1) or the requested one.
constexpr const char* kInsert =
    "INSERT INTO shardline.routers "
    "  (router_id, host, pid, worker_id, map_version, last_heartbeat, lease_ms) "
    "SELECT $1, $2, $3::int, w, $4::bigint, now(), $6::int FROM ("
    "  SELECT w FROM generate_series(0, 1023) AS w "
    "  WHERE ($5::int < 0 OR w = $5::int) AND w NOT IN ("
    "    SELECT worker_id FROM shardline.routers WHERE worker_id IS NOT NULL) "
    "  ORDER BY w LIMIT 1) AS free "
    "RETURNING worker_id";
constexpr const char* kHolder =
    "SELECT router_id, host, pid FROM shardline.routers WHERE worker_id = $1::int";
constexpr const char* kHeartbeat =
    "UPDATE shardline.routers SET map_version = $2::bigint, last_heartbeat = now() "
    "WHERE router_id = $1";
constexpr const char* kDelete = "DELETE FROM shardline.routers WHERE router_id = $1";

std::string RandomHex(std::mt19937_64& rng) {
  return fmt::format("{:016x}", rng());
}

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

RouterRegistry::RouterRegistry(std::string dsn, const PoolOptions& pool, IdLease* lease,
                               LogSink log)
    : dsn_(std::move(dsn)),
      pool_(pool),
      lease_(lease),
      log_(std::move(log)),
      backoff_(pool.backoff_initial),
      rng_(std::random_device{}()) {
  router_id_ = RandomHex(rng_);
  host_ = HostName();
  pid_ = static_cast<int>(::getpid());
}

RouterRegistry::~RouterRegistry() = default;

absl::StatusOr<std::unique_ptr<RouterRegistry>> RouterRegistry::Register(
    const std::string& dsn, const PoolOptions& pool, int requested_worker_id,
    std::int64_t map_version, IdLease* lease, LogSink log) {
  std::unique_ptr<RouterRegistry> r(new RouterRegistry(dsn, pool, lease, std::move(log)));
  if (absl::Status s = r->Connect(); !s.ok()) return s;
  // Two routers registering at once may pick the same free id: the unique index rejects one
  // of them, which then picks again.
  absl::Status status;
  for (int attempt = 0; attempt < 8; ++attempt) {
    status = r->Insert(requested_worker_id, map_version);
    if (status.code() != absl::StatusCode::kAlreadyExists || requested_worker_id >= 0) break;
  }
  if (!status.ok()) return status;
  return r;
}

absl::Status RouterRegistry::Connect() {
  auto conn = pg::Conn::Connect(dsn_, "catalog", pool_.connect_timeout);
  if (!conn.ok()) return conn.status();
  // A black-holed catalog must not hang the heartbeat (nor ~Router, which deregisters).
  (*conn)->set_query_timeout(pool_.connect_timeout);
  conn_ = std::move(*conn);
  return absl::OkStatus();
}

absl::Status RouterRegistry::WithSchemaHint(absl::Status status) const {
  if (!absl::StrContains(status.message(), "lease_ms")) return status;
  return absl::FailedPreconditionError(fmt::format(
      "catalog {}: its schema predates worker-id leases (no shardline.routers.lease_ms): run "
      "`shardline catalog init --catalog DSN` with this version to upgrade it ({})",
      DsnWithoutPassword(dsn_), Msg(status)));
}

absl::Status RouterRegistry::Insert(int worker_id, std::int64_t map_version) {
  auto del = conn_->Exec(kDeleteExpired, {});
  if (!del.ok()) return WithSchemaHint(del.status());
  // Before the insert: the row's last_heartbeat (the server's now()) is not earlier.
  const auto sent = std::chrono::steady_clock::now();
  auto ins = conn_->Exec(kInsert, {router_id_, host_, std::to_string(pid_),
                                   std::to_string(map_version), std::to_string(worker_id),
                                   std::to_string(lease_->lease_duration().count())});
  if (!ins.ok()) return WithSchemaHint(ins.status());
  if (ins->rows() == 1) {
    worker_id_ = static_cast<int>(ins->Int64Or0(0, 0));
    lease_->Renew(worker_id_, sent);
    return absl::OkStatus();
  }
  if (worker_id < 0) {
    return absl::ResourceExhaustedError(fmt::format(
        "catalog {}: all {} id-generator worker ids are held by live routers",
        DsnWithoutPassword(dsn_), kMaxWorkerId + 1));
  }
  auto holder = conn_->Exec(kHolder, {std::to_string(worker_id)});
  std::string who = "another router";
  if (holder.ok() && holder->rows() == 1) {
    who = fmt::format("router {} (host {}, pid {})", holder->Text(0, 0), holder->Text(0, 1),
                      holder->Text(0, 2));
  }
  return absl::AlreadyExistsError(
      fmt::format("worker id {} is already used by live {}", worker_id, who));
}

void RouterRegistry::Heartbeat(std::int64_t map_version) {
  if (conn_ == nullptr || !conn_->IsOk()) {
    conn_.reset();
    if (std::chrono::steady_clock::now() < next_connect_) return;
    if (absl::Status s = Connect(); !s.ok()) {
      Failed(s);
      return;
    }
  }
  const auto sent = std::chrono::steady_clock::now();
  auto upd = conn_->Exec(kHeartbeat, {router_id_, std::to_string(map_version)});
  absl::Status status = upd.status();
  if (upd.ok() && upd->AffectedRows() == 1) {
    lease_->Renew(worker_id_, sent);
  } else if (upd.ok()) {
    // Our row was deleted: its lease expired (a pause or a partition longer than the lease),
    // or someone deleted it. Another router may hold our worker id by now.
    lease_->Lose(fmt::format("the registry row of worker id {} was deleted", worker_id_));
    const int old_id = worker_id_;
    status = Insert(old_id, map_version);
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      status = Insert(-1, map_version);
      if (status.ok() && log_) {
        log_(LogLevel::kWarning,
             fmt::format("router registry: worker id {} was taken by another router while this "
                         "router's lease had expired; generating ids with worker id {} now",
                         old_id, worker_id_));
      }
    }
  }
  if (!status.ok()) {
    Failed(status);
    return;
  }
  if (down_ && log_) log_(LogLevel::kInfo, "router registry: heartbeat restored");
  down_ = false;
  backoff_ = pool_.backoff_initial;
}

void RouterRegistry::Failed(const absl::Status& status) {
  lease_->NoteProblem(fmt::format("heartbeat failed: {}", Msg(status)));
  if (!down_ && log_) {
    log_(LogLevel::kWarning, fmt::format("router registry: heartbeat failed: {}", Msg(status)));
  }
  down_ = true;
  if (conn_ && !conn_->IsOk()) conn_.reset();
  std::uniform_int_distribution<std::int64_t> jitter(0, backoff_.count());
  next_connect_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(jitter(rng_));
  backoff_ = std::min(pool_.backoff_max, backoff_ * 2);
}

void RouterRegistry::Deregister() {
  if (conn_ == nullptr || !conn_->IsOk()) {
    if (!Connect().ok()) return;
  }
  auto del = conn_->Exec(kDelete, {router_id_});
  if (!del.ok() && log_) {
    log_(LogLevel::kWarning,
         fmt::format("router registry: deregister failed: {}", Msg(del.status())));
  }
}

}  // namespace shardline::internal
