// The rollout runner: picks the next phase of a migration from the catalog's state and runs it
// as a recorded step (rollout.h; the phases in rollout_phases.h; the protocol in
// docs/architecture.md, "Rollout").
#include "rollout.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <thread>

#include "rollout_phases.h"

namespace shardline::migrate {
namespace {

// One step of the current wave. *done = true when every wave has switched writes.
absl::Status AdvanceOnce(RolloutContext& ctx, bool wait_soak, bool* done) {
  *done = false;
  if (auto s = ctx.RequireState("advance"); !s.ok()) return s;
  const WaveRecord* cur = nullptr;
  for (const WaveRecord& w : ctx.state().waves) {
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
  // Reverse replication of the switched waves must run: it is what a rollback gives the
  // ranges back with, and moving on would widen what it must carry.
  if (w > 1) {
    const ReverseHealth h = CheckReverse(ctx);
    for (const std::string& warning : h.warnings) ctx.Log("warning: " + warning);
    if (!h.blocking.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "migration {}: reverse replication of a switched wave does not run, so a rollback "
          "could not give its ranges back: {}; fix it, then run advance again",
          ctx.id(), fmt::join(h.blocking, "; ")));
    }
  }
  if (cur->step == WaveStep::kPending && w > 1) {
    const WaveRecord& prev = ctx.state().waves[static_cast<std::size_t>(w - 2)];
    if (!prev.soak_over) {
      if (!wait_soak) {
        return absl::FailedPreconditionError(fmt::format(
            "migration {}: wave {} soaks until {} ({:.0f} s left); run advance again then "
            "(or with --auto, which waits)",
            ctx.id(), prev.wave, prev.soak_until, prev.soak_left_seconds));
      }
      ctx.Log(fmt::format("wave {} soaks for {:.0f} s more", prev.wave, prev.soak_left_seconds));
      std::this_thread::sleep_for(
          std::chrono::milliseconds(static_cast<std::int64_t>(prev.soak_left_seconds * 1000) + 50));
      return ctx.Reload();
    }
  }
  absl::Status s;
  switch (cur->step) {
    case WaveStep::kPending:
      s = ctx.RunStep(w, "catch_up", [&] { return CatchUp(ctx, w); });
      break;
    case WaveStep::kCatchingUp:
      s = ctx.RunStep(w, "gate", [&] { return Gate(ctx, w); });
      break;
    case WaveStep::kVerified:
      s = ctx.RunStep(w, "switch_reads", [&] { return SwitchReads(ctx, w); });
      break;
    case WaveStep::kReadsSwitched:
      s = ctx.RunStep(w, "switch_writes", [&] { return SwitchWrites(ctx, w); });
      break;
    default:
      s = absl::InternalError("unexpected wave step");
  }
  if (!s.ok()) return s;
  return ctx.Reload();
}

}  // namespace

absl::Status AdvanceRollout(const RolloutOptions& options, std::int64_t id, bool auto_advance) {
  auto e = RolloutContext::Open(options, id);
  if (!e.ok()) return e.status();
  for (;;) {
    bool done = false;
    if (auto s = AdvanceOnce(**e, /*wait_soak=*/auto_advance, &done); !s.ok()) return s;
    if (done) {
      if (options.log) options.log(NextAction((*e)->state()));
      return absl::OkStatus();
    }
    // Without --auto: one step (start runs the first wave's catch-up only).
    if (!auto_advance) return absl::OkStatus();
  }
}

absl::Status RollbackRollout(const RolloutOptions& options, std::int64_t id) {
  auto e = RolloutContext::Open(options, id);
  if (!e.ok()) return e.status();
  return Unwind(**e, /*abort=*/false);
}

absl::Status AbortRollout(const RolloutOptions& options, std::int64_t id) {
  auto e = RolloutContext::Open(options, id);
  if (!e.ok()) return e.status();
  return Unwind(**e, /*abort=*/true);
}

absl::Status CleanupRollout(const RolloutOptions& options, std::int64_t id) {
  auto e = RolloutContext::Open(options, id);
  if (!e.ok()) return e.status();
  return Cleanup(**e);
}

}  // namespace shardline::migrate
