// The checks `map publish` and `map revert` make before they put a map in place of the
// catalog's current one by hand: no migration may be under way (its own publishes check that
// the current map is the one it published, so a hand publish in between makes its next step,
// a rollback included, refuse), and no range may be routed to a node that fences it (a cleanup
// or rollback emptied the range there and left a lasting 'fence' mark: writes would be refused
// and reads would find no rows). The rollout's own publishes do not pass through here.
// Free functions over the catalog's connection; they connect to the nodes they check.
// Single-threaded; blocks on each node's connect (10 s at most) and query.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "catalog.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// Checks publishing `candidate` over `current` (null: the catalog has no map yet).
// FailedPrecondition naming the active migration and its state (unless `candidate` has the
// content of the map that migration published last: restoring it is what the rollout asks for
// when someone published over it), or each node, table and range
// that `candidate` newly routes (for writes or reads) to a node fencing it, with what to do.
// With `force` the same findings come back as warnings (each saying what it breaks) and the
// caller goes on. A node that cannot be reached is a warning, never a refusal: a map that routes
// around a node that is down must stay publishable.
absl::StatusOr<std::vector<std::string>> CheckHandPublish(Catalog& catalog, const ShardMap* current,
                                                          const ShardMap& candidate, bool force);

}  // namespace shardline::migrate
