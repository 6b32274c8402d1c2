// Benchmarks of the router's hot path: hash a key, find its range, pick the node. The range
// lookup alone runs on precomputed random hashes (so it is meaningful whatever the hash does)
// next to a std::upper_bound baseline over the same bounds, measured in the same run; the
// end-to-end figures hash a bigint, text or uuid key first. Every benchmark counts global
// operator new calls in its timed loop ("allocs/op", which must be 0), and the run ends with
// the ratios lookup / baseline. Usage: lookup_bench [--benchmark_filter=...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>

#include "shardline/hash.h"
#include "shardline/key.h"
#include "shardline/shard_map.h"
#include "alloc_counter.h"  // tests/unit: counts operator new calls
#include "conn_pool.h"     // router/ (private): the checkout benchmark

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
  AllocationCounter() : start_(::shardline::testing::AllocationCount()) {}
  void Report(benchmark::State& state) {
    state.counters["allocs/op"] =
        benchmark::Counter(static_cast<double>(::shardline::testing::AllocationCount() - start_),
                           benchmark::Counter::kAvgIterations);
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

// The router's whole per-query routing cost before any I/O: hash + range lookup + a checkout
// and return on the owner node's pool (router/conn_pool.h, connections faked as in the unit
// tests: a null PGconn, so no server is needed). One uncontended pool per node, as for one
// client thread. Compared with BM_LocateBigint (hash + lookup alone) in the final line.
void BM_LocateAndCheckoutBigint(benchmark::State& state) {
  const auto map = EqualMap(state.range(0), KeyType::kBigint);
  std::vector<std::shared_ptr<internal::ConnPool>> pools;
  for (const NodeConfig& n : map->nodes()) {
    internal::PoolConfig cfg;
    cfg.node = n.name;
    cfg.min_size = 0;
    cfg.max_size = 4;
    pools.push_back(internal::ConnPool::Create(
        cfg, [name = n.name](std::chrono::milliseconds)
                 -> absl::StatusOr<std::unique_ptr<pg::Conn>> {
          return std::make_unique<pg::Conn>(pg::ConnPtr(), name);
        }));
  }
  for (auto& pool : pools) {  // connect each pool's first connection outside the timed loop
    if (!pool->Acquire(internal::SteadyClock::now() + std::chrono::seconds(1)).ok()) std::abort();
  }
  const auto keys = RandomInts(2);
  std::size_t i = 0;
  AllocationCounter allocs;
  for (auto _ : state) {
    const std::size_t r = map->RangeIndex(ShardKey(keys[i++ & kMask]).Hash());
    auto& pool = pools[static_cast<std::size_t>(map->OwnerNodeIndex(r))];
    absl::StatusOr<internal::Lease> lease =
        pool->Acquire(internal::SteadyClock::now() + std::chrono::seconds(1));
    if (!lease.ok()) {
      state.SkipWithError("checkout failed");
      break;
    }
    benchmark::DoNotOptimize(&lease->conn());
  }
  allocs.Report(state);
}
BENCHMARK(BM_LocateAndCheckoutBigint)->Arg(65536);

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
    // The line tools/bench/run ends with: the routing cost per query with the pool checkout,
    // as a ratio of hash + range lookup alone.
    const std::string with = "BM_LocateAndCheckoutBigint/65536";
    const std::string bare = "BM_LocateBigint/65536";
    if (ns_.contains(with) && ns_.contains(bare) && ns_[bare] > 0) {
      std::printf("lookup: ratio=%.2f (hash + range lookup + pool checkout/return %.1f ns/op vs "
                  "hash + range lookup %.1f ns/op; bigint keys, 65,536 ranges, 4 nodes; %s)\n",
                  ns_[with] / ns_[bare], ns_[with], ns_[bare],
                  allocating_.empty() ? "0 allocations" : "ALLOCATES");
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
