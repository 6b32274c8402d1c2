// Benchmarks of the rebalance planner at production scale: 65,536 ranges on 64 nodes with random
// (log-normal) range sizes, plus one node added (the `plan` target of issue 4: under a second),
// one node drained, and the same balanced by range count. Baselines measured in the same run:
// ShardMap::Create (validation + lookup tables) of the resulting map and a sort of the 65,536
// range sizes; the run ends with the ratios plan / baseline. Also times writing the plan file
// text and parsing it back (what backfill and rollout do on start). Each planner run reports the
// plan's quality as counters: moves, splits, bytes moved / minimum, largest deviation in percent.
// Usage: plan_bench [--benchmark_filter=...]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <benchmark/benchmark.h>

#include "plan_toml.h"
#include "planner.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {
namespace {

constexpr int kRanges = 65536;
constexpr int kNodes = 64;

struct Input {
  ShardMapConfig map;
  std::vector<RangeStats> stats;
};

// 64 nodes owning 1,024 contiguous equal ranges each; range sizes log-normal (sigma 1).
const Input& TheInput() {
  static const Input* input = [] {
    auto* in = new Input;
    in->map.version = 41;
    std::vector<std::string> names;
    for (int i = 0; i < kNodes; ++i) {
      NodeConfig n;
      n.name = "shard-" + std::to_string(i);
      n.dsn = "host=127.0.0.1 port=" + std::to_string(6000 + i) + " dbname=app password=x";
      names.push_back(n.name);
      in->map.nodes.push_back(n);
    }
    in->map.ranges = *EqualRanges(kRanges, names);
    TableConfig t;
    t.name = "public.users";
    t.key = "user_id";
    in->map.tables.push_back(t);
    // Random sizes, scaled so that every node holds the same total (64 equal nodes): the
    // minimum movement for one added node is then exactly 1/65 of the data.
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> size(0.0, 1.0);
    std::vector<double> raw;
    std::map<std::string, double> node_sum;
    for (const RangeConfig& r : in->map.ranges) {
      raw.push_back(size(rng));
      node_sum[r.node] += raw.back();
    }
    constexpr double kNodeBytes = 512e9;  // 512 GB per node, ~0.5 GB per range
    for (std::size_t i = 0; i < raw.size(); ++i) {
      const RangeConfig& r = in->map.ranges[i];
      const auto bytes = static_cast<std::int64_t>(kNodeBytes * raw[i] / node_sum[r.node]);
      in->stats.push_back(RangeStats{r.lo, r.hi, bytes / 150, bytes});
    }
    return in;
  }();
  return *input;
}

NodeConfig NewNode() {
  NodeConfig n;
  n.name = "shard-new";
  n.dsn = "host=127.0.0.1 port=7000 dbname=app password=x";
  return n;
}

void ReportQuality(benchmark::State& state, const RebalancePlan& plan) {
  state.counters["moves"] = static_cast<double>(plan.moves.size());
  state.counters["splits"] = static_cast<double>(plan.splits);
  state.counters["moved/min"] =
      plan.min_bytes_moved > 0
          ? static_cast<double>(plan.bytes_moved) / static_cast<double>(plan.min_bytes_moved)
          : 0.0;
  state.counters["max_dev_%"] = plan.max_deviation_percent;
}

void RunPlan(benchmark::State& state, const PlanRequest& req) {
  const Input& in = TheInput();
  RebalancePlan last;
  for (auto _ : state) {
    absl::StatusOr<RebalancePlan> plan = PlanRebalance(in.map, req);
    if (!plan.ok()) {
      state.SkipWithError(std::string(plan.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(plan->moves.data());
    last = *std::move(plan);
  }
  ReportQuality(state, last);
}

// The target: 65,536 ranges, 64 nodes, one added, by size.
void BM_PlanAddOneNode(benchmark::State& state) {
  PlanRequest req;
  req.stats = TheInput().stats;
  req.add_nodes = {NewNode()};
  RunPlan(state, req);
}
BENCHMARK(BM_PlanAddOneNode)->Unit(benchmark::kMillisecond);

void BM_PlanDrainOneNode(benchmark::State& state) {
  PlanRequest req;
  req.stats = TheInput().stats;
  req.remove_nodes = {"shard-17"};
  RunPlan(state, req);
}
BENCHMARK(BM_PlanDrainOneNode)->Unit(benchmark::kMillisecond);

void BM_PlanAddOneNodeByRanges(benchmark::State& state) {
  PlanRequest req;
  req.mode = BalanceMode::kRanges;
  req.add_nodes = {NewNode()};
  RunPlan(state, req);
}
BENCHMARK(BM_PlanAddOneNodeByRanges)->Unit(benchmark::kMillisecond);

// Baseline: validating and building the resulting map (config copied in, as Create takes it).
void BM_ShardMapCreateBaseline(benchmark::State& state) {
  PlanRequest req;
  req.stats = TheInput().stats;
  req.add_nodes = {NewNode()};
  const RebalancePlan plan = *PlanRebalance(TheInput().map, req);
  for (auto _ : state) {
    absl::StatusOr<std::shared_ptr<const ShardMap>> map = ShardMap::Create(plan.result);
    if (!map.ok()) {
      state.SkipWithError("invalid result map");
      return;
    }
    benchmark::DoNotOptimize(map->get());
  }
}
BENCHMARK(BM_ShardMapCreateBaseline)->Unit(benchmark::kMillisecond);

// Baseline: sorting the 65,536 range sizes (a lower bound for any size-ordered greedy).
void BM_SortSizesBaseline(benchmark::State& state) {
  std::vector<std::int64_t> sizes;
  for (const RangeStats& s : TheInput().stats) sizes.push_back(s.bytes);
  for (auto _ : state) {
    std::vector<std::int64_t> v = sizes;
    std::sort(v.begin(), v.end());
    benchmark::DoNotOptimize(v.data());
  }
}
BENCHMARK(BM_SortSizesBaseline)->Unit(benchmark::kMillisecond);

// The plan file: printing it, and parsing + validating it back.
void BM_PlanToToml(benchmark::State& state) {
  PlanRequest req;
  req.stats = TheInput().stats;
  req.add_nodes = {NewNode()};
  const RebalancePlan plan = *PlanRebalance(TheInput().map, req);
  std::size_t size = 0;
  for (auto _ : state) {
    const std::string text = PlanToToml(plan);
    size = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["MB"] = static_cast<double>(size) / 1e6;
}
BENCHMARK(BM_PlanToToml)->Unit(benchmark::kMillisecond);

void BM_ParsePlanToml(benchmark::State& state) {
  PlanRequest req;
  req.stats = TheInput().stats;
  req.add_nodes = {NewNode()};
  const std::string text = PlanToToml(*PlanRebalance(TheInput().map, req));
  for (auto _ : state) {
    absl::StatusOr<ParsedPlan> parsed = ParsePlanToml(text, "plan.toml");
    if (!parsed.ok()) {
      state.SkipWithError(std::string(parsed.status().message()).c_str());
      return;
    }
    benchmark::DoNotOptimize(parsed->plan.moves.data());
  }
}
BENCHMARK(BM_ParsePlanToml)->Unit(benchmark::kMillisecond);

// The console output plus, at the end, CPU ms per plan and its ratio to each baseline.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      // CPU time: the machine is shared, and the planner is single-threaded.
      ms_[run.benchmark_name()] = run.GetAdjustedCPUTime();  // in the run's unit (ms)
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nplanner, %d ranges on %d nodes (CPU time, same run):\n", kRanges, kNodes);
    for (const char* plan : {"BM_PlanAddOneNode", "BM_PlanDrainOneNode",
                             "BM_PlanAddOneNodeByRanges"}) {
      if (!ms_.contains(plan)) continue;
      std::printf("  %-26s %8.2f ms/plan (target < 1000 ms)\n", plan, ms_[plan]);
      for (const char* base : {"BM_ShardMapCreateBaseline", "BM_SortSizesBaseline"}) {
        if (ms_.contains(base) && ms_[base] > 0) {
          std::printf("    / %-26s = %.2f  (%.2f ms)\n", base, ms_[plan] / ms_[base], ms_[base]);
        }
      }
    }
  }

 private:
  std::map<std::string, double> ms_;
};

}  // namespace
}  // namespace shardline::migrate

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  shardline::migrate::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
