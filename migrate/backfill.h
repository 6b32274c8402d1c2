// The backfill engine: copies the rows of given hash ranges of every sharded table from a source
// node to a target node, exactly and resumably. Per table it checks the preconditions (both
// sides have the table, compatible columns, a primary key containing the shard key), then makes
// ONE pass over the source in keyset order of the primary key: each batch is
//   SELECT cols FROM t WHERE <hash range> AND (pk) > ($last) ORDER BY pk LIMIT $batch
// with binary parameters and binary results (an index range scan on the primary key that starts
// where the previous batch stopped, so the batches together read each row once), re-framed as
// binary COPY data and streamed into `COPY t (cols) FROM STDIN (FORMAT binary)` on the target in
// one transaction per batch that also writes the checkpoint (backfill_checkpoint.h). A reader
// thread fetches batch N+1 while batch N loads, so source and target work in parallel; memory is
// bounded by a few batches. COPY is used, not INSERT ... ON CONFLICT (4.6-5x slower): rows above
// the checkpoint are known to be absent on the target because a resumed run first deletes them
// when the checkpoint lives elsewhere (the catalog). See docs/architecture.md, "Backfill".
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

using BackfillRanges = std::vector<std::pair<std::int64_t, std::int64_t>>;

// "lo:hi,lo:hi" (the checkpoint's job key and what messages print).
std::string FormatRanges(const BackfillRanges& ranges);

// One copy job: the ranges moving from `from` to `to`, for some tables of the map.
struct BackfillPair {
  NodeConfig from;
  NodeConfig to;
  BackfillRanges ranges;
};

inline constexpr std::int64_t kDefaultBackfillBatchRows = 20000;

// Where a test kills the process (SIGKILL) to prove resumption exact.
enum class KillPointForTest {
  kNone,
  kBeforeCommit,       // batch rows sent and checkpoint written in the transaction, not committed
  kAfterTargetCommit,  // target committed; the catalog checkpoint (if any) not yet written
  kAfterCheckpoint,    // everything of the batch committed
};

// Progress after each batch (and at the start of each table, with rows = 0).
struct BackfillProgress {
  std::string table;
  std::string from;
  std::string to;
  std::int64_t rows = 0;            // rows of this table copied so far (all runs)
  std::int64_t estimated_rows = 0;  // the planner's estimate for the ranges (0 = unknown)
  double rows_per_second = 0;       // this run's rate for this table
  bool table_done = false;
};

struct BackfillOptions {
  // Sharded tables to copy (names as in the map); empty = every sharded table of the map.
  std::vector<std::string> tables;
  // Rows per batch (one source query, one target transaction, one checkpoint). Larger batches
  // amortise round trips and commits; memory grows with it (about 3 batches are in flight).
  std::int64_t batch_rows = kDefaultBackfillBatchRows;
  // Throttle in rows per second over the whole run; 0 = unlimited. The engine sleeps before a
  // batch that would get ahead of rate * elapsed.
  double rate_rows_per_second = 0;
  // Delete the target's rows in the ranges and forget the checkpoint, then copy from scratch.
  bool restart = false;
  // Checkpoints in this catalog (shardline.backfill_checkpoints) when non-empty, else in
  // shardline.backfill_state on the target.
  std::string catalog_dsn;
  // Called after every batch, from the calling thread.
  std::function<void(const BackfillProgress&)> progress;
  // Test-only: raise(SIGKILL) at `kill_point_for_test` of batch number `kill_at_batch_for_test`
  // (1-based, counted per table within this run).
  KillPointForTest kill_point_for_test = KillPointForTest::kNone;
  std::int64_t kill_at_batch_for_test = 0;
};

// What happened to one table of one pair.
struct TableBackfillResult {
  std::string table;
  std::string from;
  std::string to;
  std::string ranges;             // FormatRanges
  std::vector<std::string> key;   // the primary key used for keyset order
  std::int64_t rows_copied = 0;   // by this run
  std::int64_t rows_total = 0;    // by every run (from the checkpoint)
  std::int64_t batches = 0;       // committed by this run
  std::int64_t estimated_rows = 0;
  bool already_done = false;      // a previous run completed it; nothing copied
  bool resumed = false;           // continued from a checkpoint
  std::int64_t deleted_before_resume = 0;  // target rows above the checkpoint, deleted
  std::int64_t deleted_on_restart = 0;     // target rows of the ranges deleted by --restart
  double seconds = 0;
  double source_wait_seconds = 0;  // the target waited for the source
  double throttle_seconds = 0;     // slept to honour the rate
};

struct BackfillSummary {
  std::vector<TableBackfillResult> tables;
  std::int64_t rows_copied = 0;
  double seconds = 0;
  double throttle_seconds = 0;
  std::string checkpoint_store;  // CheckpointStore::Describe() of the last pair
};

// Checks every table of every pair (before any row moves), then copies them in order. Returns
// the summary, or: InvalidArgument for an unknown --table or a bad batch size;
// FailedPrecondition listing every failed precondition, one per line, each naming the table and
// node and what to do (missing table, incompatible column, no usable primary key, rows already
// on the target without a checkpoint); Unavailable naming the node when a connection fails;
// the server's status naming node and table when a batch fails (what was committed stays
// committed and a rerun resumes after it). Blocks for the whole copy.
absl::StatusOr<BackfillSummary> RunBackfill(const ShardMap& map,
                                            const std::vector<BackfillPair>& pairs,
                                            const BackfillOptions& options);

}  // namespace shardline::migrate
