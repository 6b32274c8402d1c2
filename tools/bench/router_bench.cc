// End-to-end throughput of routed point reads, for tools/bench/run (router.sh, proxy.sh): a
// primary-key SELECT on a table of N rows sharded by user_id over the given nodes, through
// shardline::Router::Execute against a baseline measured in the same run, in interleaved
// rounds: each client thread alternates blocks of 20 queries between the two sides, and the
// ratio is the median over all pairs of adjacent blocks of their time ratio (robust to the
// stalls a shared machine inflicts; see TimedInterleaved).
// Modes:
//   router  baseline = direct libpq on the router's own pooled connections: PQexecPrepared
//           under the statement name the router prepared there, the node picked from a table
//           computed before the timed loop (so the router's hash + lookup + pool checkout +
//           result wrapping is exactly what the ratio measures). ratio = router / libpq.
//   proxy   the same reads through pgbouncer (transaction pooling, so no named prepared
//           statements: PQexecParams) against the library. ratio = pgbouncer / library.
//           Then, side by side, the router itself through the same pgbouncer with the map's
//           pooler = "transaction" (unnamed statements, map version set per transaction)
//           against the bare PQexecParams through pgbouncer: reported in the last line as
//           "router behind pgbouncer ... = R2 of libpq behind pgbouncer".
// The router's pools hold one connection per node per client thread.
// The table (bench_users) is created and filled by the first run (a fan-out INSERT ... SELECT
// from generate_series with $owned(g), so every node inserts only the keys it owns) and reused
// by later runs. The last line printed is `NAME: ratio=R (...)`; exit 1 on any error.
//
// Usage: router_bench --mode router|proxy --node DSN [--node DSN ...] [--rows 100000]
//          [--threads 1] [--rounds 5] [--round-ms 2000] [--quick]
//          [--proxy "host=127.0.0.1 port=P user=app dbname={node}"] [--work-dir DIR]
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "absl/strings/string_view.h"
#include "conn_pool.h"
#include "pg_conn.h"
#include "router_impl.h"
#include "statement.h"
#include "shardline/map_toml.h"
#include "shardline/merge.h"
#include "shardline/router.h"
#include "shardline/shard_map.h"

namespace shardline::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Queries per side in a row before switching sides (see TimedInterleaved).
constexpr int kBlock = 20;

constexpr const char* kSelect = "SELECT user_id, name, points FROM bench_users WHERE user_id = $1";
constexpr const char* kCreate =
    "SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS bench_users (user_id bigint PRIMARY KEY, name text NOT NULL, "
    "email text NOT NULL, points bigint NOT NULL)";

struct Options {
  std::string mode;
  std::vector<std::string> nodes;
  std::int64_t rows = 100000;
  int threads = 1;
  int rounds = 5;
  int round_ms = 2000;
  std::string proxy;  // DSN template, {node} = node name
  std::string work_dir = "/tmp";
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "router_bench: error: %s\n", what.c_str());
  std::exit(1);
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

Options ParseArgs(int argc, char** argv) {
  Options o;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    auto number = [&]() -> long {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n <= 0) Die(a + ": not a positive number: " + v);
      return n;
    };
    if (a == "--mode") {
      o.mode = value();
    } else if (a == "--node") {
      o.nodes.push_back(value());
    } else if (a == "--rows") {
      o.rows = number();
    } else if (a == "--threads") {
      o.threads = static_cast<int>(number());
    } else if (a == "--rounds") {
      o.rounds = static_cast<int>(number());
    } else if (a == "--round-ms") {
      o.round_ms = static_cast<int>(number());
    } else if (a == "--proxy") {
      o.proxy = value();
    } else if (a == "--work-dir") {
      o.work_dir = value();
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: router_bench --mode router|proxy --node DSN [--node DSN ...] "
                  "[--rows N] [--threads T] [--rounds R] [--round-ms MS] [--quick] "
                  "[--proxy DSN-TEMPLATE] [--work-dir DIR]\n");
      std::exit(0);
    } else {
      Die("unknown argument " + a);
    }
  }
  if (quick) {
    o.rounds = std::min(o.rounds, 3);
    o.round_ms = std::min(o.round_ms, 500);
  }
  if (o.mode != "router" && o.mode != "proxy") Die("--mode must be router or proxy");
  if (o.nodes.empty()) Die("at least one --node DSN");
  if (o.mode == "proxy" && o.proxy.find("{node}") == std::string::npos) {
    Die("--proxy needs a DSN template containing {node}");
  }
  return o;
}

std::string NodeName(std::size_t i) { return fmt::format("n{}", i + 1); }

// A map of the nodes, 12 equal ranges each (like schemas/maps/app_3_nodes.toml), written to a
// file for RouterOptions::map_file. Pool limits = client threads. With `through_proxy` every
// node's dsn is the --proxy template's and its pooler "transaction" (admin_dsn: the node).
std::string WriteMap(const Options& o, bool through_proxy = false) {
  ShardMapConfig c;
  c.version = 1;
  c.key_type = KeyType::kBigint;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < o.nodes.size(); ++i) {
    NodeConfig n;
    n.name = NodeName(i);
    n.dsn = o.nodes[i];
    if (through_proxy) {
      n.admin_dsn = o.nodes[i];
      n.dsn = o.proxy;
      n.dsn.replace(n.dsn.find("{node}"), 6, n.name);
      n.pooler = Pooler::kTransaction;
    }
    n.pool_min = o.threads;
    n.pool_max = o.threads;
    c.nodes.push_back(n);
    names.push_back(n.name);
  }
  absl::StatusOr<std::vector<RangeConfig>> ranges =
      EqualRanges(static_cast<std::int64_t>(12 * o.nodes.size()), names);
  if (!ranges.ok()) Die(Msg(ranges.status()));
  c.ranges = std::move(*ranges);
  TableConfig t;
  t.name = "bench_users";
  t.key = "user_id";
  c.tables.push_back(t);
  const std::string path = fmt::format("{}/router_bench_map_{}{}.toml", o.work_dir, ::getpid(),
                                       through_proxy ? "_proxy" : "");
  std::ofstream out(path);
  out << ShardMapToToml(c, PasswordMode::kKeep);
  if (!out.good()) Die("cannot write " + path);
  return path;
}

// Creates bench_users on every node and fills it (unless it already holds exactly rows 1..N,
// each on its owner).
void Setup(const Options& o, Router& router) {
  for (std::size_t i = 0; i < o.nodes.size(); ++i) {
    absl::StatusOr<std::unique_ptr<pg::Conn>> conn = pg::Conn::Connect(o.nodes[i], NodeName(i));
    if (!conn.ok()) Die(Msg(conn.status()));
    if (absl::Status s = (*conn)->ExecScript(kCreate); !s.ok()) Die(Msg(s));
  }
  auto owned = router.FanOut(
      "SELECT count(*) FILTER (WHERE $owned(user_id)), count(*), coalesce(max(user_id), 0) "
      "FROM bench_users");
  if (!owned.ok()) Die(Msg(owned.status()));
  absl::StatusOr<std::int64_t> owned_rows = SumInt64(*owned, 0);
  absl::StatusOr<std::int64_t> all_rows = SumInt64(*owned, 1);
  if (!owned_rows.ok() || !all_rows.ok()) Die("cannot count bench_users");
  std::int64_t max_id = 0;
  for (const NodeResult& r : *owned) max_id = std::max(max_id, *r.result->GetInt64(0, 2));
  if (*owned_rows == o.rows && *all_rows == o.rows && max_id == o.rows) return;

  const auto start = Clock::now();
  for (std::size_t i = 0; i < o.nodes.size(); ++i) {
    absl::StatusOr<std::unique_ptr<pg::Conn>> conn = pg::Conn::Connect(o.nodes[i], NodeName(i));
    if (!conn.ok()) Die(Msg(conn.status()));
    if (absl::Status s = (*conn)->ExecScript("TRUNCATE bench_users"); !s.ok()) Die(Msg(s));
  }
  auto filled = router.FanOut(
      "INSERT INTO bench_users (user_id, name, email, points) "
      "SELECT g, 'user ' || g, 'user' || g || '@example.com', g % 1000 "
      "FROM generate_series(1, $1::bigint) AS g WHERE $owned(g)",
      {o.rows});
  if (!filled.ok()) Die(Msg(filled.status()));
  for (std::size_t i = 0; i < o.nodes.size(); ++i) {
    absl::StatusOr<std::unique_ptr<pg::Conn>> conn = pg::Conn::Connect(o.nodes[i], NodeName(i));
    if (!conn.ok()) Die(Msg(conn.status()));
    if (absl::Status s = (*conn)->ExecScript("VACUUM ANALYZE bench_users"); !s.ok()) Die(Msg(s));
  }
  std::fprintf(stderr, "router_bench: loaded %lld rows over %zu nodes in %.1f s\n",
               static_cast<long long>(o.rows), o.nodes.size(),
               std::chrono::duration<double>(Clock::now() - start).count());
}

pg::ConnPtr RawConnect(const std::string& dsn) {
  pg::ConnPtr c(PQconnectdb(dsn.c_str()));
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    Die(fmt::format("connect failed: {}", c ? PQerrorMessage(c.get()) : "out of memory"));
  }
  return c;
}

// Runs `threads` client threads for `ms`; each alternates blocks of `block` calls of side a
// and side b, starting with a different side each pair of blocks. A side is a function
// `(thread, rng, n, &error) -> seconds` that runs n queries and returns the time they took
// (measured by itself, so that per-block preparation stays outside; negative on error).
// Appends, per pair of adjacent blocks, time(a) / time(b): b's throughput relative to a's,
// measured within a millisecond or two of each other. Why pairs: on a shared 2-core machine
// with other work running, whole milliseconds go to other processes at random; a ratio of
// totals swings by 2x from round to round, while the median of adjacent-pair ratios stays put,
// since a stall hits one pair, not a side. Also appends each block's seconds to a_blocks /
// b_blocks (for the absolute figures).
template <class FnA, class FnB>
void TimedInterleaved(int threads, int ms, int block, const FnA& a, const FnB& b,
                      std::vector<double>* pair_ratios, std::vector<double>* a_blocks,
                      std::vector<double>* b_blocks) {
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(0x5eed + static_cast<std::uint64_t>(t));
      std::vector<double> blocks[2];
      std::vector<double> ratios;
      std::string err;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::int64_t pair = 0; err.empty() && !stop.load(std::memory_order_relaxed); ++pair) {
        double secs[2] = {0, 0};
        for (int k = 0; k < 2 && err.empty(); ++k) {
          const int side = static_cast<int>((pair + k) % 2);  // a b, b a, a b, ...
          secs[side] = side == 0 ? a(t, rng, block, &err) : b(t, rng, block, &err);
        }
        if (!err.empty()) break;
        blocks[0].push_back(secs[0]);
        blocks[1].push_back(secs[1]);
        ratios.push_back(secs[0] / secs[1]);
      }
      std::lock_guard<std::mutex> lock(mu);
      if (!err.empty() && first_error.empty()) first_error = err;
      pair_ratios->insert(pair_ratios->end(), ratios.begin(), ratios.end());
      a_blocks->insert(a_blocks->end(), blocks[0].begin(), blocks[0].end());
      b_blocks->insert(b_blocks->end(), blocks[1].begin(), blocks[1].end());
    });
  }
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));  // the measured interval
  stop.store(true);
  for (auto& t : ts) t.join();
  if (!first_error.empty()) Die(first_error);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int Run(const Options& o) {
  const std::string map_path = WriteMap(o);
  RouterOptions ro;
  ro.map_file = map_path;
  ro.pool.checkout_timeout = std::chrono::milliseconds(5000);
  ro.application_name = "router_bench";
  absl::StatusOr<std::unique_ptr<Router>> created = Router::Create(std::move(ro));
  if (!created.ok()) Die(Msg(created.status()));
  Router& router = **created;
  Setup(o, router);

  // The owner node of every key, computed before any timed loop (the baseline's routing).
  std::vector<std::uint8_t> node_of(static_cast<std::size_t>(o.rows) + 1);
  const std::shared_ptr<const ShardMap> map = router.map();
  for (std::int64_t k = 1; k <= o.rows; ++k) {
    node_of[static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(
        map->OwnerNodeIndex(map->RangeIndex(ShardKey(k).Hash())));
  }

  const bool proxy = o.mode == "proxy";
  auto key_dist = [&](std::mt19937_64& rng) {
    return std::uniform_int_distribution<std::int64_t>(1, o.rows)(rng);
  };
  auto seconds_since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };

  // The router side: Router::Execute per query.
  auto routed = [&](int, std::mt19937_64& rng, int n, std::string* err) {
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      const std::int64_t key = key_dist(rng);
      absl::StatusOr<Result> r = router.Execute(key, kSelect, {key});
      if (!r.ok() || r->rows() != 1) {
        *err = fmt::format("router query for key {} failed: {}", key,
                           r.ok() ? std::string("not one row") : Msg(r.status()));
        return -1.0;
      }
    }
    return seconds_since(start);
  };

  // One libpq query (text parameter, text result, like the router), by statement name
  // (PQexecPrepared) or, through pgbouncer, by text (PQexecParams: transaction pooling keeps
  // no named prepared statements).
  auto libpq_query = [&](PGconn* conn, const char* stmt, std::int64_t key, std::string* err) {
    char buf[24];
    const auto end = std::to_chars(buf, buf + sizeof(buf) - 1, key).ptr;
    *end = '\0';
    const char* values[1] = {buf};
    const int lengths[1] = {static_cast<int>(end - buf)};
    const int formats[1] = {0};
    pg::ResultPtr res(stmt == nullptr
                          ? PQexecParams(conn, kSelect, 1, nullptr, values, lengths, formats, 0)
                          : PQexecPrepared(conn, stmt, 1, values, lengths, formats, 0));
    if (!res || PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) != 1) {
      *err = fmt::format("{} query for key {} failed: {}", stmt ? "libpq" : "pgbouncer", key,
                         PQerrorMessage(conn));
      return false;
    }
    return true;
  };

  // The libpq baseline on the SAME connections and statements as the router: per block, the
  // thread checks one connection out of each node's pool of the router (outside the timed
  // part), makes sure the router has prepared the statement there (internal::ExecPrepared, the
  // router's own call), then runs the block with bare PQexecPrepared under the router's
  // statement name, the node picked from node_of. Same backends on both sides, so the
  // scheduler cannot favour one side's server processes.
  std::shared_ptr<const internal::RoutingTable> table = router.ImplForTest().table();
  auto direct = [&](int, std::mt19937_64& rng, int n, std::string* err) {
    std::vector<internal::Lease> leases;
    std::vector<PGconn*> conns;
    std::vector<const char*> names;
    const Param warm[1] = {Param(1)};
    for (const internal::NodeRoute& route : table->nodes) {
      absl::StatusOr<internal::Lease> lease =
          route.pool->Acquire(internal::SteadyClock::now() + std::chrono::seconds(5));
      if (!lease.ok()) {
        *err = Msg(lease.status());
        return -1.0;
      }
      auto& prepared = lease->pooled().prepared;
      auto it = prepared.find(absl::string_view(kSelect));
      if (it == prepared.end()) {
        if (absl::StatusOr<Result> r = internal::ExecPrepared(*lease, kSelect, warm); !r.ok()) {
          *err = Msg(r.status());
          return -1.0;
        }
        it = prepared.find(absl::string_view(kSelect));
      }
      conns.push_back(lease->conn().raw());
      names.push_back(it->second.c_str());
      leases.push_back(std::move(*lease));
    }
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      const std::int64_t key = key_dist(rng);
      const std::size_t node = node_of[static_cast<std::size_t>(key)];
      if (!libpq_query(conns[node], names[node], key, err)) return -1.0;
    }
    return seconds_since(start);
  };

  // The pgbouncer side: per thread one client connection per node to pgbouncer.
  std::vector<std::vector<pg::ConnPtr>> bouncer(static_cast<std::size_t>(o.threads));
  if (proxy) {
    for (auto& conns : bouncer) {
      for (std::size_t i = 0; i < o.nodes.size(); ++i) {
        std::string dsn = o.proxy;
        dsn.replace(dsn.find("{node}"), 6, NodeName(i));
        conns.push_back(RawConnect(dsn));
      }
    }
  }
  auto bounced = [&](int t, std::mt19937_64& rng, int n, std::string* err) {
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      const std::int64_t key = key_dist(rng);
      PGconn* conn = bouncer[static_cast<std::size_t>(t)][node_of[static_cast<std::size_t>(key)]]
                         .get();
      if (!libpq_query(conn, nullptr, key, err)) return -1.0;
    }
    return seconds_since(start);
  };
  std::function<double(int, std::mt19937_64&, int, std::string*)> baseline;
  if (proxy) {
    baseline = bounced;
  } else {
    baseline = direct;
  }

  // Warm-up: connections, prepared statements, caches.
  {
    std::vector<double> wr, wa, wb;
    TimedInterleaved(o.threads, std::min(o.round_ms, 500), kBlock, baseline, routed, &wr, &wa,
                     &wb);
  }

  // Throughput of a side from its median block time (all threads run at once).
  auto qps = [&](const std::vector<double>& blocks) {
    return blocks.empty() ? 0.0 : o.threads * kBlock / Median(blocks);
  };
  std::vector<double> all_pairs, all_base, all_router, round_ratios;
  const char* base_name = proxy ? "pgbouncer" : "libpq";
  for (int r = 0; r < o.rounds; ++r) {
    std::vector<double> pairs, base_blocks, router_blocks;
    TimedInterleaved(o.threads, o.round_ms, kBlock, baseline, routed, &pairs, &base_blocks,
                     &router_blocks);
    if (proxy) {
      for (double& p : pairs) p = 1 / p;  // pgbouncer relative to the library
    }
    round_ratios.push_back(Median(pairs));
    std::printf("round %d: %s %.0f q/s, router %.0f q/s (median block times, %zu pairs of "
                "blocks), median pair ratio %.3f\n",
                r + 1, base_name, qps(base_blocks), qps(router_blocks), pairs.size(),
                round_ratios.back());
    std::fflush(stdout);
    all_pairs.insert(all_pairs.end(), pairs.begin(), pairs.end());
    all_base.insert(all_base.end(), base_blocks.begin(), base_blocks.end());
    all_router.insert(all_router.end(), router_blocks.begin(), router_blocks.end());
  }
  const double mb = qps(all_base);
  const double ml = qps(all_router);
  const double ratio = Median(all_pairs);

  // Proxy mode, side by side: the router itself behind pgbouncer (pooler = "transaction")
  // against bare PQexecParams through the same pgbouncer.
  std::string pooled_note;
  if (proxy) {
    const std::string pooled_map = WriteMap(o, /*through_proxy=*/true);
    RouterOptions po;
    po.map_file = pooled_map;
    po.pool.checkout_timeout = std::chrono::milliseconds(5000);
    po.application_name = "router_bench_pooled";
    absl::StatusOr<std::unique_ptr<Router>> pooled = Router::Create(std::move(po));
    if (!pooled.ok()) Die(Msg(pooled.status()));
    auto pooled_routed = [&](int, std::mt19937_64& rng, int n, std::string* err) {
      const auto start = Clock::now();
      for (int i = 0; i < n; ++i) {
        const std::int64_t key = key_dist(rng);
        absl::StatusOr<Result> r = (*pooled)->Execute(key, kSelect, {key});
        if (!r.ok() || r->rows() != 1) {
          *err = fmt::format("router behind pgbouncer: query for key {} failed: {}", key,
                             r.ok() ? std::string("not one row") : Msg(r.status()));
          return -1.0;
        }
      }
      return seconds_since(start);
    };
    std::vector<double> wr, wa, wb;
    TimedInterleaved(o.threads, std::min(o.round_ms, 500), kBlock, bounced, pooled_routed, &wr,
                     &wa, &wb);
    std::vector<double> pairs, base_blocks, pooled_blocks;
    for (int r = 0; r < o.rounds; ++r) {
      TimedInterleaved(o.threads, o.round_ms, kBlock, bounced, pooled_routed, &pairs,
                       &base_blocks, &pooled_blocks);
    }
    std::remove(pooled_map.c_str());
    const double pooled_ratio = Median(pairs);
    std::printf("router behind pgbouncer (pooler = \"transaction\") %.0f q/s vs libpq "
                "PQexecParams behind pgbouncer %.0f q/s: median pair ratio %.3f\n",
                qps(pooled_blocks), qps(base_blocks), pooled_ratio);
    pooled_note = fmt::format("; router behind pgbouncer with pooler = \"transaction\" {:.0f} q/s "
                              "= {:.3f} of libpq behind pgbouncer",
                              qps(pooled_blocks), pooled_ratio);
  }
  std::remove(map_path.c_str());  // after the last call: the router polls it
  const auto [lo, hi] = std::minmax_element(round_ratios.begin(), round_ratios.end());
  std::printf("%s: ratio=%.3f (%s %.0f q/s vs %s %.0f q/s; median over %zu pairs of adjacent "
              "%d-query blocks in %d rounds of %.1f s; round medians %.3f..%.3f; %d client "
              "thread(s), %lld rows on %zu nodes%s)\n",
              o.mode.c_str(), ratio, proxy ? "pgbouncer" : "router", proxy ? mb : ml,
              proxy ? "library" : "libpq", proxy ? ml : mb, all_pairs.size(), kBlock, o.rounds,
              o.round_ms / 1000.0, *lo, *hi, o.threads, static_cast<long long>(o.rows),
              o.nodes.size(), pooled_note.c_str());
  return 0;
}

}  // namespace
}  // namespace shardline::bench

int main(int argc, char** argv) {
  return shardline::bench::Run(shardline::bench::ParseArgs(argc, argv));
}
