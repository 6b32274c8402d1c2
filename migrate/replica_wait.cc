// Replicas' replay against their primary (see replica_wait.h).
#include "replica_wait.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <thread>
#include <utility>

#include "shardline/dsn.h"

namespace shardline::migrate {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kPollEvery{20};
constexpr std::chrono::milliseconds kMaxConnectTimeout{std::chrono::seconds(5)};

// The primary's WAL position now and its system identifier.
absl::StatusOr<std::pair<std::string, std::string>> PrimaryPosition(pg::Conn& primary) {
  auto r = primary.Exec(
      "SELECT pg_current_wal_lsn()::text, "
      "CASE WHEN has_function_privilege('pg_control_system()', 'execute') "
      "THEN (SELECT system_identifier FROM pg_control_system())::text ELSE '' END");
  if (!r.ok()) return r.status();
  return std::make_pair(r->String(0, 0), r->String(0, 1));
}

std::string ReplicaName(const std::string& node, std::size_t j) {
  return fmt::format("{}/replica{}", node, j + 1);
}

// "replica n3/replica1 (host=... port=...)": the DSN without its password.
std::string Who(const ReplicaReplay& r, const std::string& dsn) {
  return fmt::format("replica {} ({})", r.name, DsnWithoutPassword(dsn));
}

// Connects to replica `name` with a statement timeout, so that a hung replica cannot hold a
// poll past the caller's bound.
absl::StatusOr<std::unique_ptr<pg::Conn>> ConnectReplica(const std::string& dsn,
                                                         const std::string& name,
                                                         std::chrono::milliseconds timeout) {
  auto conn = pg::Conn::Connect(dsn, name, timeout);
  if (!conn.ok()) return conn.status();
  if (auto r = (*conn)->Exec("SET statement_timeout = '5s'"); !r.ok()) return r.status();
  return conn;
}

// One poll of a replica over `conn`: fills `out` (reachable stays false on a failed query).
void Poll(pg::Conn& conn, const std::string& lsn, const std::string& system_id,
          ReplicaReplay& out) {
  auto r = conn.Exec(
      // The system identifier needs pg_control_system(), which a service role may not run:
      // without it (either side) the check is skipped.
      "SELECT pg_is_in_recovery(), $2 = '' OR NOT has_function_privilege('pg_control_system()', "
      "'execute') OR (SELECT system_identifier FROM pg_control_system())::text = $2, "
      "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, "
      "coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false), "
      "greatest(coalesce(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn()), "
      "pg_wal_lsn_diff($1::pg_lsn, '0/0')), 0)::bigint, "
      "coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), -1)::float8",
      {lsn, system_id});
  if (!r.ok()) {
    out.reachable = false;
    out.error = std::string(r.status().message());
    return;
  }
  out.reachable = true;
  out.error.clear();
  out.in_recovery = r->Text(0, 0) == "t";
  out.same_system = r->Text(0, 1) == "t";
  out.paused = r->Text(0, 2) == "t";
  out.caught_up = r->Text(0, 3) == "t";
  out.bytes_behind = out.caught_up ? 0 : r->Int64Or0(0, 4);
  out.seconds_behind = std::strtod(r->String(0, 5).c_str(), nullptr);
}

}  // namespace

ReplicaReplay MeasureReplica(const std::string& node, std::size_t j, const std::string& dsn,
                             const std::string& lsn, const std::string& system_id,
                             std::chrono::milliseconds connect_timeout) {
  ReplicaReplay out;
  out.name = ReplicaName(node, j);
  auto conn = ConnectReplica(dsn, out.name, connect_timeout);
  if (!conn.ok()) {
    out.error = std::string(conn.status().message());
    return out;
  }
  Poll(**conn, lsn, system_id, out);
  return out;
}

absl::Status WaitReplicasReplayed(pg::Conn& primary, const NodeConfig& node,
                                  std::chrono::milliseconds timeout, std::string_view what,
                                  std::string_view next) {
  if (node.replicas.empty()) return absl::OkStatus();
  auto pos = PrimaryPosition(primary);
  if (!pos.ok()) return pos.status();
  const auto& [lsn, system_id] = *pos;
  const auto deadline = Clock::now() + timeout;
  for (std::size_t j = 0; j < node.replicas.size(); ++j) {
    const std::string& dsn = node.replicas[j];
    ReplicaReplay r;
    r.name = ReplicaName(node.name, j);
    std::unique_ptr<pg::Conn> conn;  // kept across polls; reopened after a failure
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (conn == nullptr) {
        auto c = ConnectReplica(dsn, r.name,
                                std::clamp(left, std::chrono::milliseconds(100), kMaxConnectTimeout));
        if (c.ok()) {
          conn = *std::move(c);
        } else {
          r.reachable = false;
          r.error = std::string(c.status().message());
        }
      }
      if (conn != nullptr) {
        Poll(*conn, lsn, system_id, r);
        if (!r.reachable) conn.reset();
      }
      if (r.reachable && !r.in_recovery) {
        return absl::FailedPreconditionError(fmt::format(
            "{} of node {} is not replaying (pg_is_in_recovery() is false: promoted, or not a "
            "standby), so it may lack moved rows that {} holds; {} was refused. {}",
            Who(r, dsn), node.name, node.name, what, next));
      }
      if (r.reachable && !r.same_system) {
        return absl::FailedPreconditionError(fmt::format(
            "{} is not a copy of node {} (another system identifier), so nothing says it has "
            "the moved rows that {} holds; {} was refused. {}",
            Who(r, dsn), node.name, node.name, what, next));
      }
      if (r.reachable && r.caught_up) break;
      if (Clock::now() >= deadline) {
        const std::string state =
            r.reachable
                ? fmt::format("{} bytes behind, last replayed commit {}{}", r.bytes_behind,
                              r.seconds_behind >= 0
                                  ? fmt::format("{:.1f} s ago", r.seconds_behind)
                                  : std::string("none since it started"),
                              r.paused ? ", replay paused (pg_wal_replay_resume())" : "")
                : fmt::format("cannot be reached: {}", r.error);
        return absl::DeadlineExceededError(fmt::format(
            "{} of node {} has not replayed up to {}'s WAL position {} within {} ms ({}); reads "
            "from it could miss moved rows that {} holds, so {} was refused. {}",
            Who(r, dsn), node.name, node.name, lsn, timeout.count(), state, node.name, what,
            next));
      }
      std::this_thread::sleep_for(kPollEvery);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ReplicaReplay>> MeasureReplicas(pg::Conn& primary,
                                                           const NodeConfig& node) {
  std::vector<ReplicaReplay> out;
  if (node.replicas.empty()) return out;
  auto pos = PrimaryPosition(primary);
  if (!pos.ok()) return pos.status();
  for (std::size_t j = 0; j < node.replicas.size(); ++j) {
    out.push_back(MeasureReplica(node.name, j, node.replicas[j], pos->first, pos->second,
                                 std::chrono::seconds(2)));
  }
  return out;
}

}  // namespace shardline::migrate
