// The shard map: an immutable, versioned assignment of contiguous hash ranges to nodes, and the
// configuration structs it is built from. Routers hold the current map as a
// `std::shared_ptr<const ShardMap>` snapshot and swap it atomically when a new version arrives.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/key.h"

namespace shardline {

inline constexpr std::int64_t kMinHash = std::numeric_limits<std::int64_t>::min();
inline constexpr std::int64_t kMaxHash = std::numeric_limits<std::int64_t>::max();

// Default pool limits of a node when the map does not give them.
inline constexpr int kDefaultPoolMin = 1;
inline constexpr int kDefaultPoolMax = 16;

// What sits between the routers and a node's server (the map's `pooler` field).
enum class Pooler {
  kUnset,        // the map does not say: RouterOptions::default_pooler decides
  kNone,         // the routers reach the server itself (or a session-mode pooler)
  // A transaction-mode pooler (pgbouncer pool_mode = transaction): a server connection is the
  // router's for one transaction only, so the router keeps no state on it beyond one
  // transaction (unnamed statements, the map version set per transaction) and refuses Borrow.
  kTransaction,
};
// "unset", "none", "transaction".
std::string_view PoolerName(Pooler pooler);
// "none" or "transaction"; InvalidArgument listing the accepted values otherwise.
absl::StatusOr<Pooler> ParsePooler(std::string_view name);

// A database node. The DSNs may contain a password: print them only through
// `DsnWithoutPassword()` (shardline/dsn.h).
struct NodeConfig {
  std::string name;                   // unique within a map, e.g. "a", "shard-3"
  std::string dsn;                    // libpq connection string or URI (services, routers)
  // The server itself for the `shardline` DBA tool (replication, advisory locks, session
  // settings), when `dsn` goes through a pooler; empty = `dsn`. Routers never use it.
  std::string admin_dsn;
  Pooler pooler = Pooler::kUnset;     // what `dsn` reaches (see Pooler)
  int pool_min = kDefaultPoolMin;     // connections kept open (idle) per router
  int pool_max = kDefaultPoolMax;     // hard cap of connections per router
  std::vector<std::string> replicas;  // read-replica DSNs; read-only calls may use them

  friend bool operator==(const NodeConfig&, const NodeConfig&) = default;
};

// Where a range stands in a move. Only `kStable` ranges exist outside a rollout.
enum class RangeState {
  kStable,         // owner serves reads and writes
  kCopying,        // being copied to `read_node`; owner still serves reads and writes
  kReadsSwitched,  // `read_node` (the target) serves reads; owner still takes writes
};
std::string_view RangeStateName(RangeState state);
absl::StatusOr<RangeState> ParseRangeState(std::string_view name);

// An inclusive range [lo, hi] of the signed 64-bit hash space and the node that owns it.
struct RangeConfig {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::string node;       // owner: takes writes
  std::string read_node;  // serves reads when state == kReadsSwitched; empty = owner
  RangeState state = RangeState::kStable;

  friend bool operator==(const RangeConfig&, const RangeConfig&) = default;
};

// A table whose rows are distributed by `key`, or a reference table present on every node.
struct TableConfig {
  std::string name;                      // may be schema-qualified as "schema.table"
  std::string key;                       // shard-key column (empty for reference tables)
  std::vector<std::string> primary_key;  // empty = discover from the catalog
  bool reference = false;

  friend bool operator==(const TableConfig&, const TableConfig&) = default;
};

// Everything a map holds, as plain data (what TOML parses into and serialises from).
struct ShardMapConfig {
  std::int64_t version = 0;
  KeyType key_type = KeyType::kBigint;
  std::vector<NodeConfig> nodes;
  std::vector<RangeConfig> ranges;
  std::vector<TableConfig> tables;

  friend bool operator==(const ShardMapConfig&, const ShardMapConfig&) = default;
};

// Source positions of a parsed map's elements (1-based lines; 0 = unknown), so that
// validation errors can say `maps/prod.toml:42`. Indexes match ShardMapConfig's vectors.
struct SourceLocations {
  std::string file;  // as given by the caller, e.g. the path or "catalog version 7"
  std::vector<int> node_lines;
  std::vector<int> range_lines;
  std::vector<int> table_lines;
  int version_line = 0;
  int key_type_line = 0;
};

// An immutable, validated shard map. Built only through Create(), so every instance is valid:
// ranges sorted, contiguous, covering [kMinHash, kMaxHash], each naming a known node.
// Thread-safe (immutable). The lookup functions allocate nothing and take no lock.
//
//   auto map = ShardMap::Create(std::move(config));
//   if (!map.ok()) return map.status();
//   const RangeConfig& r = (*map)->RangeFor(ShardKey(42).Hash());
class ShardMap {
 public:
  // Validates `config` and builds the map (ranges sorted by lo; `config` may list them in any
  // order). InvalidArgument naming the problem (and "file:line: " when `locations` is given)
  // for: gaps and overlaps (naming both ranges lo..hi and both lines), lo > hi, incomplete
  // coverage (naming the missing hash values), unknown or missing node, duplicate node or
  // table names, non-positive version, no nodes, empty name or dsn, a dsn libpq cannot parse,
  // bad pool limits, read_node/state problems, a sharded table without key. Every problem
  // found is listed, one per line, in source order. The rules: docs/map-format.md.
  static absl::StatusOr<std::shared_ptr<const ShardMap>> Create(
      ShardMapConfig config, const SourceLocations* locations = nullptr);

  ShardMap(const ShardMap&) = delete;
  ShardMap& operator=(const ShardMap&) = delete;

  const ShardMapConfig& config() const { return config_; }
  std::int64_t version() const { return config_.version; }
  KeyType key_type() const { return config_.key_type; }
  const std::vector<NodeConfig>& nodes() const { return config_.nodes; }
  const std::vector<RangeConfig>& ranges() const { return config_.ranges; }
  const std::vector<TableConfig>& tables() const { return config_.tables; }

  // Index into ranges() of the range containing `hash`. Never fails (coverage is validated).
  std::size_t RangeIndex(std::int64_t hash) const noexcept;
  const RangeConfig& RangeFor(std::int64_t hash) const noexcept {
    return config_.ranges[RangeIndex(hash)];
  }
  // Index into nodes() of the owner (writes) / the read node of range `range_index`.
  int OwnerNodeIndex(std::size_t range_index) const noexcept { return owner_[range_index]; }
  int ReadNodeIndex(std::size_t range_index) const noexcept { return reader_[range_index]; }
  // Index of the node named `name`, or -1.
  int NodeIndex(std::string_view name) const noexcept;
  // The ranges owned by node `node_index` (it takes their writes), sorted, adjacent ranges
  // coalesced into one [lo, hi] pair. Empty for a node that owns nothing or a bad index.
  std::vector<std::pair<std::int64_t, std::int64_t>> OwnedRanges(int node_index) const;
  // The ranges whose reads node `node_index` serves (ReadNodeIndex() == node_index): the
  // owned ranges minus those switched to another reader, plus those switched to this node.
  // A fan-out read asks each node for exactly these, so no row is counted twice mid-move.
  std::vector<std::pair<std::int64_t, std::int64_t>> ReadRanges(int node_index) const;
  // The table named `name`, or nullptr.
  const TableConfig* FindTable(std::string_view name) const noexcept;

 private:
  explicit ShardMap(ShardMapConfig config);

  ShardMapConfig config_;  // ranges sorted by lo
  // Lookup: his_[i] = ranges[i].hi. The hash space is cut into 2^k equal buckets (k = 64 -
  // bucket_shift_, 1..16, about log2 of the range count); bucket_first_[b] is the index of the
  // range holding the first hash of bucket b, so a lookup searches only
  // his_[bucket_first_[b] .. bucket_first_[b + 1]]: one or two candidates for equal ranges, a
  // branch-free binary search over the bucket otherwise (see RangeIndex).
  std::vector<std::int64_t> his_;
  std::vector<std::uint32_t> bucket_first_;  // 2^k + 1 entries
  int bucket_shift_ = 63;
  std::vector<int> owner_;                   // node index per range
  std::vector<int> reader_;                  // read node index per range
  // (name, index) sorted by name, for NodeIndex / FindTable without allocation. The views
  // point into config_, which never changes after construction.
  std::vector<std::pair<std::string_view, int>> node_by_name_;
  std::vector<std::pair<std::string_view, int>> table_by_name_;
};

// The connection string the `shardline` DBA tool uses for `node`: its admin_dsn when set, else
// its dsn. FailedPrecondition naming the node when that would go through a transaction-mode
// pooler (pooler = "transaction" without admin_dsn): the tool needs the real server.
absl::StatusOr<std::string> AdminDsn(const NodeConfig& node);

// Validation without building (same rules and messages as ShardMap::Create).
absl::Status ValidateShardMapConfig(const ShardMapConfig& config,
                                    const SourceLocations* locations = nullptr);

// Splits the whole hash space into `count` equal contiguous ranges and assigns them to
// `node_names` in contiguous blocks (the first count/N ranges to the first node, ...).
// Range sizes differ by at most one hash value; block sizes by at most one range.
// InvalidArgument if count < 1, count > kMaxEqualRanges, count < number of nodes, or no node
// is given.
inline constexpr std::int64_t kMaxEqualRanges = std::int64_t{1} << 20;
absl::StatusOr<std::vector<RangeConfig>> EqualRanges(std::int64_t count,
                                                     const std::vector<std::string>& node_names);

}  // namespace shardline
