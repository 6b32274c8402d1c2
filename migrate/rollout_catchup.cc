// Phase catch-up of a wave: see rollout_phases.h.
#include <fmt/format.h>

#include "rollout_node.h"
#include "rollout_phases.h"

namespace shardline::migrate {

absl::Status CatchUp(RolloutContext& ctx, int w) {
  if (auto s = RecordCatchUpStarted(ctx.catalog(), ctx.id(), w); !s.ok()) return s;
  // A mark of another migration over these ranges is refused, never taken over. A target may
  // carry the fence an earlier move left on a range that now comes back: lifted at the switch.
  for (const auto& [target, ranges] : ctx.RangesByTarget({w})) {
    auto c = ctx.Node(target);
    if (!c.ok()) return c.status();
    if (auto s =
            CheckForeignMarks(**c, *ctx.Result(), ranges, ctx.lock_key(), /*allow_fences=*/true);
        !s.ok()) {
      return s;
    }
  }
  for (const auto& [source, ranges] : ctx.RangesBySource({w})) {
    auto c = ctx.Node(source);
    if (!c.ok()) return c.status();
    if (auto s =
            CheckForeignMarks(**c, *ctx.Result(), ranges, ctx.lock_key(), /*allow_fences=*/false);
        !s.ok()) {
      return s;
    }
    if (auto s = MarkMoving(**c, *ctx.Result(), ranges, ctx.lock_key(),
                            fmt::format("rollout {} wave {}: moving", ctx.id(), w));
        !s.ok()) {
      return s;
    }
  }
  ctx.Point("catchup:marked");
  for (const Pair& p : ctx.Pairs(w)) {
    auto ends = ctx.Ends(p);
    if (!ends.ok()) return ends.status();
    auto [s_conn, t_conn] = *ends;
    const std::string fwd = ctx.Name(w, p, false);
    auto exists = SubscriptionExists(*t_conn, fwd);
    if (!exists.ok()) return exists.status();
    if (!*exists) {
      auto n = CountRowsInRanges(*t_conn, *ctx.Result(), p.ranges);
      if (!n.ok()) return n.status();
      if (*n > 0) {
        return absl::FailedPreconditionError(fmt::format(
            "wave {}: node {} already holds {} rows in the ranges it is to receive from {} "
            "(left by an earlier move?); delete them (e.g. `shardline cleanup`) and run "
            "advance again",
            w, p.target, *n, p.source));
      }
    }
    if (auto s = EnsurePublication(*s_conn, *ctx.Result(), fwd, p.ranges); !s.ok()) return s;
    ctx.Point("catchup:published");
    if (auto s = EnsureSubscription(*t_conn, *s_conn, fwd, ctx.Dsn(p.source), /*copy_data=*/true);
        !s.ok()) {
      return s;
    }
    ctx.Point("catchup:subscribed");
    ctx.Log(fmt::format("wave {}: replicating {} range(s) {} -> {} ({})", w, p.ranges.size(),
                        p.source, p.target, fwd));
  }
  return RecordWaveStep(ctx.catalog(), ctx.id(), w, WaveStep::kCatchingUp);
}

}  // namespace shardline::migrate
