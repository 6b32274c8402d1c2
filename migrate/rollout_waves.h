// The pure decisions of a rollout (no I/O, unit-tested): the steps a wave goes through, how a
// plan's moves are cut into waves (cumulative shares of the moved bytes, pilot first), which
// map a migration publishes at each stage, and the names of the replication objects it
// creates on the nodes (derived from migration id, wave and node, so that a rerun finds them).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "planner.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// Where a wave stands; each value means the step is done (a wave is "pending" until its
// catch-up objects exist). Order matters: later steps compare greater.
enum class WaveStep {
  kPending = 0,
  kCatchingUp = 1,      // moving marks, publications and subscriptions exist; copy running
  kVerified = 2,        // the gate compared source and target at a consistent point: clean
  kReadsSwitched = 3,   // a map with the target as read node is published
  kWritesSwitched = 4,  // sources fenced, target owns the ranges, reverse replication runs
};
std::string_view WaveStepName(WaveStep step);
absl::StatusOr<WaveStep> ParseWaveStep(std::string_view name);

// The default waves: a 1% pilot, then 10%, 50% and everything.
inline constexpr std::string_view kDefaultWaves = "1%,10%,50%,100%";

// Parses "1%,10%,50%,100%" (the '%' is optional): cumulative shares, strictly increasing, each
// in (0, 100], the last exactly 100. InvalidArgument naming the bad item otherwise.
absl::StatusOr<std::vector<double>> ParseWavePercents(std::string_view text);

// Cuts `moves` into waves. Moves are taken smallest first (by estimated bytes, then lo), so the
// pilot wave is the smallest slice; wave i holds the moves that bring the cumulative moved
// bytes up to percents[i] of the total, but at least one move; waves left empty are dropped
// (so fewer waves than percents can come out). When no move has a size estimate, counts of
// moves are used instead of bytes. Returns, per wave, indexes into `moves`, sorted by lo.
std::vector<std::vector<std::size_t>> SplitIntoWaves(const std::vector<RangeMove>& moves,
                                                     const std::vector<double>& percents);

// The map of a migration at some stage: `result` (the plan's resulting map, whose ranges are
// the moves' ranges) with each moved range owned by its `from` node while its wave is before
// kReadsSwitched, owned by `from` and read from `to` (state reads_switched) at
// kReadsSwitched, and owned by `to` at kWritesSwitched. move_waves[i] is the wave index of
// moves[i]; wave_steps[w] the step of wave w. Ranges not moved keep their owner. The version
// is set to `version`.
ShardMapConfig MapAtStage(const ShardMapConfig& result, const std::vector<RangeMove>& moves,
                          const std::vector<int>& move_waves,
                          const std::vector<WaveStep>& wave_steps, std::int64_t version);

// True when two maps assign the same ranges, nodes and tables (versions ignored): a rerun
// uses it to see that a map it meant to publish is already current.
bool SameMapContent(const ShardMapConfig& a, const ShardMapConfig& b);

// `map` without the nodes named in `drop` that own no range of it and serve no range's reads
// (a node that still does is kept: dropping it would make the map invalid). The map a cleanup
// publishes last leaves out the plan's drained nodes, and the one a rollback or abort
// publishes leaves out the plan's added nodes, so routers stop connecting to them.
ShardMapConfig WithoutNodes(const ShardMapConfig& map, const std::vector<std::string>& drop);

// The names of the plan's nodes with role `role` (added, removed), in the plan's order.
std::vector<std::string> NodesWithRole(const RebalancePlan& plan, NodeRole role);

// Names of the replication objects of a migration, wave `wave` (1-based), between nodes with
// indexes `source` and `target` in the plan's resulting map. Forward objects carry rows source
// -> target (publication on the source, subscription and its slot named alike); reverse
// objects target -> source. Every name starts with ReplicationPrefix(id, tag)
// ("shardline_m12_1f3a9c0b_"), which finds leftovers; lowercase letters, digits and '_', under
// 63 bytes. `tag` is the migration's random tag (hex), since slot names are per server.
std::string ReplicationPrefix(std::int64_t migration_id, std::string_view tag);
std::string ReplicationName(std::string_view prefix, int wave, int source, int target,
                            bool reverse);

// The advisory lock key the nodes' fence trigger takes shared for a migration's moving ranges
// (schemas/node.sql); the gate and the fence take it exclusively. From the tag (8 hex digits).
std::int64_t PauseLockKey(std::string_view tag);

// Coalesces sorted (lo, hi) pairs that touch (hi + 1 == next lo) into one.
std::vector<std::pair<std::int64_t, std::int64_t>> CoalesceRanges(
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges);

// What a rollout needs of each node's replication capacity at its peak: logical slots and WAL
// senders (as a publisher) and logical-replication workers (as a subscriber). A wave's forward
// pair holds a slot on its source plus up to `sync_workers` table-sync slots during the initial
// copy (and as many workers besides the apply worker on its target) until its writes switch;
// each switched pair keeps a reverse slot on its target and an apply worker on its source until
// cleanup. The peak is the largest wave plus every reverse pair of it and before it.
struct ReplicationNeed {
  int slots = 0;    // = WAL senders
  int workers = 0;  // logical replication workers (apply + table sync)
};
std::map<std::string, ReplicationNeed> ReplicationNeeds(
    const std::vector<RangeMove>& moves, const std::vector<std::vector<std::size_t>>& waves,
    int sync_workers);

// The parts of `ranges` (sorted, disjoint) that `map` gives wholly to `node`: it owns them and
// serves their reads. What cleanup may delete from a move's source: only where the current map
// has the move's target hold them.
std::vector<std::pair<std::int64_t, std::int64_t>> PartsHeldBy(
    const ShardMap& map, const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    std::string_view node);

// The parts of `ranges` that `map` gives to nodes other than `node` for both writes and reads:
// rows of `node` there are copies nobody routes to, so they may be deleted (a rollback's copies
// on a target; cleanup's moved rows).
std::vector<std::pair<std::int64_t, std::int64_t>> PartsNotServedBy(
    const ShardMap& map, const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    std::string_view node);

}  // namespace shardline::migrate
