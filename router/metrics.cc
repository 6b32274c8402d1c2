// Metrics registry and Prometheus text rendering (see metrics.h), and the registration of the
// router's own metric families.
#include "metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include <fmt/format.h>

namespace shardline {

namespace internal {

// Cells of one histogram series. Per-bucket (non-cumulative) counts; the cumulative view and
// _count are computed at render time from the same loads, so +Inf always equals _count.
struct HistogramCells {
  explicit HistogramCells(const std::vector<double>* b)
      : bounds(b), counts(new std::atomic<std::uint64_t>[b->size() + 1]) {
    for (std::size_t i = 0; i <= b->size(); ++i) counts[i].store(0, std::memory_order_relaxed);
  }
  const std::vector<double>* bounds;  // the family's; outlives the cells
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts;  // bounds->size() + 1 (last: +Inf)
  std::atomic<double> sum{0};
};

}  // namespace internal

void Histogram::Observe(double v) const {
  if (cells_ == nullptr || std::isnan(v)) return;
  const std::vector<double>& b = *cells_->bounds;
  // Bucket i counts observations in (b[i-1], b[i]]: the first bound >= v.
  std::size_t i = std::lower_bound(b.begin(), b.end(), v) - b.begin();
  cells_->counts[i].fetch_add(1, std::memory_order_relaxed);
  cells_->sum.fetch_add(v, std::memory_order_relaxed);
}

std::uint64_t Histogram::Count() const {
  if (cells_ == nullptr) return 0;
  std::uint64_t n = 0;
  for (std::size_t i = 0; i <= cells_->bounds->size(); ++i) {
    n += cells_->counts[i].load(std::memory_order_relaxed);
  }
  return n;
}

double Histogram::Sum() const {
  return cells_ == nullptr ? 0 : cells_->sum.load(std::memory_order_relaxed);
}

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double>* const kBuckets = new std::vector<double>{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
  return *kBuckets;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  out.reserve(count > 0 ? count : 0);
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

namespace {

// One series: a cell (counter, gauge or histogram) or a callback.
struct Series {
  std::vector<std::string> label_values;
  // Own cache line each, so that two hot counters do not share one.
  alignas(64) std::atomic<std::uint64_t> counter{0};
  std::atomic<double> gauge{0};
  std::unique_ptr<internal::HistogramCells> histogram;
  MetricCallback callback;  // set: a callback series (no cell handed out)
};

bool IsMetricName(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
    default:
      return "untyped";
  }
}

// Shortest round-trip decimal, in the style of the Prometheus Go client: plain notation for
// 1e-4 <= |v| < 1e15 (so 0.0001, 2.5, 10), exponent notation outside it.
void AppendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (v == 0) {
    out += '0';
    return;
  }
  char buf[64];
  double a = std::fabs(v);
  auto fmt = (a >= 1e-4 && a < 1e15) ? std::chars_format::fixed : std::chars_format::scientific;
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, fmt);
  if (ec != std::errc()) {  // cannot happen with 64 bytes; keep a value anyway
    out += fmt::format("{}", v);
    return;
  }
  out.append(buf, end);
}

void AppendUint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  out.append(buf, end);
}

void AppendEscapedLabelValue(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void AppendEscapedHelp(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

}  // namespace

struct MetricsRegistry::Family {
  MetricType type;
  std::string name;
  std::string help;
  std::vector<std::string> label_names;
  std::vector<double> buckets;  // histograms only
  std::vector<std::unique_ptr<Series>> series;

  Series* Find(const MetricLabels& labels) const {
    for (const auto& s : series) {
      bool same = true;
      for (std::size_t i = 0; i < labels.size(); ++i) {
        if (s->label_values[i] != labels[i].second) {
          same = false;
          break;
        }
      }
      if (same) return s.get();
    }
    return nullptr;
  }

  // "{a="x",b="y"" without the closing brace (the caller may add le=...), or "" when there
  // are no labels and no extra label follows.
  void AppendLabels(std::string& out, const Series& s) const {
    for (std::size_t i = 0; i < label_names.size(); ++i) {
      out += i == 0 ? '{' : ',';
      out += label_names[i];
      out += "=\"";
      AppendEscapedLabelValue(out, s.label_values[i]);
      out += '"';
    }
  }
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family* MetricsRegistry::FindOrAddFamily(MetricType type, std::string_view name,
                                                          std::string_view help,
                                                          const MetricLabels& labels,
                                                          const std::vector<double>* buckets,
                                                          absl::Status* status) {
  if (!IsMetricName(name)) {
    *status = absl::InvalidArgumentError(fmt::format("metric name \"{}\" is not valid", name));
    return nullptr;
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::string& ln = labels[i].first;
    if (!IsLabelName(ln) || (type == MetricType::kHistogram && ln == "le")) {
      *status = absl::InvalidArgumentError(
          fmt::format("metric {}: label name \"{}\" is not valid", name, ln));
      return nullptr;
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[j].first == ln) {
        *status = absl::InvalidArgumentError(
            fmt::format("metric {}: label \"{}\" appears twice", name, ln));
        return nullptr;
      }
    }
  }
  if (buckets != nullptr) {
    if (buckets->empty()) {
      *status = absl::InvalidArgumentError(fmt::format("histogram {}: no buckets", name));
      return nullptr;
    }
    for (std::size_t i = 0; i < buckets->size(); ++i) {
      double b = (*buckets)[i];
      if (!std::isfinite(b) || (i > 0 && !((*buckets)[i - 1] < b))) {
        *status = absl::InvalidArgumentError(fmt::format(
            "histogram {}: buckets must be finite and strictly increasing (bucket {} is {})",
            name, i, b));
        return nullptr;
      }
    }
  }
  for (const auto& f : families_) {
    if (f->name != name) continue;
    if (f->type != type) {
      *status = absl::InvalidArgumentError(fmt::format(
          "metric {} is registered as a {}, not a {}", name, TypeName(f->type), TypeName(type)));
      return nullptr;
    }
    bool same_labels = f->label_names.size() == labels.size();
    for (std::size_t i = 0; same_labels && i < labels.size(); ++i) {
      same_labels = f->label_names[i] == labels[i].first;
    }
    if (!same_labels) {
      std::vector<std::string> got;
      for (const auto& l : labels) got.push_back(l.first);
      *status = absl::InvalidArgumentError(
          fmt::format("metric {} has labels {{{}}}, not {{{}}}", name,
                      fmt::join(f->label_names, ","), fmt::join(got, ",")));
      return nullptr;
    }
    if (buckets != nullptr && *buckets != f->buckets) {
      *status = absl::InvalidArgumentError(
          fmt::format("histogram {} is registered with other buckets", name));
      return nullptr;
    }
    return f.get();
  }
  auto f = std::make_unique<Family>();
  f->type = type;
  f->name = std::string(name);
  f->help = std::string(help);
  for (const auto& l : labels) f->label_names.push_back(l.first);
  if (buckets != nullptr) f->buckets = *buckets;
  families_.push_back(std::move(f));
  return families_.back().get();
}

absl::StatusOr<void*> MetricsRegistry::GetCell(MetricType type, std::string_view name,
                                               std::string_view help, const MetricLabels& labels,
                                               const std::vector<double>* buckets) {
  internal::MutexLock lock(&mu_);
  absl::Status status;
  Family* f = FindOrAddFamily(type, name, help, labels, buckets, &status);
  if (f == nullptr) return status;
  Series* s = f->Find(labels);
  if (s == nullptr) {
    auto owned = std::make_unique<Series>();
    for (const auto& l : labels) owned->label_values.push_back(l.second);
    if (type == MetricType::kHistogram) {
      owned->histogram = std::make_unique<internal::HistogramCells>(&f->buckets);
    }
    s = owned.get();
    f->series.push_back(std::move(owned));
  } else if (s->callback) {
    return absl::InvalidArgumentError(
        fmt::format("metric {}: this series is already registered as a callback", name));
  }
  switch (type) {
    case MetricType::kCounter:
      return static_cast<void*>(&s->counter);
    case MetricType::kGauge:
      return static_cast<void*>(&s->gauge);
    case MetricType::kHistogram:
      return static_cast<void*>(s->histogram.get());
    default:
      return absl::InternalError("unknown metric type");
  }
}

absl::StatusOr<Counter> MetricsRegistry::GetCounter(std::string_view name, std::string_view help,
                                                    const MetricLabels& labels) {
  absl::StatusOr<void*> cell = GetCell(MetricType::kCounter, name, help, labels, nullptr);
  if (!cell.ok()) return cell.status();
  return Counter(static_cast<std::atomic<std::uint64_t>*>(*cell));
}

absl::StatusOr<Gauge> MetricsRegistry::GetGauge(std::string_view name, std::string_view help,
                                                const MetricLabels& labels) {
  absl::StatusOr<void*> cell = GetCell(MetricType::kGauge, name, help, labels, nullptr);
  if (!cell.ok()) return cell.status();
  return Gauge(static_cast<std::atomic<double>*>(*cell));
}

absl::StatusOr<Histogram> MetricsRegistry::GetHistogram(std::string_view name,
                                                        std::string_view help,
                                                        const MetricLabels& labels,
                                                        const std::vector<double>& buckets) {
  absl::StatusOr<void*> cell = GetCell(MetricType::kHistogram, name, help, labels, &buckets);
  if (!cell.ok()) return cell.status();
  return Histogram(static_cast<internal::HistogramCells*>(*cell));
}

absl::Status MetricsRegistry::AddCallback(MetricType type, std::string_view name,
                                          std::string_view help, const MetricLabels& labels,
                                          MetricCallback fn) {
  if (type == MetricType::kHistogram) {
    return absl::InvalidArgumentError(
        fmt::format("metric {}: histograms cannot be callbacks", name));
  }
  if (!fn) {
    return absl::InvalidArgumentError(fmt::format("metric {}: empty callback", name));
  }
  internal::MutexLock lock(&mu_);
  absl::Status status;
  Family* f = FindOrAddFamily(type, name, help, labels, nullptr, &status);
  if (f == nullptr) return status;
  Series* s = f->Find(labels);
  if (s == nullptr) {
    auto owned = std::make_unique<Series>();
    for (const auto& l : labels) owned->label_values.push_back(l.second);
    s = owned.get();
    f->series.push_back(std::move(owned));
  } else if (!s->callback) {
    return absl::InvalidArgumentError(
        fmt::format("metric {}: this series is already registered with a cell", name));
  }
  s->callback = std::move(fn);
  return absl::OkStatus();
}

void MetricsRegistry::RemoveCallbacks(std::string_view label_name, std::string_view label_value) {
  internal::MutexLock lock(&mu_);
  for (auto& f : families_) {
    auto it = std::find(f->label_names.begin(), f->label_names.end(), label_name);
    if (it == f->label_names.end()) continue;
    std::size_t idx = it - f->label_names.begin();
    std::erase_if(f->series, [&](const std::unique_ptr<Series>& s) {
      return s->callback && s->label_values[idx] == label_value;
    });
  }
}

std::string MetricsRegistry::RenderText() const {
  std::string out;
  internal::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    if (f->series.empty()) continue;
    out += "# HELP ";
    out += f->name;
    out += ' ';
    AppendEscapedHelp(out, f->help);
    out += "\n# TYPE ";
    out += f->name;
    out += ' ';
    out += TypeName(f->type);
    out += '\n';
    for (const auto& s : f->series) {
      if (f->type == MetricType::kHistogram) {
        const internal::HistogramCells& h = *s->histogram;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= f->buckets.size(); ++i) {
          cumulative += h.counts[i].load(std::memory_order_relaxed);
          out += f->name;
          out += "_bucket";
          f->AppendLabels(out, *s);
          out += f->label_names.empty() ? "{le=\"" : ",le=\"";
          if (i < f->buckets.size()) {
            AppendDouble(out, f->buckets[i]);
          } else {
            out += "+Inf";
          }
          out += "\"} ";
          AppendUint(out, cumulative);
          out += '\n';
        }
        out += f->name;
        out += "_sum";
        f->AppendLabels(out, *s);
        if (!f->label_names.empty()) out += '}';
        out += ' ';
        AppendDouble(out, h.sum.load(std::memory_order_relaxed));
        out += '\n';
        out += f->name;
        out += "_count";
        f->AppendLabels(out, *s);
        if (!f->label_names.empty()) out += '}';
        out += ' ';
        AppendUint(out, cumulative);
        out += '\n';
        continue;
      }
      out += f->name;
      f->AppendLabels(out, *s);
      if (!f->label_names.empty()) out += '}';
      out += ' ';
      if (s->callback) {
        AppendDouble(out, s->callback());
      } else if (f->type == MetricType::kCounter) {
        AppendUint(out, s->counter.load(std::memory_order_relaxed));
      } else {
        AppendDouble(out, s->gauge.load(std::memory_order_relaxed));
      }
      out += '\n';
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Router families.

const char* QueryKindName(QueryKind k) {
  switch (k) {
    case QueryKind::kExecute:
      return "execute";
    case QueryKind::kRead:
      return "read";
    case QueryKind::kTxn:
      return "txn";
    case QueryKind::kFanout:
      return "fanout";
    default:
      return "unknown";
  }
}

const char* QueryOutcomeName(QueryOutcome o) {
  switch (o) {
    case QueryOutcome::kOk:
      return "ok";
    case QueryOutcome::kError:
      return "error";
    case QueryOutcome::kFencedRetry:
      return "fenced_retry";
    case QueryOutcome::kUnavailable:
      return "unavailable";
    case QueryOutcome::kTimeout:
      return "timeout";
    default:
      return "unknown";
  }
}

QueryOutcome OutcomeOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return QueryOutcome::kOk;
    case absl::StatusCode::kUnavailable:
      return QueryOutcome::kUnavailable;
    case absl::StatusCode::kDeadlineExceeded:
      return QueryOutcome::kTimeout;
    default:
      return QueryOutcome::kError;
  }
}

std::string StatusCodeLabel(absl::StatusCode code) {
  int c = static_cast<int>(code);
  if (c < 0 || c >= kNumStatusCodes) return "unknown";
  std::string s = absl::StatusCodeToString(code);
  for (char& ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return s;
}

namespace {
constexpr std::string_view kNode = "node";
}  // namespace

absl::StatusOr<NodeMetrics> NodeMetrics::Register(MetricsRegistry& registry,
                                                  const std::string& node,
                                                  std::function<PoolSample()> pool) {
  NodeMetrics m;
  for (int k = 0; k < kNumQueryKinds; ++k) {
    const char* kind = QueryKindName(static_cast<QueryKind>(k));
    for (int o = 0; o < kNumQueryOutcomes; ++o) {
      absl::StatusOr<Counter> c = registry.GetCounter(
          kMetricQueriesTotal, "Statements run by the router, by node, kind and outcome.",
          {{std::string(kNode), node},
           {"kind", kind},
           {"outcome", QueryOutcomeName(static_cast<QueryOutcome>(o))}});
      if (!c.ok()) return c.status();
      m.queries[k][o] = *c;
    }
    absl::StatusOr<Histogram> h = registry.GetHistogram(
        kMetricQueryDuration, "Latency of statements run by the router, in seconds.",
        {{std::string(kNode), node}, {"kind", kind}}, LatencyBuckets());
    if (!h.ok()) return h.status();
    m.duration[k] = *h;
  }
  for (int code = 1; code < kNumStatusCodes; ++code) {
    absl::StatusOr<Counter> c = registry.GetCounter(
        kMetricQueryErrorsTotal, "Failed statements by node and status code.",
        {{std::string(kNode), node},
         {"code", StatusCodeLabel(static_cast<absl::StatusCode>(code))}});
    if (!c.ok()) return c.status();
    m.errors[code] = *c;
  }
  absl::StatusOr<Histogram> wait = registry.GetHistogram(
      kMetricPoolCheckoutWait, "Time spent waiting for a pooled connection, in seconds.",
      {{std::string(kNode), node}}, LatencyBuckets());
  if (!wait.ok()) return wait.status();
  m.checkout_wait = *wait;

  if (pool) {
    auto shared = std::make_shared<std::function<PoolSample()>>(std::move(pool));
    struct Cb {
      MetricType type;
      std::string_view name;
      const char* help;
      MetricLabels labels;
      double (*get)(const PoolSample&);
    };
    const Cb cbs[] = {
        {MetricType::kGauge, kMetricPoolConnections, "Pooled connections by state.",
         {{std::string(kNode), node}, {"state", "in_use"}},
         [](const PoolSample& p) { return static_cast<double>(p.in_use); }},
        {MetricType::kGauge, kMetricPoolConnections, "Pooled connections by state.",
         {{std::string(kNode), node}, {"state", "idle"}},
         [](const PoolSample& p) { return static_cast<double>(p.idle); }},
        {MetricType::kGauge, kMetricPoolWaiters, "Callers waiting for a pooled connection.",
         {{std::string(kNode), node}},
         [](const PoolSample& p) { return static_cast<double>(p.waiters); }},
        {MetricType::kCounter, kMetricPoolCheckoutTimeouts,
         "Checkouts that gave up waiting for a connection.",
         {{std::string(kNode), node}},
         [](const PoolSample& p) { return static_cast<double>(p.checkout_timeouts); }},
        {MetricType::kGauge, kMetricBreakerOpen,
         "1 while the node's circuit breaker is open or half-open, else 0.",
         {{std::string(kNode), node}},
         [](const PoolSample& p) { return p.breaker_open ? 1.0 : 0.0; }},
    };
    for (const Cb& cb : cbs) {
      auto get = cb.get;
      absl::Status s = registry.AddCallback(cb.type, cb.name, cb.help, cb.labels,
                                            [shared, get] { return get((*shared)()); });
      if (!s.ok()) return s;
    }
  }
  return m;
}

void NodeMetrics::RecordQuery(QueryKind kind, QueryOutcome outcome, const absl::Status& status,
                              double seconds) const {
  int k = static_cast<int>(kind);
  int o = static_cast<int>(outcome);
  if (k < 0 || k >= kNumQueryKinds || o < 0 || o >= kNumQueryOutcomes) return;
  queries[k][o].Inc();
  duration[k].Observe(seconds);
  if (!status.ok()) {
    int c = static_cast<int>(status.code());
    errors[c > 0 && c < kNumStatusCodes ? c : static_cast<int>(absl::StatusCode::kUnknown)].Inc();
  }
}

absl::StatusOr<RouterMetrics> RouterMetrics::Register(MetricsRegistry& registry) {
  RouterMetrics m;
  absl::StatusOr<Gauge> v =
      registry.GetGauge(kMetricMapVersion, "Version of the shard map the router applies.", {});
  if (!v.ok()) return v.status();
  m.map_version = *v;
  constexpr const char* kReloadHelp = "Shard map loads by outcome (refused: invalid, kept old).";
  absl::StatusOr<Counter> ok = registry.GetCounter(kMetricMapReloads, kReloadHelp,
                                                   {{"outcome", "ok"}});
  if (!ok.ok()) return ok.status();
  m.map_reloads_ok = *ok;
  absl::StatusOr<Counter> refused =
      registry.GetCounter(kMetricMapReloads, kReloadHelp, {{"outcome", "refused"}});
  if (!refused.ok()) return refused.status();
  m.map_reloads_refused = *refused;
  absl::StatusOr<Counter> fence = registry.GetCounter(
      kMetricFenceRetries, "Writes retried on the new owner after hitting a fenced range.", {});
  if (!fence.ok()) return fence.status();
  m.fence_retries = *fence;
  return m;
}

}  // namespace shardline
