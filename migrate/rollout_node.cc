// A rollout's operations on one data node: see rollout_node.h.
#include "rollout_node.h"
#include "status_text.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <thread>

#include "absl/strings/cord.h"
#include "node_sql.h"
#include "shardline/errors.h"
#include "shardline/key.h"
#include "table_info.h"
#include "txn.h"

namespace shardline::migrate {
namespace {

using Clock = std::chrono::steady_clock;

// '{1,2,3}' for a bigint[] parameter.
std::string ArrayLiteral(const std::vector<std::int64_t>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(values[i]);
  }
  return out + "}";
}

absl::Status Exec(pg::Conn& conn, std::string_view sql, const pg::Params& params = {}) {
  auto r = conn.Exec(sql, params);
  return r.ok() ? absl::OkStatus() : r.status();
}

constexpr std::chrono::milliseconds kPollEvery{5};
constexpr std::chrono::milliseconds kTriggerLockTimeout{2000};
constexpr int kTriggerLockAttempts = 5;
// shardline.node_schema_version() of schemas/node.sql.
constexpr std::int64_t kNodeSchemaVersion = 3;

// '{1,2}' and '{3,4}' for the lo / hi bigint[] parameters of `ranges`.
std::pair<std::string, std::string> RangeArrays(const HashRangeList& ranges) {
  std::vector<std::int64_t> los, his;
  for (const auto& r : ranges) {
    los.push_back(r.first);
    his.push_back(r.second);
  }
  return {ArrayLiteral(los), ArrayLiteral(his)};
}

}  // namespace

absl::Status InstallNodeObjects(pg::Conn& conn, const ShardMap& map) {
  // node.sql is idempotent, but its CREATE OR REPLACE FUNCTION would wait behind writers
  // holding the function; run it only when the current version is missing.
  auto present =
      conn.Exec("SELECT to_regprocedure('shardline.node_schema_version()') IS NOT NULL");
  if (!present.ok()) return present.status();
  std::int64_t version = 0;
  if (present->Text(0, 0) == "t") {
    auto v = conn.Exec("SELECT shardline.node_schema_version()");
    if (!v.ok()) return v.status();
    version = v->Int64Or0(0, 0);
  }
  const bool reinstall = version < kNodeSchemaVersion;
  if (reinstall) {
    // Two rollouts installing at once would race on CREATE SCHEMA: serialise them.
    if (auto s = Exec(conn, "SELECT pg_advisory_lock(hashtext('shardline node.sql'))"); !s.ok()) {
      return Annotate(s, fmt::format("node {}: waiting for another install of node.sql",
                                     conn.node()));
    }
    absl::Status s = conn.ExecScript(kNodeSql);
    (void)Exec(conn, "SELECT pg_advisory_unlock(hashtext('shardline node.sql'))");
    if (!s.ok())
      return Annotate(s, fmt::format("node {}: installing schemas/node.sql", conn.node()));
  }
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    // Installed already with a per-table function (not the generic fence_trigger of earlier
    // versions, which read the key through to_jsonb of the whole row): nothing to do.
    auto r = conn.Exec(
        "SELECT to_regclass($1) IS NOT NULL, EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_proc p "
        "ON p.oid = g.tgfoid WHERE g.tgrelid = to_regclass($1) AND g.tgname = 'shardline_fence' "
        "AND p.proname <> 'fence_trigger')",
        {conn.QuoteQualified(t.name)});
    if (!r.ok()) return r.status();
    if (r->Text(0, 0) != "t" || (r->Text(0, 1) == "t" && !reinstall)) continue;
    // CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on the table: behind a long transaction
    // it would queue every writer behind it. A short lock_timeout, retried a few times.
    absl::Status s;
    for (int attempt = 1; attempt <= kTriggerLockAttempts; ++attempt) {
      if (auto set = Exec(conn, fmt::format("SET lock_timeout = {}", kTriggerLockTimeout.count()));
          !set.ok()) {
        return set;
      }
      s = Exec(conn, "SELECT shardline.install_fence($1::regclass, $2, $3)",
               {conn.QuoteQualified(t.name), t.key, std::string(KeyTypeName(map.key_type()))});
      (void)Exec(conn, "RESET lock_timeout");
      if (s.ok() || SqlStateOf(s) != "55P03") break;
    }
    if (!s.ok()) {
      return Annotate(s, fmt::format("node {}: installing the fence trigger on {} (tried {} times "
                                     "with lock_timeout {} ms; a long transaction holds the "
                                     "table: run the command again once it ends)",
                                     conn.node(), t.name, kTriggerLockAttempts,
                                     kTriggerLockTimeout.count()));
    }
  }
  return absl::OkStatus();
}

namespace {

absl::Status UpsertMarks(pg::Conn& conn, const ShardMap& map, const HashRangeList& ranges,
                         std::int64_t lock_key, const std::string& reason, bool fence) {
  std::vector<std::int64_t> los, his;
  for (const auto& r : ranges) {
    los.push_back(r.first);
    his.push_back(r.second);
  }
  const std::string conflict =
      fence ? "DO UPDATE SET mode = 'fence', fenced_at = now(), reason = EXCLUDED.reason"
            : "DO NOTHING";
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    if (auto s = Exec(conn,
                      fmt::format("INSERT INTO shardline.fenced_ranges "
                                  "(table_name, lo, hi, reason, mode, lock_key) "
                                  "SELECT $1, l, h, $4, $5, $6 FROM unnest($2::bigint[], "
                                  "$3::bigint[]) AS u(l, h) ON CONFLICT (table_name, lo, hi) {}",
                                  conflict),
                      {t.name, ArrayLiteral(los), ArrayLiteral(his), reason,
                       std::string(fence ? "fence" : "moving"), std::to_string(lock_key)});
        !s.ok()) {
      return Annotate(s, fmt::format("node {}: marking ranges of {} as {}", conn.node(), t.name,
                                     fence ? "fenced" : "moving"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MarkMoving(pg::Conn& conn, const ShardMap& map, const HashRangeList& ranges,
                        std::int64_t lock_key, const std::string& reason) {
  if (auto s = UpsertMarks(conn, map, ranges, lock_key, reason, /*fence=*/false); !s.ok()) {
    return s;
  }
  // A separate statement after the insert committed: a transaction that began after this stamp
  // sees the marks in every snapshot it takes.
  return Exec(conn,
              "UPDATE shardline.fenced_ranges SET fenced_at = clock_timestamp() "
              "WHERE lock_key = $1 AND mode = 'moving'",
              {std::to_string(lock_key)});
}

absl::Status CheckForeignMarks(pg::Conn& conn, const ShardMap& map, const HashRangeList& ranges,
                               std::int64_t lock_key, bool allow_fences) {
  auto exists = conn.Exec("SELECT to_regclass('shardline.fenced_ranges') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  if (exists->Text(0, 0) != "t") return absl::OkStatus();
  const auto [los, his] = RangeArrays(ranges);
  std::vector<std::string> found;
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    auto r = conn.Exec(
        "SELECT DISTINCT f.lo, f.hi, f.mode, coalesce(f.lock_key::text, 'none'), "
        "coalesce(f.reason, '') FROM shardline.fenced_ranges f, unnest($2::bigint[], "
        "$3::bigint[]) AS u(l, h) WHERE f.table_name = $1 AND f.lo <= u.h AND f.hi >= u.l "
        "AND f.lock_key IS DISTINCT FROM $4::bigint AND NOT ($5::boolean AND f.mode = 'fence') "
        "ORDER BY 1 LIMIT 5",
        {t.name, los, his, std::to_string(lock_key), std::string(allow_fences ? "t" : "f")});
    if (!r.ok()) return r.status();
    for (int i = 0; i < r->rows(); ++i) {
      found.push_back(fmt::format("table {} range {}..{} is marked '{}' by lock key {} ({})",
                                  t.name, r->Text(i, 0), r->Text(i, 1), r->Text(i, 2),
                                  r->Text(i, 3), r->Text(i, 4)));
    }
  }
  if (found.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(fmt::format(
      "node {}: marks of another migration overlap the ranges this one moves: {}. A mark is "
      "never taken over: end that migration first (`shardline rollout status`), or, if it is "
      "gone, delete its marks on node {} (DELETE FROM shardline.fenced_ranges WHERE lock_key = "
      "<key>) once you know no router writes there",
      conn.node(), fmt::join(found, "; "), conn.node()));
}

absl::StatusOr<int> LiftReturningFences(pg::Conn& conn, const ShardMap& map,
                                        const HashRangeList& ranges, std::int64_t lock_key) {
  int n = 0;
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    for (const auto& [lo, hi] : ranges) {
      auto r = conn.Exec("SELECT shardline.lift_fence($1, $2, $3, $4)",
                         {t.name, std::to_string(lo), std::to_string(hi), std::to_string(lock_key)});
      if (!r.ok()) {
        return Annotate(r.status(), fmt::format("node {}: lifting the fence of {} {}..{}",
                                                conn.node(), t.name, lo, hi));
      }
      n += static_cast<int>(r->Int64Or0(0, 0));
    }
  }
  return n;
}

absl::Status UnmarkMigration(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges) {
  auto exists = conn.Exec("SELECT to_regclass('shardline.fenced_ranges') IS NOT NULL");
  if (!exists.ok()) return exists.status();
  if (exists->Text(0, 0) != "t") return absl::OkStatus();
  const auto [los, his] = RangeArrays(ranges);
  return Annotate(Exec(conn,
                       "DELETE FROM shardline.fenced_ranges f WHERE f.lock_key = $1 AND EXISTS "
                       "(SELECT 1 FROM unnest($2::bigint[], $3::bigint[]) AS u(l, h) "
                       "WHERE f.lo >= u.l AND f.hi <= u.h)",
                       {std::to_string(lock_key), los, his}),
                  fmt::format("node {}: lifting the migration's marks", conn.node()));
}

absl::Status UnfenceToMoving(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges) {
  const auto [los, his] = RangeArrays(ranges);
  return Annotate(Exec(conn,
                       "UPDATE shardline.fenced_ranges f SET mode = 'moving' WHERE f.lock_key = $1 "
                       "AND f.mode = 'fence' AND EXISTS (SELECT 1 FROM unnest($2::bigint[], "
                       "$3::bigint[]) AS u(l, h) WHERE f.lo >= u.l AND f.hi <= u.h)",
                       {std::to_string(lock_key), los, his}),
                  fmt::format("node {}: lifting the fence of a reverted write window", conn.node()));
}

absl::Status KeepAsFences(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges,
                          const std::string& reason) {
  const auto [los, his] = RangeArrays(ranges);
  return Annotate(Exec(conn,
                       "UPDATE shardline.fenced_ranges f SET mode = 'fence', reason = $4 "
                       "WHERE f.lock_key = $1 AND EXISTS (SELECT 1 FROM unnest($2::bigint[], "
                       "$3::bigint[]) AS u(l, h) WHERE f.lo >= u.l AND f.hi <= u.h)",
                       {std::to_string(lock_key), los, his, reason}),
                  fmt::format("node {}: keeping the fences of ranges given away", conn.node()));
}

absl::Status WaitForPreMarkTransactions(pg::Conn& conn, std::int64_t lock_key,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto r = conn.Exec(
        "WITH marked AS (SELECT max(fenced_at) AS at FROM shardline.fenced_ranges "
        "                WHERE lock_key = $1) "
        "SELECT 'pid ' || a.pid, a.xact_start::text, left(a.query, 80) "
        "FROM pg_stat_activity a, marked "
        "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() "
        "AND a.backend_type = 'client backend' AND a.backend_xid IS NOT NULL "
        "AND a.xact_start < marked.at "
        "UNION ALL "
        "SELECT 'prepared transaction ' || quote_literal(p.gid), p.prepared::text, "
        "'(COMMIT PREPARED or ROLLBACK PREPARED it)' "
        "FROM pg_prepared_xacts p, marked "
        "WHERE p.database = current_database() AND p.prepared < marked.at "
        "ORDER BY 2 LIMIT 1",
        {std::to_string(lock_key)});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      return absl::FailedPreconditionError(fmt::format(
          "node {}: writer {} open since {} began before the moving ranges were marked, so it "
          "may have written to them without pausing ({}); run the command again once it ends",
          conn.node(), r->Text(0, 0), r->Text(0, 1), r->Text(0, 2)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status RaiseMapEpoch(pg::Conn& conn, const ShardMap& map, std::int64_t version,
                           const std::string& reason) {
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    if (auto s = Exec(conn, "SELECT shardline.raise_map_epoch($1, $2, $3)",
                      {t.name, std::to_string(version), reason});
        !s.ok()) {
      return Annotate(s, fmt::format("node {}: raising the map epoch of {} to version {}",
                                     conn.node(), t.name, version));
    }
  }
  return absl::OkStatus();
}

absl::Status AcquirePause(pg::Conn& conn, std::int64_t lock_key,
                          std::chrono::milliseconds lock_timeout) {
  if (auto s = Exec(conn, fmt::format("SET lock_timeout = {}", lock_timeout.count())); !s.ok()) {
    return s;
  }
  absl::Status s = Exec(conn, "SELECT pg_advisory_lock($1)", {std::to_string(lock_key)});
  (void)Exec(conn, "RESET lock_timeout");
  if (!s.ok()) {
    // Name who holds the pause lock shared: a writer in flight, or a prepared transaction
    // (it keeps its locks until COMMIT PREPARED / ROLLBACK PREPARED).
    std::string who;
    auto holders = conn.Exec(
        "SELECT coalesce('pid ' || l.pid || ' (' || left(a.query, 60) || ')', "
        "'prepared transaction ' || quote_literal(p.gid)) FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "LEFT JOIN pg_locks x ON l.pid IS NULL AND x.locktype = 'transactionid' "
        "AND x.virtualtransaction = l.virtualtransaction "
        "LEFT JOIN pg_prepared_xacts p ON p.transaction = x.transactionid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ShareLock' "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 3",
        {std::to_string(lock_key)});
    if (holders.ok()) {
      for (int i = 0; i < holders->rows(); ++i) {
        who += fmt::format("{}{}", who.empty() ? "" : ", ", holders->Text(i, 0));
      }
    }
    return absl::DeadlineExceededError(fmt::format(
        "node {}: could not pause writers to the moving ranges within {} ms: held by {}; {}",
        conn.node(), lock_timeout.count(), who.empty() ? "a writer transaction in flight" : who,
        Msg(s)));
  }
  return absl::OkStatus();
}

absl::StatusOr<PauseGuard> PauseGuard::Acquire(pg::Conn& conn, std::int64_t lock_key,
                                               std::chrono::milliseconds lock_timeout) {
  if (auto s = AcquirePause(conn, lock_key, lock_timeout); !s.ok()) return s;
  return PauseGuard(conn, lock_key);
}

absl::Status ReleasePause(pg::Conn& conn, std::int64_t lock_key) {
  return Exec(conn, "SELECT pg_advisory_unlock($1)", {std::to_string(lock_key)});
}

absl::Status FlushWal(pg::Conn& conn) {
  Txn txn(conn);
  if (auto s = txn.Begin(); !s.ok()) return s;
  if (auto s = Exec(conn, "SET LOCAL synchronous_commit = on"); !s.ok()) return s;
  // It must write WAL, or its commit flushes nothing: a transactional logical decoding message
  // (subscribers do not ask for messages, so none receives it).
  if (auto s = Exec(conn, "SELECT pg_logical_emit_message(true, 'shardline', 'flush')"); !s.ok()) {
    return s;
  }
  return txn.Commit();
}

absl::StatusOr<std::string> CurrentLsn(pg::Conn& conn) {
  auto r = conn.Exec("SELECT pg_current_wal_insert_lsn()::text");
  if (!r.ok()) return r.status();
  return r->String(0, 0);
}

absl::StatusOr<FenceResult> FenceRanges(pg::Conn& conn, const ShardMap& map,
                                        const HashRangeList& ranges, std::int64_t lock_key,
                                        std::chrono::milliseconds lock_timeout,
                                        const std::string& reason) {
  auto pause = PauseGuard::Acquire(conn, lock_key, lock_timeout);
  if (!pause.ok()) return pause.status();
  if (auto s = UpsertMarks(conn, map, ranges, lock_key, reason, /*fence=*/true); !s.ok()) return s;
  auto at = conn.Exec("SELECT pg_current_wal_insert_lsn()::text, clock_timestamp()::text");
  if (!at.ok()) return at.status();
  if (auto s = pause->Release(); !s.ok()) return s;
  return FenceResult{at->String(0, 0), at->String(0, 1)};
}

absl::Status EnsurePublication(pg::Conn& conn, const ShardMap& map, const std::string& name,
                               const HashRangeList& ranges) {
  auto r = conn.Exec("SELECT 1 FROM pg_publication WHERE pubname = $1", {name});
  if (!r.ok()) return r.status();
  if (r->rows() > 0) return absl::OkStatus();
  std::string tables;
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    if (!tables.empty()) tables += ", ";
    tables += fmt::format("{} WHERE {}", conn.QuoteQualified(t.name),
                          HashRangesPredicate(map.key_type(), conn.QuoteIdent(t.key), ranges));
  }
  // No TRUNCATE: a truncate of the source table must never empty the target's.
  return Annotate(
      Exec(conn, fmt::format("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, "
                             "update, delete')",
                             conn.QuoteIdent(name), tables)),
      fmt::format("node {}: creating publication {}", conn.node(), name));
}

absl::Status DropPublicationIfExists(pg::Conn& conn, const std::string& name) {
  return Exec(conn, fmt::format("DROP PUBLICATION IF EXISTS {}", conn.QuoteIdent(name)));
}

absl::StatusOr<bool> SubscriptionExists(pg::Conn& subscriber, const std::string& name) {
  auto r = subscriber.Exec(
      "SELECT 1 FROM pg_subscription WHERE subname = $1 AND subdbid = "
      "(SELECT oid FROM pg_database WHERE datname = current_database())",
      {name});
  if (!r.ok()) return r.status();
  return r->rows() > 0;
}

namespace {

// Drops slot `name` on `conn` once it is inactive (its walsender may take a moment to exit).
absl::Status DropSlotWhenInactive(pg::Conn& conn, const std::string& name,
                                  std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto r = conn.Exec("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
                       {name});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::OkStatus();
    if (r->Text(0, 0) != "t") {
      auto d = conn.Exec(
          "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
          "WHERE slot_name = $1 AND NOT active",
          {name});
      if (d.ok()) return absl::OkStatus();
      // Became active again in between: retry until the deadline.
    }
    if (Clock::now() >= deadline) {
      return absl::FailedPreconditionError(
          fmt::format("node {}: replication slot {} is still in use by pid {}; drop it with "
                      "pg_drop_replication_slot once its consumer is gone",
                      conn.node(), name, r->Text(0, 1)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

absl::Status ProbeReplicationConnection(pg::Conn& subscriber, const std::string& publisher,
                                        const std::string& publisher_dsn) {
  Txn txn(subscriber);
  if (auto s = txn.Begin(); !s.ok()) return s;
  // PostgreSQL 15 warns that the probe's publication does not exist: expected, not shown.
  if (auto s = Exec(subscriber, "SET LOCAL client_min_messages = error"); !s.ok()) return s;
  // connect = true: the server connects to the publisher (and lists the publication's tables:
  // none, it does not exist). No slot, disabled, rolled back below.
  absl::Status s = Exec(subscriber,
                        fmt::format("CREATE SUBSCRIPTION shardline_probe CONNECTION {} PUBLICATION "
                                    "shardline_probe WITH (connect = true, create_slot = false, "
                                    "enabled = false, copy_data = false, slot_name = NONE)",
                                    subscriber.QuoteLiteral(publisher_dsn)));
  if (!s.ok()) {
    return absl::FailedPreconditionError(fmt::format(
        "node {} cannot open a replication connection to node {} with the map's connection "
        "string (its subscription would fail): {}",
        subscriber.node(), publisher, Msg(s)));
  }
  return absl::OkStatus();  // the guard rolls the probe back
}

absl::Status EnsureSlot(pg::Conn& publisher, const std::string& name) {
  auto r = publisher.Exec("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {name});
  if (!r.ok()) return r.status();
  if (r->rows() > 0) return absl::OkStatus();
  return Annotate(Exec(publisher, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                       {name}),
                  fmt::format("node {}: creating replication slot {} (it waits for the "
                              "transactions running on the node to end)",
                              publisher.node(), name));
}

absl::Status AdvanceSlotToFlushed(pg::Conn& publisher, const std::string& name) {
  if (auto s = FlushWal(publisher); !s.ok()) return s;
  return Annotate(
      Exec(publisher, "SELECT pg_replication_slot_advance($1, pg_current_wal_flush_lsn())",
           {name}),
      fmt::format("node {}: moving replication slot {} to the flushed position", publisher.node(),
                  name));
}

absl::Status EnsureSubscription(pg::Conn& subscriber, pg::Conn& publisher, const std::string& name,
                                const std::string& publisher_dsn, bool copy_data, bool enabled) {
  absl::StatusOr<bool> exists = SubscriptionExists(subscriber, name);
  if (!exists.ok()) return exists.status();
  if (*exists) return absl::OkStatus();
  if (auto s = EnsureSlot(publisher, name); !s.ok()) return s;
  return Annotate(
      Exec(subscriber,
           fmt::format("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = {}, "
                       "synchronous_commit = 'on', create_slot = false, slot_name = {}, "
                       "enabled = {})",
                       subscriber.QuoteIdent(name), subscriber.QuoteLiteral(publisher_dsn),
                       subscriber.QuoteIdent(name), copy_data ? "true" : "false",
                       subscriber.QuoteLiteral(name), enabled ? "true" : "false")),
      fmt::format("node {}: creating subscription {} to node {}", subscriber.node(), name,
                  publisher.node()));
}

absl::StatusOr<std::optional<bool>> SubscriptionEnabled(pg::Conn& subscriber,
                                                        const std::string& name) {
  auto r = subscriber.Exec(
      "SELECT subenabled FROM pg_subscription WHERE subname = $1 AND subdbid = "
      "(SELECT oid FROM pg_database WHERE datname = current_database())",
      {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<bool>();
  return std::optional<bool>(r->Text(0, 0) == "t");
}

absl::Status EnableSubscription(pg::Conn& subscriber, const std::string& name) {
  return Annotate(
      Exec(subscriber, fmt::format("ALTER SUBSCRIPTION {} ENABLE", subscriber.QuoteIdent(name))),
      fmt::format("node {}: enabling subscription {}", subscriber.node(), name));
}

absl::StatusOr<bool> SlotExists(pg::Conn& conn, const std::string& name) {
  auto r = conn.Exec("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {name});
  if (!r.ok()) return r.status();
  return r->rows() > 0;
}

absl::Status DropSlot(pg::Conn& conn, const std::string& name) {
  return DropSlotWhenInactive(conn, name, std::chrono::seconds(10));
}

absl::Status DropSubscriptionIfExists(pg::Conn& subscriber, pg::Conn& publisher,
                                      const std::string& name, bool drop_slots) {
  auto r = subscriber.Exec(
      "SELECT oid::bigint FROM pg_subscription WHERE subname = $1 AND subdbid = "
      "(SELECT oid FROM pg_database WHERE datname = current_database())",
      {name});
  if (!r.ok()) return r.status();
  std::string oid;
  if (r->rows() > 0) {
    oid = r->String(0, 0);
    // Detach the slot first so that DROP SUBSCRIPTION does not need the publisher; we drop the
    // slot ourselves below (the same effect, and it works when a kill left things half-done).
    const std::string q = subscriber.QuoteIdent(name);
    if (auto s = Exec(subscriber, fmt::format("ALTER SUBSCRIPTION {} DISABLE", q)); !s.ok()) {
      return s;
    }
    if (auto s = Exec(subscriber, fmt::format("ALTER SUBSCRIPTION {} SET (slot_name = NONE)", q));
        !s.ok()) {
      return s;
    }
    if (auto s = Exec(subscriber, fmt::format("DROP SUBSCRIPTION IF EXISTS {}", q)); !s.ok()) {
      return s;
    }
  }
  if (!drop_slots) return absl::OkStatus();
  if (auto s = DropSlotWhenInactive(publisher, name, std::chrono::seconds(10)); !s.ok()) return s;
  if (!oid.empty()) {
    auto sync = publisher.Exec(
        "SELECT slot_name::text FROM pg_replication_slots WHERE starts_with(slot_name::text, $1)",
        {fmt::format("pg_{}_sync_", oid)});
    if (!sync.ok()) return sync.status();
    for (int i = 0; i < sync->rows(); ++i) {
      if (auto s = DropSlotWhenInactive(publisher, sync->String(i, 0), std::chrono::seconds(10));
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> DropSlotsWithPrefix(pg::Conn& conn, const std::string& prefix) {
  auto r = conn.Exec(
      "SELECT slot_name::text FROM pg_replication_slots WHERE starts_with(slot_name::text, $1)",
      {prefix});
  if (!r.ok()) return r.status();
  int n = 0;
  for (int i = 0; i < r->rows(); ++i) {
    if (auto s = DropSlotWhenInactive(conn, r->String(i, 0), std::chrono::seconds(10)); !s.ok()) {
      return s;
    }
    ++n;
  }
  return n;
}

absl::Status WaitApplyWorker(pg::Conn& subscriber, const std::string& name,
                             std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto r = subscriber.Exec(
        "SELECT count(*) FROM pg_stat_subscription WHERE subname = $1 AND relid IS NULL "
        "AND pid IS NOT NULL",
        {name});
    if (!r.ok()) return r.status();
    if (r->Int64Or0(0, 0) > 0) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(fmt::format(
          "node {}: the apply worker of subscription {} did not start within {} ms (free "
          "logical replication workers: max_logical_replication_workers, max_worker_processes)",
          subscriber.node(), name, timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

absl::StatusOr<SubscriptionHealth> SubscriptionHealthOf(pg::Conn& subscriber,
                                                        const std::string& name) {
  auto r = subscriber.Exec(
      "SELECT s.subenabled, EXISTS (SELECT 1 FROM pg_stat_subscription w WHERE w.subid = s.oid "
      "AND w.relid IS NULL AND w.pid IS NOT NULL), coalesce(st.apply_error_count, 0), "
      "coalesce(st.sync_error_count, 0) FROM pg_subscription s "
      "LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid WHERE s.subname = $1 "
      "AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
      {name});
  if (!r.ok()) {
    return Annotate(r.status(),
                    fmt::format("node {}: reading subscription {}", subscriber.node(), name));
  }
  SubscriptionHealth h;
  if (r->rows() == 0) return h;
  h.exists = true;
  h.enabled = r->Text(0, 0) == "t";
  h.worker_running = r->Text(0, 1) == "t";
  h.apply_errors = r->Int64Or0(0, 2);
  h.sync_errors = r->Int64Or0(0, 3);
  return h;
}

std::string SubscriptionProblem(const SubscriptionHealth& h, const std::string& subscriber,
                                const std::string& publisher, const std::string& name) {
  const std::string errors =
      h.apply_errors > 0
          ? fmt::format("; {} apply error(s) so far (pg_stat_subscription_stats.apply_error_count: "
                        "the error itself, e.g. a conflicting key, is in node {}'s server log)",
                        h.apply_errors, subscriber)
          : "";
  if (!h.exists) {
    return fmt::format("node {}: subscription {} (from node {}) does not exist", subscriber, name,
                       publisher);
  }
  if (!h.enabled) {
    return fmt::format(
        "node {}: subscription {} (from node {}) is disabled{}; fix what stopped it, then "
        "`ALTER SUBSCRIPTION {} ENABLE` on node {}",
        subscriber, name, publisher, errors, name, subscriber);
  }
  if (!h.worker_running) {
    return fmt::format(
        "node {}: the apply worker of subscription {} (from node {}) is not running{}; fix the "
        "error in node {}'s server log (a row that conflicts with a unique index, a missing "
        "table or column), or free a logical replication worker (max_logical_replication_workers)",
        subscriber, name, publisher, errors, subscriber);
  }
  if (h.apply_errors > 0) {
    return fmt::format("node {}: subscription {} (from node {}) runs{}", subscriber, name,
                       publisher, errors);
  }
  return "";
}

absl::StatusOr<std::vector<std::string>> FencesOverlapping(pg::Conn& conn,
                                                           const HashRangeList& ranges,
                                                           int limit) {
  std::vector<std::string> out;
  auto present = conn.Exec("SELECT to_regclass('shardline.fenced_ranges') IS NOT NULL");
  if (!present.ok()) return present.status();
  if (present->Text(0, 0) != "t" || ranges.empty()) return out;
  const auto [los, his] = RangeArrays(ranges);
  auto r = conn.Exec(
      "SELECT f.table_name || ' ' || f.lo || '..' || f.hi || coalesce(' (' || f.reason || ')', "
      "'') FROM shardline.fenced_ranges f WHERE f.mode = 'fence' AND EXISTS (SELECT 1 FROM "
      "unnest($1::bigint[], $2::bigint[]) AS u(l, h) WHERE f.lo <= u.h AND f.hi >= u.l) "
      "ORDER BY f.lo, f.table_name LIMIT $3",
      {los, his, std::to_string(limit)});
  if (!r.ok()) return Annotate(r.status(), fmt::format("node {}: reading fences", conn.node()));
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->String(i, 0));
  return out;
}

absl::StatusOr<bool> HoldsMarks(pg::Conn& conn, std::int64_t lock_key, const HashRangeList& ranges,
                                std::string_view mode) {
  const auto [los, his] = RangeArrays(ranges);
  auto r = conn.Exec(
      "SELECT EXISTS (SELECT 1 FROM shardline.fenced_ranges f WHERE f.lock_key = $1 AND f.mode = "
      "$4 AND EXISTS (SELECT 1 FROM unnest($2::bigint[], $3::bigint[]) AS u(l, h) "
      "WHERE f.lo >= u.l AND f.hi <= u.h))",
      {std::to_string(lock_key), los, his, std::string(mode)});
  if (!r.ok()) {
    return Annotate(r.status(), fmt::format("node {}: reading the marks", conn.node()));
  }
  return r->Text(0, 0) == "t";
}

absl::Status WaitInitialCopy(pg::Conn& subscriber, const std::string& name,
                             std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto r = subscriber.Exec(
        "SELECT r.srrelid::regclass::text || ' (' || r.srsubstate::text || ')' "
        "FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
        "WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = "
        "current_database()) AND r.srsubstate <> 'r' ORDER BY 1",
        {name});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      std::string tables;
      for (int i = 0; i < r->rows(); ++i) tables += (i ? ", " : "") + r->String(i, 0);
      return absl::DeadlineExceededError(fmt::format(
          "node {}: subscription {} is still copying: {} (states: i init, d copying, f/s "
          "finishing); run the command again later",
          subscriber.node(), name, tables));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status WaitApplied(pg::Conn& publisher, const std::string& name, const std::string& lsn,
                         std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto r = publisher.Exec(
        "SELECT coalesce(confirmed_flush_lsn >= $2::pg_lsn, false), "
        "coalesce(pg_wal_lsn_diff($2::pg_lsn, confirmed_flush_lsn), -1)::bigint "
        "FROM pg_replication_slots WHERE slot_name = $1",
        {name, lsn});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) {
      return absl::FailedPreconditionError(
          fmt::format("node {}: replication slot {} does not exist", publisher.node(), name));
    }
    if (r->Text(0, 0) == "t") return absl::OkStatus();
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(fmt::format(
          "node {}: subscriber of {} has not applied up to {} within {} ms ({} bytes behind)",
          publisher.node(), name, lsn, timeout.count(), r->Text(0, 1)));
    }
    std::this_thread::sleep_for(kPollEvery);
  }
}

absl::StatusOr<SlotLag> ReplicationLag(pg::Conn& publisher, const std::string& name) {
  auto r = publisher.Exec(
      "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint, "
      "coalesce(extract(epoch FROM r.replay_lag), -1)::float8, s.active "
      "FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
      "WHERE s.slot_name = $1",
      {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(
        fmt::format("node {}: no replication slot {}", publisher.node(), name));
  }
  SlotLag lag;
  lag.bytes = r->Int64Or0(0, 0);
  lag.seconds = std::strtod(r->String(0, 1).c_str(), nullptr);
  lag.active = r->Text(0, 2) == "t";
  return lag;
}

absl::StatusOr<std::int64_t> CountRowsInRanges(pg::Conn& conn, const ShardMap& map,
                                               const HashRangeList& ranges) {
  std::int64_t n = 0;
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    auto r =
        conn.Exec(fmt::format("SELECT count(*) FROM {} WHERE {}", conn.QuoteQualified(t.name),
                              HashRangesPredicate(map.key_type(), conn.QuoteIdent(t.key), ranges)));
    if (!r.ok()) return r.status();
    n += r->Int64Or0(0, 0);
  }
  return n;
}

}  // namespace shardline::migrate
