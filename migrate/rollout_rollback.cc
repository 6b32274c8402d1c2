// Phases rollback and abort: see rollout_phases.h.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "rollout_node.h"
#include "rollout_phases.h"
#include "rollout_waves.h"

namespace shardline::migrate {

namespace {

// Whether `source` still fences migration ctx's ranges of `p`: its marks go only after reverse
// replication confirmed the targets' fence (step 2 of Unwind), and the targets stay fenced from
// then on, so a pair whose source no longer fences has nothing left to deliver. An unreachable
// source counts as fencing (it cannot have been unmarked without us).
bool SourceFences(RolloutContext& ctx, const Pair& p) {
  auto c = ctx.Node(p.source);
  if (!c.ok()) return true;
  auto held = HoldsMarks(**c, ctx.lock_key(), p.ranges, "fence");
  return !held.ok() || *held;
}

// Wave `w`'s targets: fenced and drained, then each reverse subscription confirms the fence.
absl::Status DeliverTargetsWrites(RolloutContext& ctx, int w) {
  for (auto& [target, ranges] : ctx.RangesByTarget({w})) {
    std::vector<Pair> pairs;
    for (const Pair& p : ctx.Pairs(w)) {
      if (p.target == target && SourceFences(ctx, p)) pairs.push_back(p);
    }
    if (pairs.empty()) continue;  // an earlier run delivered and unfenced its sources
    auto t = ctx.Node(target);
    if (!t.ok()) return t.status();
    auto lsn = ctx.Fence(**t, ranges, w, "rollback");
    if (!lsn.ok()) return lsn.status();
    ctx.Point("rollback:target_fenced");
    for (const Pair& p : pairs) {
      auto s_node = ctx.Node(p.source);
      if (!s_node.ok()) {
        return Annotate(s_node.status(),
                           fmt::format("wave {}: reverse replication {} -> {}: the source is "
                                       "unreachable",
                                       w, p.target, p.source));
      }
      const std::string rev = ctx.Name(w, p, true);
      auto health = SubscriptionHealthOf(**s_node, rev);
      if (!health.ok()) return health.status();
      if (!health->exists) continue;
      if (auto s = WaitApplied(**t, rev, *lsn, ctx.options().apply_wait); !s.ok()) {
        // Asked after the wait: a worker that failed meanwhile shows it now.
        auto after = SubscriptionHealthOf(**s_node, rev);
        const std::string problem =
            after.ok() ? SubscriptionProblem(*after, p.source, p.target, rev) : "";
        return Annotate(s, fmt::format("wave {}: reverse replication {} -> {}{}", w,
                                          p.target, p.source,
                                          problem.empty() ? "" : " (" + problem + ")"));
      }
    }
  }
  return absl::OkStatus();
}

// After step 1 failed with `why`: the targets of the switched waves take writes again (their
// fences back to moving marks) wherever their sources still fence, so every range keeps a
// writable owner, the one the current map names. Returns the failure to report.
absl::Status TurnTargetsBack(RolloutContext& ctx, const std::vector<int>& switched,
                             const absl::Status& why) {
  std::vector<std::string> still_fenced;
  for (int w : switched) {
    for (const Pair& p : ctx.Pairs(w)) {
      if (!SourceFences(ctx, p)) continue;
      auto t = ctx.Node(p.target);
      absl::Status s =
          t.ok() ? UnfenceToMoving(**t, ctx.lock_key(), p.ranges) : t.status();
      if (!s.ok()) {
        still_fenced.push_back(fmt::format("node {} ({}): {}", p.target, RangesText(p.ranges),
                                           std::string(s.message())));
      }
    }
  }
  ctx.Point("rollback:targets_unfenced");
  const std::string after =
      still_fenced.empty()
          ? "The targets took the writes back (their fences are moving marks again and the "
            "current map still routes the ranges to them): no write is refused meanwhile"
          : fmt::format("Could not lift the targets' fence on {}: writes there are refused "
                        "until the rerun",
                        fmt::join(still_fenced, "; "));
  return Annotate(
      why, fmt::format("rollback of migration {0} stopped. {1}. The migration stays "
                       "rolling_back: fix the cause below, then run `shardline rollout rollback "
                       "--migration {0}` again to finish the rollback. Cause",
                       ctx.id(), after));
}

}  // namespace

absl::Status Unwind(RolloutContext& ctx, bool abort) {
  if (auto s = ctx.RequireState(abort ? "abort" : "rollback"); !s.ok()) return s;
  // Switched: recorded so, or (a switch killed between publishing and recording it) the
  // current map already makes the target the owner of one of the wave's ranges.
  auto current = ctx.LoadCurrentMap();
  if (!current.ok()) return current.status();
  std::vector<int> switched;
  for (const WaveRecord& w : ctx.state().waves) {
    bool on_target = w.step >= WaveStep::kWritesSwitched;
    for (const RangeRecord& r : ctx.state().ranges) {
      if (r.wave == w.wave && current->map->RangeFor(r.lo).node == r.target) on_target = true;
    }
    if (on_target) switched.push_back(w.wave);
  }
  if (ctx.state().migration.state == kMigrationRunning) {
    if (abort && !switched.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "migration {}: writes of wave {} already switched to the new owners; abort only "
          "works before that: use `shardline rollout rollback --migration {}`",
          ctx.id(), switched.front(), ctx.id()));
    }
    // One-way from here: the decision and the state in one statement.
    if (auto s = TransitionMigration(ctx.catalog(), ctx.id(), kMigrationRunning,
                                     abort ? kMigrationAborting : kMigrationRollingBack);
        !s.ok()) {
      return s;
    }
    if (auto s = ctx.Reload(); !s.ok()) return s;
  }
  const bool aborting = ctx.state().migration.state == kMigrationAborting;
  const std::string kind = aborting ? "abort" : "rollback";
  return ctx.RunStep(0, kind, [&]() -> absl::Status {
    // 0. Before anything is fenced: what continuing the sources' ids needs (the scans).
    std::vector<Pair> switched_pairs;
    for (int w : switched) {
      for (const Pair& p : ctx.Pairs(w)) switched_pairs.push_back(p);
    }
    auto ids = ctx.PrepareIds(switched_pairs, /*on_targets=*/false);
    if (!ids.ok()) return ids.status();
    // Reads go back to the sources' read replicas with the original map: they must have what
    // reverse replication delivered. Checked before anything is fenced (a stopped replica
    // refuses the rollback while nothing changed) and again, exactly, once the sources have
    // every row (1c).
    std::set<std::string> sources;
    for (const auto& entry : ctx.RangesBySource(ctx.AllWaves())) sources.insert(entry.first);
    const std::string return_of_reads = fmt::format("the {}'s return of reads", kind);
    if (auto s = ctx.WaitReplicas(sources, return_of_reads); !s.ok()) return s;
    // 1. Targets of switched waves: fence, wait out transactions older than the fence, and
    //    wait for reverse replication to deliver everything written there up to then. When it
    //    cannot (a disabled subscription, an apply worker that fails on a conflicting row, a
    //    source down), the targets take the writes back and the rollback fails saying what
    //    blocks: the migration stays rolling_back and a rerun after the fix tries again.
    for (int w : switched) {
      if (auto s = DeliverTargetsWrites(ctx, w); !s.ok()) return TurnTargetsBack(ctx, switched, s);
    }
    // 1b. Ids continue on the sources past every id the targets handed out (delivered by
    //     reverse replication above) and every position of the targets' sequences. The
    //     sources still fence: a failure here hands the writes back to the targets too.
    if (auto s = ctx.ContinueIds(switched_pairs, /*on_targets=*/false, *ids, kind); !s.ok()) {
      return TurnTargetsBack(ctx, switched, s);
    }
    // 1c. The sources' replicas have every row the sources have now.
    if (auto s = ctx.WaitReplicas(sources, return_of_reads); !s.ok()) return s;
    // 2. Sources take writes again, before the map sends writers back to them (a router that
    //    meets the targets' fence waits for that map and retries on the source). The targets
    //    are fenced and drained, so nothing else writes these ranges meanwhile. The marks go
    //    by the migration that made them, whatever the waves were.
    for (const auto& [source, ranges] : ctx.RangesBySource(ctx.AllWaves())) {
      auto c = ctx.Node(source);
      if (!c.ok()) return c.status();
      if (auto s = UnmarkMigration(**c, ctx.lock_key(), ranges); !s.ok()) return s;
    }
    ctx.Point(fmt::format("{}:sources_unfenced", kind));
    // 3. The original assignment.
    std::vector<WaveStep> base(ctx.state().waves.size(), WaveStep::kPending);
    //    The plan's added nodes leave the map in the same publish: they own nothing in it
    //    and serve no reads, and their copies go below only after every router applied it.
    auto version = ctx.PublishStage(base, fmt::format("rollout {}: {}", ctx.id(), kind),
                                    ctx.PlanNodes(NodeRole::kAdded));
    if (!version.ok()) return version.status();
    ctx.Point(fmt::format("{}:published", kind));
    // 4. Replication objects.
    if (auto s = ctx.DropAllReplication(); !s.ok()) return s;
    ctx.Point(fmt::format("{}:replication_dropped", kind));
    // 5. Routers must have left the targets before their copies go. What goes is decided by
    //    the catalog's current map: only rows of ranges it gives to other nodes.
    if (auto s = ctx.WaitRouters(*version); !s.ok()) return s;
    // Before any copy goes (and after every live router applied the map, so none is refused
    // for lagging): a router still on a map that gave the targets writes is refused by every
    // node of the switched waves, whatever its statement touches (schemas/node.sql, map epochs).
    if (!switched.empty()) {
      std::set<std::string> nodes;
      for (int w : switched) {
        for (const Pair& p : ctx.Pairs(w)) nodes.insert({p.source, p.target});
      }
      if (auto s = ctx.RaiseMapEpochs(nodes, *version,
                                      fmt::format("{} of migration {}", kind, ctx.id()));
          !s.ok()) {
        return s;
      }
    }
    auto now = ctx.LoadCurrentMap();
    if (!now.ok()) return now.status();
    for (const auto& [target, ranges] : ctx.RangesByTarget(ctx.AllWaves())) {
      const HashRangeList copies = PartsNotServedBy(*now->map, ranges, target);
      if (copies != ranges) {
        ctx.Log(
            fmt::format("node {}: kept its rows of {} of the moved ranges: map version {} "
                        "routes them to it",
                        target, RangesText(ranges), now->map->version()));
      }
      auto c = ctx.Node(target);
      if (!c.ok()) return c.status();
      auto n = DeleteCopies(**c, *now->map, target, copies, ctx.options().delete_batch,
                            ctx.options().delete_rows_per_second);
      if (!n.ok()) return n.status();
      if (*n > 0) ctx.Log(fmt::format("deleted {} copied rows from node {}", *n, target));
      // The target keeps fences where it took writes (a router still on the switched map is
      // refused there, not lost).
      if (auto s = KeepAsFences(**c, ctx.lock_key(), copies,
                                fmt::format("given back by {} of migration {}", kind, ctx.id()));
          !s.ok()) {
        return s;
      }
    }
    return FinishUnwind(ctx.catalog(), ctx.id(),
                        aborting ? kMigrationAborted : kMigrationRolledBack);
  });
}

}  // namespace shardline::migrate
