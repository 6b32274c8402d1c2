// Where a backfill remembers how far it got: after each batch, the last primary key copied, the
// rows copied so far and whether the table is done, for one job (source node, target node,
// table, ranges). Two stores: a state table on the target (shardline.backfill_state), written in
// the same transaction as the batch's rows so that data and checkpoint commit atomically; or the
// control catalog (shardline.backfill_checkpoints), written after the target committed, so the
// engine must delete the target's rows above the checkpoint before resuming (they belong to a
// batch whose checkpoint did not commit). The key is kept as the binary (send/recv) form of each
// primary-key column, framed by EncodeKey(), so it goes back to the server as binary parameters
// of the column's own type and no value ever passes through SQL text.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pg_conn.h"

namespace shardline::migrate {

// One unit of backfill work, as stored: what is copied from where to where.
struct BackfillJobKey {
  std::string source_node;
  std::string target_node;
  std::string table;   // as configured in the map
  std::string ranges;  // "lo:hi[,lo:hi...]" (FormatRanges in backfill.h)
};

// What a store holds for one job.
struct BackfillCheckpoint {
  bool found = false;             // false: the job never started
  std::optional<std::string> last_key;  // EncodeKey() of the last copied key; nullopt: none yet
  std::int64_t rows = 0;          // rows copied by every run so far
  std::int64_t batches = 0;       // batches committed by every run so far
  bool done = false;              // the whole table was copied
};

// Frames the binary values of the key columns: per column a 4-byte big-endian length, then the
// bytes. Key columns are never NULL.
std::string EncodeKey(const std::vector<std::string>& fields);
// The inverse; InvalidArgument when `encoded` is not a framing of `columns` fields.
absl::StatusOr<std::vector<std::string>> DecodeKey(const std::string& encoded,
                                                   std::size_t columns);

// The checkpoint store interface. Single-threaded (it holds a connection or borrows one).
class CheckpointStore {
 public:
  virtual ~CheckpointStore() = default;

  // Creates the state table when missing (target store), or checks that it exists (catalog:
  // FailedPrecondition "run `shardline catalog init`" otherwise). Blocks on one round trip.
  virtual absl::Status Prepare() = 0;
  // The job's checkpoint (found = false when none). Unavailable / Internal on query failure.
  virtual absl::StatusOr<BackfillCheckpoint> Load(const BackfillJobKey& job) = 0;
  // Records `cp` for the job. `target_tx` is the target connection with the batch's transaction
  // still open: the target store writes through it (so the checkpoint commits with the rows);
  // the catalog store ignores it here and is called again through SaveCommitted.
  virtual absl::Status SaveInTargetTransaction(pg::Conn& target_tx, const BackfillJobKey& job,
                                               const BackfillCheckpoint& cp) = 0;
  // Called after the target committed the batch: the catalog store writes `cp` now; the
  // target store does nothing.
  virtual absl::Status SaveCommitted(const BackfillJobKey& job, const BackfillCheckpoint& cp) = 0;
  // Forgets the job (for --restart). Outside any batch transaction.
  virtual absl::Status Reset(const BackfillJobKey& job) = 0;
  // True when a checkpoint commits atomically with the batch's rows (no cleanup on resume).
  virtual bool atomic_with_target() const = 0;
  // For messages: "state table shardline.backfill_state on node b" / "catalog host=...".
  virtual std::string Describe() const = 0;
};

// A store in shardline.backfill_state on the target, written through `target` (borrowed: it
// must outlive the store; the engine's target connection).
std::unique_ptr<CheckpointStore> NewTargetCheckpointStore(pg::Conn& target);
// A store in the catalog's shardline.backfill_checkpoints (owns `catalog`).
std::unique_ptr<CheckpointStore> NewCatalogCheckpointStore(std::unique_ptr<pg::Conn> catalog);

}  // namespace shardline::migrate
