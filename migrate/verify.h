// Verification of moved ranges: compares the rows of given hash ranges on a source and a target
// node, table by table, and names the primary keys that differ. Per table one pass on each side
// (both sides concurrently, on two threads) computes, per hash bucket, the row count and an
// order-independent, exact (numeric) sum of a 64-bit row-content hash, so that a duplicated row
// or a reordering cannot cancel out. The row hash is hash_record_extended(ROW(columns), 0)
// (PostgreSQL 14+), with the columns whose type's equality is looser than their text (numeric
// scale, float -0, interval, arrays, user types) cast to text first: as strict as hashing the
// row's text without running every output function (1.5-1.7x faster than
// `sum(hashtextextended(t::text, 0))` on a typical table); older servers hash the text. Only
// mismatching buckets are drilled into: (primary key, row hash) of those buckets from both sides
// through cursors ordered by (bucket, key text), fetched 10,000 rows at a time (memory bounded),
// merged into missing (on source only), extra (on target only), different (same key, other
// content) and duplicated (a key present more than once on one side, e.g. a target lacking the PK
// constraint). `repair` then re-copies exactly what differs (delete by key on the target, binary
// COPY of the source rows selected by key) and verifies again. rollout's consistency gate calls
// VerifyRanges() with an exported snapshot of the source (see VerifyOptions::source_snapshot).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

inline constexpr int kDefaultVerifyBuckets = 1024;
inline constexpr std::size_t kDefaultMaxKeysReported = 10;

// Inclusive hash ranges [lo, hi] to compare (e.g. the moves of a plan between one pair of nodes).
using HashRanges = std::vector<std::pair<std::int64_t, std::int64_t>>;

struct VerifyOptions {
  // Sharded tables to compare (names as in the map); empty = every sharded table of the map.
  std::vector<std::string> tables;
  // Hash buckets per table (power of two is not required; 1..1,048,576). More buckets = smaller
  // drill-downs on a mismatch but a larger result of the checksum pass. Default 1024.
  int buckets = kDefaultVerifyBuckets;
  // How many keys of each kind (missing/extra/different/duplicated) a TableVerifyResult keeps.
  std::size_t max_keys_reported = kDefaultMaxKeysReported;
  // Optional exported snapshot id (pg_export_snapshot() in a transaction the caller keeps open on
  // the source node). When set, every read on the source runs inside
  // BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '<id>', so the comparison is
  // against that consistent point (rollout's gate). Empty = each pass reads the latest data.
  std::string source_snapshot;
  // Same for the target (rarely needed: the target is usually quiescent for the moving ranges).
  std::string target_snapshot;
  // Re-copy what differs, then verify again (VerifyReport::after_repair): for each differing key,
  // the target's rows of that key are deleted and the source's copied. The differing keys are
  // kept in memory until then: repair is for a few differences; copy bulk with backfill.
  bool repair = false;
  // Rows per batch for the repair's deletes and copies (keys per statement).
  std::size_t repair_batch = 1000;
  // Run the two sides' checksum passes concurrently on two threads (the connections are used by
  // one thread each). false = one after the other (for debugging).
  bool parallel = true;
};

// The outcome for one table. Keys are rendered as text: the value of a one-column key
// ("42", "alice", "a0ee...-..."), or the row text of a composite key ("(7,1001)").
struct TableVerifyResult {
  std::string table;             // as named in the map
  std::int64_t source_rows = 0;  // rows in the ranges on the source
  std::int64_t target_rows = 0;  // rows in the ranges on the target
  int buckets = 0;               // buckets compared
  int mismatched_buckets = 0;    // buckets whose count or sums differed
  std::int64_t missing = 0;      // keys on the source only
  std::int64_t extra = 0;        // keys on the target only
  std::int64_t different = 0;    // keys on both sides with different row content
  std::int64_t duplicated = 0;   // surplus copies of a key on either side (rows - distinct keys)
  std::vector<std::string> missing_keys;     // the first max_keys_reported of each kind,
  std::vector<std::string> extra_keys;       // in hash-bucket order, then key order
  std::vector<std::string> different_keys;
  std::vector<std::string> duplicated_keys;
  double source_seconds = 0;  // wall time of the checksum pass on each side
  double target_seconds = 0;
  // Repair (only when VerifyOptions::repair and something differed).
  std::int64_t repair_deleted = 0;  // target rows deleted (extra, different, duplicated keys)
  std::int64_t repair_copied = 0;   // source rows copied (missing, different, duplicated keys)

  bool clean() const { return missing == 0 && extra == 0 && different == 0 && duplicated == 0; }
};

struct VerifyReport {
  std::string source_node;
  std::string target_node;
  HashRanges ranges;
  std::vector<TableVerifyResult> tables;  // in map order of the tables compared
  bool repaired = false;                  // repair ran (something differed and repair was asked)
  // When repaired: the result of the verification after the repair (tables as above).
  std::vector<TableVerifyResult> after_repair;

  // True when nothing differs: before repair when no repair ran, else after it.
  bool clean() const;
  std::int64_t total_source_rows() const;
};

// Compares `ranges` of every selected sharded table of `map` between `source` and `target`.
// Uses each connection from one thread at a time (the two sides run on two threads when
// options.parallel); blocks for one scan of each table on each side plus the drill-downs (and
// with repair, the repair and a second pass). Differences are not an error: they are in the
// report (clean() false). Errors: InvalidArgument for bad options (buckets out of range, empty
// ranges, unknown table); NotFound / FailedPrecondition naming table and node when a table is
// missing, has no usable key, or its columns differ between the nodes; Unavailable etc. from the
// connections, naming the node. The connections are left outside any transaction.
absl::StatusOr<VerifyReport> VerifyRanges(pg::Conn& source, pg::Conn& target, const ShardMap& map,
                                          const HashRanges& ranges, const VerifyOptions& options);

// Rows on `node` of `table` whose hash lies in a range the map gives to another node.
struct OrphanResult {
  std::string node;
  std::string table;  // as named in the map
  std::int64_t rows = 0;
  std::vector<std::string> first_keys;  // in primary-key order, rendered as in TableVerifyResult
};

// Looks on every node of `map` (concurrently, one connection each) for rows of the selected
// sharded tables (empty = all) outside the node's owned ranges. One entry per (table, node), also
// for zero rows. Blocks for one scan per table per node (two when orphans exist). Errors: as
// VerifyRanges, naming node and table.
absl::StatusOr<std::vector<OrphanResult>> FindOrphans(const ShardMap& map,
                                                      const std::vector<std::string>& tables,
                                                      std::size_t max_keys);

// Pure helper (unit-testable): the bucket of `hash` when the inclusive range [lo, hi] is cut into
// 2^k buckets by the top bits of (hash - lo): bucket = (hash - lo) >> shift, shift chosen so that
// at most `buckets` buckets exist (at least 2 when the span crosses zero: shifts keep the sign).
// The server evaluates the same expression.
int BucketShiftFor(std::int64_t lo, std::int64_t hi, int buckets);

}  // namespace shardline::migrate
