// `shardline rollout ...` (see rollout_command.h).
#include "cli/rollout_command.h"

#include <fmt/format.h>

#include <cctype>
#include <csignal>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "rollout.h"
#include "rollout_waves.h"

namespace shardline::migrate {
namespace {

using Json = nlohmann::ordered_json;

std::chrono::milliseconds Ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

absl::StatusOr<RolloutOptions> EngineOptions(const RolloutCliOptions& o) {
  absl::StatusOr<std::string> dsn = ResolveCatalog(o.catalog_dsn, std::getenv(kCatalogEnv));
  if (!dsn.ok()) return dsn.status();
  RolloutOptions e;
  e.catalog_dsn = *dsn;
  e.pause_lock_timeout = Ms(o.pause_lock_timeout_s);
  e.apply_wait = Ms(o.apply_wait_s);
  e.copy_wait = Ms(o.copy_wait_s);
  e.router_wait = Ms(o.router_wait_s);
  e.statement_timeout = Ms(o.statement_timeout_s);
  e.lock_timeout = Ms(o.lock_timeout_s);
  absl::StatusOr<double> window = ParseDurationSeconds(o.write_window);
  if (!window.ok()) {
    return UsageError(fmt::format("--write-window: {}", std::string(window.status().message())));
  }
  e.write_window = Ms(*window);
  e.delete_batch = o.delete_batch;
  e.delete_rows_per_second = o.delete_rate;
  if (!o.json) {
    e.log = [](const std::string& line) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    };
  }
  const char* kill_at = std::getenv(kRolloutKillEnvForTest);
  if (kill_at != nullptr && *kill_at != '\0') {
    std::string point = kill_at;
    e.at_point_for_test = [point](std::string_view at) {
      if (at == point) {
        std::fflush(stdout);
        std::raise(SIGKILL);
      }
    };
  }
  return e;
}

std::string Ms1(double ms) { return ms < 0 ? "-" : fmt::format("{:.1f}", ms); }

Json StatusJson(const RolloutStatus& s) {
  const MigrationRecord& m = s.state.migration;
  Json j;
  j["id"] = m.id;
  j["state"] = m.state;
  j["base_version"] = m.base_version;
  j["created_at"] = m.created_at;
  j["updated_at"] = m.updated_at;
  j["finished_at"] = m.finished_at;
  j["soak_seconds"] = m.soak_seconds;
  j["last_error"] = m.last_error;
  j["next"] = s.next;
  j["reverse_problems"] = s.reverse_problems;
  Json waves = Json::array();
  for (std::size_t i = 0; i < s.state.waves.size(); ++i) {
    const WaveRecord& w = s.state.waves[i];
    const WaveLive& l = i < s.live.size() ? s.live[i] : WaveLive{};
    Json jw;
    jw["wave"] = w.wave;
    jw["step"] = std::string(WaveStepName(w.step));
    jw["share_percent"] = w.share_percent;
    jw["started_at"] = w.started_at;
    jw["verified_at"] = w.verified_at;
    jw["reads_at"] = w.reads_at;
    jw["fenced_at"] = w.fenced_at;
    jw["writes_at"] = w.writes_at;
    jw["soak_until"] = w.soak_until;
    jw["verify_clean"] = w.verify_clean.has_value() ? Json(*w.verify_clean) : Json(nullptr);
    jw["verify_summary"] = w.verify_summary;
    jw["rows_verified"] = w.rows_verified;
    jw["gate_pause_ms"] = w.gate_pause_ms;
    jw["write_window_ms"] = w.write_window_ms;
    jw["reads_version"] = w.reads_version;
    jw["writes_version"] = w.writes_version;
    jw["lag_bytes"] = l.lag_bytes;
    jw["lag_seconds"] = l.lag_seconds;
    jw["rows_on_target"] = l.rows_on_target;
    Json ranges = Json::array();
    for (const RangeRecord& r : s.state.ranges) {
      if (r.wave != w.wave) continue;
      ranges.push_back({{"lo", r.lo},
                        {"hi", r.hi},
                        {"source", r.source},
                        {"target", r.target},
                        {"est_rows", r.est_rows},
                        {"est_bytes", r.est_bytes}});
    }
    jw["ranges"] = std::move(ranges);
    waves.push_back(std::move(jw));
  }
  j["waves"] = std::move(waves);
  return j;
}

void PrintStatus(const RolloutStatus& s) {
  const MigrationRecord& m = s.state.migration;
  fmt::print("migration {}: {} (from map version {}, created {} by {}{})\n", m.id, m.state,
             m.base_version, m.created_at, m.created_by,
             m.os_user.empty() ? "" : " / " + m.os_user);
  if (!m.last_error.empty()) fmt::print("  last error: {}\n", m.last_error);
  std::vector<std::vector<std::string>> rows = {{"wave", "share", "ranges", "step", "rows",
                                                 "lag_bytes", "lag_s", "gate_pause_ms",
                                                 "write_window_ms", "verify"}};
  for (std::size_t i = 0; i < s.state.waves.size(); ++i) {
    const WaveRecord& w = s.state.waves[i];
    const WaveLive& l = i < s.live.size() ? s.live[i] : WaveLive{};
    int n = 0;
    for (const RangeRecord& r : s.state.ranges) n += r.wave == w.wave ? 1 : 0;
    std::string rows_text = l.rows_on_target >= 0  ? fmt::format("{} copied", l.rows_on_target)
                            : w.rows_verified >= 0 ? fmt::format("{} verified", w.rows_verified)
                                                   : "-";
    rows.push_back({std::to_string(w.wave), fmt::format("{:.2f}%", w.share_percent),
                    std::to_string(n), std::string(WaveStepName(w.step)), rows_text,
                    l.lag_bytes >= 0 ? std::to_string(l.lag_bytes) : "-",
                    l.lag_seconds >= 0 ? fmt::format("{:.3f}", l.lag_seconds) : "-",
                    Ms1(w.gate_pause_ms), Ms1(w.write_window_ms),
                    !w.verify_clean.has_value() ? "-" : (*w.verify_clean ? "clean" : "FAILED")});
  }
  fmt::print("{}",
             FormatTable(rows, {true, true, true, false, false, true, true, true, true, false}));
  for (const WaveRecord& w : s.state.waves) {
    if (w.started_at.empty()) continue;
    fmt::print("  wave {}: started {}{}{}{}{}\n", w.wave, w.started_at,
               w.verified_at.empty() ? "" : ", verified " + w.verified_at,
               w.reads_at.empty() ? "" : ", reads " + w.reads_at,
               w.writes_at.empty() ? "" : ", writes " + w.writes_at,
               w.soak_until.empty() ? "" : ", soak until " + w.soak_until);
    if (w.verify_clean.has_value() && !*w.verify_clean) {
      fmt::print("    verify: {}\n", w.verify_summary);
    }
  }
  for (const std::string& p : s.reverse_problems) fmt::print("  reverse replication: {}\n", p);
  fmt::print("  next: {}\n", s.next);
}

CLI::App* AddMigrationOptions(CLI::App* cmd, RolloutCliOptions& o) {
  cmd->add_option("--catalog", o.catalog_dsn,
                  fmt::format("Control database (default: ${})", kCatalogEnv));
  cmd->add_option("--migration", o.migration, "Migration id (see `rollout status`)")->required();
  return cmd;
}

void AddTimeouts(CLI::App* cmd, RolloutCliOptions& o) {
  cmd->add_option("--pause-timeout", o.pause_lock_timeout_s,
                  "Seconds to wait for in-flight writers when pausing or fencing (default 2)");
  cmd->add_option("--apply-wait", o.apply_wait_s,
                  "Seconds to wait for a subscriber to catch up (default 30)");
  cmd->add_option("--copy-wait", o.copy_wait_s,
                  "Seconds the gate waits for the initial copy (default 600)");
  cmd->add_option("--router-wait", o.router_wait_s,
                  "Seconds to wait for live routers to apply a map (default 60)");
  cmd->add_option("--statement-timeout", o.statement_timeout_s,
                  "statement_timeout, in seconds, of every connection the command opens "
                  "(default 300; a statement that runs longer fails its step, named)");
  cmd->add_option("--lock-timeout", o.lock_timeout_s,
                  "lock_timeout, in seconds, of every connection the command opens (default 10)");
  cmd->add_option("--write-window", o.write_window,
                  "Deadline of a wave's write window, from the fence to the owner map (default "
                  "5s): past it the switch reverts by itself (the sources take writes again)");
}

}  // namespace

absl::StatusOr<double> ParseDurationSeconds(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  const std::string number = text.substr(0, i);
  const std::string unit = text.substr(i);
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  if (number.empty() || end != number.c_str() + number.size()) {
    return absl::InvalidArgumentError(
        fmt::format("'{}' is not a duration (e.g. 30s, 5m, 1h, 250ms)", text));
  }
  if (unit.empty() || unit == "s") return v;
  if (unit == "ms") return v / 1000;
  if (unit == "m") return v * 60;
  if (unit == "h") return v * 3600;
  return absl::InvalidArgumentError(
      fmt::format("'{}': unknown unit '{}' (use ms, s, m or h)", text, unit));
}

CLI::App* SetupRollout(CLI::App& app, RolloutCliOptions& o) {
  CLI::App* group = app.add_subcommand(
      "rollout",
      "Move a plan's ranges online in waves: catch-up, verify, switch reads, switch "
      "writes, soak; rollback at any step");
  group->require_subcommand(1);
  group->footer(
      "A typical run:\n"
      "  shardline rebalance plan ... -o plan.toml\n"
      "  shardline rollout start --plan plan.toml --waves 1%,10%,50%,100% --soak 10m\n"
      "  shardline rollout status\n"
      "  shardline rollout advance --migration 1 --auto\n"
      "  shardline rollout cleanup --migration 1\n"
      "Each step is recorded in the catalog before and after it acts: if a command dies, run\n"
      "it again. The protocol: docs/architecture.md, \"Rollout\".");

  CLI::App* start = group->add_subcommand(
      "start", "Check every precondition, record the migration and start the pilot wave");
  start->add_option("--catalog", o.catalog_dsn,
                    fmt::format("Control database (default: ${})", kCatalogEnv));
  start->add_option("--plan", o.plan, "Plan file (`shardline rebalance plan`)")->required();
  start->add_option("--waves", o.waves,
                    "Cumulative shares of the moved bytes per wave, pilot first (default "
                    "1%,10%,50%,100%)");
  start->add_option("--soak", o.soak, "How long each wave runs before the next (e.g. 10m)");
  start->add_flag("--auto", o.auto_advance, "Go on through every wave while the gates hold");
  AddTimeouts(start, o);

  CLI::App* status = group->add_subcommand("status", "Where each migration, wave and range is");
  status->add_option("--catalog", o.catalog_dsn,
                     fmt::format("Control database (default: ${})", kCatalogEnv));
  status->add_option("--migration", o.migration, "One migration (default: every one)");
  status->add_flag("--json", o.json, "Print JSON");

  CLI::App* advance = AddMigrationOptions(
      group->add_subcommand("advance", "Run the next step of the current wave"), o);
  advance->add_flag("--auto", o.auto_advance,
                    "Go on through every step of every wave while the gates hold");
  AddTimeouts(advance, o);

  CLI::App* rollback = AddMigrationOptions(
      group->add_subcommand("rollback",
                            "Back to the previous owners with no lost write (before cleanup)"),
      o);
  AddTimeouts(rollback, o);
  CLI::App* cleanup = AddMigrationOptions(
      group->add_subcommand("cleanup",
                            "After the soak: drop replication, delete moved rows from the "
                            "sources, lift fences"),
      o);
  cleanup->add_option("--batch", o.delete_batch, "Rows deleted per transaction (default 5000)");
  cleanup->add_option("--rate", o.delete_rate, "Rows deleted per second at most (0 = no limit)");
  AddTimeouts(cleanup, o);
  CLI::App* abort = AddMigrationOptions(
      group->add_subcommand("abort",
                            "Before writes switch: remove everything the migration created"),
      o);
  AddTimeouts(abort, o);
  return group;
}

absl::Status RunRollout(const CLI::App& group, const RolloutCliOptions& o) {
  auto parsed = [&](const char* name) {
    for (const CLI::App* c : group.get_subcommands()) {  // the parsed ones
      if (c->get_name() == name) return true;
    }
    return false;
  };
  // Flags first: a bad --waves is reported whatever the environment.
  absl::StatusOr<std::vector<double>> percents = ParseWavePercents(o.waves);
  absl::StatusOr<double> soak = ParseDurationSeconds(o.soak);
  if (parsed("start")) {
    if (!percents.ok()) return UsageError(std::string(percents.status().message()));
    if (!soak.ok()) return UsageError(std::string(soak.status().message()));
  }
  absl::StatusOr<RolloutOptions> e = EngineOptions(o);
  if (!e.ok()) return e.status();
  if (parsed("start")) {
    RolloutStartOptions s;
    s.plan_path = o.plan;
    s.wave_percents = *percents;
    s.soak_seconds = *soak;
    s.auto_advance = o.auto_advance;
    auto id = StartRollout(*e, s);
    if (!id.ok()) return id.status();
    fmt::print("migration {} started\n", *id);
    auto st = DescribeRollout(*e, *id);
    if (st.ok()) fmt::print("next: {}\n", st->next);
    return absl::OkStatus();
  }
  if (parsed("status")) {
    std::vector<std::int64_t> ids;
    if (o.migration > 0) {
      ids.push_back(o.migration);
    } else {
      auto all = ListRollouts(*e);
      if (!all.ok()) return all.status();
      ids = *all;
    }
    Json out = Json::array();
    for (std::int64_t id : ids) {
      auto st = DescribeRollout(*e, id);
      if (!st.ok()) return st.status();
      if (o.json) {
        out.push_back(StatusJson(*st));
      } else {
        PrintStatus(*st);
      }
    }
    if (o.json) {
      fmt::print("{}\n", out.dump(2));
    } else if (ids.empty()) {
      fmt::print("no migrations\n");
    }
    return absl::OkStatus();
  }
  if (parsed("advance")) return AdvanceRollout(*e, o.migration, o.auto_advance);
  if (parsed("rollback")) {
    if (auto s = RollbackRollout(*e, o.migration); !s.ok()) return s;
    auto st = DescribeRollout(*e, o.migration);
    fmt::print("migration {} {}\n", o.migration,
               st.ok() && st->state.migration.state == kMigrationAborted ? "aborted"
                                                                          : "rolled back");
    return absl::OkStatus();
  }
  if (parsed("cleanup")) {
    if (auto s = CleanupRollout(*e, o.migration); !s.ok()) return s;
    fmt::print("migration {} cleaned up\n", o.migration);
    return absl::OkStatus();
  }
  if (parsed("abort")) {
    if (auto s = AbortRollout(*e, o.migration); !s.ok()) return s;
    fmt::print("migration {} aborted\n", o.migration);
    return absl::OkStatus();
  }
  return UsageError("rollout: no subcommand given");
}

}  // namespace shardline::migrate
