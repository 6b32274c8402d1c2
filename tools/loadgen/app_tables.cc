// The app's ledgered tables and applying schemas/app.sql to every node (see app_tables.h).
#include "app_tables.h"

#include <string>
#include <thread>

#include <fmt/format.h>

#include "app_sql.h"
#include "pg_conn.h"

namespace shardline::loadgen {

const LedgeredTable* FindLedgeredTable(std::string_view name) {
  static const LedgeredTable kTables[] = {
      {"workout_logs", true, {"workout_id", "exercise", "reps", "weight", "note"}},
      {"workouts", true, {"duration_s", "calories", "note"}},
      {"posts", true, {"body"}},
      {"users", false, {"name", "email", "bio"}},
  };
  for (const LedgeredTable& t : kTables) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::Status ApplyAppSchema(const ShardMap& map, const std::string& application_name) {
  const auto& nodes = map.nodes();
  std::vector<absl::Status> results(nodes.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    threads.emplace_back([&, i] {
      auto conn = pg::Conn::Connect(nodes[i].dsn, nodes[i].name);
      if (!conn.ok()) {
        results[i] = conn.status();
        return;
      }
      auto named = (*conn)->Exec("SELECT set_config('application_name', $1, false)",
                                 {application_name});
      if (!named.ok()) {
        results[i] = named.status();
        return;
      }
      // The app's schema is plain CREATE ... IF NOT EXISTS; concurrent runs of it from two
      // loadgens could race on the catalog, so take a transaction-level advisory lock.
      absl::Status s = (*conn)->ExecScript(
          std::string("SET client_min_messages = warning; BEGIN; SELECT pg_advisory_xact_lock(7305001); ") + kAppSql + "\nCOMMIT;");
      if (!s.ok()) {
        results[i] = absl::Status(
            s.code(), fmt::format("node {}: applying schemas/app.sql: {}", nodes[i].name,
                                  std::string(s.message())));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace shardline::loadgen
