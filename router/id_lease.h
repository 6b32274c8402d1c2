// The router's id generator behind a worker-id lease: Router::NextId() hands out ids only while
// this router may use its worker id. Three kinds:
//   - fixed: RouterOptions::worker_id given and no registry: always valid (the operator
//     promised the id is unique among live routers);
//   - refusing: no worker id and no registry to lease one from (a router following a map file
//     without worker_id): every Next() fails with FailedPrecondition saying what to set;
//   - leased: the catalog's router registry (registry.h) holds this router's row with its
//     worker id until last_heartbeat + lease; the registry renews the lease on every heartbeat
//     with the time the heartbeat was SENT, so the local lease always ends before the catalog
//     may give the id to another router. Past it, Next() fails with Unavailable until a
//     heartbeat reaches the catalog again (possibly with another worker id, when another
//     router took ours meanwhile).
// Why not keep generating on a lost lease: a router cut off from the catalog for longer than
// the lease has had its row deleted, its worker id may be held by a new router, and both would
// generate the same ids in the same millisecond.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "mutex.h"
#include "shardline/id_gen.h"

namespace shardline::internal {

class IdLease {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using ClockFn = std::function<TimePoint()>;  // injectable for tests; thread-safe

  static std::unique_ptr<IdLease> Fixed(int worker_id, ClockFn clock = {});
  static std::unique_ptr<IdLease> Refusing(std::string why, ClockFn clock = {});
  // Not valid until the first Renew.
  static std::unique_ptr<IdLease> Leased(std::chrono::milliseconds duration, ClockFn clock = {});

  // A new id, or FailedPrecondition (refusing) / Unavailable (lease not held: never renewed,
  // expired or lost), naming the worker id and the last registry problem. Thread-safe;
  // lock-free on success (two atomic loads, one clock read, the generator's CAS).
  absl::StatusOr<std::int64_t> Next();

  // The registry holds `worker_id` for this router as of `sent`: the lease runs until
  // sent + duration - margin (margin: a tenth of the duration, at most 5 s, for clock-rate
  // differences). A later `sent` only extends it. Switching to another worker id uses that
  // id's generator (kept, so that a worker id used again continues its own sequence).
  void Renew(int worker_id, TimePoint sent) ABSL_LOCKS_EXCLUDED(mu_);
  // The lease is gone now (the registry row was found deleted): Next() fails until Renew.
  void Lose(std::string why) ABSL_LOCKS_EXCLUDED(mu_);
  // What went wrong last with the registry (shown by Next() once the lease has expired).
  void NoteProblem(std::string problem) ABSL_LOCKS_EXCLUDED(mu_);

  // The worker id in use (-1 when none yet / refusing).
  int worker_id() const;
  bool leased() const { return duration_.count() > 0; }
  std::chrono::milliseconds lease_duration() const { return duration_; }

 private:
  static constexpr std::int64_t kForever = INT64_MAX;
  IdLease(std::chrono::milliseconds duration, ClockFn clock);
  std::int64_t NowNs() const;
  absl::Status NotHeld(std::int64_t until_ns, std::int64_t now_ns) const ABSL_LOCKS_EXCLUDED(mu_);

  const std::chrono::milliseconds duration_;  // 0 = fixed or refusing
  const ClockFn clock_;
  // Valid while now < valid_until_ns_ (steady-clock nanoseconds); 0 = not held.
  std::atomic<std::int64_t> valid_until_ns_{0};
  std::atomic<IdGenerator*> current_{nullptr};
  mutable Mutex mu_;
  std::map<int, std::unique_ptr<IdGenerator>> generators_ ABSL_GUARDED_BY(mu_);
  std::string refusal_ ABSL_GUARDED_BY(mu_);  // non-empty: refusing
  std::string problem_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shardline::internal
