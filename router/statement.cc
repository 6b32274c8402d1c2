// Prepared-statement execution on a leased connection: see statement.h.
#include "statement.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>
#include "absl/strings/string_view.h"
#include "deadline_watch.h"
#include "result_impl.h"
#include "shardline/errors.h"

namespace shardline::internal {
namespace {

// Per-thread scratch for marshalling parameters, reused across calls so that the hot path does
// not allocate once warmed up. Text values are copied so each is NUL-terminated (libpq reads
// text-format parameters up to the NUL; a borrowed string_view need not be terminated).
struct ParamScratch {
  std::string text;
  std::vector<std::size_t> offsets;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
};

void Marshal(std::span<const Param> params, ParamScratch& s) {
  const std::size_t n = params.size();
  s.text.clear();
  s.offsets.resize(n);
  s.values.resize(n);
  s.lengths.resize(n);
  s.formats.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Param& p = params[i];
    if (p.is_null() || p.binary()) continue;
    s.offsets[i] = s.text.size();
    s.text.append(p.value());
    s.text.push_back('\0');
  }
  for (std::size_t i = 0; i < n; ++i) {
    const Param& p = params[i];
    if (p.is_null()) {
      s.values[i] = nullptr;
      s.lengths[i] = 0;
      s.formats[i] = 0;
    } else if (p.binary()) {
      s.values[i] = p.value().data();
      s.lengths[i] = static_cast<int>(p.value().size());
      s.formats[i] = 1;
    } else {
      s.values[i] = s.text.data() + s.offsets[i];
      s.lengths[i] = static_cast<int>(p.value().size());
      s.formats[i] = 0;
    }
  }
}

bool ResultOk(const PGresult* res) {
  switch (PQresultStatus(res)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
      return true;
    default:
      return false;
  }
}

// The status of a failed result or a lost connection; marks the lease broken when the
// connection is gone or the server is terminating it.
absl::Status Failure(Lease& lease, const PGresult* res, std::string_view what) {
  PGconn* conn = lease.conn().raw();
  const std::string& node = lease.conn().node();
  const char* sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const bool conn_bad = PQstatus(conn) == CONNECTION_BAD;
  const bool terminating =
      sqlstate != nullptr && (std::string_view(sqlstate).starts_with("08") ||
                              std::string_view(sqlstate).starts_with("57P"));
  if (conn_bad || terminating) lease.MarkBroken();
  if (conn_bad && sqlstate == nullptr) return pg::StatusFromConn(conn, node, "connection lost");
  absl::Status status = pg::StatusFromResult(res, node, what);
  if (conn_bad && status.code() != absl::StatusCode::kUnavailable) {
    // The server reported an error and then the connection dropped (e.g. FATAL at shutdown).
    absl::Status unavailable = absl::UnavailableError(status.message());
    if (auto s = SqlStateOf(status)) SetSqlState(unavailable, *s);
    SetNode(unavailable, node);
    return unavailable;
  }
  return status;
}

std::string_view SqlStateOfResult(const PGresult* res) {
  const char* s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  return s ? std::string_view(s) : std::string_view();
}

Result MakeResult(pg::ResultPtr res, const std::string& node) {
  return Result(std::make_shared<const ResultImpl>(std::move(res), node));
}

// What became of a query sent on a connection.
struct Awaited {
  pg::ResultPtr res;       // the first failed result, else the last one (null: see flags)
  bool timed_out = false;  // the deadline passed first (the query is still in flight)
  // The watcher shut the socket down just as the answer completed: the result stands, but the
  // connection is dead and must not go back to the pool.
  bool socket_shut = false;
};

// Waits for every result of the query just sent on `conn` (non-blocking mode), until
// `deadline`. Never blocks past the deadline (within the watcher's tick): flushes and reads
// only when poll() says the socket is ready, and poll() has no timeout of its own: the
// deadline watcher (deadline_watch.h) shuts the socket down when the deadline passes, which
// wakes it (a kernel timer per poll cost 1.4 points of the router benchmark). A connection that
// fails yields libpq's error result (status BAD).
// In pipeline mode (`pipeline`) it waits through every query of the pipeline, up to its sync.
Awaited AwaitResultsWatched(PGconn* conn, TimePoint deadline,
                            const DeadlineWatch::Registration* watch, bool pipeline);

Awaited AwaitResults(PGconn* conn, TimePoint deadline, bool pipeline = false) {
  if (deadline == TimePoint::max()) return AwaitResultsWatched(conn, deadline, nullptr, pipeline);
  DeadlineWatch::Registration watch(&DeadlineWatch::Global(), PQsocket(conn), deadline);
  Awaited out = AwaitResultsWatched(conn, deadline, &watch, pipeline);
  if (watch.Finish() && !out.timed_out) out.socket_shut = true;
  return out;
}

Awaited AwaitResultsWatched(PGconn* conn, TimePoint deadline,
                            const DeadlineWatch::Registration* watch, bool pipeline) {
  Awaited out;
  for (;;) {
    for (;;) {
      const int flushed = PQflush(conn);
      if (flushed < 0) break;  // PQgetResult reports the failure
      if (flushed == 0 && PQisBusy(conn) == 0) break;
      const auto now = SteadyClock::now();
      if (now >= deadline) {
        out.timed_out = true;
        return out;
      }
      pollfd pfd{};
      pfd.fd = PQsocket(conn);
      if (pfd.fd < 0) break;
      pfd.events = static_cast<short>(POLLIN | (flushed == 1 ? POLLOUT : 0));
      const int rc = ::poll(&pfd, 1, -1);
      // A socket shut down by the watcher polls as hung up; only then is it worth asking the
      // watcher (a lock). A normal answer (POLLIN alone) skips it: the hot path takes the
      // watcher's lock twice per call, to link and to finish.
      if (watch && rc > 0 && (pfd.revents & (POLLHUP | POLLERR)) != 0 && watch->fired()) {
        out.timed_out = true;
        return out;
      }
      if (rc < 0 && errno != EINTR) break;
      if (rc > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP)) != 0 &&
          PQconsumeInput(conn) == 0) {
        break;  // connection lost: PQgetResult returns at once with the error
      }
    }
    PGresult* r = PQgetResult(conn);
    if (r == nullptr) {
      if (!pipeline) return out;
      continue;  // the end of one query's results: the next query's, up to the sync
    }
    pg::ResultPtr res(r);
    if (pipeline && PQresultStatus(r) == PGRES_PIPELINE_SYNC) return out;
    // Keep the first failure, else the last result.
    if (out.res == nullptr || ResultOk(out.res.get())) out.res = std::move(res);
    if (PQstatus(conn) == CONNECTION_BAD) {
      // Drain what libpq still holds (no I/O on a bad connection), then stop. Bounded: in
      // pipeline mode libpq reports each queued query after a NULL.
      for (int i = 0; i < 16; ++i) {
        PGresult* more = PQgetResult(conn);
        if (more == nullptr && !pipeline) break;
        PQclear(more);
      }
      return out;
    }
  }
}

// The status of a call whose deadline passed waiting for the node; marks the lease timed out
// (closed when returned: closing the socket is the cancel, see RouterOptions::call_timeout).
absl::Status TimedOut(Lease& lease, std::string_view what) {
  lease.MarkTimedOut();
  const std::string& node = lease.conn().node();
  absl::Status status = absl::DeadlineExceededError(fmt::format(
      "node {}: {}: call deadline exceeded waiting for the node; statement cancelled, "
      "connection closed",
      node, what));
  SetNode(status, node);
  return status;
}

// Sends with `send` (a PQsend* call returning 1 on success) and waits for the results until
// the lease's deadline. Returns the result, or null with *status set on timeout / send failure.
//
// With `pipeline`, `send` queues several queries in libpq's pipeline mode (entered here, and
// left again after the results), ending with PQpipelineSync: they travel in one round trip and,
// outside a transaction block, run as one implicit transaction; the result is the first
// failure, else the last query's.
template <typename SendFn>
pg::ResultPtr SendAndAwait(Lease& lease, SendFn send, std::string_view what,
                           absl::Status* status, bool pipeline = false) {
  PGconn* conn = lease.conn().raw();
  if (SteadyClock::now() >= lease.deadline()) {
    // The caller spent its deadline before this round trip (e.g. in a transaction's function):
    // nothing is sent, so nothing can have been applied, and the node is not to blame (no
    // breaker count). The connection may be mid-transaction: it is closed, which rolls back.
    lease.MarkBroken();
    const std::string& node = lease.conn().node();
    *status = absl::DeadlineExceededError(
        fmt::format("node {}: {}: call deadline exceeded before sending", node, what));
    SetNode(*status, node);
    return nullptr;
  }
  if (PQisnonblocking(conn) == 0) PQsetnonblocking(conn, 1);
  if ((pipeline && PQenterPipelineMode(conn) == 0) || send(conn) == 0) {
    lease.MarkBroken();
    *status = pg::StatusFromConn(conn, lease.conn().node(), std::string(what));
    return nullptr;
  }
  Awaited a = AwaitResults(conn, lease.deadline(), pipeline);
  if (a.timed_out) {
    *status = TimedOut(lease, what);
    return nullptr;
  }
  if (a.socket_shut) lease.MarkBroken();
  // Leaving pipeline mode fails only with results still pending (a lost connection): such a
  // connection is not reused.
  if (pipeline && PQexitPipelineMode(conn) == 0) lease.MarkBroken();
  if (a.res != nullptr && PQstatus(conn) == CONNECTION_OK) lease.MarkAnswered();
  return std::move(a.res);
}

// DEALLOCATE ALL and forget this connection's prepared statements. False on failure (the
// lease is then marked broken: its statement names can no longer be trusted).
bool ResetPrepared(Lease& lease) {
  absl::Status ignored;
  pg::ResultPtr res = SendAndAwait(
      lease, [](PGconn* c) { return PQsendQuery(c, "DEALLOCATE ALL"); }, "DEALLOCATE ALL",
      &ignored);
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    lease.MarkBroken();
    return false;
  }
  lease.pooled().prepared.clear();
  return true;
}

bool InTransaction(Lease& lease) {
  return PQtransactionStatus(lease.conn().raw()) != PQTRANS_IDLE;
}

// Tells the node which map version the lease's call was routed on (session setting
// shardline.map_version, read by the fence's statement trigger), when the session's value is
// another one. Outside a transaction only: a SET inside one is undone by its rollback, which
// would leave the cached value wrong; a transaction's version is set before its BEGIN. One
// round trip per connection per map change, none on the hot path.
absl::Status SyncMapVersion(Lease& lease) {
  PooledConnection& pc = lease.pooled();
  const std::int64_t version = lease.map_version();
  if (version <= 0 || pc.map_version_sent == version || InTransaction(lease)) {
    return absl::OkStatus();
  }
  const std::string text = std::to_string(version);
  const char* values[] = {text.c_str()};
  absl::Status send_status;
  pg::ResultPtr res = SendAndAwait(
      lease,
      [&](PGconn* c) {
        return PQsendQueryParams(
            c, "SELECT pg_catalog.set_config('shardline.map_version', $1, false)", 1, nullptr,
            values, nullptr, nullptr, 0);
      },
      "set shardline.map_version", &send_status);
  if (!send_status.ok()) {
    // Nothing of the caller's was sent: no write outcome to doubt.
    SetWriteOutcome(send_status, WriteOutcome::kNotApplicable);
    return send_status;
  }
  if (!res || !ResultOk(res.get())) {
    absl::Status failed = Failure(lease, res.get(), "setting shardline.map_version failed");
    SetWriteOutcome(failed, WriteOutcome::kNotApplicable);
    return failed;
  }
  pc.map_version_sent = version;
  return absl::OkStatus();
}

// Behind a transaction-mode pooler: the transaction-local settings of the lease's call, as one
// SELECT of set_config(..., true) calls (shardline.map_version when routed on a map version,
// statement_timeout when the router sets one) and its parameters. False when there is none.
struct LocalSettings {
  std::string sql;
  std::string version;
  const char* values[2] = {nullptr, nullptr};
  int count = 0;
};

bool LocalSettingsOf(Lease& lease, LocalSettings& out) {
  const std::int64_t version = lease.map_version();
  const std::string& timeout = lease.pooled().local_statement_timeout;
  if (version <= 0 && timeout.empty()) return false;
  out.sql = "SELECT ";
  if (version > 0) {
    out.version = std::to_string(version);
    out.values[out.count++] = out.version.c_str();
    out.sql += "pg_catalog.set_config('shardline.map_version', $1, true)";
  }
  if (!timeout.empty()) {
    out.values[out.count++] = timeout.c_str();
    out.sql += fmt::format("{}pg_catalog.set_config('statement_timeout', ${}, true)",
                           out.count > 1 ? ", " : "", out.count);
  }
  return true;
}

// The status of a statement that failed after being sent (ExecUnnamed, ExecControl).
absl::Status SentAndFailed(Lease& lease, const PGresult* res, std::string_view what) {
  absl::Status failed = Failure(lease, res, what);
  if (PQstatus(lease.conn().raw()) == CONNECTION_BAD && SqlStateOfResult(res).empty()) {
    // Sent, then the connection broke without an answer: it may have been applied.
    SetWriteOutcome(failed, WriteOutcome::kUnknown);
  }
  return failed;
}

// ExecPrepared for a node behind a transaction-mode pooler: an unnamed statement
// (PQsendQueryParams: parse, bind and execute in one round trip; nothing named outlives it).
// Outside a transaction block the map version (and statement_timeout) are set transaction-local
// in the same round trip, pipelined before the statement under one sync, so both run in one
// implicit transaction on whichever server connection the pooler picked; inside one, ExecBegin
// set them already.
absl::StatusOr<Result> ExecUnnamed(Lease& lease, std::string_view sql,
                                   std::span<const Param> params, ParamScratch& scratch) {
  PooledConnection& pc = lease.pooled();
  Marshal(params, scratch);
  const std::string text(sql);
  LocalSettings settings;
  const bool pipeline = !InTransaction(lease) && LocalSettingsOf(lease, settings);
  absl::Status send_status;
  pg::ResultPtr res = SendAndAwait(
      lease,
      [&](PGconn* c) {
        if (pipeline && PQsendQueryParams(c, settings.sql.c_str(), settings.count, nullptr,
                                          settings.values, nullptr, nullptr, 0) == 0) {
          return 0;
        }
        if (PQsendQueryParams(c, text.c_str(), static_cast<int>(params.size()), nullptr,
                              scratch.values.data(), scratch.lengths.data(),
                              scratch.formats.data(), /*resultFormat=*/0) == 0) {
          return 0;
        }
        return pipeline ? PQpipelineSync(c) : 1;
      },
      "statement", &send_status, pipeline);
  if (!send_status.ok()) {
    if (pc.timed_out) SetWriteOutcome(send_status, WriteOutcome::kUnknown);
    return send_status;
  }
  if (res && ResultOk(res.get())) return MakeResult(std::move(res), pc.conn->node());
  return SentAndFailed(lease, res.get(), "statement failed");
}

}  // namespace

absl::StatusOr<Result> ExecPrepared(Lease& lease, std::string_view sql,
                                    std::span<const Param> params) {
  thread_local ParamScratch scratch;
  PooledConnection& pc = lease.pooled();
  if (pc.transaction_pooler) return ExecUnnamed(lease, sql, params, scratch);
  PGconn* conn = pc.conn->raw();
  if (absl::Status s = SyncMapVersion(lease); !s.ok()) return s;
  Marshal(params, scratch);

  for (int attempt = 0;; ++attempt) {
    auto it = pc.prepared.find(absl::string_view(sql.data(), sql.size()));
    if (it == pc.prepared.end()) {
      if (pc.prepared.size() >= kMaxPreparedPerConnection && !InTransaction(lease)) {
        if (!ResetPrepared(lease)) {
          return pg::StatusFromConn(conn, pc.conn->node(), "deallocate prepared statements");
        }
      }
      std::string name = fmt::format("sl{}", pc.prepared.size() + 1);
      const std::string text(sql);
      absl::Status send_status;
      pg::ResultPtr prep = SendAndAwait(
          lease,
          [&](PGconn* c) { return PQsendPrepare(c, name.c_str(), text.c_str(), 0, nullptr); },
          "prepare", &send_status);
      if (!send_status.ok()) return send_status;
      if (!prep || PQresultStatus(prep.get()) != PGRES_COMMAND_OK) {
        return Failure(lease, prep.get(), "prepare failed");
      }
      it = pc.prepared.emplace(text, std::move(name)).first;
    }
    absl::Status send_status;
    const char* stmt_name = it->second.c_str();
    pg::ResultPtr res = SendAndAwait(
        lease,
        [&](PGconn* c) {
          return PQsendQueryPrepared(c, stmt_name, static_cast<int>(params.size()),
                                     scratch.values.data(), scratch.lengths.data(),
                                     scratch.formats.data(), /*resultFormat=*/0);
        },
        "statement", &send_status);
    if (!send_status.ok()) {
      // Sent, then no answer before the deadline: it may have been applied.
      if (pc.timed_out) SetWriteOutcome(send_status, WriteOutcome::kUnknown);
      return send_status;
    }
    if (res && ResultOk(res.get())) return MakeResult(std::move(res), pc.conn->node());
    const std::string_view sqlstate = SqlStateOfResult(res.get());
    if (attempt == 0 && (sqlstate == "26000" || sqlstate == "0A000") &&
        PQstatus(conn) == CONNECTION_OK) {
      // Prepared statement gone (DEALLOCATE/DISCARD by the application) or its cached plan no
      // longer matches the table: re-prepare everything, unless a transaction is open (the
      // failed statement aborted it; the caller must roll back).
      if (!InTransaction(lease) && ResetPrepared(lease)) continue;
      lease.MarkBroken();
    }
    absl::Status failed = Failure(lease, res.get(), "statement failed");
    if (PQstatus(conn) == CONNECTION_BAD && sqlstate.empty()) {
      // Sent, then the connection broke without an answer: it may have been applied.
      SetWriteOutcome(failed, WriteOutcome::kUnknown);
    }
    return failed;
  }
}

absl::Status ExecBegin(Lease& lease) {
  LocalSettings settings;
  if (!lease.pooled().transaction_pooler || InTransaction(lease) ||
      !LocalSettingsOf(lease, settings)) {
    return ExecControl(lease, "BEGIN");
  }
  absl::Status send_status;
  pg::ResultPtr res = SendAndAwait(
      lease,
      [&](PGconn* c) {
        return PQsendQueryParams(c, "BEGIN", 0, nullptr, nullptr, nullptr, nullptr, 0) != 0 &&
                       PQsendQueryParams(c, settings.sql.c_str(), settings.count, nullptr,
                                         settings.values, nullptr, nullptr, 0) != 0
                   ? PQpipelineSync(c)
                   : 0;
      },
      "BEGIN", &send_status, /*pipeline=*/true);
  if (!send_status.ok()) {
    // BEGIN and settings change nothing: no write outcome to doubt.
    SetWriteOutcome(send_status, WriteOutcome::kNotApplicable);
    return send_status;
  }
  if (res && ResultOk(res.get())) return absl::OkStatus();
  return SentAndFailed(lease, res.get(), "BEGIN failed");
}

absl::Status ExecControl(Lease& lease, const char* sql) {
  // Behind a transaction pooler no session setting is made (ExecUnnamed, ExecBegin).
  if (!lease.pooled().transaction_pooler) {
    if (absl::Status s = SyncMapVersion(lease); !s.ok()) return s;
  }
  absl::Status send_status;
  pg::ResultPtr res = SendAndAwait(
      lease, [sql](PGconn* c) { return PQsendQuery(c, sql); }, sql, &send_status);
  if (!send_status.ok()) {
    if (lease.pooled().timed_out) SetWriteOutcome(send_status, WriteOutcome::kUnknown);
    return send_status;
  }
  if (res && ResultOk(res.get())) return absl::OkStatus();
  return SentAndFailed(lease, res.get(), fmt::format("{} failed", sql));
}

bool IsConnectionFailure(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kUnavailable) return false;
  auto s = SqlStateOf(status);
  return !s || s->starts_with("08") || s->starts_with("57P");
}

}  // namespace shardline::internal
