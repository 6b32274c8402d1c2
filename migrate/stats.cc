// STUB of the stats pass (see stats.h): the interface the rebalance planner needs, without the
// implementation. The stats helper replaces this file with the bucketed pass over every node.
#include "stats.h"

namespace shardline::migrate {

absl::StatusOr<std::vector<RangeStats>> CollectRangeStats(const ShardMap& /*map*/,
                                                          const CollectStatsOptions& /*options*/) {
  return absl::UnimplementedError(
      "size estimates are not available yet (the stats pass is not implemented); "
      "plan with --by ranges instead");
}

}  // namespace shardline::migrate
