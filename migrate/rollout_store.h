// The persisted state of rollouts in the control catalog (schemas/catalog.sql: migrations,
// migration_waves, migration_ranges, migration_steps): create a migration with its waves and
// ranges, load it back, record each step before and after it acts, update a wave's step and
// measurements, and lock a migration so that one process drives it at a time. Free functions
// over the catalog's pg::Conn: single-threaded, like the connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "rollout_waves.h"

namespace shardline::migrate {

// Migration states (migrations.state).
// running: waves advance. cleaning / rolling_back / aborting: a destructive ending has begun
// (one-way: only the same command may continue it). cleaned / rolled_back / aborted: over.
inline constexpr std::string_view kMigrationRunning = "running";
inline constexpr std::string_view kMigrationCleaning = "cleaning";
inline constexpr std::string_view kMigrationRollingBack = "rolling_back";
inline constexpr std::string_view kMigrationAborting = "aborting";
inline constexpr std::string_view kMigrationCleaned = "cleaned";
inline constexpr std::string_view kMigrationRolledBack = "rolled_back";
inline constexpr std::string_view kMigrationAborted = "aborted";

struct MigrationRecord {
  std::int64_t id = 0;
  std::string tag;  // random hex, part of the replication object names
  std::string state;
  std::string plan_toml;  // with passwords: never print
  std::int64_t base_version = 0;
  std::int64_t published_version = 0;  // the map version this migration published last
  std::vector<double> percents;
  double soak_seconds = 0;
  std::string created_at;  // text timestamps, as the catalog renders them
  std::string updated_at;
  std::string finished_at;
  std::string created_by;
  std::string os_user;
  std::string last_error;
};

struct WaveRecord {
  int wave = 0;  // 1-based
  WaveStep step = WaveStep::kPending;
  double share_percent = 0;
  std::string started_at, verified_at, reads_at, fenced_at, writes_at, soak_until;
  bool soak_over = false;  // soak_until is set and has passed (catalog clock)
  double soak_left_seconds = 0;
  std::optional<bool> verify_clean;
  std::string verify_summary;
  std::int64_t rows_verified = -1;
  double gate_pause_ms = -1;
  double write_window_ms = -1;
  std::string fence_lsn;
  std::int64_t reads_version = 0;
  std::int64_t writes_version = 0;
};

struct RangeRecord {
  int wave = 0;
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::string source;
  std::string target;
  std::int64_t est_rows = 0;
  std::int64_t est_bytes = 0;
};

struct StepRecord {
  int wave = 0;
  std::string step;
  std::string started_at;
  std::string finished_at;  // empty: began and never finished (the process died)
  std::string outcome;      // "ok", "failed" or ""
  std::string detail;
};

struct MigrationState {
  MigrationRecord migration;
  std::vector<WaveRecord> waves;    // by wave number
  std::vector<RangeRecord> ranges;  // by lo
  std::vector<StepRecord> steps;    // the most recent first (at most 50)
};

// Inserts a migration, its waves (cumulative share per wave) and its ranges in one transaction.
// Returns the new id. FailedPrecondition naming the active migration when another one is
// running or ending (the catalog's unique index decides, so two concurrent starts cannot both
// pass).
absl::StatusOr<std::int64_t> CreateMigration(pg::Conn& catalog, const std::string& plan_toml,
                                             std::int64_t base_version,
                                             const std::vector<double>& percents,
                                             double soak_seconds, const std::string& os_user,
                                             const std::vector<double>& wave_shares,
                                             const std::vector<RangeRecord>& ranges);

// Loads migration `id`. NotFound "migration 7 does not exist" when absent.
absl::StatusOr<MigrationState> LoadMigration(pg::Conn& catalog, std::int64_t id);
// Ids of every migration, newest first; none when the catalog has no rollout tables yet.
absl::StatusOr<std::vector<std::int64_t>> ListMigrations(pg::Conn& catalog);

// Records that `step` of `wave` (0 = the migration) begins; returns the step row's id.
absl::StatusOr<std::int64_t> BeginStep(pg::Conn& catalog, std::int64_t id, int wave,
                                       const std::string& step);
// Records the end of step `step_id` with its outcome and a detail line.
absl::Status EndStep(pg::Conn& catalog, std::int64_t step_id, bool ok, const std::string& detail);

// A wave's records: catch-up began (started_at, kept by a rerun); a step reached (catching_up,
// verified: verified_at stamped); the gate's outcome (clean or not, the summary, rows compared,
// the longest pause); reads switched (reads_at, the map version).
absl::Status RecordCatchUpStarted(pg::Conn& catalog, std::int64_t id, int wave);
absl::Status RecordWaveStep(pg::Conn& catalog, std::int64_t id, int wave, WaveStep step);
absl::Status RecordGate(pg::Conn& catalog, std::int64_t id, int wave, bool clean,
                        const std::string& summary, std::int64_t rows, double pause_ms);
absl::Status RecordReadsSwitched(pg::Conn& catalog, std::int64_t id, int wave,
                                 std::int64_t version);

// The write window of wave `wave`: fenced_at stamped before the fence (a rerun keeps the first
// stamp), cleared when the window is reverted, and the switch recorded (step writes_switched,
// the owner map's version, the fence positions, write_window_ms, soak_until) after the owner
// map is published.
absl::Status RecordFencedAt(pg::Conn& catalog, std::int64_t id, int wave);
absl::Status ClearFencedAt(pg::Conn& catalog, std::int64_t id, int wave);
absl::Status RecordWritesSwitched(pg::Conn& catalog, std::int64_t id, int wave,
                                  std::int64_t version, const std::string& fence_lsns,
                                  double soak_seconds);

// Sets a migration's state (finished_at too unless running) and clears or sets last_error.
absl::Status SetMigrationState(pg::Conn& catalog, std::int64_t id, std::string_view state);

// Moves migration `id` from `from` to `to` in one statement (a one-way ending begins: cleaning,
// rolling_back, aborting). OK when it is already `to` (a rerun continues it); FailedPrecondition
// "migration 7 is cleaning, not running" otherwise.
absl::Status TransitionMigration(pg::Conn& catalog, std::int64_t id, std::string_view from,
                                 std::string_view to);

// The end of a rollback or abort, in one transaction: every wave back to pending and the
// migration `final_state` (rolled_back, aborted).
absl::Status FinishUnwind(pg::Conn& catalog, std::int64_t id, std::string_view final_state);

// Records that migration `id` published map `version` (PublishStage checks it next time).
absl::Status SetPublishedVersion(pg::Conn& catalog, std::int64_t id, std::int64_t version);

// The active migration (running or ending) other than `except`, or 0 when none.
absl::StatusOr<std::int64_t> ActiveMigration(pg::Conn& catalog, std::int64_t except = 0);
absl::Status SetLastError(pg::Conn& catalog, std::int64_t id, const std::string& error);

// Live routers (heartbeat within `stale_after`) at a map version below `version`, each as
// "id (host pid N, at version V)", by id.
absl::StatusOr<std::vector<std::string>> LiveRoutersBehind(pg::Conn& catalog, std::int64_t version,
                                                           std::chrono::seconds stale_after);

// Takes the session lock `rollout start` holds for its whole run (released when the connection
// closes, also on a kill). FailedPrecondition when another start holds it.
absl::Status LockStart(pg::Conn& catalog);

// Takes a session-level advisory lock on the catalog connection for migration `id` (tag `tag`), so
// that one process drives it at a time. FailedPrecondition "migration 7 is being driven by another
// shardline process" when taken; released when the connection closes (also on a kill).
absl::Status LockMigration(pg::Conn& catalog, std::int64_t id, std::string_view tag);

}  // namespace shardline::migrate
