// The rollout engine: see rollout.h; the protocol is explained in docs/architecture.md.
#include "rollout.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "catalog.h"
#include "cleanup.h"
#include "plan_toml.h"
#include "rollout_node.h"
#include "shardline/dsn.h"
#include "shardline/key.h"
#include "table_info.h"
#include "verify.h"

namespace shardline::migrate {
namespace {

using Clock = std::chrono::steady_clock;

// The catalog session lock held by `rollout start` for its whole run.
constexpr std::int64_t kStartLockKey = 0x73686c7374617274;  // "shlstart"

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

absl::Status WithContext(const absl::Status& s, std::string_view what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), fmt::format("{}: {}", what, Msg(s)));
}

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// A source -> target pair of a wave and the (coalesced) ranges it moves.
struct Pair {
  std::string source;
  std::string target;
  HashRangeList ranges;
};

// Deletes the rows of `ranges` from every sharded table on `conn` (node `node`) in keyset
// batches (cleanup.h), with the fence trigger bypassed (session_replication_role = replica: the
// ranges are fenced on this node, and these deletes are the rollout's own). `current` is the
// catalog's current map: CleanupRanges refuses, before deleting anything, a range that it gives
// to `node` for writes or reads, so no row the map still routes to is deleted.
absl::StatusOr<std::int64_t> DeleteCopies(pg::Conn& conn, const ShardMap& current,
                                          const std::string& node, const HashRangeList& ranges,
                                          std::int64_t batch, double rows_per_second) {
  if (ranges.empty()) return 0;
  if (auto r = conn.Exec("SET session_replication_role = replica"); !r.ok()) {
    return WithContext(r.status(), fmt::format("node {}: bypassing the fence to delete moved "
                                               "rows needs superuser",
                                               node));
  }
  CleanupOptions co;
  co.batch = static_cast<std::size_t>(batch);
  co.rows_per_second = rows_per_second;
  absl::StatusOr<CleanupResult> cr = CleanupRanges(conn, current, node, ranges, co);
  (void)conn.Exec("RESET session_replication_role");
  if (!cr.ok()) return cr.status();
  return cr->deleted();
}

std::string RangesText(const HashRangeList& ranges) {
  std::string out;
  for (const auto& [lo, hi] : ranges) out += fmt::format("{}{}..{}", out.empty() ? "" : ", ", lo, hi);
  return out;
}

// statement_timeout and lock_timeout of a connection the engine opens, as session defaults
// (functions that set their own timeouts for a step restore these afterwards).
absl::Status SetTimeouts(pg::Conn& conn, const RolloutOptions& o) {
  auto r = conn.Exec(
      "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false)",
      {std::to_string(o.statement_timeout.count()), std::to_string(o.lock_timeout.count())});
  return r.ok() ? absl::OkStatus() : r.status();
}

class Engine {
 public:
  // Connects to the catalog, locks migration `id` and loads it with its plan.
  // Without `lock` (status), reads only: it must not keep a driver from starting.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const RolloutOptions& o, std::int64_t id,
                                                      bool lock = true) {
    auto catalog = Catalog::Create(o.catalog_dsn);
    if (!catalog.ok()) return catalog.status();
    auto e = std::unique_ptr<Engine>(new Engine(o, std::move(*catalog), id));
    if (auto s = SetTimeouts(e->catalog_->conn(), o); !s.ok()) return s;
    if (lock) {
      // Brings an older catalog's schema up to date (the one-way states, published_version).
      if (auto s = e->catalog_->Init(Actor{CurrentOsUser()}); !s.ok()) return s.status();
    }
    if (auto s = e->Reload(); !s.ok()) return s;
    if (!lock) return e;
    if (auto s = LockMigration(e->catalog_->conn(), id, e->st_.migration.tag); !s.ok()) return s;
    if (auto s = e->Reload(); !s.ok()) return s;  // another process may have moved it on
    return e;
  }

  absl::Status Reload() {
    auto st = LoadMigration(catalog_->conn(), id_);
    if (!st.ok()) return st.status();
    st_ = std::move(*st);
    if (!plan_loaded_) {
      auto plan = ParsePlanToml(st_.migration.plan_toml, fmt::format("migration {} plan", id_));
      if (!plan.ok()) return plan.status();
      plan_ = std::move(*plan);
      prefix_ = ReplicationPrefix(id_, st_.migration.tag);
      key_ = PauseLockKey(st_.migration.tag);
      plan_loaded_ = true;
    }
    move_waves_.assign(plan_.plan.moves.size(), -1);
    for (std::size_t i = 0; i < plan_.plan.moves.size(); ++i) {
      for (const RangeRecord& r : st_.ranges) {
        if (r.lo == plan_.plan.moves[i].lo) move_waves_[i] = r.wave - 1;
      }
    }
    return absl::OkStatus();
  }

  const MigrationState& state() const { return st_; }

  // OK when `command` may act on the migration now: any command while it runs; once a one-way
  // ending began, only the command that began it (a rerun continues it). FailedPrecondition
  // saying what began and what to run otherwise.
  absl::Status RequireState(std::string_view command) const {
    const std::string& state = st_.migration.state;
    if (state == kMigrationRunning) return absl::OkStatus();
    if (state == kMigrationCleaning) {
      if (command == "cleanup") return absl::OkStatus();
      return absl::FailedPreconditionError(fmt::format(
          "migration {0} is cleaning up: its cleanup has begun deleting the moved rows from the "
          "sources, so {1} is refused (there is no way back past that point); run `shardline "
          "rollout cleanup --migration {0}` to finish it",
          id_, command));
    }
    if (state == kMigrationRollingBack || state == kMigrationAborting) {
      const bool aborting = state == kMigrationAborting;
      if (command == "rollback" || (aborting && command == "abort")) return absl::OkStatus();
      return absl::FailedPreconditionError(fmt::format(
          "migration {0} is {1}: it has begun giving the ranges back to their sources, so {2} "
          "is refused; run `shardline rollout {3} --migration {0}` to finish it",
          id_, aborting ? "aborting" : "rolling back", command, aborting ? "abort" : "rollback"));
    }
    return absl::FailedPreconditionError(
        fmt::format("migration {} is {}: nothing to do", id_, state));
  }

  // ---- advance -------------------------------------------------------------------------

  // One step. *done = true when every wave has switched writes (nothing left to advance).
  absl::Status AdvanceOnce(bool wait_soak, bool* done) {
    *done = false;
    if (auto s = RequireState("advance"); !s.ok()) return s;
    const WaveRecord* cur = nullptr;
    for (const WaveRecord& w : st_.waves) {
      if (w.step < WaveStep::kWritesSwitched) {
        cur = &w;
        break;
      }
    }
    if (cur == nullptr) {
      *done = true;
      return absl::OkStatus();
    }
    const int w = cur->wave;
    if (cur->step == WaveStep::kPending && w > 1) {
      const WaveRecord& prev = st_.waves[static_cast<std::size_t>(w - 2)];
      if (!prev.soak_over) {
        if (!wait_soak) {
          return absl::FailedPreconditionError(fmt::format(
              "migration {}: wave {} soaks until {} ({:.0f} s left); run advance again then "
              "(or with --auto, which waits)",
              id_, prev.wave, prev.soak_until, prev.soak_left_seconds));
        }
        Log(fmt::format("wave {} soaks for {:.0f} s more", prev.wave, prev.soak_left_seconds));
        std::this_thread::sleep_for(std::chrono::milliseconds(
            static_cast<std::int64_t>(prev.soak_left_seconds * 1000) + 50));
        return Reload();
      }
    }
    absl::Status s;
    switch (cur->step) {
      case WaveStep::kPending:
        s = RunStep(w, "catch_up", [&] { return CatchUp(w); });
        break;
      case WaveStep::kCatchingUp:
        s = RunStep(w, "gate", [&] { return Gate(w); });
        break;
      case WaveStep::kVerified:
        s = RunStep(w, "switch_reads", [&] { return SwitchReads(w); });
        break;
      case WaveStep::kReadsSwitched:
        s = RunStep(w, "switch_writes", [&] { return SwitchWrites(w); });
        break;
      default:
        s = absl::InternalError("unexpected wave step");
    }
    if (!s.ok()) return s;
    return Reload();
  }

  // ---- rollback / abort / cleanup --------------------------------------------------------

  absl::Status Unwind(bool abort) {
    if (auto s = RequireState(abort ? "abort" : "rollback"); !s.ok()) return s;
    // Switched: recorded so, or (a switch killed between publishing and recording it) the
    // current map already makes the target the owner of one of the wave's ranges.
    auto current = catalog_->LoadCurrent();
    if (!current.ok()) return current.status();
    std::vector<int> switched;
    for (const WaveRecord& w : st_.waves) {
      bool on_target = w.step >= WaveStep::kWritesSwitched;
      for (const RangeRecord& r : st_.ranges) {
        if (r.wave == w.wave && current->map->RangeFor(r.lo).node == r.target) on_target = true;
      }
      if (on_target) switched.push_back(w.wave);
    }
    if (st_.migration.state == kMigrationRunning) {
      if (abort && !switched.empty()) {
        return absl::FailedPreconditionError(fmt::format(
            "migration {}: writes of wave {} already switched to the new owners; abort only "
            "works before that: use `shardline rollout rollback --migration {}`",
            id_, switched.front(), id_));
      }
      // One-way from here: the decision and the state in one statement.
      if (auto s = TransitionMigration(catalog_->conn(), id_, kMigrationRunning,
                                       abort ? kMigrationAborting : kMigrationRollingBack);
          !s.ok()) {
        return s;
      }
      if (auto s = Reload(); !s.ok()) return s;
    }
    const bool aborting = st_.migration.state == kMigrationAborting;
    const std::string kind = aborting ? "abort" : "rollback";
    return RunStep(0, kind, [&]() -> absl::Status {
      // 1. Targets of switched waves: fence, wait out transactions older than the fence, and
      //    wait for reverse replication to deliver everything written there up to then.
      for (int w : switched) {
        for (auto& [target, ranges] : RangesByTarget({w})) {
          auto t = Conn(target);
          if (!t.ok()) return t.status();
          auto lsn = FenceAndDrain(**t, ranges, w, "rollback");
          if (!lsn.ok()) return lsn.status();
          Point("rollback:target_fenced");
          for (const Pair& p : Pairs(w)) {
            if (p.target != target) continue;
            auto s_conn = Conn(p.source);
            if (!s_conn.ok()) return s_conn.status();
            const std::string rev = Name(w, p, true);
            auto exists = SubscriptionExists(**s_conn, rev);
            if (!exists.ok()) return exists.status();
            if (!*exists) continue;
            if (auto s = WaitApplied(**t, rev, *lsn, o_.apply_wait); !s.ok()) {
              return WithContext(
                  s, fmt::format("wave {}: reverse replication {} -> {}", w, p.target, p.source));
            }
          }
        }
      }
      // 2. Sources take writes again, before the map sends writers back to them (a router that
      //    meets the targets' fence waits for that map and retries on the source). The targets
      //    are fenced and drained, so nothing else writes these ranges meanwhile. The marks go
      //    by the migration that made them, whatever the waves were.
      for (const auto& [source, ranges] : RangesBySource(AllWaves())) {
        auto c = Conn(source);
        if (!c.ok()) return c.status();
        if (auto s = UnmarkMigration(**c, key_, ranges); !s.ok()) return s;
      }
      Point(fmt::format("{}:sources_unfenced", kind));
      // 3. The original assignment.
      std::vector<WaveStep> base(st_.waves.size(), WaveStep::kPending);
      auto version = PublishStage(base, fmt::format("rollout {}: {}", id_, kind));
      if (!version.ok()) return version.status();
      Point(fmt::format("{}:published", kind));
      // 4. Replication objects.
      if (auto s = DropAllReplication(); !s.ok()) return s;
      Point(fmt::format("{}:replication_dropped", kind));
      // 5. Routers must have left the targets before their copies go. What goes is decided by
      //    the catalog's current map: only rows of ranges it gives to other nodes.
      if (auto s = WaitRouters(*version); !s.ok()) return s;
      auto now = catalog_->LoadCurrent();
      if (!now.ok()) return now.status();
      for (const auto& [target, ranges] : RangesByTarget(AllWaves())) {
        const HashRangeList copies = PartsNotServedBy(*now->map, ranges, target);
        if (copies != ranges) {
          Log(fmt::format("node {}: kept its rows of {} of the moved ranges: map version {} "
                          "routes them to it",
                          target, RangesText(ranges), now->map->version()));
        }
        auto c = Conn(target);
        if (!c.ok()) return c.status();
        auto n = DeleteCopies(**c, *now->map, target, copies, o_.delete_batch,
                              o_.delete_rows_per_second);
        if (!n.ok()) return n.status();
        if (*n > 0) Log(fmt::format("deleted {} copied rows from node {}", *n, target));
        // The target keeps fences where it took writes (a router still on the switched map is
        // refused there, not lost).
        if (auto s = KeepAsFences(**c, key_, copies,
                                  fmt::format("given back by {} of migration {}", kind, id_));
            !s.ok()) {
          return s;
        }
      }
      return FinishUnwind(catalog_->conn(), id_,
                          aborting ? kMigrationAborted : kMigrationRolledBack);
    });
  }

  absl::Status Cleanup() {
    if (auto s = RequireState("cleanup"); !s.ok()) return s;
    auto current = catalog_->LoadCurrent();
    if (!current.ok()) return current.status();
    if (st_.migration.state == kMigrationRunning) {
      for (const WaveRecord& w : st_.waves) {
        if (w.step < WaveStep::kWritesSwitched) {
          return absl::FailedPreconditionError(fmt::format(
              "migration {}: wave {} is at step {}; cleanup comes after every wave switched "
              "writes (run advance)",
              id_, w.wave, WaveStepName(w.step)));
        }
      }
      const WaveRecord& last = st_.waves.back();
      if (!last.soak_over) {
        return absl::FailedPreconditionError(
            fmt::format("migration {}: wave {} soaks until {} ({:.0f} s left); cleanup after that",
                        id_, last.wave, last.soak_until, last.soak_left_seconds));
      }
      // Decided from the catalog's current map, not the plan: every moved range must be held
      // by the node it moved to.
      std::vector<std::string> problems;
      for (const RangeRecord& r : st_.ranges) {
        const HashRangeList whole = {{r.lo, r.hi}};
        if (PartsHeldBy(*current->map, whole, r.target) != whole) {
          problems.push_back(fmt::format("range {}..{} (moved {} -> {})", r.lo, r.hi, r.source,
                                         r.target));
        }
      }
      if (!problems.empty()) {
        return absl::FailedPreconditionError(fmt::format(
            "migration {}: the catalog's current map (version {}) does not give these moved "
            "ranges wholly to the node they moved to: {}; cleanup deleted nothing. See `shardline "
            "map history`: republish the migration's map (`shardline map revert --to {}`) and run "
            "cleanup again, or roll back",
            id_, current->map->version(), fmt::join(problems, ", "),
            st_.migration.published_version));
      }
      // Routers first: a router still on an older map would write to a source.
      if (auto s = WaitRouters(last.writes_version); !s.ok()) return s;
      if (auto s = TransitionMigration(catalog_->conn(), id_, kMigrationRunning,
                                       kMigrationCleaning);
          !s.ok()) {
        return s;
      }
      if (auto s = Reload(); !s.ok()) return s;
    }
    return RunStep(0, "cleanup", [&]() -> absl::Status {
      if (auto s = DropAllReplication(); !s.ok()) return s;
      Point("cleanup:replication_dropped");
      std::map<std::pair<std::string, std::string>, HashRangeList> by_pair;
      for (const RangeRecord& r : st_.ranges) by_pair[{r.source, r.target}].push_back({r.lo, r.hi});
      for (auto& [pair, ranges] : by_pair) {
        const auto& [source, target] = pair;
        // Only where the current map has the target hold them: those rows are copies.
        const HashRangeList moved = PartsHeldBy(*current->map, CoalesceRanges(ranges), target);
        auto c = Conn(source);
        if (!c.ok()) return c.status();
        auto n = DeleteCopies(**c, *current->map, source, moved, o_.delete_batch,
                              o_.delete_rows_per_second);
        if (!n.ok()) return n.status();
        Log(fmt::format("deleted {} moved rows from node {}", *n, source));
        Point("cleanup:source_deleted");
        // The source keeps its fences: a router on an older map is refused there and re-routes.
        if (auto s = KeepAsFences(**c, key_, moved,
                                  fmt::format("moved to {} by migration {}", target, id_));
            !s.ok()) {
          return s;
        }
      }
      for (const auto& [target, ranges] : RangesByTarget(AllWaves())) {
        auto c = Conn(target);
        if (!c.ok()) return c.status();
        if (auto s = UnmarkMigration(**c, key_, ranges); !s.ok()) return s;
      }
      return SetMigrationState(catalog_->conn(), id_, kMigrationCleaned);
    });
  }

  // ---- status ----------------------------------------------------------------------------

  std::vector<WaveLive> Live() {
    std::vector<WaveLive> out(st_.waves.size());
    if (st_.migration.state != kMigrationRunning &&
        st_.migration.state != kMigrationRollingBack && st_.migration.state != kMigrationAborting &&
        st_.migration.state != kMigrationCleaning) {
      return out;
    }
    for (const WaveRecord& w : st_.waves) {
      WaveLive& l = out[static_cast<std::size_t>(w.wave - 1)];
      if (w.step == WaveStep::kPending) continue;
      const bool reverse = w.step >= WaveStep::kWritesSwitched;
      std::int64_t rows = 0;
      for (const Pair& p : Pairs(w.wave)) {
        auto pub = Conn(reverse ? p.target : p.source);
        if (!pub.ok()) continue;
        auto lag = ReplicationLag(**pub, Name(w.wave, p, reverse));
        if (lag.ok()) {
          l.lag_bytes = std::max(l.lag_bytes, lag->bytes);
          l.lag_seconds = std::max(l.lag_seconds, lag->seconds);
        }
        if (w.step == WaveStep::kCatchingUp) {
          auto t = Conn(p.target);
          if (!t.ok()) continue;
          auto n = CountRowsInRanges(**t, *Result(), p.ranges);
          if (n.ok()) rows += *n;
        }
      }
      if (w.step == WaveStep::kCatchingUp) l.rows_on_target = rows;
    }
    return out;
  }

 private:
  Engine(const RolloutOptions& o, std::unique_ptr<Catalog> catalog, std::int64_t id)
      : o_(o), catalog_(std::move(catalog)), id_(id) {}

  void Log(const std::string& line) const {
    if (o_.log) o_.log(line);
  }
  void Point(const std::string& name) const {
    if (o_.at_point_for_test) o_.at_point_for_test(name);
  }

  const std::shared_ptr<const ShardMap>& Result() const { return plan_.result_map; }

  // Runs `fn` as step `step` of wave `wave`, recorded before and after.
  absl::Status RunStep(int wave, const std::string& step, const std::function<absl::Status()>& fn) {
    auto step_id = BeginStep(catalog_->conn(), id_, wave, step);
    if (!step_id.ok()) return step_id.status();
    const auto start = Clock::now();
    Log(wave > 0 ? fmt::format("wave {}: {} ...", wave, step) : fmt::format("{} ...", step));
    absl::Status s = fn();
    const std::string detail =
        s.ok() ? fmt::format("{:.0f} ms", MsSince(start)) : std::string(s.message());
    (void)EndStep(catalog_->conn(), *step_id, s.ok(), detail);
    if (!s.ok()) {
      (void)SetLastError(catalog_->conn(), id_,
                         wave > 0 ? fmt::format("wave {} {}: {}", wave, step, Msg(s))
                                  : fmt::format("{}: {}", step, Msg(s)));
    } else {
      (void)SetLastError(catalog_->conn(), id_, "");
      Log(wave > 0 ? fmt::format("wave {}: {} done ({})", wave, step, detail)
                   : fmt::format("{} done ({})", step, detail));
    }
    return s;
  }

  absl::StatusOr<pg::Conn*> Conn(const std::string& node) {
    auto it = conns_.find(node);
    if (it != conns_.end() && it->second->IsOk()) return it->second.get();
    auto c = Connect(node);
    if (!c.ok()) return c.status();
    pg::Conn* raw = c->get();
    conns_[node] = std::move(*c);
    return raw;
  }
  absl::StatusOr<std::unique_ptr<pg::Conn>> Connect(const std::string& node) const {
    const int i = Result()->NodeIndex(node);
    if (i < 0) {
      return absl::FailedPreconditionError(
          fmt::format("migration {}: node {} is not in the plan's map", id_, node));
    }
    auto c = pg::Conn::Connect(Result()->nodes()[static_cast<std::size_t>(i)].dsn, node);
    if (!c.ok()) return c.status();
    // Our commits (marks, fences) flush the WAL at once: the walsender sends only flushed
    // WAL, and a WAL writer round (200 ms by default) would otherwise lengthen the windows.
    if (auto r = (*c)->Exec("SET synchronous_commit = on"); !r.ok()) return r.status();
    // DROP ... IF EXISTS and friends: their NOTICEs are noise on the CLI's stderr.
    if (auto r = (*c)->Exec("SET client_min_messages = warning"); !r.ok()) return r.status();
    // No statement waits without bound (a hung node, a lock held by a long transaction).
    if (auto s = SetTimeouts(**c, o_); !s.ok()) return s;
    return c;
  }
  const std::string& Dsn(const std::string& node) const {
    return Result()->nodes()[static_cast<std::size_t>(Result()->NodeIndex(node))].dsn;
  }

  std::vector<int> AllWaves() const {
    std::vector<int> out;
    for (const WaveRecord& w : st_.waves) out.push_back(w.wave);
    return out;
  }

  std::vector<Pair> Pairs(int wave) const {
    std::map<std::pair<std::string, std::string>, HashRangeList> m;
    for (const RangeRecord& r : st_.ranges) {
      if (r.wave == wave) m[{r.source, r.target}].push_back({r.lo, r.hi});
    }
    std::vector<Pair> out;
    for (auto& [k, v] : m) out.push_back(Pair{k.first, k.second, CoalesceRanges(v)});
    return out;
  }
  std::map<std::string, HashRangeList> RangesBySource(const std::vector<int>& waves) const {
    return RangesByNode(waves, &Pair::source);
  }
  std::map<std::string, HashRangeList> RangesByTarget(const std::vector<int>& waves) const {
    return RangesByNode(waves, &Pair::target);
  }
  // The moving ranges of `waves`, coalesced, grouped by the pair's source or target node.
  std::map<std::string, HashRangeList> RangesByNode(const std::vector<int>& waves,
                                                    std::string Pair::*node) const {
    std::map<std::string, HashRangeList> m;
    for (int w : waves) {
      for (const Pair& p : Pairs(w)) {
        auto& v = m[p.*node];
        v.insert(v.end(), p.ranges.begin(), p.ranges.end());
      }
    }
    for (auto& [k, v] : m) v = CoalesceRanges(v);
    return m;
  }

  std::string Name(int wave, const Pair& p, bool reverse) const {
    return ReplicationName(prefix_, wave, Result()->NodeIndex(p.source),
                           Result()->NodeIndex(p.target), reverse);
  }

  std::vector<WaveStep> Steps() const {
    std::vector<WaveStep> out;
    for (const WaveRecord& w : st_.waves) out.push_back(w.step);
    return out;
  }

  // Publishes the map for `steps` unless the current map already says the same. Returns the
  // version that holds it. FailedPrecondition, publishing nothing, when the current map is not
  // the one this migration published last (someone else published in between): overwriting it
  // would undo their change, or route writes where no rows are.
  absl::StatusOr<std::int64_t> PublishStage(const std::vector<WaveStep>& steps,
                                            const std::string& comment) {
    auto current = catalog_->LoadCurrent();
    if (!current.ok()) return current.status();
    const std::int64_t at = current->map->version();
    const ShardMapConfig desired =
        MapAtStage(plan_.plan.result, plan_.plan.moves, move_waves_, steps, at + 1);
    if (SameMapContent(current->map->config(), desired)) {
      if (at != st_.migration.published_version) {  // published, then killed before recording
        if (auto s = SetPublishedVersion(catalog_->conn(), id_, at); !s.ok()) return s;
        st_.migration.published_version = at;
      }
      return at;
    }
    if (at != st_.migration.published_version) {
      // A revert to the migration's last map (its content current again) is the same map.
      auto ours = catalog_->Load(st_.migration.published_version);
      if (!ours.ok()) return ours.status();
      if (SameMapContent(current->map->config(), ours->map->config())) {
        if (auto s = SetPublishedVersion(catalog_->conn(), id_, at); !s.ok()) return s;
        st_.migration.published_version = at;
      }
    }
    if (at != st_.migration.published_version) {
      return absl::FailedPreconditionError(fmt::format(
          "migration {0}: the catalog's current map is version {1}, but the last map this "
          "migration published is version {2}: someone else published in between, and "
          "publishing over it would undo that change. Nothing was published. See `shardline "
          "map history`; to go on, make version {2}'s content current again (`shardline map "
          "revert --to {2}`) and run the command again",
          id_, at, st_.migration.published_version));
    }
    if (auto s = catalog_->Publish(desired, comment, Actor{CurrentOsUser()}); !s.ok()) return s;
    Log(fmt::format("published map version {} ({})", desired.version, comment));
    if (auto s = SetPublishedVersion(catalog_->conn(), id_, desired.version); !s.ok()) return s;
    st_.migration.published_version = desired.version;
    return desired.version;
  }

  // Fences `ranges` on `conn` for wave `w` (under the pause lock, after waiting for
  // transactions that predate the moving marks), then waits out transactions older than the
  // fence (terminating them after fence_grace, said in the log), and returns the WAL position
  // after that: every write into the ranges, of any isolation level, is before it.
  absl::StatusOr<std::string> FenceAndDrain(pg::Conn& conn, const HashRangeList& ranges, int w,
                                            std::string_view why) {
    if (auto s = WaitForPreMarkTransactions(conn, key_, std::chrono::seconds(10)); !s.ok()) {
      return s;
    }
    auto fence = FenceRanges(conn, *Result(), ranges, key_, o_.pause_lock_timeout,
                             fmt::format("rollout {} wave {}: {}", id_, w, why));
    if (!fence.ok()) return fence.status();
    auto ended = DrainTransactionsBefore(conn, fence->fenced_at, o_.fence_grace);
    if (!ended.ok()) return ended.status();
    for (const std::string& e : *ended) {
      Log(fmt::format("wave {}: node {}: terminated {}: it began before the fence and was still "
                      "open after {} ms",
                      w, conn.node(), e, o_.fence_grace.count()));
    }
    return CurrentLsn(conn);
  }

  // Waits until every live router applies `version` (or later).
  absl::Status WaitRouters(std::int64_t version) {
    const auto deadline = Clock::now() + o_.router_wait;
    for (;;) {
      auto r = catalog_->conn().Exec(
          "SELECT router_id || ' (' || host || ' pid ' || pid || ', at version ' || map_version "
          "|| ')' FROM shardline.routers WHERE last_heartbeat > now() - make_interval(secs => $1) "
          "AND map_version < $2 ORDER BY router_id",
          {std::to_string(o_.router_stale_after.count()), std::to_string(version)});
      if (!r.ok()) return r.status();
      if (r->rows() == 0) return absl::OkStatus();
      if (Clock::now() >= deadline) {
        std::string list;
        for (int i = 0; i < r->rows() && i < 5; ++i) list += (i ? ", " : "") + r->String(i, 0);
        return absl::DeadlineExceededError(fmt::format(
            "migration {}: {} live router(s) have not applied map version {} within {} s: {}; "
            "run the command again once they have",
            id_, r->rows(), version, o_.router_wait.count() / 1000, list));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // Drops every subscription, publication and slot of the migration on every node involved.
  absl::Status DropAllReplication() {
    for (const WaveRecord& w : st_.waves) {
      for (const Pair& p : Pairs(w.wave)) {
        auto s_conn = Conn(p.source);
        if (!s_conn.ok()) return s_conn.status();
        auto t_conn = Conn(p.target);
        if (!t_conn.ok()) return t_conn.status();
        const std::string fwd = Name(w.wave, p, false);
        const std::string rev = Name(w.wave, p, true);
        if (auto s = DropSubscriptionIfExists(**s_conn, **t_conn, rev); !s.ok()) return s;
        if (auto s = DropSubscriptionIfExists(**t_conn, **s_conn, fwd); !s.ok()) return s;
        if (auto s = DropPublicationIfExists(**t_conn, rev); !s.ok()) return s;
        if (auto s = DropPublicationIfExists(**s_conn, fwd); !s.ok()) return s;
      }
    }
    std::set<std::string> nodes;
    for (const RangeRecord& r : st_.ranges) {
      nodes.insert(r.source);
      nodes.insert(r.target);
    }
    for (const std::string& n : nodes) {
      auto c = Conn(n);
      if (!c.ok()) return c.status();
      auto dropped = DropSlotsWithPrefix(**c, prefix_);
      if (!dropped.ok()) return dropped.status();
    }
    return absl::OkStatus();
  }

  // ---- the steps of a wave ---------------------------------------------------------------

  absl::Status CatchUp(int w) {
    if (auto s = UpdateWave(catalog_->conn(), id_, w,
                            {{"started_at", "coalesce(started_at, clock_timestamp())"}}, {});
        !s.ok()) {
      return s;
    }
    // A mark of another migration over these ranges is refused, never taken over. A target may
    // carry the fence an earlier move left on a range that now comes back: lifted at the switch.
    for (const auto& [target, ranges] : RangesByTarget({w})) {
      auto c = Conn(target);
      if (!c.ok()) return c.status();
      if (auto s = CheckForeignMarks(**c, *Result(), ranges, key_, /*allow_fences=*/true);
          !s.ok()) {
        return s;
      }
    }
    for (const auto& [source, ranges] : RangesBySource({w})) {
      auto c = Conn(source);
      if (!c.ok()) return c.status();
      if (auto s = CheckForeignMarks(**c, *Result(), ranges, key_, /*allow_fences=*/false);
          !s.ok()) {
        return s;
      }
      if (auto s = MarkMoving(**c, *Result(), ranges, key_,
                              fmt::format("rollout {} wave {}: moving", id_, w));
          !s.ok()) {
        return s;
      }
    }
    Point("catchup:marked");
    for (const Pair& p : Pairs(w)) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      const std::string fwd = Name(w, p, false);
      auto exists = SubscriptionExists(**t_conn, fwd);
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        auto n = CountRowsInRanges(**t_conn, *Result(), p.ranges);
        if (!n.ok()) return n.status();
        if (*n > 0) {
          return absl::FailedPreconditionError(fmt::format(
              "wave {}: node {} already holds {} rows in the ranges it is to receive from {} "
              "(left by an earlier move?); delete them (e.g. `shardline cleanup`) and run "
              "advance again",
              w, p.target, *n, p.source));
        }
      }
      if (auto s = EnsurePublication(**s_conn, *Result(), fwd, p.ranges); !s.ok()) return s;
      Point("catchup:published");
      if (auto s = EnsureSubscription(**t_conn, **s_conn, fwd, Dsn(p.source), /*copy_data=*/true);
          !s.ok()) {
        return s;
      }
      Point("catchup:subscribed");
      Log(fmt::format("wave {}: replicating {} range(s) {} -> {} ({})", w, p.ranges.size(),
                      p.source, p.target, fwd));
    }
    return UpdateWave(catalog_->conn(), id_, w, {{"step", "'catching_up'"}}, {});
  }

  absl::Status Gate(int w) {
    const std::vector<Pair> pairs = Pairs(w);
    for (const Pair& p : pairs) {
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      const std::string fwd = Name(w, p, false);
      if (auto s = WaitInitialCopy(**t_conn, fwd, o_.copy_wait); !s.ok()) return s;
    }
    for (const auto& [source, ranges] : RangesBySource({w})) {
      auto c = Conn(source);
      if (!c.ok()) return c.status();
      if (auto s = WaitForPreMarkTransactions(**c, key_, std::chrono::seconds(30)); !s.ok()) {
        return s;
      }
    }
    double max_pause = 0;
    std::int64_t rows = 0;
    bool clean = true;
    std::string summary;
    for (const Pair& p : pairs) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      const std::string fwd = Name(w, p, false);
      // Catch up first without pausing anyone, so that the paused wait is short.
      if (auto s = FlushWal(**s_conn); !s.ok()) return s;
      auto pre = CurrentLsn(**s_conn);
      if (!pre.ok()) return pre.status();
      if (auto s = WaitApplied(**s_conn, fwd, *pre, o_.apply_wait); !s.ok()) return s;

      // The pause: no writer is in flight in the moving ranges and none can start. Export a
      // snapshot of the source and its WAL position, wait until the target applied up to it,
      // export a snapshot of the target, and let writers go: the two snapshots hold the same
      // rows of the moving ranges, and the comparison runs against them without pausing anyone.
      auto g = Connect(p.source);  // holds the pause, then the source snapshot
      if (!g.ok()) return g.status();
      auto tg = Connect(p.target);  // holds the target snapshot
      if (!tg.ok()) return tg.status();
      pg::Conn& gate = **g;
      if (auto s = AcquirePause(gate, key_, o_.pause_lock_timeout); !s.ok()) return s;
      const auto paused_at = Clock::now();
      if (auto r = gate.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); !r.ok()) return r.status();
      auto snap = gate.Exec("SELECT pg_export_snapshot(), pg_current_wal_insert_lsn()::text");
      if (!snap.ok()) return snap.status();
      const std::string snapshot = snap->String(0, 0);
      const std::string lsn = snap->String(0, 1);
      // A commit with synchronous_commit on flushes the WAL up to here now rather than when the
      // WAL writer gets to it, so the walsender can send it at once.
      const double t_snap = MsSince(paused_at);
      if (auto s = FlushWal(**s_conn); !s.ok()) return s;
      const double t_flush = MsSince(paused_at);
      if (auto s = WaitApplied(**s_conn, fwd, lsn, o_.apply_wait); !s.ok()) return s;
      const double t_applied = MsSince(paused_at);
      if (auto r = (*tg)->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); !r.ok()) {
        return r.status();
      }
      auto tsnap = (*tg)->Exec("SELECT pg_export_snapshot()");
      if (!tsnap.ok()) return tsnap.status();
      if (auto s = ReleasePause(gate, key_); !s.ok()) return s;
      const double pause_ms = MsSince(paused_at);
      max_pause = std::max(max_pause, pause_ms);
      Log(
          fmt::format("wave {}: writers to {} -> {} paused {:.1f} ms (snapshot {:.1f}, WAL "
                      "flushed {:.1f}, target applied {:.1f}); comparing at {}",
                      w, p.source, p.target, pause_ms, t_snap, t_flush, t_applied, lsn));
      Point("gate:paused");

      auto vs = Connect(p.source);
      if (!vs.ok()) return vs.status();
      auto vt = Connect(p.target);
      if (!vt.ok()) return vt.status();
      VerifyOptions vo;
      vo.source_snapshot = snapshot;
      vo.target_snapshot = tsnap->String(0, 0);
      HashRanges ranges(p.ranges.begin(), p.ranges.end());
      absl::StatusOr<VerifyReport> report = VerifyRanges(**vs, **vt, *Result(), ranges, vo);
      if (!report.ok()) return report.status();
      (void)gate.Exec("COMMIT");
      (void)(*tg)->Exec("COMMIT");
      Point("gate:verified");
      rows += report->total_source_rows();
      for (const TableVerifyResult& t : report->tables) {
        if (t.clean()) continue;
        clean = false;
        auto keys = [](const std::vector<std::string>& v) {
          std::string out;
          for (std::size_t i = 0; i < v.size() && i < 5; ++i) out += (i ? " " : "") + v[i];
          return out;
        };
        summary += fmt::format(
            "{}{} -> {} table {}: {} missing [{}], {} extra [{}], {} different [{}], {} "
            "duplicated",
            summary.empty() ? "" : "; ", p.source, p.target, t.table, t.missing,
            keys(t.missing_keys), t.extra, keys(t.extra_keys), t.different, keys(t.different_keys),
            t.duplicated);
      }
    }
    if (summary.empty()) summary = fmt::format("clean: {} rows compared", rows);
    if (auto s = UpdateWave(catalog_->conn(), id_, w,
                            {{"verify_clean", "$3::boolean"},
                             {"verify_summary", "$4"},
                             {"rows_verified", "$5::bigint"},
                             {"gate_pause_ms", "$6::float8"}},
                            {clean ? "true" : "false", summary, std::to_string(rows),
                             fmt::format("{}", max_pause)});
        !s.ok()) {
      return s;
    }
    if (!clean) {
      return absl::FailedPreconditionError(fmt::format(
          "wave {}: the gate failed: the target differs from the source at a consistent point: "
          "{}. The rollout stopped (nothing was switched); find the cause (`shardline verify "
          "--repair` re-copies), then run advance again, or rollback",
          w, summary));
    }
    return UpdateWave(catalog_->conn(), id_, w,
                      {{"step", "'verified'"}, {"verified_at", "clock_timestamp()"}}, {});
  }

  absl::Status SwitchReads(int w) {
    std::vector<WaveStep> steps = Steps();
    steps[static_cast<std::size_t>(w - 1)] = WaveStep::kReadsSwitched;
    auto version = PublishStage(steps, fmt::format("rollout {} wave {}: switch reads", id_, w));
    if (!version.ok()) return version.status();
    Point("reads:published");
    return UpdateWave(catalog_->conn(), id_, w,
                      {{"step", "'reads_switched'"},
                       {"reads_at", "clock_timestamp()"},
                       {"reads_version", "$3::bigint"}},
                      {std::to_string(*version)});
  }

  absl::Status SwitchWrites(int w) {
    const std::vector<Pair> pairs = Pairs(w);
    // Catch up without a fence first, so that the write window holds only the last bytes.
    for (const Pair& p : pairs) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      auto exists = SubscriptionExists(**t_conn, Name(w, p, false));
      if (!exists.ok()) return exists.status();
      if (!*exists) continue;
      if (auto s = FlushWal(**s_conn); !s.ok()) return s;
      auto pre = CurrentLsn(**s_conn);
      if (!pre.ok()) return pre.status();
      if (auto s = WaitApplied(**s_conn, Name(w, p, false), *pre, o_.apply_wait); !s.ok()) {
        return s;
      }
    }
    // Reverse replication prepared before the window: its publication and slot on the target
    // (creating a slot waits for the transactions running on the node; outside the window that
    // costs writers nothing). The slot is moved past forward replication's rows in the window.
    for (const Pair& p : pairs) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      const std::string rev = Name(w, p, true);
      if (auto s = EnsurePublication(**t_conn, *Result(), rev, p.ranges); !s.ok()) return s;
      auto exists = SubscriptionExists(**s_conn, rev);
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        if (auto s = EnsureSlot(**t_conn, rev); !s.ok()) return s;
      }
    }
    Point("writes:reverse_prepared");
    // Recorded before the fence (a rerun keeps the first time: the window is what writers saw).
    if (auto s = UpdateWave(catalog_->conn(), id_, w,
                            {{"fenced_at", "coalesce(fenced_at, clock_timestamp())"}}, {});
        !s.ok()) {
      return s;
    }
    const auto w0 = Clock::now();
    auto lap = [&](const char* what) {
      Log(fmt::format("wave {}: {} at +{:.1f} ms", w, what, MsSince(w0)));
    };
    std::map<std::string, std::string> fence_lsn;
    for (const auto& [source, ranges] : RangesBySource({w})) {
      auto c = Conn(source);
      if (!c.ok()) return c.status();
      auto lsn = FenceAndDrain(**c, ranges, w, "writes switched");
      if (!lsn.ok()) return lsn.status();
      fence_lsn[source] = *lsn;
    }
    lap("sources fenced");
    Point("writes:fenced");
    for (const Pair& p : pairs) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      const std::string fwd = Name(w, p, false);
      auto exists = SubscriptionExists(**t_conn, fwd);
      if (!exists.ok()) return exists.status();
      if (*exists) {
        if (auto s = WaitApplied(**s_conn, fwd, fence_lsn[p.source], o_.apply_wait); !s.ok()) {
          return s;
        }
        // Stop forward replication before reverse replication starts: PostgreSQL 15 would
        // send rows applied by one back through the other.
        if (auto s = DropSubscriptionIfExists(**t_conn, **s_conn, fwd, /*drop_slots=*/false);
            !s.ok()) {
          return s;
        }
      }
    }
    lap("target caught up, forward replication stopped");
    Point("writes:forward_stopped");
    for (const Pair& p : pairs) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      auto t_conn = Conn(p.target);
      if (!t_conn.ok()) return t_conn.status();
      const std::string rev = Name(w, p, true);
      // Fences an earlier move left on ranges that come back here are lifted (their parts
      // outside stay); the target's writers to these ranges take the pause lock from now on (a
      // rollback fences the target the same way the sources were fenced).
      auto lifted = LiftReturningFences(**t_conn, *Result(), p.ranges, key_);
      if (!lifted.ok()) return lifted.status();
      if (*lifted > 0) {
        Log(fmt::format("wave {}: node {}: lifted {} fence(s) left by earlier moves of these "
                        "ranges",
                        w, p.target, *lifted));
      }
      if (auto s = MarkMoving(**t_conn, *Result(), p.ranges, key_,
                              fmt::format("rollout {} wave {}: moved here", id_, w));
          !s.ok()) {
        return s;
      }
      auto exists = SubscriptionExists(**s_conn, rev);
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        // Past the rows forward replication applied (they came from the source), before any
        // application write (the target owns nothing of these ranges until the map below).
        if (auto s = EnsureSlot(**t_conn, rev); !s.ok()) return s;
        if (auto s = AdvanceSlotToFlushed(**t_conn, rev); !s.ok()) return s;
        if (auto s = EnsureSubscription(**s_conn, **t_conn, rev, Dsn(p.target),
                                        /*copy_data=*/false);
            !s.ok()) {
          return s;
        }
      }
    }
    lap("reverse replication started");
    Point("writes:reverse_started");
    std::vector<WaveStep> steps = Steps();
    steps[static_cast<std::size_t>(w - 1)] = WaveStep::kWritesSwitched;
    auto version = PublishStage(steps, fmt::format("rollout {} wave {}: switch writes", id_, w));
    if (!version.ok()) return version.status();
    Point("writes:owner_published");  // published, not yet recorded
    std::string lsns;
    for (const auto& [n, l] : fence_lsn)
      lsns += fmt::format("{}{}={}", lsns.empty() ? "" : " ", n, l);
    if (auto s = UpdateWave(
            catalog_->conn(), id_, w,
            {{"step", "'writes_switched'"},
             {"writes_at", "clock_timestamp()"},
             {"write_window_ms",
              "coalesce(write_window_ms, extract(epoch FROM clock_timestamp() - fenced_at) * "
              "1000)"},
             {"writes_version", "$3::bigint"},
             {"fence_lsn", "$4"},
             {"soak_until", "clock_timestamp() + make_interval(secs => $5::float8)"}},
            {std::to_string(*version), lsns, fmt::format("{}", st_.migration.soak_seconds)});
        !s.ok()) {
      return s;
    }
    lap("owner map published");
    Point("writes:published");
    // The forward slots are no longer needed: drop them now rather than keep WAL for them.
    for (const Pair& p : pairs) {
      auto s_conn = Conn(p.source);
      if (!s_conn.ok()) return s_conn.status();
      if (auto s = DropSlot(**s_conn, Name(w, p, false)); !s.ok()) return s;
      if (auto s = DropPublicationIfExists(**s_conn, Name(w, p, false)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  const RolloutOptions& o_;
  std::unique_ptr<Catalog> catalog_;
  const std::int64_t id_;
  MigrationState st_;
  bool plan_loaded_ = false;
  ParsedPlan plan_;
  std::string prefix_;
  std::int64_t key_ = 0;
  std::vector<int> move_waves_;
  std::map<std::string, std::unique_ptr<pg::Conn>> conns_;
};

// ---- start: preconditions ----------------------------------------------------------------

struct NodeCheck {
  std::string name;
  std::unique_ptr<pg::Conn> conn;
  int slots_needed = 0;
};

// Appends to `problems` whatever keeps `conn` (node `name`) from taking part.
void CheckNode(pg::Conn& conn, int slots_needed, std::vector<std::string>& problems) {
  auto r = conn.Exec(
      "SELECT current_setting('wal_level'), r.rolsuper, r.rolreplication, "
      "has_database_privilege(current_database(), 'CREATE'), "
      "current_setting('max_replication_slots')::int - (SELECT count(*) FROM "
      "pg_replication_slots), current_setting('max_wal_senders')::int - (SELECT count(*) FROM "
      "pg_stat_replication), current_setting('server_version_num')::int "
      "FROM pg_roles r WHERE r.rolname = current_user");
  if (!r.ok()) {
    problems.push_back(Msg(r.status()));
    return;
  }
  const std::string& n = conn.node();
  if (r->Text(0, 0) != "logical") {
    problems.push_back(
        fmt::format("node {}: wal_level is {}; logical replication needs "
                    "wal_level = logical (set it and restart the server)",
                    n, r->Text(0, 0)));
  }
  if (r->Text(0, 1) != "t") {
    problems.push_back(fmt::format(
        "node {}: the role connecting is not a superuser; PostgreSQL 15 requires one to create "
        "subscriptions{}",
        n, r->Text(0, 2) == "t" ? "" : " (it lacks REPLICATION too)"));
  }
  if (r->Text(0, 3) != "t") {
    problems.push_back(
        fmt::format("node {}: no CREATE privilege on the database (needed for publications)", n));
  }
  if (r->Int64Or0(0, 4) < slots_needed) {
    problems.push_back(
        fmt::format("node {}: {} free replication slot(s), {} needed (raise "
                    "max_replication_slots or drop unused slots)",
                    n, r->Int64Or0(0, 4), slots_needed));
  }
  if (r->Int64Or0(0, 5) < slots_needed) {
    problems.push_back(
        fmt::format("node {}: {} free WAL sender(s), {} needed (raise "
                    "max_wal_senders)",
                    n, r->Int64Or0(0, 5), slots_needed));
  }
  if (r->Int64Or0(0, 6) < 150000) {
    problems.push_back(
        fmt::format("node {}: PostgreSQL {} has no publication row filters; 15 or "
                    "later is needed",
                    n, r->Int64Or0(0, 6)));
  }
}

// Replica identity and key checks for a table on a node that will publish it.
void CheckPublishable(const TableInfo& info, const TableConfig& table, std::string_view node,
                      std::vector<std::string>& problems) {
  auto key = ResolveKey(info, table, node);
  if (!key.ok()) {
    problems.push_back(Msg(key.status()));
    return;
  }
  if (info.replica_identity == 'f') return;
  if (info.replica_identity != 'd') {
    problems.push_back(fmt::format(
        "node {}: table {} has REPLICA IDENTITY {}; a row filter on the shard key needs the "
        "key in the replica identity: use the primary key (DEFAULT) or FULL",
        node, table.name, info.replica_identity == 'n' ? "NOTHING" : "USING INDEX"));
    return;
  }
  if (info.primary_key.empty() || std::find(info.primary_key.begin(), info.primary_key.end(),
                                            table.key) == info.primary_key.end()) {
    problems.push_back(fmt::format(
        "node {}: table {}: the primary key ({}) does not contain the shard key {}, so UPDATE "
        "and DELETE could not be filtered by range; add it to the key or set REPLICA IDENTITY "
        "FULL",
        node, table.name, fmt::join(info.primary_key, ", "), table.key));
  }
}

// CREATE TABLE statements for `info` (columns, NOT NULL, defaults other than sequences, the
// primary key) and its other indexes, as the source defines them.
absl::Status CreateTableLike(pg::Conn& source, pg::Conn& target, const TableInfo& info,
                             const TableConfig& table) {
  std::string cols;
  for (const ColumnInfo& c : info.columns) {
    if (!cols.empty()) cols += ", ";
    cols += fmt::format("{} {}", target.QuoteIdent(c.name), c.type);
    if (c.not_null) cols += " NOT NULL";
    if (!c.default_expr.empty() && c.default_expr.find("nextval(") == std::string::npos &&
        !c.generated) {
      cols += " DEFAULT " + c.default_expr;
    }
  }
  if (!info.primary_key.empty()) {
    std::string pk;
    for (const auto& k : info.primary_key) pk += (pk.empty() ? "" : ", ") + target.QuoteIdent(k);
    cols += fmt::format(", PRIMARY KEY ({})", pk);
  }
  const auto dot = table.name.find('.');
  if (dot != std::string::npos) {
    auto r = target.Exec(fmt::format("CREATE SCHEMA IF NOT EXISTS {}",
                                     target.QuoteIdent(table.name.substr(0, dot))));
    if (!r.ok()) return r.status();
  }
  auto r = target.Exec(fmt::format("CREATE TABLE IF NOT EXISTS {} ({})", info.quoted, cols));
  if (!r.ok()) {
    return WithContext(r.status(), fmt::format("node {}: creating table {} like node {}'s",
                                               target.node(), table.name, source.node()));
  }
  auto idx = source.Exec(
      "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = $1::oid "
      "AND NOT i.indisprimary",
      {std::to_string(info.oid)});
  if (!idx.ok()) return idx.status();
  for (int i = 0; i < idx->rows(); ++i) {
    std::string def = idx->String(i, 0);
    // "CREATE [UNIQUE] INDEX name ON ..." -> "... INDEX IF NOT EXISTS name ON ...".
    const auto at = def.find("INDEX ");
    if (at != std::string::npos) def.insert(at + 6, "IF NOT EXISTS ");
    auto c = target.Exec(def);
    if (!c.ok()) return c.status();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::int64_t> StartRollout(const RolloutOptions& options,
                                          const RolloutStartOptions& start) {
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  auto plan = LoadPlanFile(start.plan_path);
  if (!plan.ok()) return plan.status();
  for (const auto& w : plan->warnings) log("warning: " + w);
  if (plan->plan.moves.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("plan {} moves nothing: there is nothing to roll out", start.plan_path));
  }
  auto catalog = Catalog::Create(options.catalog_dsn);
  if (!catalog.ok()) return catalog.status();
  if (auto s = (*catalog)->Init(Actor{CurrentOsUser()}); !s.ok()) return s.status();
  pg::Conn& cat = (*catalog)->conn();

  if (auto s = SetTimeouts(cat, options); !s.ok()) return s;
  // One start at a time per catalog, for the whole of its checks and creations (a session
  // lock: a killed start releases it); the catalog's unique index on the active migration is
  // what finally decides (CreateMigration).
  auto locked = cat.Exec("SELECT pg_try_advisory_lock($1)", {std::to_string(kStartLockKey)});
  if (!locked.ok()) return locked.status();
  if (locked->Text(0, 0) != "t") {
    return absl::FailedPreconditionError(
        "another `shardline rollout start` is running on this catalog; nothing was changed. "
        "See `shardline rollout status` once it is done");
  }

  std::vector<std::string> problems;
  // The catalog: the plan must start from the current map, and no other rollout may run.
  auto current = (*catalog)->CurrentVersion();
  if (!current.ok()) return current.status();
  if (*current != plan->plan.source_map_version) {
    problems.push_back(fmt::format(
        "the plan was made from map version {} but the catalog is at version {}: make a new "
        "plan (`shardline rebalance plan`)",
        plan->plan.source_map_version, *current));
  }
  auto active = ActiveMigration(cat);
  if (!active.ok()) return active.status();
  if (*active > 0) {
    problems.push_back(fmt::format(
        "migration {0} is still active: continue it (`shardline rollout status` says how) or "
        "end it (rollback, abort) first",
        *active));
  }

  // Waves.
  const std::vector<std::vector<std::size_t>> waves =
      SplitIntoWaves(plan->plan.moves, start.wave_percents);
  const ShardMap& result = *plan->result_map;

  // Nodes: connect, server settings, privileges, free slots.
  std::map<std::string, std::unique_ptr<pg::Conn>> conns;
  std::map<std::string, int> slots;
  std::set<std::string> sources, targets;
  for (const RangeMove& m : plan->plan.moves) {
    sources.insert(m.from);
    targets.insert(m.to);
  }
  for (const auto& s : sources) slots[s] += 3;  // a slot and up to two table-sync slots
  for (const auto& t : targets) slots[t] += 1;  // reverse replication
  for (const auto& [name, need] : slots) {
    const int i = result.NodeIndex(name);
    auto c = pg::Conn::Connect(result.nodes()[static_cast<std::size_t>(i)].dsn, name);
    if (!c.ok()) {
      problems.push_back(Msg(c.status()));
      continue;
    }
    if (auto s = SetTimeouts(**c, options); !s.ok()) {
      problems.push_back(Msg(s));
      continue;
    }
    CheckNode(**c, need, problems);
    conns[name] = std::move(*c);
  }
  // Tables: on every source as a publisher; on every target present and compatible (and
  // publishable, for reverse replication), or to be created.
  std::vector<std::pair<std::string, const TableConfig*>> to_create;  // (target, table)
  std::map<std::string, TableInfo> source_info;                       // by table, from some source
  std::string source_of_info;
  for (const TableConfig& t : result.tables()) {
    if (t.reference) continue;
    for (const auto& s : sources) {
      if (!conns.count(s)) continue;
      auto info = DescribeTable(*conns[s], t.name);
      if (!info.ok()) {
        problems.push_back(Msg(info.status()));
        continue;
      }
      CheckPublishable(*info, t, s, problems);
      if (const ColumnInfo* k = info->FindColumn(t.key);
          k != nullptr && k->default_expr.find("nextval(") != std::string::npos) {
        log(
            fmt::format("warning: node {}: table {}: shard key {} defaults to {}, a per-node "
                        "sequence: ids would collide once rows live on other nodes; use the "
                        "router's id generator (shardline/id_gen.h)",
                        s, t.name, t.key, k->default_expr));
      }
      if (!source_info.count(t.name)) {
        source_info[t.name] = *info;
        source_of_info = s;
      }
    }
    for (const auto& tg : targets) {
      if (!conns.count(tg) || !source_info.count(t.name)) continue;
      auto info = DescribeTable(*conns[tg], t.name);
      if (!info.ok()) {
        if (info.status().code() == absl::StatusCode::kNotFound) {
          to_create.push_back({tg, &t});
          continue;
        }
        problems.push_back(Msg(info.status()));
        continue;
      }
      if (auto s = CheckCompatible(source_info[t.name], *info, source_of_info, tg); !s.ok()) {
        problems.push_back(Msg(s));
      }
      CheckPublishable(*info, t, tg, problems);
    }
  }
  if (!problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += "\n  " + p;
    return absl::FailedPreconditionError(fmt::format(
        "rollout of plan {} cannot start; nothing was changed:{}", start.plan_path, text));
  }

  // Everything holds: create what is missing, install the fence objects, record the migration.
  for (const auto& [target, table] : to_create) {
    const std::string& src = source_of_info;
    if (auto s = CreateTableLike(*conns[src], *conns[target], source_info[table->name], *table);
        !s.ok()) {
      return s;
    }
    log(fmt::format("created table {} on node {} like node {}'s", table->name, target, src));
  }
  for (auto& [name, conn] : conns) {
    if (auto s = InstallNodeObjects(*conn, result); !s.ok()) return s;
  }

  std::int64_t total_bytes = 0;
  for (const RangeMove& m : plan->plan.moves) total_bytes += std::max<std::int64_t>(m.bytes, 0);
  std::vector<RangeRecord> ranges;
  std::vector<double> shares;
  std::int64_t done_bytes = 0;
  std::size_t done_moves = 0;
  for (std::size_t w = 0; w < waves.size(); ++w) {
    for (std::size_t i : waves[w]) {
      const RangeMove& m = plan->plan.moves[i];
      ranges.push_back(
          RangeRecord{static_cast<int>(w + 1), m.lo, m.hi, m.from, m.to, m.rows, m.bytes});
      done_bytes += std::max<std::int64_t>(m.bytes, 0);
      ++done_moves;
    }
    shares.push_back(total_bytes > 0 ? 100.0 * static_cast<double>(done_bytes) /
                                           static_cast<double>(total_bytes)
                                     : 100.0 * static_cast<double>(done_moves) /
                                           static_cast<double>(plan->plan.moves.size()));
  }
  std::ifstream in(start.plan_path);
  std::stringstream text;
  text << in.rdbuf();
  auto id = CreateMigration(cat, text.str(), plan->plan.source_map_version, start.wave_percents,
                            start.soak_seconds, CurrentOsUser(), shares, ranges);
  if (!id.ok()) return id.status();
  log(fmt::format("migration {}: {} move(s) in {} wave(s)", *id, plan->plan.moves.size(),
                  waves.size()));
  if (auto s = AdvanceRollout(options, *id, start.auto_advance); !s.ok()) return s;
  return *id;
}

absl::Status AdvanceRollout(const RolloutOptions& options, std::int64_t id, bool auto_advance) {
  auto e = Engine::Open(options, id);
  if (!e.ok()) return e.status();
  for (;;) {
    bool done = false;
    if (auto s = (*e)->AdvanceOnce(/*wait_soak=*/auto_advance, &done); !s.ok()) return s;
    if (done) {
      if (options.log) options.log(NextAction((*e)->state()));
      return absl::OkStatus();
    }
    // Without --auto: one step (start runs the first wave's catch-up only).
    if (!auto_advance) return absl::OkStatus();
  }
}

absl::Status RollbackRollout(const RolloutOptions& options, std::int64_t id) {
  auto e = Engine::Open(options, id);
  if (!e.ok()) return e.status();
  return (*e)->Unwind(/*abort=*/false);
}

absl::Status AbortRollout(const RolloutOptions& options, std::int64_t id) {
  auto e = Engine::Open(options, id);
  if (!e.ok()) return e.status();
  return (*e)->Unwind(/*abort=*/true);
}

absl::Status CleanupRollout(const RolloutOptions& options, std::int64_t id) {
  auto e = Engine::Open(options, id);
  if (!e.ok()) return e.status();
  return (*e)->Cleanup();
}

absl::StatusOr<RolloutStatus> DescribeRollout(const RolloutOptions& options, std::int64_t id) {
  auto catalog = Catalog::Create(options.catalog_dsn);
  if (!catalog.ok()) return catalog.status();
  auto st = LoadMigration((*catalog)->conn(), id);
  if (!st.ok()) return st.status();
  RolloutStatus out;
  // Live figures need the plan's nodes (read-only: no lock).
  auto e = Engine::Open(options, id, /*lock=*/false);
  if (e.ok()) {
    out.live = (*e)->Live();
  } else {
    out.live.assign(st->waves.size(), WaveLive{});
  }
  out.state = std::move(*st);
  out.next = NextAction(out.state);
  return out;
}

absl::StatusOr<std::vector<std::int64_t>> ListRollouts(const RolloutOptions& options) {
  auto catalog = Catalog::Create(options.catalog_dsn);
  if (!catalog.ok()) return catalog.status();
  auto r = (*catalog)->conn().Exec("SELECT to_regclass('shardline.migrations') IS NOT NULL");
  if (!r.ok()) return r.status();
  if (r->Text(0, 0) != "t") return std::vector<std::int64_t>{};
  return ListMigrations((*catalog)->conn());
}

std::string NextAction(const MigrationState& st) {
  const std::int64_t id = st.migration.id;
  // An ending that began is only ever continued by its own command: never point elsewhere
  // (a cleanup after a half-done rollback would delete the rows the restored owners hold).
  if (st.migration.state == kMigrationCleaning) {
    return fmt::format(
        "`cleanup --migration {}` finishes the cleanup it began (rollback is no longer possible)",
        id);
  }
  if (st.migration.state == kMigrationRollingBack) {
    return fmt::format("`rollback --migration {}` finishes the rollback it began", id);
  }
  if (st.migration.state == kMigrationAborting) {
    return fmt::format("`abort --migration {}` finishes the abort it began", id);
  }
  if (st.migration.state != kMigrationRunning) {
    return fmt::format("nothing: migration {} is {}", id, st.migration.state);
  }
  for (const WaveRecord& w : st.waves) {
    if (w.step >= WaveStep::kWritesSwitched) continue;
    if (w.step == WaveStep::kPending && w.wave > 1) {
      const WaveRecord& prev = st.waves[static_cast<std::size_t>(w.wave - 2)];
      if (!prev.soak_over) {
        return fmt::format(
            "wait for wave {}'s soak ({:.0f} s left), then `advance --migration "
            "{}` starts wave {}'s catch-up",
            prev.wave, prev.soak_left_seconds, id, w.wave);
      }
    }
    switch (w.step) {
      case WaveStep::kPending:
        return fmt::format("`advance --migration {}` starts wave {}'s catch-up", id, w.wave);
      case WaveStep::kCatchingUp:
        return fmt::format(
            "`advance --migration {}` runs wave {}'s gate (waits for the copy, "
            "then verifies at a consistent point)",
            id, w.wave);
      case WaveStep::kVerified:
        return fmt::format("`advance --migration {}` switches wave {}'s reads", id, w.wave);
      case WaveStep::kReadsSwitched:
        return fmt::format(
            "`advance --migration {}` switches wave {}'s writes (fence, "
            "catch-up, publish, reverse replication)",
            id, w.wave);
      default:
        break;
    }
  }
  const WaveRecord& last = st.waves.back();
  if (!last.soak_over) {
    return fmt::format(
        "wait for the soak ({:.0f} s left), then `cleanup --migration {}` (or "
        "`rollback`)",
        last.soak_left_seconds, id);
  }
  return fmt::format(
      "`cleanup --migration {}` once every live router applies map version {} "
      "(or `rollback`)",
      id, last.writes_version);
}

}  // namespace shardline::migrate
