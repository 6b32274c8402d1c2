// Shared fixture of the data-movement integration tests (stats, verify, cleanup): scratch
// databases on the devcluster's nodes, a temporary directory, maps written as TOML files from
// ShardMapConfig values, the `shardline` binary run as a user would run it, and small SQL helpers.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cluster.h"
#include "shardline/map_toml.h"
#include "shardline/shard_map.h"

namespace shardline::testing {

// What the command wrote, for assertion messages.
inline std::string Describe(const CommandResult& r) {
  return fmt::format("exit {}\n--- stdout ---\n{}--- stderr ---\n{}", r.exit_code, r.out, r.err);
}

// Thread-compatible; one per test.
class MigrateTest : public ::testing::Test {
 protected:
  explicit MigrateTest(int nodes = 2) : db_(nodes) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "shardline-migrate-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    for (int i = 0; i < nodes; ++i) conns_.push_back(ConnectOrDie(db_.node_dsn(i)));
  }
  ~MigrateTest() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Node i's name in maps: "a", "b", ...
  static std::string NodeName(int i) { return std::string(1, static_cast<char>('a' + i)); }

  // A map over the scratch nodes: `ranges` equal ranges, range r owned by node owners[r]
  // (default: contiguous blocks), the given tables (name, key column).
  ShardMapConfig MapConfig(int ranges, std::vector<int> owners,
                           const std::vector<std::pair<std::string, std::string>>& tables,
                           KeyType key_type = KeyType::kBigint) {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < conns_.size(); ++i) names.push_back(NodeName(static_cast<int>(i)));
    ShardMapConfig c;
    c.version = 1;
    c.key_type = key_type;
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      NodeConfig node;
      node.name = names[i];
      node.dsn = db_.node_dsn(static_cast<int>(i));
      c.nodes.push_back(std::move(node));
    }
    c.ranges = *EqualRanges(ranges, names);
    for (std::size_t r = 0; r < owners.size() && r < c.ranges.size(); ++r) {
      c.ranges[r].node = names[static_cast<std::size_t>(owners[r])];
    }
    for (const auto& [name, key] : tables) {
      TableConfig t;
      t.name = name;
      t.key = key;
      c.tables.push_back(std::move(t));
    }
    return c;
  }

  std::string WriteMap(const ShardMapConfig& config, const std::string& file = "map.toml") {
    const std::string path = (dir_ / file).string();
    std::ofstream(path) << ShardMapToToml(config, PasswordMode::kKeep);
    return path;
  }

  std::string Path(const std::string& file) const { return (dir_ / file).string(); }

  CommandResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), BinPath("shardline"));
    return RunCommand(args, {{"SHARDLINE_CATALOG", ""}});
  }

  // Runs SQL on node i; throws with the error on failure (a broken fixture, not a test result).
  void Sql(int node, const std::string& sql) {
    if (absl::Status s = conns_.at(static_cast<std::size_t>(node))->ExecScript(sql); !s.ok()) {
      throw std::runtime_error(fmt::format("node {}: {}: {}", node, sql, s.ToString()));
    }
  }
  // The first column of the first row as text.
  std::string Scalar(int node, const std::string& sql) {
    auto r = conns_.at(static_cast<std::size_t>(node))->Exec(sql);
    if (!r.ok()) throw std::runtime_error(fmt::format("{}: {}", sql, r.status().ToString()));
    return r->String(0, 0);
  }

  ScratchDatabases db_;
  std::vector<std::unique_ptr<pg::Conn>> conns_;
  std::filesystem::path dir_;
};

}  // namespace shardline::testing
