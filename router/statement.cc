// Prepared-statement execution on a leased connection: see statement.h.
#include "statement.h"

#include <libpq-fe.h>

#include <string>
#include <vector>

#include <fmt/format.h>
#include "absl/strings/string_view.h"
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

// DEALLOCATE ALL and forget this connection's prepared statements. False on failure (the
// lease is then marked broken: its statement names can no longer be trusted).
bool ResetPrepared(Lease& lease) {
  pg::ResultPtr res(PQexec(lease.conn().raw(), "DEALLOCATE ALL"));
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

}  // namespace

absl::StatusOr<Result> ExecPrepared(Lease& lease, std::string_view sql,
                                    std::span<const Param> params) {
  thread_local ParamScratch scratch;
  PooledConnection& pc = lease.pooled();
  PGconn* conn = pc.conn->raw();
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
      pg::ResultPtr prep(PQprepare(conn, name.c_str(), text.c_str(), 0, nullptr));
      if (!prep || PQresultStatus(prep.get()) != PGRES_COMMAND_OK) {
        return Failure(lease, prep.get(), "prepare failed");
      }
      it = pc.prepared.emplace(text, std::move(name)).first;
    }
    pg::ResultPtr res(PQexecPrepared(conn, it->second.c_str(), static_cast<int>(params.size()),
                                     scratch.values.data(), scratch.lengths.data(),
                                     scratch.formats.data(), /*resultFormat=*/0));
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
    return Failure(lease, res.get(), "statement failed");
  }
}

absl::Status ExecControl(Lease& lease, const char* sql) {
  pg::ResultPtr res(PQexec(lease.conn().raw(), sql));
  if (res && ResultOk(res.get())) return absl::OkStatus();
  return Failure(lease, res.get(), fmt::format("{} failed", sql));
}

bool IsConnectionFailure(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kUnavailable) return false;
  auto s = SqlStateOf(status);
  return !s || s->starts_with("08") || s->starts_with("57P");
}

}  // namespace shardline::internal
