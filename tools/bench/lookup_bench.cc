// Benchmarks of the router's hot path: hash a key, find its range, pick the node. The range
// lookup alone runs on precomputed random hashes (so it is meaningful whatever the hash does)
// next to a std::upper_bound baseline over the same bounds, measured in the same run; the
// end-to-end figures hash a bigint, text or uuid key first. Every benchmark counts global
// operator new calls in its timed loop ("allocs/op", which must be 0), and the run ends with
// the ratios lookup / baseline. Usage: lookup_bench [--benchmark_filter=...]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>

#include "shardline/hash.h"
#include "shardline/key.h"
#include "shardline/shard_map.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

__attribute__((noinline)) void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// The whole non-aligned family is replaced, so that no variant from the C++ runtime or a
// sanitizer's runtime frees memory this one allocated (ASan checks the pairing). noinline:
// inlined into callers, GCC flags free() of memory from `new` (a -Wmismatched-new-delete false
// positive for replaced operators).
void* operator new[](std::size_t size) { return ::operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& nt) noexcept {
  return ::operator new(size, nt);
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete[](void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
__attribute__((noinline)) void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace shardline {
namespace {

constexpr std::size_t kKeys = 1 << 16;  // a ring of inputs, larger than L1 but not L2
constexpr std::size_t kMask = kKeys - 1;

std::shared_ptr<const ShardMap> EqualMap(std::int64_t ranges, KeyType key_type) {
  ShardMapConfig c;
  c.version = 1;
  c.key_type = key_type;
  for (const char* name : {"a", "b", "c", "d"}) {
    NodeConfig n;
    n.name = name;
    n.dsn = std::string("host=127.0.0.1 dbname=") + name;
    c.nodes.push_back(n);
  }
  c.ranges = *EqualRanges(ranges, {"a", "b", "c", "d"});
  auto map = ShardMap::Create(std::move(c));
  if (!map.ok()) std::abort();
  return *map;
}

std::vector<std::int64_t> RandomInts(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> v(kKeys);
  for (auto& x : v) x = static_cast<std::int64_t>(rng());
  return v;
}

// E-mail-like keys of 12 to 30 bytes.
std::vector<std::string> RandomTexts(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> v(kKeys);
  for (auto& s : v) {
    const std::size_t len = 2 + rng() % 19;
    for (std::size_t i = 0; i < len; ++i) s += static_cast<char>('a' + rng() % 26);
    s += "@example.com";
  }
  return v;
}

std::vector<Uuid> RandomUuids(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Uuid> v(kKeys);
  for (auto& u : v) {
    for (auto& b : u.bytes) b = static_cast<std::uint8_t>(rng());
  }
  return v;
}

// Counts allocations across the timed loop; reported per iteration.
class AllocationCounter {
 public:
  AllocationCounter() : start_(g_allocations.load()) {}
  void Report(benchmark::State& state) {
    state.counters["allocs/op"] = benchmark::Counter(
        static_cast<double>(g_allocations.load() - start_), benchmark::Counter::kAvgIterations);
  }

 private:
  long start_;
};

// The lookup alone, on random hashes, independent iterations (throughput).
void BM_RangeIndex(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kBigint);
  const auto hashes = RandomInts(1);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    benchmark::DoNotOptimize(map->RangeIndex(hashes[i++ & kMask]));
  }
  allocs.Report(state);
}
BENCHMARK(BM_RangeIndex)->Arg(256)->Arg(65536);

// The lookup on a map of `n` ranges cut at random points (sizes vary, as after many splits
// and merges): some buckets hold several ranges, so this is the lookup's harder case.
void BM_RangeIndexIrregular(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  std::vector<std::int64_t> cuts = RandomInts(5);
  cuts.resize(static_cast<std::size_t>(n - 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  ShardMapConfig c;
  c.version = 1;
  NodeConfig node;
  node.name = "a";
  node.dsn = "host=127.0.0.1";
  c.nodes = {node};
  std::int64_t lo = kMinHash;
  for (std::int64_t cut : cuts) {
    if (cut == kMinHash) continue;
    c.ranges.push_back(RangeConfig{lo, cut - 1, "a", "", RangeState::kStable});
    lo = cut;
  }
  c.ranges.push_back(RangeConfig{lo, kMaxHash, "a", "", RangeState::kStable});
  const auto map = *ShardMap::Create(std::move(c));
  const auto hashes = RandomInts(1);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    benchmark::DoNotOptimize(map->RangeIndex(hashes[i++ & kMask]));
  }
  allocs.Report(state);
}
BENCHMARK(BM_RangeIndexIrregular)->Arg(256)->Arg(65536);

// Baseline: the obvious lookup, std::upper_bound over the ranges' lo bounds.
void BM_UpperBoundBaseline(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kBigint);
  std::vector<std::int64_t> los;
  for (const RangeConfig& r : map->ranges()) los.push_back(r.lo);
  const auto hashes = RandomInts(1);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    const std::int64_t h = hashes[i++ & kMask];
    benchmark::DoNotOptimize(std::upper_bound(los.begin(), los.end(), h) - los.begin() - 1);
  }
  allocs.Report(state);
}
BENCHMARK(BM_UpperBoundBaseline)->Arg(256)->Arg(65536);

// The lookup with each input depending on the previous result (latency, not throughput).
void BM_RangeIndexLatency(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kBigint);
  const auto hashes = RandomInts(1);
  std::size_t i = 0, r = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    r = map->RangeIndex(hashes[(i++ + r) & kMask]);
  }
  benchmark::DoNotOptimize(r);
  allocs.Report(state);
}
BENCHMARK(BM_RangeIndexLatency)->Arg(256)->Arg(65536);

void BM_UpperBoundBaselineLatency(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kBigint);
  std::vector<std::int64_t> los;
  for (const RangeConfig& r : map->ranges()) los.push_back(r.lo);
  const auto hashes = RandomInts(1);
  std::size_t i = 0, r = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    const std::int64_t h = hashes[(i++ + r) & kMask];
    r = static_cast<std::size_t>(std::upper_bound(los.begin(), los.end(), h) - los.begin() - 1);
  }
  benchmark::DoNotOptimize(r);
  allocs.Report(state);
}
BENCHMARK(BM_UpperBoundBaselineLatency)->Arg(256)->Arg(65536);

// Hashes alone, for the share of the end-to-end figure that is hashing.
void BM_HashBigint(benchmark::State& state) {
  const auto keys = RandomInts(2);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) benchmark::DoNotOptimize(ShardKey(keys[i++ & kMask]).Hash());
  allocs.Report(state);
}
BENCHMARK(BM_HashBigint);

void BM_HashText(benchmark::State& state) {
  const auto keys = RandomTexts(3);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) benchmark::DoNotOptimize(ShardKey(keys[i++ & kMask]).Hash());
  allocs.Report(state);
}
BENCHMARK(BM_HashText);

// End to end: key -> hash -> range -> owner node index.
void BM_LocateBigint(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kBigint);
  const auto keys = RandomInts(2);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    const std::size_t r = map->RangeIndex(ShardKey(keys[i++ & kMask]).Hash());
    benchmark::DoNotOptimize(map->OwnerNodeIndex(r));
  }
  allocs.Report(state);
}
BENCHMARK(BM_LocateBigint)->Arg(256)->Arg(65536);

void BM_LocateText(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kText);
  const auto keys = RandomTexts(3);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    const std::size_t r = map->RangeIndex(ShardKey(keys[i++ & kMask]).Hash());
    benchmark::DoNotOptimize(map->OwnerNodeIndex(r));
  }
  allocs.Report(state);
}
BENCHMARK(BM_LocateText)->Arg(256)->Arg(65536);

void BM_LocateUuid(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kUuid);
  const auto keys = RandomUuids(4);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    const std::size_t r = map->RangeIndex(ShardKey(keys[i++ & kMask]).Hash());
    benchmark::DoNotOptimize(map->OwnerNodeIndex(r));
  }
  allocs.Report(state);
}
BENCHMARK(BM_LocateUuid)->Arg(256)->Arg(65536);

// The console output plus, at the end, each lookup's time as a ratio of its baseline measured
// in the same run, and a loud line if any benchmark allocated.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (a custom reporter does not see --benchmark_color).
  RatioReporter() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      ns_[run.benchmark_name()] = run.GetAdjustedCPUTime();  // in the run's unit (ns)
      auto it = run.counters.find("allocs/op");
      if (it != run.counters.end() && it->second.value > 0) allocating_.push_back(run.benchmark_name());
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nratios (same run, CPU time):\n");
    const std::pair<const char*, const char*> pairs[] = {
        {"BM_RangeIndex", "BM_UpperBoundBaseline"},
        {"BM_RangeIndexIrregular", "BM_UpperBoundBaseline"},
        {"BM_RangeIndexLatency", "BM_UpperBoundBaselineLatency"},
        {"BM_LocateBigint", "BM_HashBigint"},
        {"BM_LocateText", "BM_HashText"},
    };
    for (const auto& [what, base] : pairs) {
      for (const char* arg : {"/256", "/65536"}) {
        const std::string w = std::string(what) + arg;
        std::string b = std::string(base);
        if (!ns_.contains(b)) b += arg;
        if (ns_.contains(w) && ns_.contains(b) && ns_[b] > 0) {
          std::printf("  %-28s / %-34s = %.2f  (%.1f ns vs %.1f ns)\n", w.c_str(), b.c_str(),
                      ns_[w] / ns_[b], ns_[w], ns_[b]);
        }
      }
    }
    if (allocating_.empty()) {
      std::printf("no allocation in any timed loop\n");
    } else {
      for (const std::string& name : allocating_) std::printf("ALLOCATES: %s\n", name.c_str());
    }
  }

 private:
  std::map<std::string, double> ns_;
  std::vector<std::string> allocating_;
};

}  // namespace
}  // namespace shardline

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  shardline::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
