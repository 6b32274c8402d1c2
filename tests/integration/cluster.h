// The integration-test harness (library `shardline_testing`): finds the devcluster that the CTest
// fixture `devcluster` started (tools/devcluster, see tests/CMakeLists.txt), gives each test its
// own databases on every instance (ScratchDatabases), connects, runs the built executables
// (RunCommand, BinPath), and prints the tail of every server log when a test fails (a gtest
// listener registered by a global environment in this library, so binaries using gtest_main get
// it without doing anything).
//
// The cluster is found through $SHARDLINE_DEVCLUSTER_DIR/cluster.env (set by CTest), falling
// back to the build's own test cluster dir, so a test binary also runs by hand once
// `tools/devcluster start --dir build/devcluster --base-port P` (what the fixture runs, P from the
// build's SHARDLINE_TEST_CLUSTER_PORT) is up.
//
// Failures that make a test meaningless (no cluster, cannot connect, cannot create a database)
// throw std::runtime_error with the reason: gtest reports it as a failure of the current test
// and goes on with the next one (the ASSERT_* macros cannot be used in functions that return a
// value).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pg_conn.h"

namespace shardline::testing {

// The shared devcluster, as described by its cluster.env. Immutable after Cluster() returns.
struct ClusterInfo {
  std::string dir;                     // the cluster's data dir (holds <instance>/log/postgresql.log)
  std::string control_dsn;             // control instance, database "control"
  std::vector<std::string> node_dsns;  // node i (0-based) = SHARDLINE_NODE_<i+1>_DSN, database "app"
};

// Parses the text of a cluster.env (KEY=value or KEY='value' lines; `export ` prefixes, blank
// lines and # comments are allowed). Throws std::runtime_error naming `origin` and the line when
// a required key is missing or malformed.
ClusterInfo ParseClusterEnv(std::string_view text, std::string_view origin);

// The shared cluster, parsed once (thread-safe). Aborts the whole test binary with a message
// saying how to start the cluster when cluster.env cannot be read: no integration test can run.
const ClusterInfo& Cluster();

// `dsn` (a key=value connection string) with its dbname replaced by (or set to) `dbname`.
std::string WithDatabase(std::string_view dsn, std::string_view dbname);

// Fresh, empty databases with one unique name (`<prefix>_<random hex>`, at most 63 bytes) on the
// control instance and on the first `nodes` nodes of the cluster (all nodes when nodes <= 0).
// The default prefix is the current gtest "<suite>_<test>" lowercased. The destructor drops the
// databases WITH (FORCE), terminating connections a test left open. Creation and drop run on all
// instances in parallel. Throws std::runtime_error when the cluster has fewer nodes than asked or a
// database cannot be created (nothing is left behind then). Thread-compatible.
//
//   ScratchDatabases db;                        // 3 nodes + control
//   auto conn = ConnectOrDie(db.node_dsn(0));
class ScratchDatabases {
 public:
  explicit ScratchDatabases(int nodes = 3);
  explicit ScratchDatabases(std::string_view prefix, int nodes = 3);
  ~ScratchDatabases();
  ScratchDatabases(const ScratchDatabases&) = delete;
  ScratchDatabases& operator=(const ScratchDatabases&) = delete;

  // The database name (the same on every instance).
  const std::string& name() const { return name_; }
  const std::string& control_dsn() const { return control_dsn_; }
  const std::vector<std::string>& node_dsns() const { return node_dsns_; }
  // DSN of node i (0-based); throws std::out_of_range for a bad index.
  std::string node_dsn(int i) const { return node_dsns_.at(static_cast<std::size_t>(i)); }

 private:
  void Create();

  std::string name_;
  std::vector<std::string> admin_dsns_;  // control first, then nodes: where CREATE/DROP runs
  std::string control_dsn_;
  std::vector<std::string> node_dsns_;
};

// A connection, or a thrown std::runtime_error carrying the libpq error (password masked).
std::unique_ptr<pg::Conn> ConnectOrDie(const std::string& dsn);

// The path of a built executable: $SHARDLINE_BIN_DIR (CTest sets it to the build dir; default:
// this build's dir) joined with `name`, or the first of <bin>/migrate/<name>, <bin>/tools/<name>,
// <bin>/tools/*/<name> that exists (e.g. BinPath("shardline") -> build/migrate/shardline).
// Throws std::runtime_error listing where it looked when none exists.
std::string BinPath(std::string_view name);

struct CommandResult {
  int exit_code = -1;  // the exit status; 128 + N when killed by signal N; 127 when not executable
  std::string out;     // everything written to stdout
  std::string err;     // everything written to stderr (the exec error when it could not start)
};

// Runs argv[0] (searched in PATH when it has no '/') with argv, without a shell, stdin from
// /dev/null, the current environment plus `env` (which overrides), and waits for it; both output
// streams are drained concurrently so a chatty child cannot block. Blocks until the child exits.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::map<std::string, std::string>& env = {});

}  // namespace shardline::testing
