// A thin RAII layer over libpq used by everything inside shardline (router, catalog, migration
// engine, tests): owned PGconn/PGresult, statements with text parameters, errors as absl::Status
// with SQLSTATE and node, identifier quoting. Private: public headers never include libpq-fe.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shardline::pg {

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// A query result (move-only, owns its PGresult). Accessors take row and column indexes; they
// do not check bounds beyond what libpq does (out of range reads as NULL / empty).
class Result {
 public:
  Result() = default;
  explicit Result(ResultPtr res) : res_(std::move(res)) {}

  int rows() const { return res_ ? PQntuples(res_.get()) : 0; }
  int cols() const { return res_ ? PQnfields(res_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(res_.get(), row, col) != 0; }
  // Text of a value (empty for NULL); valid while this Result lives.
  std::string_view Text(int row, int col) const;
  std::string String(int row, int col) const { return std::string(Text(row, col)); }
  // Parses a text-format integer; InvalidArgument naming the column when it is not one.
  absl::StatusOr<std::int64_t> Int64(int row, int col) const;
  // For results whose shape we wrote ourselves: 0 for NULL or garbage.
  std::int64_t Int64Or0(int row, int col) const;
  // Column index by name, or -1.
  int Column(std::string_view name) const;
  // Number of rows affected (PQcmdTuples), 0 when not applicable.
  std::int64_t AffectedRows() const;
  PGresult* get() const { return res_.get(); }

 private:
  ResultPtr res_;
};

using Params = std::vector<std::optional<std::string>>;  // text parameters; nullopt = NULL

// One libpq connection to one node. Single-threaded (libpq connections are not thread-safe).
class Conn {
 public:
  // Connects with a hard deadline (non-blocking connect, so a black-holed host costs at most
  // `timeout`). `node` names the node in every error. Unavailable with the node name and the
  // DSN without password on failure; DeadlineExceeded on timeout. Sets TCP keepalives (idle
  // 5 s, interval 2 s, count 3) and tcp_user_timeout 10 s unless the DSN sets them.
  // A non-empty `application_name` goes into the startup packet (the DSN's own value wins):
  // behind a transaction-mode pooler, which forwards it, it cannot be a session SET.
  static absl::StatusOr<std::unique_ptr<Conn>> Connect(
      std::string_view dsn, std::string_view node,
      std::chrono::milliseconds timeout = std::chrono::seconds(10),
      std::string_view application_name = {});

  Conn(ConnPtr conn, std::string node) : conn_(std::move(conn)), node_(std::move(node)) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs one statement; parameters travel separately from the SQL text (never spliced).
  // Returns the result on PGRES_TUPLES_OK / PGRES_COMMAND_OK / PGRES_COPY_*; otherwise a
  // status coded by SQLSTATE (shardline/errors.h) naming the node.
  absl::StatusOr<Result> Exec(std::string_view sql, const Params& params = {});
  // Like Exec, but the parameters travel in binary (send/recv) form, typed by `types` (OIDs; 0 or
  // missing = inferred by the server), and with `binary_result` the result columns come back in
  // binary form too. For values that must not round-trip through text (keys copied between
  // nodes by the backfill). Binary result values must be read with PQgetvalue/PQgetlength on
  // get(), not with Result::Text/Int64 (which expect text).
  absl::StatusOr<Result> ExecBinary(std::string_view sql, const Params& params,
                                    const std::vector<Oid>& types, bool binary_result);
  // Runs a script of several statements with the simple query protocol (no parameters:
  // only for constant SQL such as schema files).
  absl::Status ExecScript(std::string_view sql);

  // `name` as a quoted SQL identifier (PQescapeIdentifier). "a.b" is one identifier "a.b";
  // use QuoteQualified for schema-qualified names.
  std::string QuoteIdent(std::string_view name) const;
  // "schema.table" -> "schema"."table"; "table" -> "table".
  std::string QuoteQualified(std::string_view name) const;
  // A literal (PQescapeLiteral), only for statements that cannot take parameters (LISTEN,
  // CREATE PUBLICATION ... WHERE, COPY ... WHERE).
  std::string QuoteLiteral(std::string_view value) const;

  // Bounds every following Exec / ExecScript (0 = no bound, the default): the statement is
  // sent non-blocking and awaited with poll() until the timeout; past it the connection is
  // closed (IsOk() turns false, so callers reconnect) and the status is DeadlineExceeded naming
  // the node. For connections that must never hang on a black-holed server (the catalog's).
  void set_query_timeout(std::chrono::milliseconds timeout) { query_timeout_ = timeout; }

  bool IsOk() const { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }
  PGconn* raw() const { return conn_.get(); }
  const std::string& node() const { return node_; }

 private:
  // Waits (query_timeout_) for the results of the query just sent; the first failed result,
  // else the last one. DeadlineExceeded (connection closed) on timeout.
  absl::StatusOr<ResultPtr> AwaitResults();

  ConnPtr conn_;
  std::string node_;
  std::chrono::milliseconds query_timeout_{0};
};

// A status for a failed result: code by SQLSTATE, message "node NAME: <what>: <primary
// message> (SQLSTATE xxxxx)", SQLSTATE and node payloads attached.
absl::Status StatusFromResult(const PGresult* res, std::string_view node, std::string_view what);
// A status for a connection-level failure (Unavailable), message from PQerrorMessage.
absl::Status StatusFromConn(PGconn* conn, std::string_view node, std::string_view what);

}  // namespace shardline::pg
