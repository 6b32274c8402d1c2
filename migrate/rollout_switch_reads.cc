// Phase switch reads of a wave: see rollout_phases.h.
#include <fmt/format.h>

#include "rollout_phases.h"

namespace shardline::migrate {

absl::Status SwitchReads(RolloutContext& ctx, int w) {
  std::vector<WaveStep> steps = ctx.Steps();
  steps[static_cast<std::size_t>(w - 1)] = WaveStep::kReadsSwitched;
  auto version =
      ctx.PublishStage(steps, fmt::format("rollout {} wave {}: switch reads", ctx.id(), w));
  if (!version.ok()) return version.status();
  ctx.Point("reads:published");
  return RecordReadsSwitched(ctx.catalog(), ctx.id(), w, *version);
}

}  // namespace shardline::migrate
