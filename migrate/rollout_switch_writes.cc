// Phase switch writes of a wave (the write window): see rollout_phases.h. It reads as its
// steps: CatchUpUnfenced, PrepareReverse, PrepareIds, (window opens) FenceSources,
// WaitTargetsStopForward, ContinueSequences, StartReverse, PublishOwners (window closes),
// DropForward, ReverseRunning. The window has a deadline (RolloutOptions::write_window): when
// the targets have not caught up or reverse replication has not started by then, RevertWindow
// unfences the sources (they keep the ranges; nothing was published) and the step fails saying
// so, to be run again.
#include <fmt/format.h>

#include <map>
#include <set>

#include "rollout_node.h"
#include "rollout_phases.h"

namespace shardline::migrate {
namespace {

using LsnBySource = std::map<std::string, std::string>;

// The write window's deadline and a lap logger.
class Window {
 public:
  Window(RolloutContext& ctx, int w)
      : ctx_(ctx), w_(w), start_(RolloutClock::now()),
        deadline_(start_ + ctx.options().write_window) {}
  std::chrono::milliseconds Left() const {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline_ - RolloutClock::now()));
  }
  bool Over() const { return RolloutClock::now() >= deadline_; }
  void Lap(const char* what) const {
    ctx_.Log(fmt::format("wave {}: {} at +{:.1f} ms", w_, what, MsSince(start_)));
  }

 private:
  RolloutContext& ctx_;
  const int w_;
  const RolloutClock::time_point start_;
  const RolloutClock::time_point deadline_;
};

// Catch up without a fence first, so that the write window holds only the last bytes.
absl::Status CatchUpUnfenced(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  for (const Pair& p : pairs) {
    auto open = ctx.Open(w, p);
    if (!open.ok()) return open.status();
    const auto& [s_conn, t_conn, fwd, rev] = *open;
    auto exists = SubscriptionExists(*t_conn, fwd);
    if (!exists.ok()) return exists.status();
    if (!*exists) continue;
    if (auto s = FlushWal(*s_conn); !s.ok()) return s;
    auto pre = CurrentLsn(*s_conn);
    if (!pre.ok()) return pre.status();
    if (auto s = WaitApplied(*s_conn, fwd, *pre, ctx.options().apply_wait); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Reverse replication prepared before the window: its publication and slot on the target
// (creating a slot waits for the transactions running on the node) and its subscription on the
// source, disabled (creating it connects to the target): outside the window that costs writers
// nothing. In the window the slot is moved past forward replication's rows, then enabled.
absl::Status PrepareReverse(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  for (const Pair& p : pairs) {
    auto open = ctx.Open(w, p);
    if (!open.ok()) return open.status();
    const auto& [s_conn, t_conn, fwd, rev] = *open;
    if (auto s = EnsurePublication(*t_conn, *ctx.Result(), rev, p.ranges); !s.ok()) return s;
    auto exists = SubscriptionExists(*s_conn, rev);
    if (!exists.ok()) return exists.status();
    if (!*exists) {
      if (auto s = EnsureSlot(*t_conn, rev); !s.ok()) return s;
      if (auto s = EnsureSubscription(*s_conn, *t_conn, rev, ctx.Dsn(p.target),
                                      /*copy_data=*/false, /*enabled=*/false);
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

// The sources refuse writes to the wave's ranges; returns each source's WAL position after its
// fence and the drain of older transactions.
absl::StatusOr<LsnBySource> FenceSources(RolloutContext& ctx, int w) {
  LsnBySource lsn;
  for (const auto& [source, ranges] : ctx.RangesBySource({w})) {
    auto c = ctx.Node(source);
    if (!c.ok()) return c.status();
    auto at = ctx.Fence(**c, ranges, w, "writes switched");
    if (!at.ok()) return at.status();
    lsn[source] = *at;
  }
  return lsn;
}

// Each target applies its source's writes up to the fence; then forward replication stops
// (PostgreSQL 15 would send rows applied by one direction back through the other).
absl::Status WaitTargetsStopForward(RolloutContext& ctx, int w, const std::vector<Pair>& pairs,
                                    const LsnBySource& fence_lsn, const Window& window) {
  for (const Pair& p : pairs) {
    auto open = ctx.Open(w, p);
    if (!open.ok()) return open.status();
    const auto& [s_conn, t_conn, fwd, rev] = *open;
    auto exists = SubscriptionExists(*t_conn, fwd);
    if (!exists.ok()) return exists.status();
    if (!*exists) continue;
    const auto wait = std::min(ctx.options().apply_wait, window.Left());
    if (auto s = WaitApplied(*s_conn, fwd, fence_lsn.at(p.source), wait); !s.ok()) {
      return Annotate(s, fmt::format("node {} catching up with node {}'s fence", p.target,
                                        p.source));
    }
    if (auto s = DropSubscriptionIfExists(*t_conn, *s_conn, fwd, /*drop_slots=*/false);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// Ids continue on the new owners: each target's serial and identity sequences are set past every
// position its sources' sequences reached and every id it holds (the sources are fenced and the
// target has their last rows; the target owns nothing of the ranges yet), so it never hands out
// an id it already holds. A few round trips per target: the catalogs and scans were read before
// the window (RolloutContext::PrepareIds).
absl::Status ContinueSequences(RolloutContext& ctx, int w, const std::vector<Pair>& pairs,
                               const RolloutContext::IdColumnsByNode& ids) {
  return ctx.ContinueIds(pairs, /*on_targets=*/true, ids, fmt::format("wave {}", w));
}

// Reverse replication target -> source, from right after the rows forward replication applied,
// and the target's marks (its writers take the pause lock from now on, so a rollback can fence
// it as the sources were). Fences an earlier move left on ranges that come back here are lifted
// (their parts outside stay).
absl::Status StartReverse(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  for (const Pair& p : pairs) {
    auto open = ctx.Open(w, p);
    if (!open.ok()) return open.status();
    const auto& [s_conn, t_conn, fwd, rev] = *open;
    auto lifted = LiftReturningFences(*t_conn, *ctx.Result(), p.ranges, ctx.lock_key());
    if (!lifted.ok()) return lifted.status();
    if (*lifted > 0) {
      ctx.Log(fmt::format("wave {}: node {}: lifted {} fence(s) left by earlier moves of these "
                          "ranges",
                          w, p.target, *lifted));
    }
    if (auto s = MarkMoving(*t_conn, *ctx.Result(), p.ranges, ctx.lock_key(),
                            fmt::format("rollout {} wave {}: moved here", ctx.id(), w));
        !s.ok()) {
      return s;
    }
    auto enabled = SubscriptionEnabled(*s_conn, rev);
    if (!enabled.ok()) return enabled.status();
    if (!enabled->has_value() || !**enabled) {
      // Not started yet: past the rows forward replication applied (they came from the
      // source), before any application write (the target owns nothing of these ranges until
      // PublishOwners), then started.
      if (auto s = EnsureSlot(*t_conn, rev); !s.ok()) return s;
      if (auto s = AdvanceSlotToFlushed(*t_conn, rev); !s.ok()) return s;
      absl::Status s = enabled->has_value()
                           ? EnableSubscription(*s_conn, rev)
                           : EnsureSubscription(*s_conn, *t_conn, rev, ctx.Dsn(p.target),
                                                /*copy_data=*/false);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// After the window: each reverse subscription's apply worker runs (its slot kept every write
// of the target from the start, so no write waits for this; a rollback does). `start` checked
// that the nodes have the workers.
absl::Status ReverseRunning(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  for (const Pair& p : pairs) {
    auto s_node = ctx.Node(p.source);
    if (!s_node.ok()) return s_node.status();
    if (auto s = WaitApplyWorker(**s_node, ctx.Name(w, p, true), ctx.options().apply_wait);
        !s.ok()) {
      return Annotate(s, fmt::format("wave {}: writes switched, but reverse replication {} -> "
                                        "{} is not running (the target's writes wait in its "
                                        "slot; a rollback needs them delivered)",
                                        w, p.target, p.source));
    }
  }
  return absl::OkStatus();
}

// Publishes the map with the targets as owners (the window closes).
absl::StatusOr<std::int64_t> PublishOwners(RolloutContext& ctx, int w) {
  std::vector<WaveStep> steps = ctx.Steps();
  steps[static_cast<std::size_t>(w - 1)] = WaveStep::kWritesSwitched;
  return ctx.PublishStage(steps, fmt::format("rollout {} wave {}: switch writes", ctx.id(), w));
}

// Records the switch: the owner map's version, the fence positions, the window, the soak.
absl::Status RecordSwitch(RolloutContext& ctx, int w, std::int64_t version,
                          const LsnBySource& fence_lsn) {
  std::string lsns;
  for (const auto& [n, l] : fence_lsn) {
    lsns += fmt::format("{}{}={}", lsns.empty() ? "" : " ", n, l);
  }
  return RecordWritesSwitched(ctx.catalog(), ctx.id(), w, version, lsns,
                              ctx.state().migration.soak_seconds);
}

// A logical slot's position moved by pg_replication_slot_advance is written to disk only at
// the next checkpoint: a target that crashed before one would restart its reverse slot from
// where it was made, and send the rows forward replication applied back to their source
// (duplicate keys stop the source's apply). A CHECKPOINT on each target, right after the
// window, persists it. A failure is logged: the next regular checkpoint does the same.
void PersistReverseSlots(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  std::set<std::string> targets;
  for (const Pair& p : pairs) targets.insert(p.target);
  for (const std::string& t : targets) {
    auto c = ctx.Node(t);
    absl::Status s = c.ok() ? (*c)->Exec("CHECKPOINT").status() : c.status();
    if (!s.ok()) {
      ctx.Log(fmt::format("wave {}: warning: node {}: CHECKPOINT to persist the reverse slot "
                          "failed ({}); the next checkpoint persists it",
                          w, t, std::string(s.message())));
    }
  }
}

// The forward slots and publications are no longer needed: dropped now rather than keep WAL.
absl::Status DropForward(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  for (const Pair& p : pairs) {
    auto s_node = ctx.Node(p.source);
    if (!s_node.ok()) return s_node.status();
    pg::Conn* s_conn = *s_node;
    if (auto s = DropSlot(*s_conn, ctx.Name(w, p, false)); !s.ok()) return s;
    if (auto s = DropPublicationIfExists(*s_conn, ctx.Name(w, p, false)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The window ran out (or a step in it failed) before the owner map was published: back to the
// state before the fence. Forward replication resumes from its slot (kept until DropForward)
// wherever it is not running, whoever stopped it (this run, or an earlier one killed after),
// reverse subscriptions go (their slots stay for the next attempt, moved again then), the
// targets' marks go, the sources' fences become 'moving' marks again: the sources take writes
// and own the ranges, as the published map says. Returns `why` with what was done.
absl::Status RevertWindow(RolloutContext& ctx, int w, const std::vector<Pair>& pairs,
                          const absl::Status& why) {
  // Never once a map giving a target these ranges is current (a publish that failed after it
  // committed): the targets take writes then, and only going on is safe.
  auto current = ctx.LoadCurrentMap();
  if (!current.ok()) {
    // Whether the owner map was published cannot be known without the catalog: reverting
    // then could drop the writes a target took. The sources stay fenced; say so.
    return absl::Status(
        why.code(),
        fmt::format("wave {}: the write window failed ({}) and the catalog cannot be read to "
                    "tell whether the owner map was published ({}): the sources still refuse "
                    "writes to the wave's ranges. Run `rollout advance` again once the catalog "
                    "answers: it finishes the switch or reverts it",
                    w, std::string(why.message()), std::string(current.status().message())));
  }
  for (const Pair& p : pairs) {
    for (const auto& [lo, hi] : p.ranges) {
      if (current->map->RangeFor(lo).node == p.target) {
        return absl::Status(
            why.code(), fmt::format("wave {}: {}; the owner map is published already: run "
                                    "advance again to finish the switch",
                                    w, std::string(why.message())));
      }
    }
  }
  auto undo = [&]() -> absl::Status {
    for (const Pair& p : pairs) {
      auto open = ctx.Open(w, p);
      if (!open.ok()) return open.status();
      const auto& [s_conn, t_conn, fwd, rev] = *open;
      if (auto s = DropSubscriptionIfExists(*s_conn, *t_conn, rev,
                                            /*drop_slots=*/false);
          !s.ok()) {
        return s;
      }
      // Forward replication must run again before the sources take writes: resumed from its
      // kept slot when this run or a killed earlier one stopped it. Without the slot the gap
      // could not be replayed: the sources then stay fenced (the caller says so).
      auto running = SubscriptionExists(*t_conn, fwd);
      if (!running.ok()) return running.status();
      if (!*running) {
        auto slot = SlotExists(*s_conn, fwd);
        if (!slot.ok()) return slot.status();
        if (!*slot) {
          return absl::FailedPreconditionError(fmt::format(
              "node {}: forward slot {} is gone, so forward replication cannot resume", p.source,
              fwd));
        }
        if (auto s = EnsureSubscription(*t_conn, *s_conn, fwd, ctx.Dsn(p.source),
                                        /*copy_data=*/false);
            !s.ok()) {
          return s;
        }
      }
      if (auto s = UnmarkMigration(*t_conn, ctx.lock_key(), p.ranges); !s.ok()) return s;
    }
    for (const auto& [source, ranges] : ctx.RangesBySource({w})) {
      auto c = ctx.Node(source);
      if (!c.ok()) return c.status();
      if (auto s = UnfenceToMoving(**c, ctx.lock_key(), ranges); !s.ok()) return s;
    }
    return ClearFencedAt(ctx.catalog(), ctx.id(), w);
  };
  if (absl::Status s = undo(); !s.ok()) {
    return absl::Status(
        why.code(),
        fmt::format("wave {}: the write window failed ({}), and undoing it failed too ({}): the "
                    "sources may still refuse writes to the wave's ranges; run advance again to "
                    "finish the switch, or rollback",
                    w, std::string(why.message()), std::string(s.message())));
  }
  return absl::Status(
      why.code(),
      fmt::format("wave {}: the write window did not close within {} ms ({}); reverted: the "
                  "sources take writes again and keep the ranges, nothing was published. Run "
                  "advance again (with a larger --write-window if the targets lag)",
                  w, ctx.options().write_window.count(), std::string(why.message())));
}

}  // namespace

absl::Status SwitchWrites(RolloutContext& ctx, int w) {
  const std::vector<Pair> pairs = ctx.Pairs(w);
  if (auto s = CatchUpUnfenced(ctx, w, pairs); !s.ok()) return s;
  if (auto s = PrepareReverse(ctx, w, pairs); !s.ok()) return s;
  auto ids = ctx.PrepareIds(pairs, /*on_targets=*/true);  // before the window: scans
  if (!ids.ok()) return ids.status();
  ctx.Point("writes:reverse_prepared");
  // Recorded before the fence (a rerun keeps the first time: the window is what writers saw).
  if (auto s = RecordFencedAt(ctx.catalog(), ctx.id(), w); !s.ok()) return s;
  const Window window(ctx, w);
  auto fence_lsn = FenceSources(ctx, w);
  if (!fence_lsn.ok()) {
    return RevertWindow(ctx, w, pairs, fence_lsn.status());
  }
  window.Lap("sources fenced");
  ctx.Point("writes:fenced");
  if (auto s = WaitTargetsStopForward(ctx, w, pairs, *fence_lsn, window); !s.ok()) {
    return RevertWindow(ctx, w, pairs, s);
  }
  window.Lap("target caught up, forward replication stopped");
  ctx.Point("writes:forward_stopped");
  if (auto s = ContinueSequences(ctx, w, pairs, *ids); !s.ok()) {
    return RevertWindow(ctx, w, pairs, s);
  }
  window.Lap("ids continued");
  if (auto s = StartReverse(ctx, w, pairs); !s.ok()) {
    return RevertWindow(ctx, w, pairs, s);
  }
  if (window.Over()) {
    return RevertWindow(ctx, w, pairs,
                        absl::DeadlineExceededError("reverse replication started too late"));
  }
  window.Lap("reverse replication started");
  ctx.Point("writes:reverse_started");
  auto version = PublishOwners(ctx, w);
  if (!version.ok()) return RevertWindow(ctx, w, pairs, version.status());
  ctx.Point("writes:owner_published");  // published, not yet recorded
  if (auto s = RecordSwitch(ctx, w, *version, *fence_lsn); !s.ok()) return s;
  window.Lap("owner map published");
  ctx.Point("writes:published");
  PersistReverseSlots(ctx, w, pairs);
  if (auto s = DropForward(ctx, w, pairs); !s.ok()) return s;
  return ReverseRunning(ctx, w, pairs);
}

}  // namespace shardline::migrate
