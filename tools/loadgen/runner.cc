// Closed- and open-loop drivers (see runner.h).
#include "runner.h"

#include <array>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace shardline::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

// What one worker measured. Owned by its worker thread until the join.
struct WorkerStats {
  std::array<OpStats, kNumOps> ops;
  std::uint64_t late_starts = 0;
};

bool Stopped(const RunOptions& o) {
  return o.stop != nullptr && o.stop->load(std::memory_order_relaxed);
}

}  // namespace

std::uint64_t FenceRetriesFromMetrics(const std::string& text) {
  const std::string name = "shardline_fence_retries_total ";
  std::size_t pos = 0;
  while ((pos = text.find(name, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      return std::strtoull(text.c_str() + pos + name.size(), nullptr, 10);
    }
    pos += name.size();
  }
  return 0;
}

absl::StatusOr<RunReport> RunWorkload(Workload& workload, Router& router,
                                      const RunOptions& options) {
  if (options.workers < 1) return absl::InvalidArgumentError("workers must be at least 1");
  const bool open = options.rate > 0;
  const auto start = Clock::now();
  const auto measure_from =
      start + std::chrono::duration_cast<Clock::duration>(options.warmup);
  const auto end = measure_from + std::chrono::duration_cast<Clock::duration>(options.duration);
  const double arrival_ns = open ? 1e9 / options.rate : 0;

  RunReport report;
  report.mode = open ? "open" : "closed";
  report.workers = options.workers;
  report.rate = options.rate;
  report.mix = options.mix.ToString();
  report.warmup_seconds = options.warmup.count();
  report.map_version_start = router.map_version();
  const std::uint64_t fence_start = FenceRetriesFromMetrics(router.MetricsText());

  std::atomic<std::int64_t> next_arrival{0};
  std::atomic<std::uint64_t> claimed{0};
  std::atomic<std::uint64_t> done{0}, failed{0};
  std::atomic<bool> finished{false};
  std::vector<WorkerStats> stats(static_cast<std::size_t>(options.workers));
  std::vector<std::thread> threads;
  for (int w = 0; w < options.workers; ++w) {
    threads.emplace_back([&, w] {
      WorkerStats& ws = stats[static_cast<std::size_t>(w)];
      std::mt19937_64 rng(options.seed + static_cast<std::uint64_t>(w));
      while (!Stopped(options) && !workload.failed()) {
        Clock::time_point intended;
        if (open) {
          const std::int64_t i = next_arrival.fetch_add(1, std::memory_order_relaxed);
          intended = start + std::chrono::nanoseconds(
                                 static_cast<std::int64_t>(static_cast<double>(i) * arrival_ns));
          if (intended >= end) break;
          const auto now = Clock::now();
          if (now < intended) {
            std::this_thread::sleep_until(intended);
          } else if (now - intended > std::chrono::milliseconds(1)) {
            if (intended >= measure_from) ++ws.late_starts;
          }
        } else {
          intended = Clock::now();
          if (intended >= end) break;
        }
        if (options.max_calls > 0 &&
            claimed.fetch_add(1, std::memory_order_relaxed) >= options.max_calls) {
          break;
        }
        const Op op = options.mix.Pick(rng());
        const absl::Status s = workload.Run(op, rng);
        const auto finish = Clock::now();
        done.fetch_add(1, std::memory_order_relaxed);
        if (!s.ok()) failed.fetch_add(1, std::memory_order_relaxed);
        if (intended < measure_from) continue;
        OpStats& os = ws.ops[static_cast<std::size_t>(op)];
        ++os.count;
        os.latency.Record(std::chrono::duration_cast<std::chrono::nanoseconds>(finish - intended));
        if (!s.ok()) {
          ++os.errors;
          ++os.errors_by_kind[Workload::ErrorKind(s)];
        }
      }
    });
  }

  // Progress lines while the workers run (this thread has nothing else to do).
  std::thread progress;
  if (options.progress_interval.count() > 0 && options.progress) {
    progress = std::thread([&] {
      auto next = start + std::chrono::duration_cast<Clock::duration>(options.progress_interval);
      std::uint64_t last_done = 0;
      auto last = start;
      while (!finished.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const auto now = Clock::now();
        if (now < next) continue;
        const std::uint64_t d = done.load(), f = failed.load();
        const double secs = std::chrono::duration<double>(now - last).count();
        options.progress(fmt::format(
            "{:6.1f}s{} {:>9.1f} calls/s, {} calls, {} failed, map version {}",
            std::chrono::duration<double>(now - start).count(),
            now < measure_from ? " (warm-up)" : "", static_cast<double>(d - last_done) / secs, d,
            f, router.map_version()));
        last_done = d;
        last = now;
        next += std::chrono::duration_cast<Clock::duration>(options.progress_interval);
      }
    });
  }
  for (auto& t : threads) t.join();
  finished.store(true);
  if (progress.joinable()) progress.join();
  if (workload.failed()) return workload.fatal_status();

  const auto stopped_at = std::min(Clock::now(), end);
  report.interrupted = Stopped(options);
  report.seconds =
      stopped_at > measure_from ? std::chrono::duration<double>(stopped_at - measure_from).count()
                                : 0;
  report.total.name = "all";
  for (Op op : kAllOps) {
    if (options.mix.weight(op) == 0) continue;
    OpStats merged;
    merged.name = std::string(OpName(op));
    for (const WorkerStats& ws : stats) merged.Merge(ws.ops[static_cast<std::size_t>(op)]);
    report.total.Merge(merged);
    report.ops.push_back(std::move(merged));
  }
  for (const WorkerStats& ws : stats) report.late_starts += ws.late_starts;
  report.map_version_end = router.map_version();
  report.fence_retries = FenceRetriesFromMetrics(router.MetricsText()) - fence_start;
  return report;
}

}  // namespace shardline::loadgen
