// The implementation behind shardline::Session: a lease on one node's pool, statements run
// through ExecPrepared, per-call metrics, and a rollback of any transaction left open when the
// session ends (so a connection never returns to its pool inside a transaction).
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "conn_pool.h"
#include "metrics.h"
#include "shardline/param.h"
#include "shardline/result.h"

namespace shardline::internal {

// Single-threaded, like the Session that owns it.
class SessionImpl {
 public:
  // `per_statement` > 0: each statement's deadline is now + per_statement (borrowed sessions);
  // 0: the lease's deadline holds for the whole session (a transaction's).
  // `reset_on_end`: the connection is closed instead of returned to the pool when the session
  // ends (Borrow: nothing a caller did to its session may reach the next one).
  SessionImpl(Lease lease, NodeMetrics metrics, QueryKind kind,
              std::chrono::milliseconds per_statement = std::chrono::milliseconds(0),
              bool reset_on_end = false)
      : lease_(std::move(lease)),
        metrics_(metrics),
        kind_(kind),
        per_statement_(per_statement),
        reset_on_end_(reset_on_end) {}
  // Rolls back a transaction still open (or discards the connection if that fails), then
  // returns the connection to its pool.
  ~SessionImpl();
  SessionImpl(const SessionImpl&) = delete;
  SessionImpl& operator=(const SessionImpl&) = delete;

  // Runs one statement (see ExecPrepared) and records it in the node's metrics under the
  // session's kind.
  absl::StatusOr<Result> Execute(std::string_view sql, std::span<const Param> params);
  const std::string& node() const { return lease_.conn().node(); }
  // Statements that succeeded so far, and the last failure (OK if none).
  int ok_statements() const { return ok_statements_; }
  const absl::Status& last_error() const { return last_error_; }
  Lease& lease() { return lease_; }

 private:
  mutable Lease lease_;
  NodeMetrics metrics_;
  QueryKind kind_;
  std::chrono::milliseconds per_statement_;
  bool reset_on_end_;
  int ok_statements_ = 0;
  absl::Status last_error_;
};

}  // namespace shardline::internal
