// Phase gate of a wave: see rollout_phases.h; the protocol in docs/architecture.md.
#include <fmt/format.h>

#include <algorithm>

#include "rollout_node.h"
#include "rollout_phases.h"
#include "verify.h"

namespace shardline::migrate {

absl::Status Gate(RolloutContext& ctx, int w) {
  const std::vector<Pair> pairs = ctx.Pairs(w);
  for (const Pair& p : pairs) {
    auto t_node = ctx.Node(p.target);
    if (!t_node.ok()) return t_node.status();
    pg::Conn* t_conn = *t_node;
    const std::string fwd = ctx.Name(w, p, false);
    if (auto s = WaitInitialCopy(*t_conn, fwd, ctx.options().copy_wait); !s.ok()) return s;
  }
  for (const auto& [source, ranges] : ctx.RangesBySource({w})) {
    auto c = ctx.Node(source);
    if (!c.ok()) return c.status();
    if (auto s = WaitForPreMarkTransactions(**c, ctx.lock_key(), std::chrono::seconds(30));
        !s.ok()) {
      return s;
    }
  }
  double max_pause = 0;
  std::int64_t rows = 0;
  bool clean = true;
  std::string summary;
  for (const Pair& p : pairs) {
    auto ends = ctx.Ends(p);
    if (!ends.ok()) return ends.status();
    auto [s_conn, t_conn] = *ends;
    const std::string fwd = ctx.Name(w, p, false);
    // Catch up first without pausing anyone, so that the paused wait is short.
    if (auto s = FlushWal(*s_conn); !s.ok()) return s;
    auto pre = CurrentLsn(*s_conn);
    if (!pre.ok()) return pre.status();
    if (auto s = WaitApplied(*s_conn, fwd, *pre, ctx.options().apply_wait); !s.ok()) return s;

    // The pause: no writer is in flight in the moving ranges and none can start. Export a
    // snapshot of the source and its WAL position, wait until the target applied up to it,
    // export a snapshot of the target, and let writers go: the two snapshots hold the same
    // rows of the moving ranges, and the comparison runs against them without pausing anyone.
    auto g = ctx.Connect(p.source);  // holds the pause, then the source snapshot
    if (!g.ok()) return g.status();
    auto tg = ctx.Connect(p.target);  // holds the target snapshot
    if (!tg.ok()) return tg.status();
    pg::Conn& gate = **g;
    if (auto s = AcquirePause(gate, ctx.lock_key(), ctx.options().pause_lock_timeout); !s.ok())
      return s;
    const auto paused_at = RolloutClock::now();
    if (auto r = gate.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); !r.ok()) return r.status();
    auto snap = gate.Exec("SELECT pg_export_snapshot(), pg_current_wal_insert_lsn()::text");
    if (!snap.ok()) return snap.status();
    const std::string snapshot = snap->String(0, 0);
    const std::string lsn = snap->String(0, 1);
    // A commit with synchronous_commit on flushes the WAL up to here now rather than when the
    // WAL writer gets to it, so the walsender can send it at once.
    const double t_snap = MsSince(paused_at);
    if (auto s = FlushWal(*s_conn); !s.ok()) return s;
    const double t_flush = MsSince(paused_at);
    if (auto s = WaitApplied(*s_conn, fwd, lsn, ctx.options().apply_wait); !s.ok()) return s;
    const double t_applied = MsSince(paused_at);
    if (auto r = (*tg)->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); !r.ok()) {
      return r.status();
    }
    auto tsnap = (*tg)->Exec("SELECT pg_export_snapshot()");
    if (!tsnap.ok()) return tsnap.status();
    if (auto s = ReleasePause(gate, ctx.lock_key()); !s.ok()) return s;
    const double pause_ms = MsSince(paused_at);
    max_pause = std::max(max_pause, pause_ms);
    ctx.Log(
        fmt::format("wave {}: writers to {} -> {} paused {:.1f} ms (snapshot {:.1f}, WAL "
                    "flushed {:.1f}, target applied {:.1f}); comparing at {}",
                    w, p.source, p.target, pause_ms, t_snap, t_flush, t_applied, lsn));
    ctx.Point("gate:paused");

    auto vs = ctx.Connect(p.source);
    if (!vs.ok()) return vs.status();
    auto vt = ctx.Connect(p.target);
    if (!vt.ok()) return vt.status();
    VerifyOptions vo;
    vo.source_snapshot = snapshot;
    vo.target_snapshot = tsnap->String(0, 0);
    HashRanges ranges(p.ranges.begin(), p.ranges.end());
    absl::StatusOr<VerifyReport> report = VerifyRanges(**vs, **vt, *ctx.Result(), ranges, vo);
    if (!report.ok()) return report.status();
    (void)gate.Exec("COMMIT");
    (void)(*tg)->Exec("COMMIT");
    ctx.Point("gate:verified");
    rows += report->total_source_rows();
    for (const TableVerifyResult& t : report->tables) {
      if (t.clean()) continue;
      clean = false;
      auto keys = [](const std::vector<std::string>& v) {
        std::string out;
        for (std::size_t i = 0; i < v.size() && i < 5; ++i) out += (i ? " " : "") + v[i];
        return out;
      };
      summary += fmt::format(
          "{}{} -> {} table {}: {} missing [{}], {} extra [{}], {} different [{}], {} "
          "duplicated",
          summary.empty() ? "" : "; ", p.source, p.target, t.table, t.missing, keys(t.missing_keys),
          t.extra, keys(t.extra_keys), t.different, keys(t.different_keys), t.duplicated);
    }
  }
  if (summary.empty()) summary = fmt::format("clean: {} rows compared", rows);
  if (auto s = RecordGate(ctx.catalog(), ctx.id(), w, clean, summary, rows, max_pause); !s.ok()) {
    return s;
  }
  if (!clean) {
    return absl::FailedPreconditionError(fmt::format(
        "wave {}: the gate failed: the target differs from the source at a consistent point: "
        "{}. The rollout stopped (nothing was switched); find the cause (`shardline verify "
        "--repair` re-copies), then run advance again, or rollback",
        w, summary));
  }
  return RecordWaveStep(ctx.catalog(), ctx.id(), w, WaveStep::kVerified);
}

}  // namespace shardline::migrate
