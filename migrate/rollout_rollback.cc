// Phases rollback and abort: see rollout_phases.h.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>

#include "rollout_node.h"
#include "rollout_phases.h"
#include "rollout_waves.h"

namespace shardline::migrate {

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
    //    wait for reverse replication to deliver everything written there up to then.
    for (int w : switched) {
      for (auto& [target, ranges] : ctx.RangesByTarget({w})) {
        auto t = ctx.Node(target);
        if (!t.ok()) return t.status();
        auto lsn = ctx.Fence(**t, ranges, w, "rollback");
        if (!lsn.ok()) return lsn.status();
        ctx.Point("rollback:target_fenced");
        for (const Pair& p : ctx.Pairs(w)) {
          if (p.target != target) continue;
          auto s_node = ctx.Node(p.source);
          if (!s_node.ok()) return s_node.status();
          pg::Conn* s_conn = *s_node;
          const std::string rev = ctx.Name(w, p, true);
          auto exists = SubscriptionExists(*s_conn, rev);
          if (!exists.ok()) return exists.status();
          if (!*exists) continue;
          if (auto s = WaitApplied(**t, rev, *lsn, ctx.options().apply_wait); !s.ok()) {
            return Annotate(
                s, fmt::format("wave {}: reverse replication {} -> {}", w, p.target, p.source));
          }
        }
      }
    }
    // 1b. Ids continue on the sources past every id the targets handed out (delivered by
    //     reverse replication above) and every position of the targets' sequences.
    if (auto s = ctx.ContinueIds(switched_pairs, /*on_targets=*/false, *ids, kind); !s.ok()) {
      return s;
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
    auto version = ctx.PublishStage(base, fmt::format("rollout {}: {}", ctx.id(), kind));
    if (!version.ok()) return version.status();
    ctx.Point(fmt::format("{}:published", kind));
    // From here a router still on a map that gave the targets writes is refused by every node
    // of the switched waves, whatever its statement touches (schemas/node.sql, map epochs).
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
    // 4. Replication objects.
    if (auto s = ctx.DropAllReplication(); !s.ok()) return s;
    ctx.Point(fmt::format("{}:replication_dropped", kind));
    // 5. Routers must have left the targets before their copies go. What goes is decided by
    //    the catalog's current map: only rows of ranges it gives to other nodes.
    if (auto s = ctx.WaitRouters(*version); !s.ok()) return s;
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
