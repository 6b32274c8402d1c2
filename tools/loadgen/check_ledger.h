// `check-ledger`'s engine: given the entries of a ledger and the current shard map, confirms
// that every acknowledged write is present, with its content, on the node that owns its user
// now, and (strict) on no other node. Connects to every node directly (not through a router):
// the point is to look where the rows really are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ledger.h"
#include "shardline/shard_map.h"

namespace shardline::loadgen {

struct CheckLedgerOptions {
  // Also require that no other node holds the row (after a move's cleanup). Default false: a
  // source keeps moved rows until `rollout cleanup`, which is not a lost write.
  bool strict = false;
  // How many problems are listed in CheckLedgerResult::problems. Default 10.
  std::size_t max_listed = 10;
  // Keys per query (one `= ANY(array)` statement per batch). Default 5000.
  std::size_t batch = 5000;
  std::string application_name = "shardline-loadgen";
};

struct CheckLedgerResult {
  std::uint64_t entries = 0;        // ledger lines read
  std::uint64_t rows = 0;           // distinct rows with an acknowledged write (checked)
  std::uint64_t unacked_only = 0;   // rows with only unknown-outcome writes (not checked)
  std::uint64_t present = 0;        // found on the owner with an accepted content
  std::uint64_t missing = 0;        // not on the owner
  std::uint64_t wrong_content = 0;  // on the owner, but with a content no write produced
  std::uint64_t elsewhere = 0;      // (strict) also on another node
  // The first max_listed problems, e.g.
  //   "missing: workout_logs user_id=42 id=7301... on node n2 (owner of range lo..hi)".
  std::vector<std::string> problems;

  bool ok() const { return missing == 0 && wrong_content == 0 && elsewhere == 0; }
};

// Checks `entries` (in ledger order) against the nodes of `map`. For each row the accepted
// contents are the last acknowledged write's and those of unknown-outcome writes after it.
// Errors (the node's connection or query error, naming the node) only when a node cannot be
// asked; a missing row is a result, not an error. InvalidArgument for an entry naming a table
// the load generator does not know. Blocks for one query per batch per table per node (nodes
// in parallel).
absl::StatusOr<CheckLedgerResult> CheckLedger(const std::vector<LedgerEntry>& entries,
                                              const ShardMap& map,
                                              const CheckLedgerOptions& options);

}  // namespace shardline::loadgen
