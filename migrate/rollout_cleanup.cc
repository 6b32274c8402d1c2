// Phase cleanup: see rollout_phases.h.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <set>

#include "rollout_node.h"
#include "rollout_phases.h"
#include "rollout_waves.h"

namespace shardline::migrate {

absl::Status Cleanup(RolloutContext& ctx) {
  if (auto s = ctx.RequireState("cleanup"); !s.ok()) return s;
  auto current = ctx.LoadCurrentMap();
  if (!current.ok()) return current.status();
  if (ctx.state().migration.state == kMigrationRunning) {
    for (const WaveRecord& w : ctx.state().waves) {
      if (w.step < WaveStep::kWritesSwitched) {
        return absl::FailedPreconditionError(fmt::format(
            "migration {}: wave {} is at step {}; cleanup comes after every wave switched "
            "writes (run advance)",
            ctx.id(), w.wave, WaveStepName(w.step)));
      }
    }
    const WaveRecord& last = ctx.state().waves.back();
    if (!last.soak_over) {
      return absl::FailedPreconditionError(
          fmt::format("migration {}: wave {} soaks until {} ({:.0f} s left); cleanup after that",
                      ctx.id(), last.wave, last.soak_until, last.soak_left_seconds));
    }
    // Decided from the catalog's current map, not the plan: every moved range must be held
    // by the node it moved to.
    std::vector<std::string> problems;
    for (const RangeRecord& r : ctx.state().ranges) {
      const HashRangeList whole = {{r.lo, r.hi}};
      if (PartsHeldBy(*current->map, whole, r.target) != whole) {
        problems.push_back(
            fmt::format("range {}..{} (moved {} -> {})", r.lo, r.hi, r.source, r.target));
      }
    }
    if (!problems.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "migration {}: the catalog's current map (version {}) does not give these moved "
          "ranges wholly to the node they moved to: {}; cleanup deleted nothing. See `shardline "
          "map history`: republish the migration's map (`shardline map revert --to {}`) and run "
          "cleanup again, or roll back",
          ctx.id(), current->map->version(), fmt::join(problems, ", "),
          ctx.state().migration.published_version));
    }
    // The end of the soak: say whether rollback would still have worked (cleanup goes on
    // either way: from here the targets' rows are the only ones kept).
    const ReverseHealth health = CheckReverse(ctx);
    for (const std::string& p : health.blocking) ctx.Log("warning: during the soak " + p);
    for (const std::string& p : health.warnings) ctx.Log("warning: during the soak " + p);
    // Routers first: a router still on an older map would write to a source.
    if (auto s = ctx.WaitRouters(last.writes_version); !s.ok()) return s;
    if (auto s =
            TransitionMigration(ctx.catalog(), ctx.id(), kMigrationRunning, kMigrationCleaning);
        !s.ok()) {
      return s;
    }
    if (auto s = ctx.Reload(); !s.ok()) return s;
  }
  auto deleted = ctx.RunStep(0, "cleanup", [&]() -> absl::Status {
    if (auto s = ctx.DropAllReplication(); !s.ok()) return s;
    ctx.Point("cleanup:replication_dropped");
    // Before any row goes: a router still on a map older than the last switch is refused by
    // the nodes whatever its statement touches (an UPDATE of a deleted row would otherwise
    // affect 0 rows and be acknowledged).
    std::int64_t switched_at = 0;
    for (const WaveRecord& w : ctx.state().waves) {
      switched_at = std::max(switched_at, w.writes_version);
    }
    std::set<std::string> nodes;
    for (const RangeRecord& r : ctx.state().ranges) nodes.insert({r.source, r.target});
    if (auto s = ctx.RaiseMapEpochs(nodes, switched_at,
                                    fmt::format("cleanup of migration {}", ctx.id()));
        !s.ok()) {
      return s;
    }
    // What goes is decided by the map current now, after the wait for routers, not the one
    // read before it (a publish in between could have given a range back to its source).
    auto now = ctx.LoadCurrentMap();
    if (!now.ok()) return now.status();
    std::map<std::pair<std::string, std::string>, HashRangeList> by_pair;
    for (const RangeRecord& r : ctx.state().ranges)
      by_pair[{r.source, r.target}].push_back({r.lo, r.hi});
    for (auto& [pair, ranges] : by_pair) {
      const auto& [source, target] = pair;
      // Only where the current map has the target hold them: those rows are copies.
      const HashRangeList moved = PartsHeldBy(*now->map, CoalesceRanges(ranges), target);
      auto c = ctx.Node(source);
      if (!c.ok()) return c.status();
      auto n = DeleteCopies(**c, *now->map, source, moved, ctx.options().delete_batch,
                            ctx.options().delete_rows_per_second);
      if (!n.ok()) return n.status();
      ctx.Log(fmt::format("deleted {} moved rows from node {}", *n, source));
      ctx.Point("cleanup:source_deleted");
      // The source keeps its fences: a router on an older map is refused there and re-routes.
      if (auto s = KeepAsFences(**c, ctx.lock_key(), moved,
                                fmt::format("moved to {} by migration {}", target, ctx.id()));
          !s.ok()) {
        return s;
      }
    }
    for (const auto& [target, ranges] : ctx.RangesByTarget(ctx.AllWaves())) {
      auto c = ctx.Node(target);
      if (!c.ok()) return c.status();
      if (auto s = UnmarkMigration(**c, ctx.lock_key(), ranges); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!deleted.ok()) return deleted;
  ctx.Point("cleanup:deleted");
  // The last act, a step of its own (a rerun after a kill redoes the idempotent deletes above,
  // then this): the drained nodes leave the map, so routers stop connecting to them and the
  // next plan cannot move ranges back onto them. They own nothing since the last switch.
  return ctx.RunStep(0, "drop_drained_nodes", [&]() -> absl::Status {
    const std::vector<std::string> drained = ctx.PlanNodes(NodeRole::kRemoved);
    if (!drained.empty()) {
      auto version = ctx.PublishStage(ctx.Steps(),
                                      fmt::format("rollout {}: cleanup drops drained node(s) {}",
                                                  ctx.id(), fmt::join(drained, ", ")),
                                      drained);
      if (!version.ok()) return version.status();
      ctx.Log(fmt::format("map version {} has no node {}: shut its server down when you like",
                          *version, fmt::join(drained, ", ")));
    }
    return SetMigrationState(ctx.catalog(), ctx.id(), kMigrationCleaned);
  });
}

}  // namespace shardline::migrate
