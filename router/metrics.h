// Prometheus-style metrics for the router: a registry of counters, gauges and histograms with
// fixed label sets, rendered in the Prometheus text exposition format (version 0.0.4). Series
// are registered at setup (this takes a lock and allocates); the caller caches the returned
// handle (Counter/Gauge/Histogram: a pointer to atomics owned by the registry), and recording
// through a handle is a relaxed atomic add: no lock, no allocation, no lookup. Gauges whose
// value lives elsewhere (pool in-use/idle/waiters, breaker state) are read by callbacks at
// render time. The second half of the file names the router's metric families and bundles the
// handles the router keeps per node (NodeMetrics) and per router (RouterMetrics).
//
// Labels carry node names and small enums only: never a DSN, password, key or SQL text.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mutex.h"

namespace shardline {

// Ordered label name/value pairs of one series, e.g. {{"node", "n1"}, {"kind", "read"}}.
// The names and their order are fixed per family by its first registration.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

namespace internal {
struct HistogramCells;
}  // namespace internal

// Handle to a monotonically increasing integer counter. Trivially copyable; a
// default-constructed handle is a no-op (so code paths without a registry need no checks).
// Thread-safe. Valid as long as the MetricsRegistry that returned it.
class Counter {
 public:
  Counter() = default;
  void Inc() const { Add(1); }
  void Add(std::uint64_t n) const {
    if (cell_ != nullptr) cell_->fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t Value() const {
    return cell_ == nullptr ? 0 : cell_->load(std::memory_order_relaxed);
  }
  bool valid() const { return cell_ != nullptr; }

 private:
  friend class MetricsRegistry;
  explicit Counter(std::atomic<std::uint64_t>* cell) : cell_(cell) {}
  std::atomic<std::uint64_t>* cell_ = nullptr;
};

// Handle to a gauge (a double that goes up and down). Same handle rules as Counter.
class Gauge {
 public:
  Gauge() = default;
  void Set(double v) const {
    if (cell_ != nullptr) cell_->store(v, std::memory_order_relaxed);
  }
  void Add(double d) const {
    if (cell_ != nullptr) cell_->fetch_add(d, std::memory_order_relaxed);
  }
  void Inc() const { Add(1); }
  void Dec() const { Add(-1); }
  double Value() const { return cell_ == nullptr ? 0 : cell_->load(std::memory_order_relaxed); }
  bool valid() const { return cell_ != nullptr; }

 private:
  friend class MetricsRegistry;
  explicit Gauge(std::atomic<double>* cell) : cell_(cell) {}
  std::atomic<double>* cell_ = nullptr;
};

// Handle to a histogram with the fixed buckets of its family. Observe() finds the bucket by a
// binary search over the (~16) upper bounds and does three relaxed atomic adds. Same handle
// rules as Counter.
class Histogram {
 public:
  Histogram() = default;
  // Records one observation (seconds, for the latency families). NaN is ignored.
  void Observe(double v) const;
  // Observation count and sum so far (for tests and logs).
  std::uint64_t Count() const;
  double Sum() const;
  bool valid() const { return cells_ != nullptr; }

 private:
  friend class MetricsRegistry;
  explicit Histogram(internal::HistogramCells* cells) : cells_(cells) {}
  internal::HistogramCells* cells_ = nullptr;
};

// Upper bounds (seconds) of the latency histograms: 100 µs .. 10 s in 1-2.5-5 steps (16
// buckets, plus +Inf).
const std::vector<double>& LatencyBuckets();
// `count` bounds start, start*factor, start*factor^2, ... Precondition: start > 0, factor > 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

// Value source of a callback series, called under the registry's lock during RenderText().
// It must be thread-safe, must not call back into the registry, and should be quick (take a
// snapshot, e.g. ConnPool::Stats()).
using MetricCallback = std::function<double()>;

// Owns the series of a set of metric families. One per Router.
//
// Thread-safe. Registration and RenderText take an internal mutex; recording through handles
// takes none. Series are never freed before the registry (handles stay valid), so a node that
// leaves the map keeps its last counter values; its callbacks are removed with
// RemoveCallbacks().
//
// Example:
//   MetricsRegistry reg;
//   absl::StatusOr<Counter> c = reg.GetCounter("shardline_fence_retries_total",
//                                              "Writes retried after a fence.", {});
//   c->Inc();                      // hot path
//   std::string text = reg.RenderText();
class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Returns the handle of series `labels` of counter family `name`, creating the family (with
  // `help` and the label names of `labels`, in that order) and the series on first use. The
  // same name and label values return the same cell. Errors (InvalidArgument, naming the
  // metric): a bad metric or label name, `name` already registered with another type, other
  // label names or another order, or (histograms) other buckets; a series already registered as
  // a callback. `help` of later calls is ignored.
  absl::StatusOr<Counter> GetCounter(std::string_view name, std::string_view help,
                                     const MetricLabels& labels) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<Gauge> GetGauge(std::string_view name, std::string_view help,
                                 const MetricLabels& labels) ABSL_LOCKS_EXCLUDED(mu_);
  // `buckets`: strictly increasing finite upper bounds, non-empty; +Inf is implicit.
  absl::StatusOr<Histogram> GetHistogram(std::string_view name, std::string_view help,
                                         const MetricLabels& labels,
                                         const std::vector<double>& buckets)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Registers a series of counter or gauge family `name` whose value is read by `fn` at render
  // time (rendered as an integer for counters). Registering the same labels again replaces
  // the callback. Same errors as GetCounter; InvalidArgument for kHistogram or for labels that
  // already have a cell.
  absl::Status AddCallback(MetricType type, std::string_view name, std::string_view help,
                           const MetricLabels& labels, MetricCallback fn)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Removes every callback series (of any family) that has label `label_name`=`label_value`,
  // e.g. ("node", "n3") when n3 leaves the map. After it returns, none of those callbacks runs.
  void RemoveCallbacks(std::string_view label_name, std::string_view label_value)
      ABSL_LOCKS_EXCLUDED(mu_);

  // All families in registration order, series in registration order, as Prometheus text:
  //   # HELP <name> <help>            (help escapes \ and newline)
  //   # TYPE <name> counter|gauge|histogram
  //   <name>{<label>="<value>",...} <value>   (values escape \, " and newline)
  // Histograms render cumulative <name>_bucket{...,le="<bound>"} lines ending with le="+Inf",
  // then <name>_sum and <name>_count (== the +Inf bucket). Families without series are
  // omitted. Numbers: integers for counters/counts, shortest round-trip decimals otherwise
  // (+Inf, -Inf, NaN spelled as Prometheus does).
  std::string RenderText() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Family;
  absl::StatusOr<void*> GetCell(MetricType type, std::string_view name, std::string_view help,
                                const MetricLabels& labels, const std::vector<double>* buckets)
      ABSL_LOCKS_EXCLUDED(mu_);
  Family* FindOrAddFamily(MetricType type, std::string_view name, std::string_view help,
                          const MetricLabels& labels, const std::vector<double>* buckets,
                          absl::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable internal::Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------------------------
// The router's metric families.

inline constexpr std::string_view kMetricQueriesTotal = "shardline_queries_total";  // {node,kind,outcome}
inline constexpr std::string_view kMetricQueryErrorsTotal = "shardline_query_errors_total";  // {node,code}
inline constexpr std::string_view kMetricQueryDuration = "shardline_query_duration_seconds";  // {node,kind} histogram
inline constexpr std::string_view kMetricPoolConnections = "shardline_pool_connections";  // {node,state} gauge (callback)
inline constexpr std::string_view kMetricPoolWaiters = "shardline_pool_waiters";  // {node} gauge (callback)
inline constexpr std::string_view kMetricPoolCheckoutWait = "shardline_pool_checkout_wait_seconds";  // {node} histogram
inline constexpr std::string_view kMetricPoolCheckoutTimeouts = "shardline_pool_checkout_timeouts_total";  // {node} counter (callback)
inline constexpr std::string_view kMetricBreakerOpen = "shardline_breaker_open";  // {node} gauge (callback)
inline constexpr std::string_view kMetricMapVersion = "shardline_map_version";  // gauge
inline constexpr std::string_view kMetricMapReloads = "shardline_map_reloads_total";  // {outcome=ok|refused}
inline constexpr std::string_view kMetricFenceRetries = "shardline_fence_retries_total";  // counter

// Label values of shardline_queries_total{kind}.
enum class QueryKind { kExecute, kRead, kTxn, kFanout };
inline constexpr int kNumQueryKinds = 4;
// Label values of shardline_queries_total{outcome}.
enum class QueryOutcome { kOk, kError, kFencedRetry, kUnavailable, kTimeout };
inline constexpr int kNumQueryOutcomes = 5;
const char* QueryKindName(QueryKind k);        // "execute", "read", "txn", "fanout"
const char* QueryOutcomeName(QueryOutcome o);  // "ok", "error", "fenced_retry", "unavailable", "timeout"
// Maps a failed call's status to its outcome label: kOk for OK, kUnavailable for Unavailable,
// kTimeout for DeadlineExceeded, kError otherwise (the fenced retry is decided by the router).
QueryOutcome OutcomeOf(const absl::Status& s);
// shardline_query_errors_total{code}: the absl code in lower snake case ("unavailable",
// "deadline_exceeded", "failed_precondition", ...); the 16 non-OK codes are pre-registered per
// node (codes outside 1..16 count as "unknown").
inline constexpr int kNumStatusCodes = 17;  // absl::StatusCode 0..16; index 0 (OK) is unused
std::string StatusCodeLabel(absl::StatusCode code);

// What the pool metrics callbacks read: the router fills it from ConnPool::Stats().
struct PoolSample {
  int in_use = 0;
  int idle = 0;
  int waiters = 0;
  std::int64_t checkout_timeouts = 0;
  bool breaker_open = false;  // open or half-open
};

// The handles the router caches per node: recording is an array index plus an atomic add.
// Thread-safe (handles are).
struct NodeMetrics {
  // Registers (or finds) every per-node series for `node`, including callback series for the
  // pool (shardline_pool_connections{state=in_use|idle}, _waiters, _checkout_timeouts_total,
  // shardline_breaker_open) reading `pool` at render time. `pool` must stay callable until
  // registry.RemoveCallbacks("node", node) or the registry's destruction. Errors: as
  // MetricsRegistry::GetCounter (only on programming errors, e.g. conflicting families).
  static absl::StatusOr<NodeMetrics> Register(MetricsRegistry& registry, const std::string& node,
                                              std::function<PoolSample()> pool);

  // Records one finished call: queries_total{kind,outcome}, duration{kind}, and for non-OK
  // statuses query_errors_total{code}. No lock, no allocation.
  void RecordQuery(QueryKind kind, QueryOutcome outcome, const absl::Status& status,
                   double seconds) const;

  std::array<std::array<Counter, kNumQueryOutcomes>, kNumQueryKinds> queries;
  std::array<Counter, kNumStatusCodes> errors;
  std::array<Histogram, kNumQueryKinds> duration;
  Histogram checkout_wait;  // the pool (or router) observes each Acquire's wait, in seconds
};

// Router-wide handles.
struct RouterMetrics {
  static absl::StatusOr<RouterMetrics> Register(MetricsRegistry& registry);
  Gauge map_version;
  Counter map_reloads_ok;
  Counter map_reloads_refused;
  Counter fence_retries;
};

}  // namespace shardline
