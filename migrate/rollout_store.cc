// Rollout state in the control catalog: see rollout_store.h.
#include "rollout_store.h"

#include <fmt/format.h>

#include <cstdlib>

#include "txn.h"

namespace shardline::migrate {
namespace {

absl::Status Exec(pg::Conn& conn, std::string_view sql, const pg::Params& params = {}) {
  auto r = conn.Exec(sql, params);
  return r.ok() ? absl::OkStatus() : r.status();
}

std::string JoinPercents(const std::vector<double>& p) {
  std::string out;
  for (std::size_t i = 0; i < p.size(); ++i) out += fmt::format("{}{}", i ? "," : "", p[i]);
  return out;
}

double ToDouble(const pg::Result& r, int row, int col, double if_null) {
  if (r.IsNull(row, col)) return if_null;
  return std::strtod(r.String(row, col).c_str(), nullptr);
}

// Sets columns of a wave. `assignments` are (column, SQL value expression over parameters
// $3...) pairs written by this file only, e.g. {"step", "$3"}, {"writes_at",
// "clock_timestamp()"}; `params` are the values of $3... in order.
absl::Status UpdateWave(pg::Conn& catalog, std::int64_t id, int wave,
                        const std::vector<std::pair<std::string, std::string>>& assignments,
                        const pg::Params& params) {
  std::string set;
  for (const auto& [column, value] : assignments) {
    if (!set.empty()) set += ", ";
    set += fmt::format("{} = {}", catalog.QuoteIdent(column), value);
  }
  pg::Params all = {std::to_string(id), std::to_string(wave)};
  all.insert(all.end(), params.begin(), params.end());
  if (auto s = Exec(catalog,
                    fmt::format("UPDATE shardline.migration_waves SET {} WHERE migration_id = $1 "
                                "AND wave = $2",
                                set),
                    all);
      !s.ok()) {
    return s;
  }
  return Exec(catalog, "UPDATE shardline.migrations SET updated_at = now() WHERE id = $1",
              {std::to_string(id)});
}

}  // namespace

absl::StatusOr<std::int64_t> CreateMigration(pg::Conn& catalog, const std::string& plan_toml,
                                             std::int64_t base_version,
                                             const std::vector<double>& percents,
                                             double soak_seconds, const std::string& os_user,
                                             const std::vector<double>& wave_shares,
                                             const std::vector<RangeRecord>& ranges) {
  Txn txn(catalog);
  if (auto s = txn.Begin(); !s.ok()) return s;
  auto r = catalog.Exec(
      "INSERT INTO shardline.migrations (plan_toml, base_version, published_version, "
      "wave_percents, soak_seconds, os_user) VALUES ($1, $2, $2, $3, $4, nullif($5, '')) "
      "RETURNING id",
      {plan_toml, std::to_string(base_version), JoinPercents(percents),
       fmt::format("{}", soak_seconds), os_user});
  if (!r.ok()) {
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::FailedPreconditionError(
          "another migration became active at the same moment (the catalog allows one at a "
          "time); nothing was changed: see `shardline rollout status`");
    }
    return r.status();
  }
  const std::int64_t id = r->Int64Or0(0, 0);
  for (std::size_t w = 0; w < wave_shares.size(); ++w) {
    if (auto s =
            Exec(catalog,
                 "INSERT INTO shardline.migration_waves (migration_id, wave, share_percent) "
                 "VALUES ($1, $2, $3)",
                 {std::to_string(id), std::to_string(w + 1), fmt::format("{}", wave_shares[w])});
        !s.ok()) {
      return s;
    }
  }
  for (const RangeRecord& rr : ranges) {
    if (auto s = Exec(catalog,
                      "INSERT INTO shardline.migration_ranges (migration_id, wave, lo, hi, source, "
                      "target, est_rows, est_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      {std::to_string(id), std::to_string(rr.wave), std::to_string(rr.lo),
                       std::to_string(rr.hi), rr.source, rr.target, std::to_string(rr.est_rows),
                       std::to_string(rr.est_bytes)});
        !s.ok()) {
      return s;
    }
  }
  if (auto s = txn.Commit(); !s.ok()) return s;
  return id;
}

absl::StatusOr<MigrationState> LoadMigration(pg::Conn& catalog, std::int64_t id) {
  MigrationState st;
  const std::string sid = std::to_string(id);
  auto m = catalog.Exec(
      "SELECT id, state, plan_toml, base_version, wave_percents, soak_seconds, "
      "created_at::text, updated_at::text, coalesce(finished_at::text, ''), created_by, "
      "coalesce(os_user, ''), coalesce(last_error, ''), tag, coalesce(published_version, "
      "base_version) FROM shardline.migrations WHERE id = $1",
      {sid});
  if (!m.ok()) return m.status();
  if (m->rows() == 0) {
    return absl::NotFoundError(fmt::format("migration {} does not exist", id));
  }
  MigrationRecord& rec = st.migration;
  rec.id = id;
  rec.state = m->String(0, 1);
  rec.plan_toml = m->String(0, 2);
  rec.base_version = m->Int64Or0(0, 3);
  {
    std::string p = m->String(0, 4);
    std::size_t pos = 0;
    while (pos < p.size()) {
      std::size_t c = p.find(',', pos);
      if (c == std::string::npos) c = p.size();
      rec.percents.push_back(std::strtod(p.substr(pos, c - pos).c_str(), nullptr));
      pos = c + 1;
    }
  }
  rec.soak_seconds = ToDouble(*m, 0, 5, 0);
  rec.created_at = m->String(0, 6);
  rec.updated_at = m->String(0, 7);
  rec.finished_at = m->String(0, 8);
  rec.created_by = m->String(0, 9);
  rec.os_user = m->String(0, 10);
  rec.last_error = m->String(0, 11);
  rec.tag = m->String(0, 12);
  rec.published_version = m->Int64Or0(0, 13);

  auto w = catalog.Exec(
      "SELECT wave, step, share_percent, coalesce(started_at::text, ''), "
      "coalesce(verified_at::text, ''), coalesce(reads_at::text, ''), "
      "coalesce(fenced_at::text, ''), coalesce(writes_at::text, ''), "
      "coalesce(soak_until::text, ''), coalesce(soak_until <= now(), false), "
      "greatest(coalesce(extract(epoch FROM soak_until - now()), 0), 0)::float8, "
      "verify_clean, coalesce(verify_summary, ''), rows_verified, gate_pause_ms, "
      "write_window_ms, coalesce(fence_lsn, ''), coalesce(reads_version, 0), "
      "coalesce(writes_version, 0) FROM shardline.migration_waves WHERE migration_id = $1 "
      "ORDER BY wave",
      {sid});
  if (!w.ok()) return w.status();
  for (int i = 0; i < w->rows(); ++i) {
    WaveRecord wr;
    wr.wave = static_cast<int>(w->Int64Or0(i, 0));
    absl::StatusOr<WaveStep> step = ParseWaveStep(w->Text(i, 1));
    if (!step.ok()) return step.status();
    wr.step = *step;
    wr.share_percent = ToDouble(*w, i, 2, 0);
    wr.started_at = w->String(i, 3);
    wr.verified_at = w->String(i, 4);
    wr.reads_at = w->String(i, 5);
    wr.fenced_at = w->String(i, 6);
    wr.writes_at = w->String(i, 7);
    wr.soak_until = w->String(i, 8);
    wr.soak_over = w->Text(i, 9) == "t";
    wr.soak_left_seconds = ToDouble(*w, i, 10, 0);
    if (!w->IsNull(i, 11)) wr.verify_clean = w->Text(i, 11) == "t";
    wr.verify_summary = w->String(i, 12);
    wr.rows_verified = w->IsNull(i, 13) ? -1 : w->Int64Or0(i, 13);
    wr.gate_pause_ms = ToDouble(*w, i, 14, -1);
    wr.write_window_ms = ToDouble(*w, i, 15, -1);
    wr.fence_lsn = w->String(i, 16);
    wr.reads_version = w->Int64Or0(i, 17);
    wr.writes_version = w->Int64Or0(i, 18);
    st.waves.push_back(std::move(wr));
  }

  auto r = catalog.Exec(
      "SELECT wave, lo, hi, source, target, est_rows, est_bytes FROM shardline.migration_ranges "
      "WHERE migration_id = $1 ORDER BY lo",
      {sid});
  if (!r.ok()) return r.status();
  for (int i = 0; i < r->rows(); ++i) {
    RangeRecord rr;
    rr.wave = static_cast<int>(r->Int64Or0(i, 0));
    rr.lo = r->Int64Or0(i, 1);
    rr.hi = r->Int64Or0(i, 2);
    rr.source = r->String(i, 3);
    rr.target = r->String(i, 4);
    rr.est_rows = r->Int64Or0(i, 5);
    rr.est_bytes = r->Int64Or0(i, 6);
    st.ranges.push_back(std::move(rr));
  }

  auto s = catalog.Exec(
      "SELECT wave, step, started_at::text, coalesce(finished_at::text, ''), "
      "coalesce(outcome, ''), coalesce(detail, '') FROM shardline.migration_steps "
      "WHERE migration_id = $1 ORDER BY id DESC LIMIT 50",
      {sid});
  if (!s.ok()) return s.status();
  for (int i = 0; i < s->rows(); ++i) {
    st.steps.push_back(StepRecord{static_cast<int>(s->Int64Or0(i, 0)), s->String(i, 1),
                                  s->String(i, 2), s->String(i, 3), s->String(i, 4),
                                  s->String(i, 5)});
  }
  return st;
}

absl::StatusOr<std::vector<std::int64_t>> ListMigrations(pg::Conn& catalog) {
  auto present = catalog.Exec("SELECT to_regclass('shardline.migrations') IS NOT NULL");
  if (!present.ok()) return present.status();
  if (present->Text(0, 0) != "t") return std::vector<std::int64_t>{};
  auto r = catalog.Exec("SELECT id FROM shardline.migrations ORDER BY id DESC");
  if (!r.ok()) return r.status();
  std::vector<std::int64_t> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->Int64Or0(i, 0));
  return out;
}

absl::StatusOr<std::int64_t> BeginStep(pg::Conn& catalog, std::int64_t id, int wave,
                                       const std::string& step) {
  auto r = catalog.Exec(
      "INSERT INTO shardline.migration_steps (migration_id, wave, step) VALUES ($1, $2, $3) "
      "RETURNING id",
      {std::to_string(id), std::to_string(wave), step});
  if (!r.ok()) return r.status();
  return r->Int64Or0(0, 0);
}

absl::Status EndStep(pg::Conn& catalog, std::int64_t step_id, bool ok, const std::string& detail) {
  return Exec(catalog,
              "UPDATE shardline.migration_steps SET finished_at = clock_timestamp(), outcome = $2, "
              "detail = nullif($3, '') WHERE id = $1",
              {std::to_string(step_id), std::string(ok ? "ok" : "failed"), detail});
}


absl::Status RecordCatchUpStarted(pg::Conn& catalog, std::int64_t id, int wave) {
  return UpdateWave(catalog, id, wave,
                    {{"started_at", "coalesce(started_at, clock_timestamp())"}}, {});
}

absl::Status RecordWaveStep(pg::Conn& catalog, std::int64_t id, int wave, WaveStep step) {
  std::vector<std::pair<std::string, std::string>> set = {{"step", "$3"}};
  if (step == WaveStep::kVerified) set.push_back({"verified_at", "clock_timestamp()"});
  return UpdateWave(catalog, id, wave, set, {std::string(WaveStepName(step))});
}

absl::Status RecordGate(pg::Conn& catalog, std::int64_t id, int wave, bool clean,
                        const std::string& summary, std::int64_t rows, double pause_ms) {
  return UpdateWave(catalog, id, wave,
                    {{"verify_clean", "$3::boolean"},
                     {"verify_summary", "$4"},
                     {"rows_verified", "$5::bigint"},
                     {"gate_pause_ms", "$6::float8"}},
                    {clean ? "true" : "false", summary, std::to_string(rows),
                     fmt::format("{}", pause_ms)});
}

absl::Status RecordReadsSwitched(pg::Conn& catalog, std::int64_t id, int wave,
                                 std::int64_t version) {
  return UpdateWave(catalog, id, wave,
                    {{"step", "'reads_switched'"},
                     {"reads_at", "clock_timestamp()"},
                     {"reads_version", "$3::bigint"}},
                    {std::to_string(version)});
}

absl::Status RecordFencedAt(pg::Conn& catalog, std::int64_t id, int wave) {
  return UpdateWave(catalog, id, wave, {{"fenced_at", "coalesce(fenced_at, clock_timestamp())"}},
                    {});
}

absl::Status ClearFencedAt(pg::Conn& catalog, std::int64_t id, int wave) {
  return UpdateWave(catalog, id, wave, {{"fenced_at", "NULL"}}, {});
}

absl::Status RecordWritesSwitched(pg::Conn& catalog, std::int64_t id, int wave,
                                  std::int64_t version, const std::string& fence_lsns,
                                  double soak_seconds) {
  return UpdateWave(
      catalog, id, wave,
      {{"step", "'writes_switched'"},
       {"writes_at", "clock_timestamp()"},
       {"write_window_ms",
        "coalesce(write_window_ms, extract(epoch FROM clock_timestamp() - fenced_at) * 1000)"},
       {"writes_version", "$3::bigint"},
       {"fence_lsn", "$4"},
       {"soak_until", "clock_timestamp() + make_interval(secs => $5::float8)"}},
      {std::to_string(version), fence_lsns, fmt::format("{}", soak_seconds)});
}

absl::Status SetMigrationState(pg::Conn& catalog, std::int64_t id, std::string_view state) {
  return Exec(catalog,
              "UPDATE shardline.migrations SET state = $2, updated_at = now(), last_error = NULL, "
              "finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END WHERE id = $1",
              {std::to_string(id), std::string(state)});
}

absl::Status TransitionMigration(pg::Conn& catalog, std::int64_t id, std::string_view from,
                                 std::string_view to) {
  auto r = catalog.Exec(
      "WITH moved AS (UPDATE shardline.migrations SET state = $3, updated_at = now() "
      "WHERE id = $1 AND state = $2 RETURNING state) "
      "SELECT coalesce((SELECT state FROM moved), (SELECT state FROM shardline.migrations "
      "WHERE id = $1))",
      {std::to_string(id), std::string(from), std::string(to)});
  if (!r.ok()) return r.status();
  const std::string now = r->String(0, 0);
  if (now == to) return absl::OkStatus();
  return absl::FailedPreconditionError(
      fmt::format("migration {} is {}, not {}", id, now.empty() ? "missing" : now, from));
}

absl::Status FinishUnwind(pg::Conn& catalog, std::int64_t id, std::string_view final_state) {
  Txn txn(catalog);
  if (auto s = txn.Begin(); !s.ok()) return s;
  if (auto s = Exec(catalog,
                    "UPDATE shardline.migration_waves SET step = 'pending' WHERE migration_id = $1",
                    {std::to_string(id)});
      !s.ok()) {
    return s;
  }
  if (auto s = SetMigrationState(catalog, id, final_state); !s.ok()) return s;
  return txn.Commit();
}

absl::Status SetPublishedVersion(pg::Conn& catalog, std::int64_t id, std::int64_t version) {
  return Exec(catalog,
              "UPDATE shardline.migrations SET published_version = $2, updated_at = now() "
              "WHERE id = $1",
              {std::to_string(id), std::to_string(version)});
}

absl::StatusOr<std::int64_t> ActiveMigration(pg::Conn& catalog, std::int64_t except) {
  auto r = catalog.Exec(
      "SELECT id FROM shardline.migrations WHERE state IN ('running', 'cleaning', "
      "'rolling_back', 'aborting') AND id <> $1 ORDER BY id LIMIT 1",
      {std::to_string(except)});
  if (!r.ok()) return r.status();
  return r->rows() == 0 ? 0 : r->Int64Or0(0, 0);
}

absl::Status SetLastError(pg::Conn& catalog, std::int64_t id, const std::string& error) {
  return Exec(catalog,
              "UPDATE shardline.migrations SET last_error = nullif($2, ''), updated_at = now() "
              "WHERE id = $1",
              {std::to_string(id), error});
}

absl::StatusOr<std::vector<std::string>> LiveRoutersBehind(pg::Conn& catalog, std::int64_t version,
                                                           std::chrono::seconds stale_after) {
  auto r = catalog.Exec(
      "SELECT router_id || ' (' || host || ' pid ' || pid || ', at version ' || map_version "
      "|| ')' FROM shardline.routers WHERE last_heartbeat > now() - make_interval(secs => $1) "
      "AND map_version < $2 ORDER BY router_id",
      {std::to_string(stale_after.count()), std::to_string(version)});
  if (!r.ok()) return r.status();
  std::vector<std::string> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(r->String(i, 0));
  return out;
}

absl::Status LockStart(pg::Conn& catalog) {
  // "shlstart": a key of its own, beside the per-migration keys (from the tags).
  auto r = catalog.Exec("SELECT pg_try_advisory_lock($1)", {std::to_string(0x73686c7374617274)});
  if (!r.ok()) return r.status();
  if (r->Text(0, 0) != "t") {
    return absl::FailedPreconditionError(
        "another `shardline rollout start` is running on this catalog; nothing was changed. "
        "See `shardline rollout status` once it is done");
  }
  return absl::OkStatus();
}

absl::Status LockMigration(pg::Conn& catalog, std::int64_t id, std::string_view tag) {
  auto r = catalog.Exec("SELECT pg_try_advisory_lock($1)",
                        {std::to_string(PauseLockKey(tag) ^ (std::int64_t{1} << 31))});
  if (!r.ok()) return r.status();
  if (r->Text(0, 0) != "t") {
    return absl::FailedPreconditionError(fmt::format(
        "migration {} is being driven by another shardline process (it holds the migration's "
        "lock in the catalog); wait for it, or kill it and run the command again",
        id));
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
