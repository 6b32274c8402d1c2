// Phase switch reads of a wave: see rollout_phases.h.
#include <fmt/format.h>

#include <set>
#include <string>

#include "rollout_phases.h"

namespace shardline::migrate {

absl::Status SwitchReads(RolloutContext& ctx, int w) {
  // The targets' read replicas must have the rows the gate verified on the targets before
  // the map sends reads of the wave's ranges to them (the router reads a node's replicas).
  std::set<std::string> targets;
  for (const Pair& p : ctx.Pairs(w)) targets.insert(p.target);
  if (auto s = ctx.WaitReplicas(targets, fmt::format("the switch of reads of wave {}", w));
      !s.ok()) {
    return s;
  }
  ctx.Point("reads:replicas_replayed");
  std::vector<WaveStep> steps = ctx.Steps();
  steps[static_cast<std::size_t>(w - 1)] = WaveStep::kReadsSwitched;
  auto version =
      ctx.PublishStage(steps, fmt::format("rollout {} wave {}: switch reads", ctx.id(), w));
  if (!version.ok()) return version.status();
  ctx.Point("reads:published");
  return RecordReadsSwitched(ctx.catalog(), ctx.id(), w, *version);
}

}  // namespace shardline::migrate
