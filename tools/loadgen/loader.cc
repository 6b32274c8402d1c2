// Generating and COPYing the app's rows (see loader.h).
#include "loader.h"

#include <array>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "app_tables.h"
#include "pg_conn.h"
#include "shardline/hash.h"

namespace shardline::loadgen {
namespace {

constexpr std::size_t kFlushBytes = 256 * 1024;
constexpr const char* kKinds[] = {"run", "ride", "swim", "lift", "row", "yoga", "hike", "walk"};
constexpr const char* kExercises[] = {"squat", "bench press", "deadlift", "pull-up",
                                      "row",   "overhead press", "lunge", "plank"};
constexpr const char* kWords[] = {"great", "session", "today", "legs", "tired", "new",
                                  "record", "easy",   "tempo", "long", "sunny", "gym"};

// The COPY statements, in kAppTables order.
constexpr const char* kCopySql[] = {
    "COPY users (user_id, name, email, bio, points) FROM STDIN",
    "COPY workouts (user_id, id, kind, duration_s, calories, note) FROM STDIN",
    "COPY workout_logs (user_id, id, workout_id, exercise, reps, weight, note) FROM STDIN",
    "COPY posts (user_id, id, body) FROM STDIN",
};
constexpr std::size_t kNumTables = 4;

// One COPY in progress on its own connection. Single-threaded (one per node thread).
class CopyStream {
 public:
  CopyStream(std::unique_ptr<pg::Conn> conn, std::string table)
      : conn_(std::move(conn)), table_(std::move(table)) {}

  absl::Status Begin(const char* sql) {
    auto r = conn_->Exec(sql);
    if (!r.ok()) return r.status();
    return absl::OkStatus();
  }
  std::string& buffer() { return buf_; }
  void CountRow() { ++rows_; }
  std::int64_t rows() const { return rows_; }

  absl::Status FlushIfFull() { return buf_.size() >= kFlushBytes ? Flush() : absl::OkStatus(); }
  absl::Status Flush() {
    if (buf_.empty()) return absl::OkStatus();
    if (PQputCopyData(conn_->raw(), buf_.data(), static_cast<int>(buf_.size())) != 1) {
      return Failed("sending COPY data");
    }
    buf_.clear();
    return absl::OkStatus();
  }
  absl::Status End() {
    if (absl::Status s = Flush(); !s.ok()) return s;
    if (PQputCopyEnd(conn_->raw(), nullptr) != 1) return Failed("ending COPY");
    absl::Status out;
    while (PGresult* raw = PQgetResult(conn_->raw())) {
      pg::ResultPtr res(raw);
      if (PQresultStatus(raw) != PGRES_COMMAND_OK && out.ok()) {
        out = pg::StatusFromResult(raw, conn_->node(), fmt::format("COPY into {}", table_));
      }
    }
    return out;
  }

 private:
  absl::Status Failed(const char* what) {
    return pg::StatusFromConn(conn_->raw(), conn_->node(), fmt::format("{} into {}", what, table_));
  }
  std::unique_ptr<pg::Conn> conn_;
  std::string table_;
  std::string buf_;
  std::int64_t rows_ = 0;
};

// Loads every user of `options` that node `node` owns.
absl::Status LoadNode(const ShardMap& map, int node, const std::function<absl::StatusOr<std::int64_t>()>& next_id,
                      const LoadOptions& options, std::int64_t& users_out,
                      std::array<std::int64_t, kNumTables>& rows_out) {
  const NodeConfig& cfg = map.nodes()[static_cast<std::size_t>(node)];
  std::vector<std::unique_ptr<CopyStream>> streams;
  for (std::size_t t = 0; t < kNumTables; ++t) {
    auto conn = pg::Conn::Connect(cfg.dsn, cfg.name);
    if (!conn.ok()) return conn.status();
    auto named = (*conn)->Exec("SELECT set_config('application_name', $1, false)",
                               {options.application_name});
    if (!named.ok()) return named.status();
    streams.push_back(std::make_unique<CopyStream>(std::move(*conn), std::string(kAppTables[t])));
    if (absl::Status s = streams.back()->Begin(kCopySql[t]); !s.ok()) return s;
  }
  CopyStream& users = *streams[0];
  CopyStream& workouts = *streams[1];
  CopyStream& logs = *streams[2];
  CopyStream& posts = *streams[3];

  std::int64_t count = 0;
  std::vector<std::int64_t> workout_ids;
  for (std::int64_t uid = options.first_user; uid < options.first_user + options.users; ++uid) {
    if (map.OwnerNodeIndex(map.RangeIndex(HashInt8(uid))) != node) continue;
    ++count;
    std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(uid));
    auto pick = [&](std::uint64_t n) { return rng() % n; };
    fmt::format_to(std::back_inserter(users.buffer()), "{}\tuser{}\tuser{}@example.com\t\t{}\n",
                   uid, uid, uid, pick(100000));
    users.CountRow();
    workout_ids.clear();
    for (int w = 0; w < options.workouts_per_user; ++w) {
      const absl::StatusOr<std::int64_t> id_or = next_id();
      if (!id_or.ok()) return id_or.status();
      const std::int64_t id = *id_or;
      workout_ids.push_back(id);
      fmt::format_to(std::back_inserter(workouts.buffer()), "{}\t{}\t{}\t{}\t{}\t\n", uid, id,
                     kKinds[pick(std::size(kKinds))], 600 + pick(6000), 50 + pick(1500));
      workouts.CountRow();
      for (int l = 0; l < options.logs_per_workout; ++l) {
        const std::uint64_t centi_kg = 500 + pick(20000);
        const absl::StatusOr<std::int64_t> log_id = next_id();
        if (!log_id.ok()) return log_id.status();
        fmt::format_to(std::back_inserter(logs.buffer()), "{}\t{}\t{}\t{}\t{}\t{}.{:02}\t\n", uid,
                       *log_id, id, kExercises[pick(std::size(kExercises))], 1 + pick(20),
                       centi_kg / 100, centi_kg % 100);
        logs.CountRow();
      }
    }
    for (int p = 0; p < options.posts_per_user; ++p) {
      std::string body;
      for (int word = 0; word < 10; ++word) {
        if (word > 0) body += ' ';
        body += kWords[pick(std::size(kWords))];
      }
      const absl::StatusOr<std::int64_t> post_id = next_id();
      if (!post_id.ok()) return post_id.status();
      fmt::format_to(std::back_inserter(posts.buffer()), "{}\t{}\t{}\n", uid, *post_id, body);
      posts.CountRow();
    }
    for (auto& s : streams) {
      if (absl::Status st = s->FlushIfFull(); !st.ok()) return st;
    }
  }
  for (std::size_t t = 0; t < kNumTables; ++t) {
    if (absl::Status s = streams[t]->End(); !s.ok()) return s;
    rows_out[t] = streams[t]->rows();
  }
  users_out = count;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadStats> LoadUsers(const ShardMap& map,
                                    const std::function<absl::StatusOr<std::int64_t>()>& next_id,
                                    const LoadOptions& options) {
  if (options.users < 0 || options.workouts_per_user < 0 || options.logs_per_workout < 0 ||
      options.posts_per_user < 0) {
    return absl::InvalidArgumentError("load: counts must not be negative");
  }
  const auto start = std::chrono::steady_clock::now();
  const std::size_t n = map.nodes().size();
  if (options.truncate) {
    for (const NodeConfig& node : map.nodes()) {
      auto conn = pg::Conn::Connect(node.dsn, node.name);
      if (!conn.ok()) return conn.status();
      auto r = (*conn)->Exec("TRUNCATE users, workouts, workout_logs, posts");
      if (!r.ok()) return r.status();
    }
  }
  std::vector<absl::Status> status(n);
  std::vector<std::int64_t> users(n, 0);
  std::vector<std::array<std::int64_t, kNumTables>> rows(n);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < n; ++i) {
    rows[i].fill(0);
    threads.emplace_back([&, i] {
      status[i] = LoadNode(map, static_cast<int>(i), next_id, options, users[i], rows[i]);
    });
  }
  for (auto& t : threads) t.join();
  LoadStats stats;
  for (std::size_t i = 0; i < n; ++i) {
    if (!status[i].ok()) return status[i];
    stats.users_by_node[map.nodes()[i].name] = users[i];
    for (std::size_t t = 0; t < kNumTables; ++t) {
      stats.rows_by_table[std::string(kAppTables[t])] += rows[i][t];
      stats.rows += rows[i][t];
    }
  }
  stats.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace shardline::loadgen
