// `rollout status`: the live figures of each wave, the description of a migration and what
// to run next (rollout.h, rollout_phases.h).
#include <fmt/format.h>

#include <algorithm>

#include "catalog.h"
#include "rollout.h"
#include "rollout_phases.h"

namespace shardline::migrate {

ReverseHealth CheckReverse(RolloutContext& ctx) {
  ReverseHealth out;
  for (const WaveRecord& w : ctx.state().waves) {
    if (w.step < WaveStep::kWritesSwitched) continue;
    for (const Pair& p : ctx.Pairs(w.wave)) {
      const std::string rev = ctx.Name(w.wave, p, true);
      auto c = ctx.Node(p.source);
      if (!c.ok()) {
        out.blocking.push_back(fmt::format("wave {}: node {} (subscriber of {}) is unreachable: {}",
                                           w.wave, p.source, rev, std::string(c.status().message())));
        continue;
      }
      auto h = SubscriptionHealthOf(**c, rev);
      if (!h.ok()) {
        out.blocking.push_back(fmt::format("wave {}: {}", w.wave, std::string(h.status().message())));
        continue;
      }
      const std::string problem = SubscriptionProblem(*h, p.source, p.target, rev);
      if (problem.empty()) continue;
      const bool blocks = !h->exists || !h->enabled || !h->worker_running;
      (blocks ? out.blocking : out.warnings)
          .push_back(fmt::format("wave {}: reverse replication {} -> {}: {}", w.wave, p.target,
                                 p.source, problem));
    }
  }
  return out;
}

std::vector<WaveLive> LiveFigures(RolloutContext& ctx) {
  std::vector<WaveLive> out(ctx.state().waves.size());
  if (ctx.state().migration.state != kMigrationRunning &&
      ctx.state().migration.state != kMigrationRollingBack &&
      ctx.state().migration.state != kMigrationAborting &&
      ctx.state().migration.state != kMigrationCleaning) {
    return out;
  }
  for (const WaveRecord& w : ctx.state().waves) {
    WaveLive& l = out[static_cast<std::size_t>(w.wave - 1)];
    if (w.step == WaveStep::kPending) continue;
    const bool reverse = w.step >= WaveStep::kWritesSwitched;
    std::int64_t rows = 0;
    for (const Pair& p : ctx.Pairs(w.wave)) {
      auto pub = ctx.Node(reverse ? p.target : p.source);
      if (!pub.ok()) continue;
      auto lag = ReplicationLag(**pub, ctx.Name(w.wave, p, reverse));
      if (lag.ok()) {
        l.lag_bytes = std::max(l.lag_bytes, lag->bytes);
        l.lag_seconds = std::max(l.lag_seconds, lag->seconds);
      }
      if (w.step == WaveStep::kCatchingUp) {
        auto t = ctx.Node(p.target);
        if (!t.ok()) continue;
        auto n = CountRowsInRanges(**t, *ctx.Result(), p.ranges);
        if (n.ok()) rows += *n;
      }
    }
    if (w.step == WaveStep::kCatchingUp) l.rows_on_target = rows;
  }
  return out;
}

absl::StatusOr<RolloutStatus> DescribeRollout(const RolloutOptions& options, std::int64_t id) {
  auto catalog = Catalog::Create(options.catalog_dsn);
  if (!catalog.ok()) return catalog.status();
  auto st = LoadMigration((*catalog)->conn(), id);
  if (!st.ok()) return st.status();
  RolloutStatus out;
  // Live figures need the plan's nodes (read-only: no lock).
  auto e = RolloutContext::Open(options, id, /*lock=*/false);
  if (e.ok()) {
    out.live = LiveFigures(**e);
    if (st->migration.state == kMigrationRunning ||
        st->migration.state == kMigrationRollingBack) {
      ReverseHealth h = CheckReverse(**e);
      out.reverse_problems = std::move(h.blocking);
      out.reverse_problems.insert(out.reverse_problems.end(), h.warnings.begin(),
                                  h.warnings.end());
    }
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
    if (!st.migration.last_error.empty()) {
      // A rollback that stopped because reverse replication could not deliver: the targets
      // took the writes back; the same command finishes once the cause is fixed.
      return fmt::format(
          "fix what stopped the last attempt (see last error), then `rollback --migration {}` "
          "finishes the rollback it began",
          id);
    }
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
        if (!w.fenced_at.empty()) {
          // A write window that was not closed: published or not, the command was cut off
          // (killed, or the catalog lost) before it could record or revert it.
          return fmt::format(
              "wave {0}'s switch of writes was interrupted: its sources have refused writes to "
              "the wave's ranges since {1}; `advance --migration {2}` finishes the switch (if "
              "the owner map was published) or reverts it",
              w.wave, w.fenced_at, id);
        }
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
