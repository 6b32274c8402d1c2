// The fitness-app workload: what each operation of the mix runs through the router, and the
// ledger entries of the writes it acknowledges.
//
//   profile      ExecuteRead: the user's row (users by key)
//   feed         ExecuteRead: the user's 20 most recent posts (primary key backwards)
//   log          Transaction: INSERT a workout_logs row (id from Router::NextId, workout = the
//                user's latest) and add its reps to users.points
//   update       Execute: UPDATE one of the user's workouts (chosen by offset) and RETURN it
//   leaderboard  FanOut: per node `... WHERE $owned(user_id) ORDER BY points DESC LIMIT 10`,
//                merged into the global top 10 (MergeOrdered)
//
// Updates of one user are serialised inside this process (a striped lock held from the call
// to its ledger line), so the ledger's order of two updates of one row is their commit order
// and the last acknowledged content is the one the row must hold. (Log rows are new rows with
// unique ids: nothing to order.) Several loadgen processes
// updating the same users would break that assumption: give them disjoint --first-user ranges.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "ledger.h"
#include "mix.h"
#include "shardline/router.h"

namespace shardline::loadgen {

struct WorkloadOptions {
  std::int64_t first_user = 1;  // users are drawn uniformly from first_user .. + users - 1
  std::int64_t users = 1000;
  int workouts_per_user = 3;    // as loaded: `update` picks one of the user's first K
};

// Runs operations. Thread-safe: workers share one Workload (the router and the ledger writer
// are thread-safe; the per-user locks are striped mutexes).
class Workload {
 public:
  // `router` and `ledger` (nullable) must outlive the Workload.
  Workload(Router& router, WorkloadOptions options, LedgerWriter* ledger)
      : router_(router), options_(options), ledger_(ledger) {}

  // Runs one operation for a user drawn from `rng`. Returns the router's status (the
  // operation's failure, with node and SQLSTATE); a ledger append failure is returned as
  // Internal (a run that cannot record its writes proves nothing: the caller stops).
  absl::Status Run(Op op, std::mt19937_64& rng);

  // The kind under which a failed call is counted: the status code in lower snake case, with
  // "/SQLSTATE" when the node sent one, e.g. "failed_precondition/SLF01".
  static std::string ErrorKind(const absl::Status& status);

  // True once a ledger append failed; fatal_status() says why. The runner stops then.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  absl::Status fatal_status() const;

 private:
  absl::Status Profile(std::int64_t uid);
  absl::Status Feed(std::int64_t uid);
  absl::Status Log(std::int64_t uid, std::mt19937_64& rng);
  absl::Status Update(std::int64_t uid, std::mt19937_64& rng);
  absl::Status Leaderboard();
  absl::Status Record(LedgerEntry entry);
  absl::Mutex& UserLock(std::int64_t uid) {
    return user_locks_[static_cast<std::uint64_t>(uid) % user_locks_.size()];
  }

  Router& router_;
  const WorkloadOptions options_;
  LedgerWriter* const ledger_;
  std::array<absl::Mutex, 1024> user_locks_;
  std::atomic<bool> failed_{false};
  mutable absl::Mutex fatal_mu_;
  absl::Status fatal_ ABSL_GUARDED_BY(fatal_mu_);
};

}  // namespace shardline::loadgen
