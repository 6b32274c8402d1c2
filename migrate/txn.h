// The one transaction guard of the migration engine: BEGIN on Begin(), COMMIT on Commit(), and
// ROLLBACK from the destructor when Commit() was not reached (an early return, an error). So no
// function writes BEGIN/ROLLBACK pairs by hand, and no error path leaves a connection inside a
// transaction.
//
//   Txn txn(conn);
//   if (auto s = txn.Begin(); !s.ok()) return s;
//   ... statements on conn ...
//   return txn.Commit();
//
// Single-threaded, like the connection it borrows (which must outlive it).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "pg_conn.h"

namespace shardline::migrate {

class Txn {
 public:
  explicit Txn(pg::Conn& conn) : conn_(conn) {}
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  ~Txn() {
    if (open_) (void)conn_.Exec("ROLLBACK");
  }

  // BEGIN, or `begin` (e.g. "BEGIN ISOLATION LEVEL REPEATABLE READ").
  absl::Status Begin(std::string_view begin = "BEGIN") {
    auto r = conn_.Exec(begin);
    if (!r.ok()) return r.status();
    open_ = true;
    return absl::OkStatus();
  }
  // COMMIT. After a failed COMMIT the transaction is over (the server rolled it back).
  absl::Status Commit() {
    open_ = false;
    auto r = conn_.Exec("COMMIT");
    return r.ok() ? absl::OkStatus() : r.status();
  }

 private:
  pg::Conn& conn_;
  bool open_ = false;
};

}  // namespace shardline::migrate
