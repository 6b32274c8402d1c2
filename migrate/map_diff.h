// What changed between two shard maps, computed by hash coverage: the hash space is swept once
// over the boundaries of both maps, so maps whose ranges are split differently still compare
// correctly (a range split in two without a change of owner is no change). Pure functions, no
// I/O: `shardline map diff` prints the result, `map publish` summarises it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shardline/shard_map.h"

namespace shardline::migrate {

// A maximal stretch [lo, hi] of the hash space whose node changed from `from` to `to`
// (adjacent stretches with the same from -> to are coalesced).
struct HashStretchChange {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::string from;
  std::string to;

  friend bool operator==(const HashStretchChange&, const HashStretchChange&) = default;
};

// A named element that exists in both maps but differs; `what` lists the differing fields
// ("dsn", "pool_max", "key", ...) and never contains a connection string.
struct ElementChange {
  std::string name;
  std::vector<std::string> what;

  friend bool operator==(const ElementChange&, const ElementChange&) = default;
};

struct MapDiff {
  std::int64_t version_a = 0;
  std::int64_t version_b = 0;
  bool key_type_changed = false;
  KeyType key_type_a = KeyType::kBigint;
  KeyType key_type_b = KeyType::kBigint;
  // Stretches whose owner (the node taking writes) changed, in hash order.
  std::vector<HashStretchChange> owner_changes;
  // Stretches whose read node (read_node when reads are switched, else the owner) changed
  // where at least one side has switched reads (otherwise it is an owner change, above).
  std::vector<HashStretchChange> read_changes;
  // Node names, in the order of the map they appear in.
  std::vector<std::string> nodes_added;
  std::vector<std::string> nodes_removed;
  std::vector<ElementChange> nodes_changed;
  std::vector<std::string> tables_added;
  std::vector<std::string> tables_removed;
  std::vector<ElementChange> tables_changed;

  // True when the maps differ in nothing but their version (and how ranges are split).
  bool Empty() const;
};

// The differences from `a` to `b`. Both must be valid maps (ShardMap guarantees sorted ranges
// covering the whole hash space). Never fails; allocates only the result.
MapDiff DiffMaps(const ShardMap& a, const ShardMap& b);

// The share of the 2^64 hash values that the inclusive range [lo, hi] holds, in [0, 1].
double HashShare(std::int64_t lo, std::int64_t hi);

// Total share of the hash space covered by `changes`.
double HashShare(const std::vector<HashStretchChange>& changes);

}  // namespace shardline::migrate
