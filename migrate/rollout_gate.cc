// Phase gate of a wave: see rollout_phases.h; the protocol in docs/architecture.md. It reads as
// its steps: WaitInitialCopies, WaitPreMarkWriters, then per pair CatchUp, SnapshotsUnderPause
// (writers to the moving ranges paused for milliseconds) and Compare (against the two
// snapshots, nobody paused), and RecordVerdict.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "rollout_node.h"
#include "rollout_phases.h"
#include "txn.h"
#include "verify.h"

namespace shardline::migrate {
namespace {

// Every table of every pair finished its initial copy.
absl::Status WaitInitialCopies(RolloutContext& ctx, int w, const std::vector<Pair>& pairs) {
  for (const Pair& p : pairs) {
    auto t_node = ctx.Node(p.target);
    if (!t_node.ok()) return t_node.status();
    if (auto s = WaitInitialCopy(**t_node, ctx.Name(w, p, false), ctx.options().copy_wait);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// No writer that began before the moving marks is still open on a source (it may have
// written without the pause lock).
absl::Status WaitPreMarkWriters(RolloutContext& ctx, int w) {
  for (const auto& [source, ranges] : ctx.RangesBySource({w})) {
    auto c = ctx.Node(source);
    if (!c.ok()) return c.status();
    if (auto s = WaitForPreMarkTransactions(**c, ctx.lock_key(), std::chrono::seconds(30));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// The target catches up without pausing anyone, so that the paused wait is short.
absl::Status CatchUp(RolloutContext& ctx, pg::Conn& source, const std::string& fwd) {
  if (auto s = FlushWal(source); !s.ok()) return s;
  auto pre = CurrentLsn(source);
  if (!pre.ok()) return pre.status();
  return WaitApplied(source, fwd, *pre, ctx.options().apply_wait);
}

// Two exported snapshots holding the same rows of the moving ranges, each kept open by its own
// connection's REPEATABLE READ transaction until the comparison is done.
struct GateSnapshots {
  std::unique_ptr<pg::Conn> source_conn, target_conn;
  std::optional<Txn> source_txn, target_txn;  // destroyed before the connections
  std::string source, target, lsn;
  double pause_ms = 0;
};

absl::Status BeginExport(pg::Conn& conn, std::optional<Txn>& txn, std::string* snapshot,
                         std::string* lsn) {
  txn.emplace(conn);
  if (auto s = txn->Begin("BEGIN ISOLATION LEVEL REPEATABLE READ"); !s.ok()) return s;
  auto r = conn.Exec(lsn ? "SELECT pg_export_snapshot(), pg_current_wal_insert_lsn()::text"
                         : "SELECT pg_export_snapshot()");
  if (!r.ok()) return r.status();
  *snapshot = r->String(0, 0);
  if (lsn) *lsn = r->String(0, 1);
  return absl::OkStatus();
}

// The pause: no writer is in flight in the moving ranges and none can start. Export a snapshot
// of the source and its WAL position, flush the WAL (a commit with synchronous_commit on, so the
// walsender can send it at once), wait until the target applied up to it, export a snapshot of
// the target, and let writers go.
absl::StatusOr<std::unique_ptr<GateSnapshots>> SnapshotsUnderPause(RolloutContext& ctx, int w,
                                                                   const Pair& p,
                                                                   pg::Conn& source,
                                                                   const std::string& fwd) {
  auto snaps = std::make_unique<GateSnapshots>();
  auto g = ctx.Connect(p.source);  // holds the pause, then the source snapshot
  if (!g.ok()) return g.status();
  snaps->source_conn = std::move(*g);
  auto tg = ctx.Connect(p.target);
  if (!tg.ok()) return tg.status();
  snaps->target_conn = std::move(*tg);
  auto pause = PauseGuard::Acquire(*snaps->source_conn, ctx.lock_key(),
                                   ctx.options().pause_lock_timeout);
  if (!pause.ok()) return pause.status();
  const auto paused_at = RolloutClock::now();
  if (auto s = BeginExport(*snaps->source_conn, snaps->source_txn, &snaps->source, &snaps->lsn);
      !s.ok()) {
    return s;
  }
  const double t_snap = MsSince(paused_at);
  if (auto s = FlushWal(source); !s.ok()) return s;
  const double t_flush = MsSince(paused_at);
  if (auto s = WaitApplied(source, fwd, snaps->lsn, ctx.options().apply_wait); !s.ok()) return s;
  const double t_applied = MsSince(paused_at);
  if (auto s = BeginExport(*snaps->target_conn, snaps->target_txn, &snaps->target, nullptr);
      !s.ok()) {
    return s;
  }
  if (auto s = pause->Release(); !s.ok()) return s;
  snaps->pause_ms = MsSince(paused_at);
  ctx.Log(fmt::format("wave {}: writers to {} -> {} paused {:.1f} ms (snapshot {:.1f}, WAL "
                      "flushed {:.1f}, target applied {:.1f}); comparing at {}",
                      w, p.source, p.target, snaps->pause_ms, t_snap, t_flush, t_applied,
                      snaps->lsn));
  return snaps;
}

// Verifies the pair's ranges against the two snapshots (writers and replication go on).
absl::StatusOr<VerifyReport> Compare(RolloutContext& ctx, const Pair& p,
                                     const GateSnapshots& snaps) {
  auto vs = ctx.Connect(p.source);
  if (!vs.ok()) return vs.status();
  auto vt = ctx.Connect(p.target);
  if (!vt.ok()) return vt.status();
  VerifyOptions vo;
  vo.source_snapshot = snaps.source;
  vo.target_snapshot = snaps.target;
  HashRanges ranges(p.ranges.begin(), p.ranges.end());
  return VerifyRanges(**vs, **vt, *ctx.Result(), ranges, vo);
}

// What differs, per table, with the first few keys ("" when clean).
std::string Differences(const Pair& p, const VerifyReport& report) {
  auto keys = [](const std::vector<std::string>& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size() && i < 5; ++i) out += (i ? " " : "") + v[i];
    return out;
  };
  std::string out;
  for (const TableVerifyResult& t : report.tables) {
    if (t.clean()) continue;
    out += fmt::format(
        "{}{} -> {} table {}: {} missing [{}], {} extra [{}], {} different [{}], {} duplicated",
        out.empty() ? "" : "; ", p.source, p.target, t.table, t.missing, keys(t.missing_keys),
        t.extra, keys(t.extra_keys), t.different, keys(t.different_keys), t.duplicated);
  }
  return out;
}

// Records the gate's outcome; a difference stops the rollout saying what differs.
absl::Status RecordVerdict(RolloutContext& ctx, int w, const std::string& differences,
                           std::int64_t rows, double max_pause) {
  const bool clean = differences.empty();
  const std::string summary =
      clean ? fmt::format("clean: {} rows compared", rows) : differences;
  if (auto s = RecordGate(ctx.catalog(), ctx.id(), w, clean, summary, rows, max_pause);
      !s.ok()) {
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

}  // namespace

absl::Status Gate(RolloutContext& ctx, int w) {
  const std::vector<Pair> pairs = ctx.Pairs(w);
  if (auto s = WaitInitialCopies(ctx, w, pairs); !s.ok()) return s;
  if (auto s = WaitPreMarkWriters(ctx, w); !s.ok()) return s;
  double max_pause = 0;
  std::int64_t rows = 0;
  std::string differences;
  for (const Pair& p : pairs) {
    auto s_node = ctx.Node(p.source);
    if (!s_node.ok()) return s_node.status();
    pg::Conn& source = **s_node;
    const std::string fwd = ctx.Name(w, p, false);
    if (auto s = CatchUp(ctx, source, fwd); !s.ok()) return s;
    auto snaps = SnapshotsUnderPause(ctx, w, p, source, fwd);
    if (!snaps.ok()) return snaps.status();
    max_pause = std::max(max_pause, (*snaps)->pause_ms);
    ctx.Point("gate:paused");
    auto report = Compare(ctx, p, **snaps);
    if (!report.ok()) return report.status();
    ctx.Point("gate:verified");
    rows += report->total_source_rows();
    const std::string d = Differences(p, *report);
    if (!d.empty()) differences += (differences.empty() ? "" : "; ") + d;
  }
  return RecordVerdict(ctx, w, differences, rows, max_pause);
}

}  // namespace shardline::migrate
