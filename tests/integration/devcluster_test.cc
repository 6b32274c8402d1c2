// Tests of the integration harness itself (tests/integration/cluster.h) against the devcluster
// that the CTest fixture started: the cluster is configured as the design needs, scratch
// databases are isolated and dropped, commands are run and captured, and a failing test prints
// the server log.
#include "cluster.h"

#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace shardline::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string QueryOne(pg::Conn& conn, const std::string& sql) {
  auto r = conn.Exec(sql);
  if (!r.ok()) {
    ADD_FAILURE() << sql << ": " << r.status();
    return "";
  }
  if (r->rows() != 1) {
    ADD_FAILURE() << sql << ": " << r->rows() << " rows";
    return "";
  }
  return r->String(0, 0);
}

bool DatabaseExists(const std::string& admin_dsn, const std::string& name) {
  auto conn = ConnectOrDie(admin_dsn);
  auto r = conn->Exec("SELECT count(*) FROM pg_database WHERE datname = $1", {name});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() && r->Int64Or0(0, 0) == 1;
}

std::vector<std::string> AllInstanceDsns() {
  std::vector<std::string> dsns = {Cluster().control_dsn};
  for (const auto& d : Cluster().node_dsns) dsns.push_back(d);
  return dsns;
}

TEST(ParseClusterEnv, ReadsQuotedAndExportedLines) {
  const ClusterInfo info = ParseClusterEnv(
      "# comment\n"
      "export SHARDLINE_DEVCLUSTER_DIR='/tmp/x'\n"
      "SHARDLINE_CONTROL_DSN='host=127.0.0.1 port=1 dbname=control user=app'\n"
      "SHARDLINE_NODE_COUNT=2\n"
      "SHARDLINE_NODE_1_DSN=\"host=127.0.0.1 port=2 dbname=app user=app\"\n"
      "\n"
      "SHARDLINE_NODE_2_DSN=host=127.0.0.1\n",
      "test.env");
  EXPECT_EQ(info.dir, "/tmp/x");
  EXPECT_EQ(info.control_dsn, "host=127.0.0.1 port=1 dbname=control user=app");
  EXPECT_EQ(info.node_dsns,
            (std::vector<std::string>{"host=127.0.0.1 port=2 dbname=app user=app", "host=127.0.0.1"}));
}

TEST(ParseClusterEnv, MissingNodeDsnIsNamed) {
  try {
    ParseClusterEnv("SHARDLINE_CONTROL_DSN=x\nSHARDLINE_NODE_COUNT=2\nSHARDLINE_NODE_1_DSN=y\n", "c.env");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "c.env: missing SHARDLINE_NODE_2_DSN");
  }
}

TEST(ParseClusterEnv, MalformedLineIsNamedWithItsLineNumber) {
  try {
    ParseClusterEnv("SHARDLINE_CONTROL_DSN=x\nnot a setting\n", "c.env");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "c.env:2: expected KEY=value, got 'not a setting'");
  }
}

TEST(WithDatabase, ReplacesOrAddsTheDatabaseName) {
  EXPECT_EQ(WithDatabase("host=127.0.0.1 port=5 dbname=app user=app", "t_1"),
            "host=127.0.0.1 port=5 dbname=t_1 user=app");
  EXPECT_EQ(WithDatabase("host=h password='a b'", "d"), "host=h password='a b' dbname=d");
}

TEST(DevCluster, HasAControlInstanceAndAtLeastThreeNodes) {
  EXPECT_THAT(Cluster().control_dsn, HasSubstr("dbname=control"));
  EXPECT_GE(Cluster().node_dsns.size(), 3u);
  for (const auto& dsn : Cluster().node_dsns) EXPECT_THAT(dsn, HasSubstr("host=127.0.0.1"));
}

TEST(DevCluster, EveryInstanceIsConfiguredForLogicalReplication) {
  for (const auto& dsn : AllInstanceDsns()) {
    SCOPED_TRACE(dsn);
    auto conn = ConnectOrDie(dsn);
    EXPECT_EQ(QueryOne(*conn, "SHOW wal_level"), "logical");
    EXPECT_EQ(QueryOne(*conn, "SHOW max_wal_senders"), "20");
    EXPECT_EQ(QueryOne(*conn, "SHOW max_replication_slots"), "20");
    EXPECT_EQ(QueryOne(*conn, "SHOW wal_retrieve_retry_interval"), "100ms");
    EXPECT_EQ(QueryOne(*conn, "SELECT rolreplication::text FROM pg_roles WHERE rolname = current_user"),
              "true");
    EXPECT_EQ(QueryOne(*conn, "SHOW server_encoding"), "UTF8");
  }
}

TEST(ScratchDatabases, CreatesOneNamedDatabaseOnControlAndEveryNode) {
  ScratchDatabases db;
  EXPECT_THAT(db.name(), StartsWith("scratchdatabases_createsonenameddatabaseoncontrol"));
  EXPECT_LE(db.name().size(), 63u);
  ASSERT_EQ(db.node_dsns().size(), 3u);
  EXPECT_EQ(db.node_dsn(2), db.node_dsns()[2]);
  EXPECT_EQ(QueryOne(*ConnectOrDie(db.control_dsn()), "SELECT current_database()"), db.name());
  for (const auto& dsn : db.node_dsns()) {
    EXPECT_EQ(QueryOne(*ConnectOrDie(dsn), "SELECT current_database()"), db.name());
  }
  // Each node's database lives on that node.
  EXPECT_EQ(QueryOne(*ConnectOrDie(db.node_dsn(1)), "SHOW port"),
            QueryOne(*ConnectOrDie(Cluster().node_dsns[1]), "SHOW port"));
}

TEST(ScratchDatabases, TwoInstancesDoNotSeeEachOthersTables) {
  ScratchDatabases a;
  ScratchDatabases b;
  ASSERT_NE(a.name(), b.name());
  auto ca = ConnectOrDie(a.node_dsn(0));
  ASSERT_TRUE(ca->Exec("CREATE TABLE t (id bigint PRIMARY KEY)").ok());
  ASSERT_TRUE(ca->Exec("INSERT INTO t VALUES (1), (2)").ok());
  EXPECT_EQ(QueryOne(*ca, "SELECT count(*) FROM t"), "2");
  auto cb = ConnectOrDie(b.node_dsn(0));
  EXPECT_EQ(QueryOne(*cb, "SELECT count(*) FROM pg_class WHERE relname = 't' AND relkind = 'r'"), "0");
}

TEST(ScratchDatabases, TakesAnExplicitPrefixAndNodeCount) {
  ScratchDatabases db("My-Prefix", 2);
  EXPECT_THAT(db.name(), StartsWith("my_prefix_"));
  EXPECT_EQ(db.node_dsns().size(), 2u);
  EXPECT_FALSE(DatabaseExists(Cluster().node_dsns[2], db.name()));
  EXPECT_TRUE(DatabaseExists(Cluster().node_dsns[1], db.name()));
}

TEST(ScratchDatabases, AskingForMoreNodesThanTheClusterHasThrows) {
  const int too_many = static_cast<int>(Cluster().node_dsns.size()) + 1;
  try {
    ScratchDatabases db(too_many);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr(fmt::format("{} nodes wanted", too_many)));
  }
}

TEST(ScratchDatabases, DestructorDropsEveryDatabaseEvenWithOpenConnections) {
  std::string name;
  std::unique_ptr<pg::Conn> left_open;
  {
    ScratchDatabases db;
    name = db.name();
    left_open = ConnectOrDie(db.node_dsn(0));
    for (const auto& dsn : AllInstanceDsns()) EXPECT_TRUE(DatabaseExists(dsn, name)) << dsn;
  }
  for (const auto& dsn : AllInstanceDsns()) EXPECT_FALSE(DatabaseExists(dsn, name)) << dsn;
  EXPECT_FALSE(left_open->Exec("SELECT 1").ok()) << "the connection should have been terminated";
}

TEST(ConnectOrDie, ThrowsWithTheServerError) {
  try {
    ConnectOrDie(WithDatabase(Cluster().node_dsns[0], "no_such_database_shardline"));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("database \"no_such_database_shardline\" does not exist"));
  }
}

TEST(RunCommand, CapturesExitCodeStdoutAndStderr) {
  const CommandResult r = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(RunCommand, PassesArgumentsVerbatimWithoutAShell) {
  const CommandResult r = RunCommand({"printf", "%s|", "a b", "$HOME", "*"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "a b|$HOME|*|");
}

TEST(RunCommand, AddsAndOverridesEnvironmentVariables) {
  const CommandResult r =
      RunCommand({"/bin/sh", "-c", "echo \"$SHARDLINE_X/$HOME\""}, {{"SHARDLINE_X", "42"}, {"HOME", "/h"}});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "42//h\n");
}

TEST(RunCommand, DrainsLargeOutputOnBothStreamsWithoutBlocking) {
  // 1 MiB on each stream: far beyond a pipe buffer, so reading one stream at a time would hang.
  const CommandResult r = RunCommand(
      {"/bin/sh", "-c", "head -c 1048576 /dev/zero >&2; head -c 1048576 /dev/zero; head -c 10 /dev/zero >&2"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), 1048576u);
  EXPECT_EQ(r.err.size(), 1048586u);
}

TEST(RunCommand, MissingExecutableExits127WithTheReason) {
  const CommandResult r = RunCommand({"/nonexistent/shardline-no-such-binary"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
}

TEST(RunCommand, KilledChildReportsTheSignal) {
  const CommandResult r = RunCommand({"/bin/sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(r.exit_code, 128 + 15);
}

TEST(BinPath, FindsTheBuiltCli) {
  const std::string path = BinPath("shardline");
  EXPECT_THAT(path, HasSubstr("shardline"));
  const CommandResult r = RunCommand({path, "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(BinPath, MissingExecutableThrowsListingWhereItLooked) {
  try {
    BinPath("no-such-tool");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("no executable 'no-such-tool' in:"));
    EXPECT_THAT(std::string(e.what()), HasSubstr("/migrate/no-such-tool"));
  }
}

// Fails on purpose; run only by ServerLogListener.PrintsTheServerLogWhenATestFails below.
TEST(ServerLogListener, DISABLED_FailsAfterAServerError) {
  ScratchDatabases db(1);
  auto conn = ConnectOrDie(db.node_dsn(0));
  // The server writes the ERROR to its log before it answers, so the line is there now.
  auto r = conn->Exec("SELECT 1 / 0 AS shardline_log_probe");
  EXPECT_TRUE(r.ok()) << "failing on purpose: " << r.status();
}

std::string SelfExe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

TEST(ServerLogListener, PrintsTheServerLogWhenATestFails) {
  const CommandResult r = RunCommand({SelfExe(), "--gtest_also_run_disabled_tests",
                                      "--gtest_filter=ServerLogListener.DISABLED_FailsAfterAServerError"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("[ SERVER LOG ] ServerLogListener.DISABLED_FailsAfterAServerError failed"));
  EXPECT_THAT(r.out, HasSubstr("/node1/log/postgresql.log"));
  EXPECT_THAT(r.out, HasSubstr("ERROR:  division by zero"));
  EXPECT_THAT(r.out, HasSubstr("shardline_log_probe"));
}

TEST(ServerLogListener, PassingTestPrintsNoServerLog) {
  const CommandResult r = RunCommand({SelfExe(), "--gtest_filter=RunCommand.CapturesExitCodeStdoutAndStderr"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("[ SERVER LOG ]")));
}

}  // namespace
}  // namespace shardline::testing
