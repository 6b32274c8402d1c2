// libpq RAII helpers: see pg_conn.h.
#include "pg_conn.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include <fmt/format.h>
#include "shardline/dsn.h"
#include "shardline/errors.h"

namespace shardline::pg {
namespace {
std::string Trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}
}  // namespace

std::string_view Result::Text(int row, int col) const {
  if (!res_ || PQgetisnull(res_.get(), row, col)) return {};
  return std::string_view(PQgetvalue(res_.get(), row, col),
                          static_cast<std::size_t>(PQgetlength(res_.get(), row, col)));
}

absl::StatusOr<std::int64_t> Result::Int64(int row, int col) const {
  std::string_view t = Text(row, col);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || p != t.data() + t.size() || t.empty()) {
    const char* name = res_ ? PQfname(res_.get(), col) : nullptr;
    return absl::InvalidArgumentError(fmt::format("{}{}{}{}{}{}{}", "column ", name ? name : "?", " row ", row, ": '", t, "' is not a 64-bit integer"));
  }
  return v;
}

std::int64_t Result::Int64Or0(int row, int col) const {
  auto v = Int64(row, col);
  return v.ok() ? *v : 0;
}

int Result::Column(std::string_view name) const {
  if (!res_) return -1;
  return PQfnumber(res_.get(), std::string(name).c_str());
}

std::int64_t Result::AffectedRows() const {
  if (!res_) return 0;
  std::string_view t = PQcmdTuples(res_.get());
  std::int64_t v = 0;
  std::from_chars(t.data(), t.data() + t.size(), v);
  return v;
}

absl::Status StatusFromResult(const PGresult* res, std::string_view node, std::string_view what) {
  const char* sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string msg;
  if (primary == nullptr) {
    msg = res ? Trimmed(PQresultErrorMessage(res))
              : std::string("no result (out of memory or connection lost)");
  } else {
    msg = primary;
  }
  absl::StatusCode code =
      sqlstate ? StatusCodeForSqlState(sqlstate) : absl::StatusCode::kUnavailable;
  absl::Status status(code, fmt::format("{}{}{}{}{}{}{}", "node ", node, ": ", what, ": ", msg, sqlstate ? fmt::format("{}{}{}", " (SQLSTATE ", sqlstate, ")")
                                                  : std::string()));
  if (sqlstate) SetSqlState(status, sqlstate);
  SetNode(status, node);
  return status;
}

absl::Status StatusFromConn(PGconn* conn, std::string_view node, std::string_view what) {
  std::string msg = conn ? Trimmed(PQerrorMessage(conn))
                         : std::string("out of memory");
  absl::Status status = absl::UnavailableError(fmt::format("{}{}{}{}{}{}", "node ", node, ": ", what, ": ", msg));
  SetNode(status, node);
  return status;
}

absl::StatusOr<std::unique_ptr<Conn>> Conn::Connect(std::string_view dsn, std::string_view node,
                                                     std::chrono::milliseconds timeout,
                                                     std::string_view application_name) {
  const std::string dsn_str(dsn);
  const std::string app(application_name);
  // TCP keepalives and tcp_user_timeout so that a dead or black-holed peer is found in
  // seconds (idle: 5 s + 3 probes 2 s apart; with unacknowledged data: 10 s), not after the
  // kernel's ~15 minutes of retransmissions. Listed before the DSN: the DSN's own values win.
  const char* keys[] = {"keepalives",       "keepalives_idle",  "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "application_name",
                        "dbname",           nullptr};
  const char* vals[] = {"1", "5", "2", "3", "10000", app.c_str(), dsn_str.c_str(), nullptr};
  if (app.empty()) {
    keys[5] = "dbname";
    vals[5] = dsn_str.c_str();
    keys[6] = nullptr;
    vals[6] = nullptr;
  }
  ConnPtr conn(PQconnectStartParams(keys, vals, /*expand_dbname=*/1));
  if (!conn) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
    return StatusFromConn(conn.get(), node,
                          fmt::format("{}{}", "connect to ", DsnWithoutPassword(dsn)));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  while (poll_status != PGRES_POLLING_OK) {
    if (poll_status == PGRES_POLLING_FAILED) {
      return StatusFromConn(conn.get(), node,
                            fmt::format("{}{}", "connect to ", DsnWithoutPassword(dsn)));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      absl::Status st = absl::DeadlineExceededError(
          fmt::format("{}{}{}{}{}{}{}", "node ", node, ": connect to ", DsnWithoutPassword(dsn), " timed out after ", timeout.count(), " ms"));
      SetNode(st, node);
      return st;
    }
    pollfd pfd{};
    pfd.fd = PQsocket(conn.get());
    pfd.events = poll_status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno != EINTR) {
      return absl::UnavailableError(fmt::format("{}{}{}", "node ", node, ": poll failed during connect"));
    }
    if (rc > 0) poll_status = PQconnectPoll(conn.get());
  }
  return std::make_unique<Conn>(std::move(conn), std::string(node));
}

absl::StatusOr<Result> Conn::Exec(std::string_view sql, const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  const std::string sql_str(sql);
  ResultPtr res;
  if (query_timeout_.count() > 0) {
    if (!conn_) return absl::UnavailableError(fmt::format("node {}: connection closed", node_));
    if (PQisnonblocking(conn_.get()) == 0) PQsetnonblocking(conn_.get(), 1);
    if (PQsendQueryParams(conn_.get(), sql_str.c_str(), static_cast<int>(params.size()),
                          nullptr, values.data(), nullptr, nullptr, 0) == 0) {
      return StatusFromConn(conn_.get(), node_, "send query");
    }
    absl::StatusOr<ResultPtr> awaited = AwaitResults();
    if (!awaited.ok()) return awaited.status();
    res = std::move(*awaited);
  } else {
    res.reset(PQexecParams(conn_.get(), sql_str.c_str(), static_cast<int>(params.size()),
                           nullptr, values.data(), nullptr, nullptr, 0));
  }
  if (!res) return StatusFromConn(conn_.get(), node_, "query failed");
  switch (PQresultStatus(res.get())) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
    case PGRES_EMPTY_QUERY:
      return Result(std::move(res));
    default:
      if (PQstatus(conn_.get()) == CONNECTION_BAD && !PQresultErrorField(res.get(), PG_DIAG_SQLSTATE)) {
        return StatusFromConn(conn_.get(), node_, "connection lost");
      }
      return StatusFromResult(res.get(), node_, "statement failed");
  }
}

absl::StatusOr<Result> Conn::ExecBinary(std::string_view sql, const Params& params,
                                        const std::vector<Oid>& types, bool binary_result) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats(params.size(), 1);
  std::vector<Oid> oids(params.size(), 0);
  for (std::size_t i = 0; i < params.size() && i < types.size(); ++i) oids[i] = types[i];
  for (const auto& p : params) {
    values.push_back(p ? p->data() : nullptr);
    lengths.push_back(p ? static_cast<int>(p->size()) : 0);
  }
  const std::string sql_str(sql);
  ResultPtr res(PQexecParams(conn_.get(), sql_str.c_str(), static_cast<int>(params.size()),
                             oids.data(), values.data(), lengths.data(), formats.data(),
                             binary_result ? 1 : 0));
  if (!res) return StatusFromConn(conn_.get(), node_, "query failed");
  switch (PQresultStatus(res.get())) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
      return Result(std::move(res));
    default:
      if (PQstatus(conn_.get()) == CONNECTION_BAD && !PQresultErrorField(res.get(), PG_DIAG_SQLSTATE)) {
        return StatusFromConn(conn_.get(), node_, "connection lost");
      }
      return StatusFromResult(res.get(), node_, "statement failed");
  }
}

absl::StatusOr<ResultPtr> Conn::AwaitResults() {
  PGconn* c = conn_.get();
  const auto deadline = std::chrono::steady_clock::now() + query_timeout_;
  ResultPtr out;
  for (;;) {
    for (;;) {
      const int flushed = PQflush(c);
      if (flushed < 0) break;
      if (flushed == 0 && PQisBusy(c) == 0) break;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        conn_.reset();  // closing is the cancel: the statement's fate is the server's
        absl::Status st = absl::DeadlineExceededError(fmt::format(
            "node {}: no answer within {} ms; connection closed", node_, query_timeout_.count()));
        SetNode(st, node_);
        return st;
      }
      pollfd pfd{};
      pfd.fd = PQsocket(c);
      if (pfd.fd < 0) break;
      pfd.events = static_cast<short>(POLLIN | (flushed == 1 ? POLLOUT : 0));
      const int rc = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
      if (rc < 0 && errno != EINTR) break;
      if (rc > 0 && PQconsumeInput(c) == 0) break;
    }
    PGresult* r = PQgetResult(c);
    if (r == nullptr) return out;
    ResultPtr res(r);
    // Keep the first failure, else the last result.
    const ExecStatusType kept = out ? PQresultStatus(out.get()) : PGRES_EMPTY_QUERY;
    if (!out || kept == PGRES_TUPLES_OK || kept == PGRES_COMMAND_OK ||
        kept == PGRES_EMPTY_QUERY) {
      out = std::move(res);
    }
    if (PQstatus(c) == CONNECTION_BAD) {
      while (PGresult* more = PQgetResult(c)) PQclear(more);
      return out;
    }
  }
}

absl::Status Conn::ExecScript(std::string_view sql) {
  const std::string sql_str(sql);
  if (query_timeout_.count() > 0) {
    if (!conn_) return absl::UnavailableError(fmt::format("node {}: connection closed", node_));
    if (PQisnonblocking(conn_.get()) == 0) PQsetnonblocking(conn_.get(), 1);
    if (!PQsendQuery(conn_.get(), sql_str.c_str())) {
      return StatusFromConn(conn_.get(), node_, "send script");
    }
    absl::StatusOr<ResultPtr> awaited = AwaitResults();
    if (!awaited.ok()) return awaited.status();
    if (!*awaited) return absl::OkStatus();
    const ExecStatusType st = PQresultStatus(awaited->get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
      return StatusFromResult(awaited->get(), node_, "script failed");
    }
    return absl::OkStatus();
  }
  if (!PQsendQuery(conn_.get(), sql_str.c_str())) {
    return StatusFromConn(conn_.get(), node_, "send script");
  }
  absl::Status first_error;
  while (PGresult* raw = PQgetResult(conn_.get())) {
    ResultPtr res(raw);
    ExecStatusType st = PQresultStatus(res.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY &&
        first_error.ok()) {
      first_error = StatusFromResult(res.get(), node_, "script failed");
    }
  }
  return first_error;
}

std::string Conn::QuoteIdent(std::string_view name) const {
  char* q = PQescapeIdentifier(conn_.get(), name.data(), name.size());
  if (q == nullptr) return "\"\"";  // only on encoding errors / OOM; yields an invalid name
  std::string out(q);
  PQfreemem(q);
  return out;
}

std::string Conn::QuoteQualified(std::string_view name) const {
  auto dot = name.find('.');
  if (dot == std::string_view::npos) return QuoteIdent(name);
  return fmt::format("{}{}{}", QuoteIdent(name.substr(0, dot)), ".", QuoteIdent(name.substr(dot + 1)));
}

std::string Conn::QuoteLiteral(std::string_view value) const {
  char* q = PQescapeLiteral(conn_.get(), value.data(), value.size());
  if (q == nullptr) return "NULL";
  std::string out(q);
  PQfreemem(q);
  return out;
}

}  // namespace shardline::pg
