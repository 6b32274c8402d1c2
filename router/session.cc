// shardline::Session and internal::SessionImpl: statements on one borrowed connection. See
// session_impl.h.
#include <libpq-fe.h>

#include <chrono>

#include "session_impl.h"
#include "shardline/router.h"
#include "statement.h"

namespace shardline {
namespace internal {

SessionImpl::~SessionImpl() {
  if (!lease_) return;
  if (per_statement_.count() > 0) {
    lease_.set_deadline(std::chrono::steady_clock::now() + per_statement_);
  }
  PGconn* conn = lease_.conn().raw();
  switch (PQtransactionStatus(conn)) {
    case PQTRANS_IDLE:
      break;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
      if (!ExecControl(lease_, "ROLLBACK").ok()) lease_.MarkBroken();
      break;
    default:  // PQTRANS_ACTIVE (a result not consumed) or PQTRANS_UNKNOWN (connection bad)
      lease_.MarkBroken();
      break;
  }
  if (reset_on_end_ && !lease_.pooled().broken) {
    // A borrowed session may have changed anything a session holds (settings, search_path,
    // role, temp tables, advisory locks, LISTENs, prepared statements): none of it may reach
    // the next caller. DISCARD ALL releases it synchronously (closing alone is not enough:
    // the server ends the old backend, and frees its advisory locks, only some time later).
    // DISCARD ALL also undoes the router's own settings (application_name,
    // statement_timeout, client_connection_check_interval), so the connection is then closed
    // rather than set up again: Borrow is the rare path, a reconnect is its price.
    (void)ExecControl(lease_, "DISCARD ALL");
    lease_.MarkBroken();
  }
}

absl::StatusOr<Result> SessionImpl::Execute(std::string_view sql, std::span<const Param> params) {
  const auto start = std::chrono::steady_clock::now();
  if (per_statement_.count() > 0) lease_.set_deadline(start + per_statement_);
  absl::StatusOr<Result> r = ExecPrepared(lease_, sql, params);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const absl::Status& status = r.status();
  metrics_.RecordQuery(kind_, OutcomeOf(status), status, seconds);
  if (r.ok()) {
    ++ok_statements_;
  } else {
    last_error_ = status;
  }
  return r;
}

}  // namespace internal

Session::Session(std::unique_ptr<internal::SessionImpl> impl) : impl_(std::move(impl)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

absl::StatusOr<Result> Session::Execute(std::string_view sql, std::initializer_list<Param> params) {
  return Execute(sql, ParamList(params.begin(), params.size()));
}

absl::StatusOr<Result> Session::Execute(std::string_view sql, ParamList params) {
  if (impl_ == nullptr) return absl::FailedPreconditionError("session was moved from");
  return impl_->Execute(sql, params);
}

const std::string& Session::node() const {
  static const std::string kNone;
  return impl_ ? impl_->node() : kNone;
}

}  // namespace shardline
