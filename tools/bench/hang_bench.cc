// Healthy nodes' throughput while one node hangs, as a ratio to before the hang, same run (issue
// 10), for tools/bench/hang.sh. Open-loop load at a fixed rate of single-key SELECTs over the
// nodes (keys cycled so each node gets the same share); the last node is reached through the
// tests' loopback TCP proxy (tests/integration/tcp_proxy.h), which black-holes it (connects
// succeed, nothing answers) for the second window. Prints the hung node's error count and
// slowest call, how long after the heal it served again, and ends with
//   hang: ratio=R (healthy ok/s during the hang / before; target >= 0.95)
//
// Usage: hang_bench --node DSN --node DSN [--node DSN ...] --work-dir DIR [--rate 400]
//          [--seconds 5] [--deadline-ms 500] [--workers 128] [--quick]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "shardline/errors.h"
#include "shardline/map_toml.h"
#include "shardline/router.h"
#include "shardline/shard_map.h"
#include "tcp_proxy.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "hang_bench: %s\n", why.c_str());
  std::exit(2);
}

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Record {
  double issued_ms;
  double latency_ms;
  std::size_t node;
  bool ok;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> nodes;
  std::string work_dir;
  int rate = 400, seconds = 5, deadline_ms = 500, workers = 128;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) Die(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--node") nodes.push_back(value());
    else if (a == "--work-dir") work_dir = value();
    else if (a == "--rate") rate = std::stoi(value());
    else if (a == "--seconds") seconds = std::stoi(value());
    else if (a == "--deadline-ms") deadline_ms = std::stoi(value());
    else if (a == "--workers") workers = std::stoi(value());
    else if (a == "--quick") seconds = 2;
    else Die("unknown flag " + a);
  }
  if (nodes.size() < 2 || work_dir.empty()) Die("need --node x2+ and --work-dir");
  const std::size_t n = nodes.size();
  auto proxy = shardline::testing::TcpProxy::StartFor(nodes.back());
  if (!proxy.ok()) Die(std::string(proxy.status().message()));

  shardline::ShardMapConfig config;
  config.version = 1;
  config.key_type = shardline::KeyType::kBigint;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < n; ++i) {
    shardline::NodeConfig node;
    node.name = fmt::format("n{}", i + 1);
    node.dsn = i + 1 == n ? (*proxy)->RedirectDsn(nodes[i]) : nodes[i];
    node.pool_min = 1;
    node.pool_max = 8;
    names.push_back(node.name);
    config.nodes.push_back(node);
  }
  auto ranges = shardline::EqualRanges(static_cast<int>(4 * n), names);
  if (!ranges.ok()) Die(std::string(ranges.status().message()));
  config.ranges = *ranges;
  const std::string map_path = (std::filesystem::path(work_dir) / "hang_map.toml").string();
  {
    std::ofstream out(map_path);
    out << shardline::ShardMapToToml(config, shardline::PasswordMode::kKeep);
  }
  shardline::RouterOptions opts;
  opts.map_file = map_path;
  opts.call_timeout = std::chrono::milliseconds(deadline_ms);
  opts.pool.connect_timeout = std::chrono::milliseconds(deadline_ms);
  opts.pool.breaker_open_for = 200ms;
  opts.pool.backoff_max = 200ms;
  opts.log_sink = [](shardline::LogLevel, std::string_view) {};
  auto router = shardline::Router::Create(std::move(opts));
  if (!router.ok()) Die(std::string(router.status().message()));
  shardline::Router& r = **router;

  std::vector<std::vector<std::int64_t>> keys(n);
  for (std::int64_t k = 1; std::any_of(keys.begin(), keys.end(),
                                        [](const auto& v) { return v.size() < 1000; });
       ++k) {
    const std::string owner = r.Locate(k)->node;
    const std::size_t i = static_cast<std::size_t>(
        std::find(names.begin(), names.end(), owner) - names.begin());
    if (keys[i].size() < 1000) keys[i].push_back(k);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<std::size_t, double>> queue;  // (call number, issue time)
  std::vector<Record> records;
  bool stop = false;
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (;;) {
        std::pair<std::size_t, double> call;
        {
          std::unique_lock<std::mutex> l(mu);
          cv.wait(l, [&] { return stop || !queue.empty(); });
          if (queue.empty()) return;
          call = queue.front();
          queue.pop_front();
        }
        const std::size_t node = call.first % n;
        const std::int64_t key = keys[node][(call.first / n) % 1000];
        const auto t0 = Clock::now();
        const bool ok = r.Execute(key, "SELECT $1::bigint", {key}).ok();
        std::lock_guard<std::mutex> l(mu);
        records.push_back({call.second, MsSince(t0), node, ok});
      }
    });
  }
  std::atomic<bool> stop_scheduler{false};
  std::thread scheduler([&] {
    const auto period = std::chrono::duration_cast<Clock::duration>(1s) / rate;
    auto next = Clock::now();
    for (std::size_t i = 0; !stop_scheduler.load(); ++i) {
      std::this_thread::sleep_until(next);  // pacing the open loop
      next += period;
      {
        std::lock_guard<std::mutex> l(mu);
        queue.emplace_back(i, MsSince(start));
      }
      cv.notify_one();
    }
  });
  const double window = seconds * 1000.0;
  std::this_thread::sleep_until(start + std::chrono::milliseconds(1000) +
                                std::chrono::milliseconds(seconds * 1000));
  const double hang_at = MsSince(start);
  (*proxy)->SetStalled(true);
  std::this_thread::sleep_until(start + std::chrono::milliseconds(static_cast<int>(hang_at)) +
                                std::chrono::milliseconds(seconds * 1000));
  const double heal_at = MsSince(start);
  (*proxy)->SetStalled(false);
  std::this_thread::sleep_until(start + std::chrono::milliseconds(static_cast<int>(heal_at)) +
                                3s);
  stop_scheduler = true;
  scheduler.join();
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  for (auto& t : pool) t.join();

  std::int64_t before = 0, during = 0, hung_errors = 0, healthy_errors = 0;
  double slowest_hung = 0, served_again = -1;
  for (const Record& rec : records) {
    const bool hung = rec.node + 1 == n;
    if (!hung && rec.ok && rec.issued_ms >= hang_at - window && rec.issued_ms < hang_at) ++before;
    if (!hung && rec.ok && rec.issued_ms >= hang_at && rec.issued_ms < heal_at) ++during;
    if (!hung && !rec.ok) ++healthy_errors;
    if (hung && !rec.ok) {
      ++hung_errors;
      slowest_hung = std::max(slowest_hung, rec.latency_ms);
    }
    if (hung && rec.ok && rec.issued_ms >= heal_at) {
      const double t = rec.issued_ms + rec.latency_ms - heal_at;
      if (served_again < 0 || t < served_again) served_again = t;
    }
  }
  const double ratio = (during / (heal_at - hang_at)) / (before / window);
  std::printf("rate %d/s over %zu nodes, deadline %d ms, %d workers, windows of %d s\n", rate, n,
              deadline_ms, workers, seconds);
  std::printf("healthy nodes: %lld ok before, %lld ok during the hang, %lld errors\n",
              static_cast<long long>(before), static_cast<long long>(during),
              static_cast<long long>(healthy_errors));
  std::printf("hung node: %lld errors, slowest %.0f ms; served again %.0f ms after the heal\n",
              static_cast<long long>(hung_errors), slowest_hung, served_again);
  std::printf("hang: ratio=%.3f (healthy ok/s during the hang / before; target >= 0.95)\n",
              ratio);
  return 0;
}
