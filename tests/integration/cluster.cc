// The integration-test harness: cluster discovery, scratch databases, commands, and the
// server-log-on-failure listener. See cluster.h.
#include "cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "shardline/dsn.h"

extern char** environ;

namespace shardline::testing {
namespace {

namespace fs = std::filesystem;

#ifndef SHARDLINE_TESTING_DEFAULT_CLUSTER_DIR
#define SHARDLINE_TESTING_DEFAULT_CLUSTER_DIR ""
#endif
#ifndef SHARDLINE_TESTING_DEFAULT_BIN_DIR
#define SHARDLINE_TESTING_DEFAULT_BIN_DIR ""
#endif

constexpr std::size_t kMaxIdentifierLength = 63;  // PostgreSQL's NAMEDATALEN - 1
constexpr int kLogTailLines = 60;

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : std::string(fallback);
}

// The dir whose cluster.env describes the test cluster.
std::string ClusterEnvDir() {
  return EnvOr("SHARDLINE_DEVCLUSTER_DIR", SHARDLINE_TESTING_DEFAULT_CLUSTER_DIR);
}

std::string Trim(std::string_view s) {
  std::size_t b = 0;
  std::size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// Reads and parses cluster.env; nullopt with *error set when it is absent or malformed.
std::optional<ClusterInfo> TryLoadCluster(std::string* error) {
  const std::string dir = ClusterEnvDir();
  if (dir.empty()) {
    *error = "SHARDLINE_DEVCLUSTER_DIR is not set";
    return std::nullopt;
  }
  const std::string path = dir + "/cluster.env";
  std::ifstream in(path);
  if (!in) {
    *error = fmt::format("cannot read {}: {}", path, std::strerror(errno));
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    ClusterInfo info = ParseClusterEnv(ss.str(), path);
    if (info.dir.empty()) info.dir = dir;
    return info;
  } catch (const std::exception& e) {
    *error = e.what();
    return std::nullopt;
  }
}

// The server logs of every instance: <cluster dir>/<instance>/log/postgresql.log, sorted.
std::vector<fs::path> ServerLogs(const std::string& cluster_dir) {
  std::vector<fs::path> logs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(cluster_dir, ec)) {
    fs::path log = entry.path() / "log" / "postgresql.log";
    if (fs::is_regular_file(log, ec)) logs.push_back(std::move(log));
  }
  std::sort(logs.begin(), logs.end());
  return logs;
}

// The last `n` lines of the file from byte `offset` on.
std::string Tail(const fs::path& path, std::uintmax_t offset, int n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("(cannot read: {})\n", std::strerror(errno));
  in.seekg(static_cast<std::streamoff>(offset));
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(std::move(line));
    if (lines.size() > static_cast<std::size_t>(n)) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// Prints, for a failed test, the server log lines each instance wrote while the test ran (the
// last kLogTailLines of them). Integration tests run in parallel processes against one cluster,
// so lines of other tests can be interleaved; the log_line_prefix names user, database and
// application. Runs on gtest's main thread only.
class ServerLogListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo& /*info*/) override {
    offsets_.clear();
    std::string error;
    auto info = TryLoadCluster(&error);
    if (!info) return;
    cluster_dir_ = info->dir;
    std::error_code ec;
    for (const auto& log : ServerLogs(cluster_dir_)) {
      offsets_[log.string()] = fs::file_size(log, ec);
    }
  }

  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (!info.result()->Failed() || cluster_dir_.empty()) return;
    std::string out = fmt::format("[ SERVER LOG ] {}.{} failed; server log lines written during the test:\n",
                                  info.test_suite_name(), info.name());
    std::error_code ec;
    for (const auto& log : ServerLogs(cluster_dir_)) {
      auto it = offsets_.find(log.string());
      std::uintmax_t offset = it == offsets_.end() ? 0 : it->second;
      const std::uintmax_t size = fs::file_size(log, ec);
      if (ec || size < offset) offset = 0;  // rotated or truncated: show the end of the file
      std::string tail = size == offset ? std::string("(no new lines)\n") : Tail(log, offset, kLogTailLines);
      out += fmt::format("---- {} (last {} lines at most)\n{}", log.string(), kLogTailLines, tail);
    }
    out += "[ SERVER LOG ] end\n";
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  std::string cluster_dir_;
  std::map<std::string, std::uintmax_t> offsets_;
};

// Installs the listener in every binary that links this library (gtest_main included).
class HarnessEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ::testing::UnitTest::GetInstance()->listeners().Append(new ServerLogListener);
  }
};

[[maybe_unused]] ::testing::Environment* const kHarnessEnvironment =
    ::testing::AddGlobalTestEnvironment(new HarnessEnvironment);

// Splits a key=value connection string into (key, raw value) pairs, keeping quoting intact.
std::vector<std::pair<std::string, std::string>> SplitDsn(std::string_view dsn) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = 0;
  while (i < dsn.size()) {
    while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
    if (i >= dsn.size()) break;
    const std::size_t eq = dsn.find('=', i);
    if (eq == std::string_view::npos) {
      throw std::runtime_error(fmt::format("connection string '{}' is not key=value",
                                           DsnWithoutPassword(dsn)));
    }
    std::string key = Trim(dsn.substr(i, eq - i));
    i = eq + 1;
    while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
    const std::size_t start = i;
    if (i < dsn.size() && dsn[i] == '\'') {
      ++i;
      while (i < dsn.size() && dsn[i] != '\'') i += (dsn[i] == '\\') ? 2 : 1;
      ++i;
    } else {
      while (i < dsn.size() && !std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
    }
    out.emplace_back(std::move(key), std::string(dsn.substr(start, std::min(i, dsn.size()) - start)));
  }
  return out;
}

std::string SanitizeIdentifier(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += std::isalnum(u) ? static_cast<char>(std::tolower(u)) : '_';
  }
  return out;
}

std::string RandomHex(int digits) {
  std::random_device rd;
  const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return fmt::format("{:016x}", v).substr(0, static_cast<std::size_t>(digits));
}

std::string DefaultPrefix() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (info == nullptr) return "scratch";
  return fmt::format("{}_{}", info->test_suite_name(), info->name());
}

std::string InstanceLabel(std::size_t i) {
  return i == 0 ? std::string("control") : fmt::format("node{}", i);
}

// Runs `sql` on every DSN in parallel; returns one error string per failed DSN ("" when ok).
std::vector<std::string> ExecEverywhere(const std::vector<std::string>& dsns, const std::string& sql_template,
                                        const std::string& dbname) {
  std::vector<std::future<std::string>> futures;
  for (std::size_t i = 0; i < dsns.size(); ++i) {
    futures.push_back(std::async(std::launch::async, [&, i]() -> std::string {
      auto conn = pg::Conn::Connect(dsns[i], InstanceLabel(i));
      if (!conn.ok()) return conn.status().ToString();
      const std::string sql = fmt::format(fmt::runtime(sql_template), (*conn)->QuoteIdent(dbname));
      auto r = (*conn)->Exec(sql);
      return r.ok() ? std::string() : r.status().ToString();
    }));
  }
  std::vector<std::string> errors;
  for (auto& f : futures) errors.push_back(f.get());
  return errors;
}

}  // namespace

ClusterInfo ParseClusterEnv(std::string_view text, std::string_view origin) {
  std::map<std::string, std::string> vars;
  std::istringstream in{std::string(text)};
  std::string raw;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    std::string line = Trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("export ", 0) == 0) line = Trim(std::string_view(line).substr(7));
    const std::size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw std::runtime_error(fmt::format("{}:{}: expected KEY=value, got '{}'", origin, line_no, line));
    }
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '\'' || value.front() == '"') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    vars[line.substr(0, eq)] = value;
  }
  auto require = [&](const std::string& key) -> const std::string& {
    auto it = vars.find(key);
    if (it == vars.end() || it->second.empty()) {
      throw std::runtime_error(fmt::format("{}: missing {}", origin, key));
    }
    return it->second;
  };
  ClusterInfo info;
  if (auto it = vars.find("SHARDLINE_DEVCLUSTER_DIR"); it != vars.end()) info.dir = it->second;
  info.control_dsn = require("SHARDLINE_CONTROL_DSN");
  const std::string& count_text = require("SHARDLINE_NODE_COUNT");
  int count = 0;
  try {
    std::size_t used = 0;
    count = std::stoi(count_text, &used);
    if (used != count_text.size() || count < 1) throw std::invalid_argument("range");
  } catch (const std::exception&) {
    throw std::runtime_error(
        fmt::format("{}: SHARDLINE_NODE_COUNT '{}' is not a positive number", origin, count_text));
  }
  for (int i = 1; i <= count; ++i) {
    info.node_dsns.push_back(require(fmt::format("SHARDLINE_NODE_{}_DSN", i)));
  }
  return info;
}

const ClusterInfo& Cluster() {
  static const ClusterInfo* const info = [] {
    std::string error;
    auto loaded = TryLoadCluster(&error);
    if (!loaded) {
      std::fprintf(stderr,
                   "\nshardline integration tests: no devcluster: %s\n"
                   "Run them through ctest (the `devcluster` fixture starts the cluster), e.g.\n"
                   "  ctest --test-dir build -L integration\n"
                   "or start it yourself and point the tests at it:\n"
                   "  tools/devcluster start --dir build/devcluster --base-port "
                   "$(sed -n 's/^SHARDLINE_TEST_CLUSTER_PORT:STRING=//p' build/CMakeCache.txt)\n"
                   "  SHARDLINE_DEVCLUSTER_DIR=build/devcluster <test binary>\n",
                   error.c_str());
      std::fflush(stderr);
      std::abort();
    }
    return new ClusterInfo(std::move(*loaded));
  }();
  return *info;
}

std::string WithDatabase(std::string_view dsn, std::string_view dbname) {
  std::string out;
  bool replaced = false;
  for (auto& [key, value] : SplitDsn(dsn)) {
    if (!out.empty()) out += ' ';
    if (key == "dbname") {
      out += fmt::format("dbname={}", dbname);
      replaced = true;
    } else {
      out += fmt::format("{}={}", key, value);
    }
  }
  if (!replaced) out += fmt::format("{}dbname={}", out.empty() ? "" : " ", dbname);
  return out;
}

ScratchDatabases::ScratchDatabases(int nodes) : ScratchDatabases(DefaultPrefix(), nodes) {}

ScratchDatabases::ScratchDatabases(std::string_view prefix, int nodes) {
  const ClusterInfo& cluster = Cluster();
  const std::size_t wanted = nodes <= 0 ? cluster.node_dsns.size() : static_cast<std::size_t>(nodes);
  if (wanted > cluster.node_dsns.size()) {
    throw std::runtime_error(fmt::format("ScratchDatabases: {} nodes wanted, the devcluster has {}",
                                         wanted, cluster.node_dsns.size()));
  }
  constexpr int kSuffixDigits = 12;
  std::string base = SanitizeIdentifier(prefix);
  base = base.substr(0, kMaxIdentifierLength - 1 - kSuffixDigits);
  name_ = fmt::format("{}_{}", base, RandomHex(kSuffixDigits));

  admin_dsns_.push_back(cluster.control_dsn);
  for (std::size_t i = 0; i < wanted; ++i) admin_dsns_.push_back(cluster.node_dsns[i]);
  control_dsn_ = WithDatabase(cluster.control_dsn, name_);
  for (std::size_t i = 0; i < wanted; ++i) node_dsns_.push_back(WithDatabase(cluster.node_dsns[i], name_));
  Create();
}

void ScratchDatabases::Create() {
  const auto errors = ExecEverywhere(admin_dsns_, "CREATE DATABASE {}", name_);
  std::string message;
  for (std::size_t i = 0; i < errors.size(); ++i) {
    if (!errors[i].empty()) message += fmt::format("\n  {}: {}", InstanceLabel(i), errors[i]);
  }
  if (message.empty()) return;
  // Leave nothing behind: drop where the create worked (IF EXISTS covers the rest).
  ExecEverywhere(admin_dsns_, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name_);
  throw std::runtime_error(fmt::format("cannot create scratch database {}:{}", name_, message));
}

ScratchDatabases::~ScratchDatabases() {
  const auto errors = ExecEverywhere(admin_dsns_, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name_);
  for (std::size_t i = 0; i < errors.size(); ++i) {
    if (errors[i].empty()) continue;
    const std::string message =
        fmt::format("cannot drop scratch database {} on {}: {}", name_, InstanceLabel(i), errors[i]);
    if (::testing::UnitTest::GetInstance()->current_test_info() != nullptr) {
      ADD_FAILURE() << message;
    } else {
      std::fprintf(stderr, "%s\n", message.c_str());
    }
  }
}

std::unique_ptr<pg::Conn> ConnectOrDie(const std::string& dsn) {
  auto conn = pg::Conn::Connect(dsn, DsnWithoutPassword(dsn));
  if (!conn.ok()) {
    throw std::runtime_error(fmt::format("ConnectOrDie: {}", conn.status().ToString()));
  }
  return std::move(*conn);
}

std::string BinPath(std::string_view name) {
  const fs::path bin = EnvOr("SHARDLINE_BIN_DIR", SHARDLINE_TESTING_DEFAULT_BIN_DIR);
  std::vector<fs::path> candidates = {bin / name, bin / "migrate" / name, bin / "tools" / name};
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(bin / "tools", ec)) {
    if (entry.is_directory(ec)) candidates.push_back(entry.path() / name);
  }
  std::string looked;
  for (const auto& c : candidates) {
    if (fs::is_regular_file(c, ec) && ::access(c.c_str(), X_OK) == 0) return c.string();
    looked += "\n  " + c.string();
  }
  throw std::runtime_error(fmt::format("BinPath: no executable '{}' in:{}", name, looked));
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
  CommandResult result;
  if (argv.empty()) {
    result.exit_code = 127;
    result.err = "RunCommand: empty argv";
    return result;
  }
  // Everything the child needs is built before the spawn.
  std::map<std::string, std::string> merged;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    const std::size_t eq = kv.find('=');
    if (eq != std::string_view::npos) merged[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& s : args) argp.push_back(s.data());
  argp.push_back(nullptr);

  int out_pipe[2];
  int err_pipe[2];
  // O_CLOEXEC: a command spawned concurrently by another thread must not inherit our pipes.
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error("RunCommand: pipe2 failed");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw std::runtime_error("RunCommand: pipe2 failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  pid_t pid = 0;
  const int spawn_error = ::posix_spawnp(&pid, argp[0], &actions, nullptr, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawn_error != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    result.exit_code = 127;
    result.err = fmt::format("cannot execute {}: {}", argv[0], std::strerror(spawn_error));
    return result;
  }

  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;  // poll ignores negative fds
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

}  // namespace shardline::testing
