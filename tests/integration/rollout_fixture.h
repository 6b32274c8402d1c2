// The rollout tests' shared fixture: a 2-node map (n1, n2; table users(user_id, v)) with
// kInitialRows rows, a catalog, and a plan adding n3 (RolloutTest), a Writer that upserts
// through a Router on its own thread and records every acknowledged write, and the checks every
// rollout test makes (every acknowledged write on its owner, marks only where not served,
// replication objects left). Each test has its own databases (ScratchDatabases); replication
// objects and slots of the test's databases are dropped in TearDown.
#pragma once

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catalog.h"
#include "cluster.h"
#include "pg_conn.h"
#include "rollout_waves.h"
#include "shardline/errors.h"
#include "shardline/map_toml.h"
#include "shardline/router.h"
#include "shardline/shard_map.h"
#include "status_matchers.h"
#include "table_info.h"

namespace shardline::testing {

using Json = nlohmann::json;

constexpr int kInitialRows = 3000;
constexpr int kRanges = 8;

// The options of a test's writing Router: following the catalog, or `map_file` when given.
inline RouterOptions WriterRouterOptions(const std::string& catalog_dsn,
                                         const std::string& map_file = "") {
  RouterOptions o;
  if (map_file.empty()) {
    o.catalog_dsn = catalog_dsn;
  } else {
    o.map_file = map_file;
  }
  o.map_poll_interval = std::chrono::milliseconds(100);
  // A fenced write waits for the new map at most this long: generous, so that a slow
  // machine does not turn a write window into errors.
  o.pool.checkout_timeout = std::chrono::seconds(10);
  o.log_sink = [](LogLevel, std::string_view) {};
  return o;
}

// Writes through a Router on its own thread: upserts of random keys (existing and new), and
// records the last acknowledged value of every key. The router follows the catalog, or
// `map_file` when given (a service whose map names its own role; it retries fenced writes
// until the file is updated, at most 10 s). Thread-safe accessors.
class Writer {
 public:
  explicit Writer(std::string catalog_dsn, std::uint64_t seed, std::string map_file = "")
      : catalog_dsn_(std::move(catalog_dsn)), seed_(seed), map_file_(std::move(map_file)) {}
  ~Writer() { Stop(); }

  void Start() {
    auto r = Router::Create(WriterRouterOptions(catalog_dsn_, map_file_));
    ASSERT_TRUE(r.ok()) << r.status();
    router_ = std::move(*r);
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    router_.reset();
  }

  // Blocks until `n` more writes were acknowledged than when called (bounded: 60 s).
  bool WaitForMoreWrites(std::int64_t n) {
    const std::int64_t goal = acked_count_.load() + n;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (acked_count_.load() < goal) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  std::map<std::int64_t, std::int64_t> Acked() {
    std::lock_guard<std::mutex> l(mu_);
    return acked_;
  }
  std::vector<std::string> Errors() {
    std::lock_guard<std::mutex> l(mu_);
    return errors_;
  }
  std::int64_t acked_count() const { return acked_count_.load(); }
  // Fenced writes retried (only when following a map file).
  std::int64_t fenced_retries() const { return fenced_retries_.load(); }

 private:
  void Run() {
    std::mt19937_64 rng(seed_);
    std::int64_t value = 1000000;
    while (!stop_) {
      const std::int64_t key = static_cast<std::int64_t>(rng() % (kInitialRows * 2)) + 1;
      ++value;
      auto write = [&] {
        return router_->Execute(
            ShardKey(key),
            "INSERT INTO users (user_id, v) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET "
            "v = EXCLUDED.v",
            {key, value});
      };
      auto r = write();
      // A router on a map file fails a fenced write at once (no newer map comes by itself):
      // the service retries it (safe: a fenced write had no effect) once its file is updated.
      for (int retry = 0; !map_file_.empty() && !r.ok() && IsFenced(r.status()) && retry < 500;
           ++retry) {
        ++fenced_retries_;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        r = write();
      }
      std::lock_guard<std::mutex> l(mu_);
      if (r.ok()) {
        acked_[key] = value;
        ++acked_count_;
      } else {
        errors_.push_back(std::string(r.status().message()));
        if (errors_.size() > 1000) return;
      }
    }
  }

  const std::string catalog_dsn_;
  const std::uint64_t seed_;
  const std::string map_file_;
  std::unique_ptr<Router> router_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> acked_count_{0};
  std::atomic<std::int64_t> fenced_retries_{0};
  std::mutex mu_;
  std::map<std::int64_t, std::int64_t> acked_;
  std::vector<std::string> errors_;
};

// Drops the subscriptions of `db`'s databases (they hold slots on other nodes), then the slots
// of its databases, so that nothing leaks into the shared cluster.
inline void DropReplicationLeftovers(const ScratchDatabases& db) {
  for (int i = 0; i < 3; ++i) {
    auto conn = ConnectOrDie(db.node_dsn(i));
    auto subs = conn->Exec(
        "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())");
    if (!subs.ok()) continue;
    for (int r = 0; r < subs->rows(); ++r) {
      const std::string q = conn->QuoteIdent(subs->String(r, 0));
      (void)conn->Exec(fmt::format("ALTER SUBSCRIPTION {} DISABLE", q));
      (void)conn->Exec(fmt::format("ALTER SUBSCRIPTION {} SET (slot_name = NONE)", q));
      (void)conn->Exec(fmt::format("DROP SUBSCRIPTION {}", q));
    }
  }
  for (int i = 0; i < 3; ++i) {
    auto conn = ConnectOrDie(db.node_dsn(i));
    for (int attempt = 0; attempt < 200; ++attempt) {
      auto left = conn->Exec(
          "SELECT count(pg_drop_replication_slot(slot_name)) FILTER (WHERE NOT active), "
          "count(*) FILTER (WHERE active) FROM pg_replication_slots WHERE database = "
          "current_database()");
      if (!left.ok() || left->Int64Or0(0, 1) == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

class RolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<ScratchDatabases>(3);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("shardline-rollout-test-{}-{}", ::getpid(), info->name());
    std::filesystem::create_directories(dir_);
    plan_ = (dir_ / "plan.toml").string();
    for (int i = 0; i < 2; ++i) {
      Exec(i, "CREATE TABLE users (user_id bigint PRIMARY KEY, v bigint NOT NULL)");
    }
    Cli({"catalog", "init"}, 0);
    ShardMapConfig c;
    c.version = 1;
    c.key_type = KeyType::kBigint;
    c.nodes.resize(2);
    c.nodes[0].name = "n1";
    c.nodes[0].dsn = db_->node_dsn(0);
    c.nodes[1].name = "n2";
    c.nodes[1].dsn = db_->node_dsn(1);
    auto ranges = EqualRanges(kRanges, {"n1", "n2"});
    ASSERT_TRUE(ranges.ok());
    c.ranges = *ranges;
    c.tables.resize(1);
    c.tables[0].name = "users";
    c.tables[0].key = "user_id";
    auto catalog = migrate::Catalog::Create(db_->control_dsn());
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    ASSERT_TRUE((*catalog)->Publish(c, "test", {}).ok());
    auto map = ShardMap::Create(c);
    ASSERT_TRUE(map.ok());
    for (int i = 0; i < 2; ++i) {
      const auto owned = (*map)->OwnedRanges(i);
      Exec(i,
           fmt::format("INSERT INTO users SELECT g, g FROM generate_series(1, {}) g WHERE {}",
                       kInitialRows, migrate::HashRangesPredicate(KeyType::kBigint, "g", owned)));
    }
    Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--by",
         "ranges", "-o", plan_},
        0);
  }

  void TearDown() override {
    DropReplicationLeftovers(*db_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void Exec(int node, const std::string& sql) {
    auto r = ConnectOrDie(db_->node_dsn(node))->Exec(sql);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  std::int64_t Count(int node, const std::string& sql) {
    auto r = ConnectOrDie(node < 0 ? db_->control_dsn() : db_->node_dsn(node))->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64Or0(0, 0) : -1;
  }

  // Runs `shardline ARGS` with the catalog in the environment; checks the exit code unless
  // `expect_exit` is -1.
  CommandResult Cli(std::vector<std::string> args, int expect_exit,
                    std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), BinPath("shardline"));
    env["SHARDLINE_CATALOG"] = db_->control_dsn();
    CommandResult r = RunCommand(args, env);
    if (expect_exit >= 0) {
      EXPECT_EQ(r.exit_code, expect_exit)
          << fmt::format("{}\nstdout:\n{}\nstderr:\n{}", fmt::join(args, " "), r.out, r.err);
    }
    return r;
  }

  Json Status() {
    CommandResult r = Cli({"rollout", "status", "--json"}, 0);
    return Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // Drives the rollout to the end of `stop_after` (a wave step, or "cleaned") by running the
  // command the status says comes next.
  void RunUntil(std::int64_t id, const std::string& stop_after, int stop_wave = 1) {
    for (int i = 0; i < 30; ++i) {
      Json s = Status();
      ASSERT_TRUE(s.is_array() && !s.empty());
      const Json& m = s[0];
      if (m["state"] == "cleaned") return;
      ASSERT_EQ(m["state"], "running") << m.dump(2);
      const Json& w = m["waves"][static_cast<std::size_t>(stop_wave - 1)];
      if (w["step"] == stop_after) return;
      bool all_switched = true;
      for (const Json& wave : m["waves"])
        all_switched = all_switched && wave["step"] == "writes_switched";
      if (all_switched) {
        Cli({"rollout", "cleanup", "--migration", std::to_string(id)}, 0);
      } else {
        CommandResult r = Cli({"rollout", "advance", "--migration", std::to_string(id)}, 0);
        std::printf("%s", r.out.c_str());
      }
    }
    FAIL() << "the rollout did not reach " << stop_after;
  }

  // Rows per node: key -> v.
  std::map<std::int64_t, std::int64_t> Rows(int node) {
    std::map<std::int64_t, std::int64_t> out;
    auto r = ConnectOrDie(db_->node_dsn(node))->Exec("SELECT user_id, v FROM users");
    if (!r.ok()) return out;
    for (int i = 0; i < r->rows(); ++i) out[r->Int64Or0(i, 0)] = r->Int64Or0(i, 1);
    return out;
  }

  std::shared_ptr<const ShardMap> CurrentMap() {
    auto catalog = migrate::Catalog::Create(db_->control_dsn());
    EXPECT_TRUE(catalog.ok());
    auto m = (*catalog)->LoadCurrent();
    EXPECT_TRUE(m.ok()) << m.status();
    return m->map;
  }

  // Every acknowledged write is on the node that owns its key in the current map, with its
  // last acknowledged value; with `exclusive`, no node holds a row it does not own.
  void ExpectWritesOnOwners(const std::map<std::int64_t, std::int64_t>& acked, bool exclusive) {
    auto map = CurrentMap();
    std::vector<std::map<std::int64_t, std::int64_t>> rows;
    for (int i = 0; i < 3; ++i) rows.push_back(Rows(i));
    int missing = 0;
    for (const auto& [key, v] : acked) {
      const auto& range = map->RangeFor(ShardKey(key).Hash());
      const int owner = map->NodeIndex(range.node);
      ASSERT_GE(owner, 0);
      auto it = rows[static_cast<std::size_t>(owner)].find(key);
      if (it == rows[static_cast<std::size_t>(owner)].end() || it->second != v) {
        if (++missing <= 5) {
          ADD_FAILURE() << fmt::format("key {} (acked v={}) on owner {}: {}", key, v, range.node,
                                       it == rows[static_cast<std::size_t>(owner)].end()
                                           ? "missing"
                                           : fmt::format("v={}", it->second));
        }
      }
    }
    EXPECT_EQ(missing, 0) << "acknowledged writes lost";
    std::int64_t total = 0;
    for (int i = 0; i < 3; ++i) {
      for (const auto& [key, v] : rows[static_cast<std::size_t>(i)]) {
        const int owner = map->NodeIndex(map->RangeFor(ShardKey(key).Hash()).node);
        if (owner == i) {
          ++total;
        } else if (exclusive) {
          ADD_FAILURE() << fmt::format("node {} still holds key {} owned by node {}", i, key,
                                       owner);
          return;
        }
      }
    }
    // Keys 1..kInitialRows existed before; acked keys may add more.
    std::int64_t expected = kInitialRows;
    for (const auto& [key, v] : acked) expected += key > kInitialRows ? 1 : 0;
    EXPECT_EQ(total, expected);
  }

  // Publications, subscriptions and slots of the rollout in our databases.
  std::int64_t ReplicationObjects() {
    std::int64_t n = 0;
    for (int i = 0; i < 3; ++i) {
      n += Count(i,
                 "SELECT (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'shardline%') + "
                 "(SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM "
                 "pg_database WHERE datname = current_database())) + (SELECT count(*) FROM "
                 "pg_replication_slots WHERE database = current_database())");
    }
    return n;
  }

  // What an ended migration may leave on the nodes: 'fence' marks where a node gave a range
  // away (a router on an older map is refused there), never a mark on a range the current map
  // routes to the node (its writes would be refused) and never a 'moving' mark.
  void ExpectMarksOnlyWhereNotServed() {
    auto map = CurrentMap();
    for (int i = 0; i < 3; ++i) {
      const std::string node = fmt::format("n{}", i + 1);
      if (Count(i, "SELECT (to_regclass('shardline.fenced_ranges') IS NOT NULL)::int") == 0) {
        continue;
      }
      auto r = ConnectOrDie(db_->node_dsn(i))
                   ->Exec("SELECT lo, hi, mode, coalesce(reason, '') FROM shardline.fenced_ranges");
      ASSERT_TRUE(r.ok()) << r.status();
      for (int row = 0; row < r->rows(); ++row) {
        const std::int64_t lo = r->Int64Or0(row, 0), hi = r->Int64Or0(row, 1);
        EXPECT_EQ(r->String(row, 2), "fence")
            << fmt::format("node {}: mark {}..{} ({})", node, lo, hi, r->String(row, 3));
        const std::vector<std::pair<std::int64_t, std::int64_t>> whole = {{lo, hi}};
        EXPECT_EQ(migrate::PartsNotServedBy(*map, whole, node), whole)
            << fmt::format("node {}: mark {}..{} ({}) on a range map version {} routes to it",
                           node, lo, hi, r->String(row, 3), map->version());
      }
    }
  }

  // A plan over the two nodes that drains n2 into n1: n2's four adjacent ranges move to n1, so
  // waves of it split adjacent ranges of one source (they coalesce across waves).
  std::string DrainPlan() {
    const std::string plan = (dir_ / "drain.toml").string();
    Cli({"rebalance", "plan", "--remove-node", "n2", "--by", "ranges", "-o", plan}, 0);
    return plan;
  }

  std::int64_t FenceRows() {
    std::int64_t n = 0;
    for (int i = 0; i < 3; ++i) {
      if (Count(i, "SELECT (to_regclass('shardline.fenced_ranges') IS NOT NULL)::int") == 0) {
        continue;  // a node the migration never touched
      }
      n += Count(i, "SELECT count(*) FROM shardline.fenced_ranges");
    }
    return n;
  }

  std::unique_ptr<ScratchDatabases> db_;
  std::filesystem::path dir_;
  std::string plan_;
};

}  // namespace shardline::testing
