// Fixture for the router's integration tests: a fresh database per test on every devcluster
// node, a map file written atomically (temporary file + rename), routers built with a capturing
// log sink, and direct connections to check where rows landed.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "catalog.h"
#include "cluster.h"
#include "pg_conn.h"
#include "shardline/hash.h"
#include "shardline/map_toml.h"
#include "shardline/router.h"
#include "shardline/shard_map.h"
#include "tcp_proxy.h"

namespace shardline::testing {

// Collects a router's log lines. Thread-safe.
class LogCapture {
 public:
  LogSink Sink() {
    return [this](LogLevel, std::string_view line) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.emplace_back(line);
    };
  }
  bool Contains(std::string_view needle) const { return !Matching(needle).empty(); }
  // The first line containing `needle`, or "".
  std::string Matching(std::string_view needle) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& l : lines_) {
      if (l.find(needle) != std::string::npos) return l;
    }
    return "";
  }
  std::string All() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& l : lines_) out += l + "\n";
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

// Polls `pred` every 10 ms until it holds or `timeout` passes (a bounded wait for an
// asynchronous effect, not a sleep as synchronisation). True if it held.
inline bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A loopback port with nothing listening (bound, then released).
inline int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class RouterFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    scratch_ = std::make_unique<ScratchDatabases>();
    node_dsns_ = scratch_->node_dsns();
    for (std::size_t i = 0; i < node_dsns_.size(); ++i) {
      node_names_.push_back(fmt::format("n{}", i + 1));
    }
    ASSERT_GE(node_dsns_.size(), 3u) << "the router tests need a devcluster of 3+ nodes";
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("shardline-router-test-{}-{}", ::getpid(), info->name());
    std::filesystem::create_directories(dir_);
    map_path_ = (dir_ / "map.toml").string();
    app_name_ = fmt::format("rt-{}-{}", ::getpid(), info->name()).substr(0, 60);
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A bigint map: `ranges` equal ranges over the first `nodes` nodes (all when 0), assigned in
  // contiguous blocks after rotating the node order by `rotate`; table users(user_id).
  ShardMapConfig Config(std::int64_t version, int ranges, int pool_max = 4, int rotate = 0,
                        std::size_t nodes = 0) const {
    ShardMapConfig c;
    c.version = version;
    c.key_type = KeyType::kBigint;
    const std::size_t n = nodes == 0 ? node_dsns_.size() : nodes;
    std::vector<std::string> order;
    for (std::size_t i = 0; i < n; ++i) {
      NodeConfig node;
      node.name = node_names_[i];
      node.dsn = node_dsns_[i];
      node.pool_min = 1;
      node.pool_max = pool_max;
      c.nodes.push_back(node);
      order.push_back(node_names_[(i + static_cast<std::size_t>(rotate)) % n]);
    }
    auto r = EqualRanges(ranges, order);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) c.ranges = *r;
    TableConfig users;
    users.name = "users";
    users.key = "user_id";
    c.tables.push_back(users);
    return c;
  }

  // Writes the map atomically: a reader sees the old or the new file, never half of one.
  void WriteMap(const ShardMapConfig& config) {
    const std::string tmp = map_path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << ShardMapToToml(config, PasswordMode::kKeep);
    }
    std::filesystem::rename(tmp, map_path_);
  }

  // Initialises the scratch catalog, publishes Config(1, 8) as version 1 and starts a loopback
  // proxy in front of it that the test can stall or cut (*proxy); *opts are Options() following
  // the catalog through that proxy instead of the map file.
  void CatalogBehindProxy(std::unique_ptr<testing::TcpProxy>* proxy, RouterOptions* opts) {
    const std::string control = scratch_->control_dsn();
    auto started = testing::TcpProxy::StartFor(control);
    ASSERT_TRUE(started.ok()) << started.status();
    *proxy = std::move(*started);
    ASSERT_NO_FATAL_FAILURE(InitCatalog(nullptr, opts));
    opts->catalog_dsn = (*proxy)->RedirectDsn(control);
  }
  // Initialises the scratch catalog and publishes Config(1, 8) as version 1; *opts are
  // Options() following that catalog directly. The catalog handle goes to *catalog (if given).
  void InitCatalog(std::unique_ptr<migrate::Catalog>* catalog, RouterOptions* opts) {
    const std::string control = scratch_->control_dsn();
    auto created = migrate::Catalog::Create(control);
    ASSERT_TRUE(created.ok()) << created.status();
    ASSERT_TRUE((*created)->Init().ok());
    ASSERT_TRUE((*created)->Publish(Config(1, 8), "v1", {}).ok());
    *opts = Options();
    opts->map_file.clear();
    opts->catalog_dsn = control;
    if (catalog != nullptr) *catalog = std::move(*created);
  }

  RouterOptions Options() {
    RouterOptions o;
    o.map_file = map_path_;
    o.application_name = app_name_;
    o.log_sink = logs_.Sink();
    o.pool.checkout_timeout = std::chrono::seconds(5);
    return o;
  }

  // Null (with a test failure recorded) when the router cannot be created.
  std::unique_ptr<Router> MakeRouter() { return MakeRouter(Options()); }
  std::unique_ptr<Router> MakeRouter(RouterOptions options) {
    auto r = Router::Create(std::move(options));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return nullptr;
    return std::move(*r);
  }

  std::unique_ptr<pg::Conn> Direct(std::size_t node) {
    return ConnectOrDie(node_dsns_[node]);
  }
  void ExecOnNode(std::size_t node, const std::string& sql) {
    auto r = Direct(node)->Exec(sql);
    ASSERT_TRUE(r.ok()) << node_names_[node] << ": " << r.status();
  }
  void ExecOnAllNodes(const std::string& sql) {
    for (std::size_t i = 0; i < node_dsns_.size(); ++i) ExecOnNode(i, sql);
  }
  std::int64_t CountOn(std::size_t node, const std::string& sql) {
    auto r = Direct(node)->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64Or0(0, 0) : -1;
  }
  static std::int64_t CountOnDsn(const std::string& dsn, const std::string& sql) {
    auto r = ConnectOrDie(dsn)->Exec(sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->Int64Or0(0, 0) : -1;
  }
  void InstallNodeSql() {
    const auto path = std::filesystem::path(__FILE__).parent_path() / "../../schemas/node.sql";
    std::ifstream in(path);
    ASSERT_TRUE(in) << path;
    std::stringstream ss;
    ss << in.rdbuf();
    for (std::size_t i = 0; i < node_dsns_.size(); ++i) {
      absl::Status s = Direct(i)->ExecScript(ss.str());
      ASSERT_TRUE(s.ok()) << s;
    }
  }

  std::size_t NodeIndexOf(const std::string& name) const {
    for (std::size_t i = 0; i < node_names_.size(); ++i) {
      if (node_names_[i] == name) return i;
    }
    ADD_FAILURE() << "no node " << name;
    return 0;
  }
  static std::size_t RangeOf(const ShardMapConfig& c, std::int64_t key) {
    const std::int64_t h = HashInt8(key);
    for (std::size_t i = 0; i < c.ranges.size(); ++i) {
      if (c.ranges[i].lo <= h && h <= c.ranges[i].hi) return i;
    }
    ADD_FAILURE() << "no range for " << key;
    return 0;
  }
  // The first key >= start whose hash falls in [lo, hi].
  static std::int64_t FindKeyInRange(std::int64_t lo, std::int64_t hi, std::int64_t start) {
    for (std::int64_t k = start;; ++k) {
      const std::int64_t h = HashInt8(k);
      if (lo <= h && h <= hi) return k;
    }
  }
  // Inserts `key` into users with Router::Execute, which is fenced on node 0 (the owner under
  // map version 1) and must land on node 1 (the owner under version 2) after one fence retry.
  void ExpectInsertRetriedFromNode0ToNode1(Router& router, std::int64_t key) {
    auto r = router.Execute(key, "INSERT INTO users VALUES ($1, 'routed')", {key});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->node(), node_names_[1]);
    EXPECT_EQ(router.map_version(), 2);
    EXPECT_EQ(CountOn(0, "SELECT count(*) FROM users"), 0);
    EXPECT_EQ(CountOn(1, fmt::format("SELECT count(*) FROM users WHERE user_id = {}", key)), 1);
    EXPECT_NE(router.MetricsText().find("shardline_fence_retries_total 1\n"), std::string::npos)
        << "expected exactly one fence retry";
  }

  // Inserts `key` into users in one Router::Transaction; the number of times its function ran
  // (2 when the first attempt was fenced and retried), -1 (with a failure recorded) when it
  // failed.
  static int InsertInTransaction(Router& router, std::int64_t key) {
    int attempts = 0;
    absl::Status tx = router.Transaction(key, [&](Session& s) -> absl::Status {
      ++attempts;
      return s.Execute("INSERT INTO users VALUES ($1, 'tx')", {key}).status();
    });
    EXPECT_TRUE(tx.ok()) << tx;
    return tx.ok() ? attempts : -1;
  }
  static std::int64_t KeyOwnedBy(const Router& router, const std::string& node) {
    for (std::int64_t k = 1;; ++k) {
      if (router.Locate(k)->node == node) return k;
    }
  }

  std::unique_ptr<ScratchDatabases> scratch_;
  std::vector<std::string> node_dsns_;
  std::vector<std::string> node_names_;
  std::filesystem::path dir_;
  std::string map_path_;
  std::string app_name_;
  LogCapture logs_;
};

}  // namespace shardline::testing
