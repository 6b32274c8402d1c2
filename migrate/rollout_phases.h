// The phases of a rollout, each a function over the migration's RolloutContext, one file each
// (the way Citus' shard move and Vitess' traffic switcher read): catch-up, gate, switch reads,
// switch writes, rollback / abort, cleanup, and the live figures of status. The runner
// (rollout.cc) picks the next phase from the catalog's state and records it as a step. Each
// phase is idempotent: a rerun after a kill anywhere finds what exists and does only the rest.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "rollout.h"
#include "rollout_context.h"

namespace shardline::migrate {

// Wave `w` starts to move: marks its ranges 'moving' on the sources (refusing another
// migration's marks), publications with a row filter on the sources, subscriptions with the
// initial copy on the targets (rollout_catchup.cc).
absl::Status CatchUp(RolloutContext& ctx, int w);

// The consistency gate of wave `w`: the initial copy done, a pause of milliseconds to take
// matching snapshots of source and target, an exact verify against them while writers go on
// (rollout_gate.cc). FailedPrecondition naming the differences.
absl::Status Gate(RolloutContext& ctx, int w);

// Publishes the map that reads wave `w`'s ranges from the targets (rollout_switch_reads.cc).
absl::Status SwitchReads(RolloutContext& ctx, int w);

// The write window of wave `w`: fence and drain the sources, let the targets catch up, stop
// forward replication, start reverse replication, publish the owner map (rollout_switch_writes.cc).
absl::Status SwitchWrites(RolloutContext& ctx, int w);

// Rollback (`abort` false) or abort: back to the sources with no lost write, one-way from its
// first action (rollout_rollback.cc).
absl::Status Unwind(RolloutContext& ctx, bool abort);

// Cleanup after the last soak: one-way, deletes the moved rows from the sources where the
// current map gives them to the targets, keeps the sources' fences (rollout_cleanup.cc).
absl::Status Cleanup(RolloutContext& ctx);

// The health of reverse replication (target -> source) of every wave that switched writes:
// `blocking` names each subscription that would keep a rollback from giving the ranges back
// (missing, disabled, its apply worker not running, its source unreachable) with what to fix;
// `warnings` each one that runs but has counted apply errors (rollout_status.cc). Asked by
// advance (refused while something blocks), cleanup at the end of the soak (logged) and status.
struct ReverseHealth {
  std::vector<std::string> blocking;
  std::vector<std::string> warnings;
};
ReverseHealth CheckReverse(RolloutContext& ctx);

// Live lag and copied rows per wave (rollout_status.cc).
std::vector<WaveLive> LiveFigures(RolloutContext& ctx);

}  // namespace shardline::migrate
