// Drives a Workload: closed loop (N workers, each starting its next call when the last one
// finished: the maximum rate the system sustains) or open loop (calls arrive at a fixed rate
// whatever the system does; each call's latency is measured from its intended start time, so
// a stall shows up in every call that should have started during it instead of being hidden
// by the load generator slowing down: no coordinated omission). Collects per-operation stats
// after the warm-up.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "mix.h"
#include "report.h"
#include "shardline/router.h"
#include "workload.h"

namespace shardline::loadgen {

struct RunOptions {
  Mix mix = Mix::Default();
  // Concurrent calls at most. Closed loop: the load itself. Open loop: must be enough to keep
  // up with the rate (calls that find every worker busy start late, counted in late_starts,
  // and their latency includes the wait).
  int workers = 8;
  // Arrivals per second: > 0 selects the open loop, 0 the closed loop.
  double rate = 0;
  std::chrono::duration<double> duration{10.0};  // measured window, after the warm-up
  std::chrono::duration<double> warmup{0.0};     // run but not measured
  std::uint64_t seed = 1;                        // worker i draws from seed + i
  // Stop after this many calls in all (warm-up included), or at the end of the duration,
  // whichever comes first. 0: no limit. A fixed amount of work for tests and CI.
  std::uint64_t max_calls = 0;
  // Set (e.g. by a signal handler) to stop early: the report covers what was measured.
  const std::atomic<bool>* stop = nullptr;
  // When > 0, `progress` is called with a one-line summary this often.
  std::chrono::duration<double> progress_interval{0.0};
  std::function<void(const std::string&)> progress;
};

// Runs the workload and returns the report (thresholds not yet evaluated). Failed calls are
// counted, never fatal: the run keeps going through node failures and map changes. The only
// error is a failure to record an acknowledged write in the ledger (the Workload's fatal
// status), which stops the run. Blocks for warm-up + duration (less when stopped).
absl::StatusOr<RunReport> RunWorkload(Workload& workload, Router& router,
                                      const RunOptions& options);

// shardline_fence_retries_total from a Prometheus text (0 when absent).
std::uint64_t FenceRetriesFromMetrics(const std::string& metrics_text);

}  // namespace shardline::loadgen
