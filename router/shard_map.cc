// The shard map model: validation of a ShardMapConfig (every rule, each message naming the fault
// and its place), the immutable ShardMap with its allocation-free range lookup, and the equal
// split of the hash space that `map init` starts from. See shardline/shard_map.h and
// docs/map-format.md for the rules.
#include "shardline/shard_map.h"

#include <algorithm>
#include <bit>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include "shardline/dsn.h"

namespace shardline {
namespace {

// At most this many problems are listed in one error; the rest are counted.
constexpr std::size_t kMaxReportedProblems = 20;
// Ranges are indexed with int / uint32 internally.
constexpr std::size_t kMaxRanges = std::size_t{1} << 30;
// The lookup table has at most 2^16 buckets (256 KiB), enough for one step at 65,536 ranges.
constexpr int kMaxBucketBits = 16;

__extension__ typedef unsigned __int128 Uint128;

// The position of a hash in the space as an unsigned offset from kMinHash (order-preserving).
constexpr std::uint64_t Offset(std::int64_t hash) {
  return static_cast<std::uint64_t>(hash) ^ (std::uint64_t{1} << 63);
}
constexpr std::int64_t FromOffset(std::uint64_t offset) {
  return static_cast<std::int64_t>(offset ^ (std::uint64_t{1} << 63));
}

int LineAt(const SourceLocations* loc, const std::vector<int> SourceLocations::*lines,
           std::size_t i) {
  if (loc == nullptr) return 0;
  const std::vector<int>& v = loc->*lines;
  return i < v.size() ? v[i] : 0;
}

// Collects problems, each prefixed with "file:line: " as far as the place is known.
class Problems {
 public:
  explicit Problems(const SourceLocations* loc) : loc_(loc) {}

  void Add(int line, std::string message) {
    std::string prefix;
    if (loc_ != nullptr && !loc_->file.empty()) {
      prefix = line > 0 ? fmt::format("{}:{}: ", loc_->file, line) : fmt::format("{}: ", loc_->file);
    } else if (line > 0) {
      prefix = fmt::format("line {}: ", line);
    }
    list_.emplace_back(line, prefix + message);
  }
  // " (line N)" naming a second place in the same source, or "" when unknown.
  static std::string AlsoAt(int line) {
    return line > 0 ? fmt::format(" (line {})", line) : std::string();
  }

  absl::Status ToStatus() const {
    if (list_.empty()) return absl::OkStatus();
    // In file order (problems without a line first), whatever order the checks ran in.
    std::vector<std::pair<int, std::string>> sorted = list_;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string out;
    for (std::size_t i = 0; i < sorted.size() && i < kMaxReportedProblems; ++i) {
      if (i > 0) out += '\n';
      out += sorted[i].second;
    }
    if (list_.size() > kMaxReportedProblems) {
      out += fmt::format("\n... and {} more problems", list_.size() - kMaxReportedProblems);
    }
    return absl::InvalidArgumentError(out);
  }

 private:
  const SourceLocations* loc_;
  std::vector<std::pair<int, std::string>> list_;  // (line, message)
};

std::string RangeName(const RangeConfig& r) { return fmt::format("range {}..{}", r.lo, r.hi); }

std::string NameList(const std::vector<NodeConfig>& nodes) {
  if (nodes.empty()) return "the map has no nodes";
  std::string out = "nodes: ";
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (i == 8) {
      out += fmt::format(", ... ({} in all)", nodes.size());
      break;
    }
    if (i > 0) out += ", ";
    out += nodes[i].name;
  }
  return out;
}

bool DsnParses(const std::string& dsn) {
  return DsnWithoutPassword(dsn) != "<unparseable connection string>";
}

void ValidateNodes(const ShardMapConfig& c, const SourceLocations* loc, Problems& p) {
  if (c.nodes.empty()) p.Add(0, "the map has no nodes (add at least one [[nodes]] entry)");
  std::map<std::string_view, std::size_t> seen;
  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    const NodeConfig& n = c.nodes[i];
    const int line = LineAt(loc, &SourceLocations::node_lines, i);
    const std::string who =
        n.name.empty() ? fmt::format("nodes[{}]", i) : fmt::format("node '{}'", n.name);
    if (n.name.empty()) p.Add(line, fmt::format("nodes[{}]: name is empty", i));
    if (!n.name.empty()) {
      auto [it, inserted] = seen.emplace(n.name, i);
      if (!inserted) {
        p.Add(line, fmt::format("duplicate node name '{}' (first defined as nodes[{}]{})", n.name,
                                it->second,
                                Problems::AlsoAt(LineAt(loc, &SourceLocations::node_lines,
                                                        it->second))));
      }
    }
    if (n.dsn.empty()) {
      p.Add(line, fmt::format("{}: dsn is empty", who));
    } else if (!DsnParses(n.dsn)) {
      p.Add(line, fmt::format("{}: dsn is not a valid libpq connection string "
                              "(key=value pairs or a postgresql:// URI)", who));
    }
    if (n.pool_max < 1) {
      p.Add(line, fmt::format("{}: pool_max must be at least 1, got {}", who, n.pool_max));
    }
    if (n.pool_min < 0) {
      p.Add(line, fmt::format("{}: pool_min must not be negative, got {}", who, n.pool_min));
    }
    if (n.pool_max >= 1 && n.pool_min > n.pool_max) {
      p.Add(line, fmt::format("{}: pool_min ({}) is greater than pool_max ({})", who, n.pool_min,
                              n.pool_max));
    }
    if (!n.admin_dsn.empty() && !DsnParses(n.admin_dsn)) {
      p.Add(line, fmt::format("{}: admin_dsn is not a valid libpq connection string "
                              "(key=value pairs or a postgresql:// URI)", who));
    }
    for (std::size_t r = 0; r < n.replicas.size(); ++r) {
      if (n.replicas[r].empty()) {
        p.Add(line, fmt::format("{}: replicas[{}] is empty", who, r));
      } else if (!DsnParses(n.replicas[r])) {
        p.Add(line, fmt::format("{}: replicas[{}] is not a valid libpq connection string", who, r));
      }
    }
  }
}

void ValidateTables(const ShardMapConfig& c, const SourceLocations* loc, Problems& p) {
  std::map<std::string_view, std::size_t> seen;
  for (std::size_t i = 0; i < c.tables.size(); ++i) {
    const TableConfig& t = c.tables[i];
    const int line = LineAt(loc, &SourceLocations::table_lines, i);
    const std::string who =
        t.name.empty() ? fmt::format("tables[{}]", i) : fmt::format("table '{}'", t.name);
    if (t.name.empty()) {
      p.Add(line, fmt::format("tables[{}]: name is empty", i));
    } else {
      auto [it, inserted] = seen.emplace(t.name, i);
      if (!inserted) {
        p.Add(line, fmt::format("duplicate table name '{}' (first defined as tables[{}]{})",
                                t.name, it->second,
                                Problems::AlsoAt(LineAt(loc, &SourceLocations::table_lines,
                                                        it->second))));
      }
    }
    if (!t.reference && t.key.empty()) {
      p.Add(line, fmt::format("{}: key is missing (a sharded table needs its shard-key column; "
                              "set reference = true for a table copied to every node)", who));
    }
    if (t.reference && !t.key.empty()) {
      p.Add(line, fmt::format("{}: a reference table has no shard key, but key = '{}' is set "
                              "(remove key, or set reference = false)", who, t.key));
    }
    for (std::size_t k = 0; k < t.primary_key.size(); ++k) {
      if (t.primary_key[k].empty()) {
        p.Add(line, fmt::format("{}: primary_key[{}] is empty", who, k));
        continue;
      }
      for (std::size_t j = 0; j < k; ++j) {
        if (t.primary_key[j] == t.primary_key[k]) {
          p.Add(line, fmt::format("{}: primary_key names column '{}' twice", who,
                                  t.primary_key[k]));
          break;
        }
      }
    }
  }
}

void ValidateRanges(const ShardMapConfig& c, const SourceLocations* loc, Problems& p) {
  std::map<std::string_view, std::size_t> nodes;
  for (std::size_t i = 0; i < c.nodes.size(); ++i) nodes.emplace(c.nodes[i].name, i);
  auto line_of = [&](std::size_t i) { return LineAt(loc, &SourceLocations::range_lines, i); };

  if (c.ranges.size() > kMaxRanges) {
    p.Add(0, fmt::format("too many ranges: {} (at most {})", c.ranges.size(), kMaxRanges));
    return;
  }
  std::vector<std::size_t> ordered;  // indexes of ranges with lo <= hi, sorted by (lo, hi)
  ordered.reserve(c.ranges.size());
  for (std::size_t i = 0; i < c.ranges.size(); ++i) {
    const RangeConfig& r = c.ranges[i];
    const int line = line_of(i);
    if (r.lo > r.hi) {
      p.Add(line, fmt::format("{}: lo is greater than hi", RangeName(r)));
    } else {
      ordered.push_back(i);
    }
    if (r.node.empty()) {
      p.Add(line, fmt::format("{}: node is missing (the owner's name)", RangeName(r)));
    } else if (!nodes.contains(r.node)) {
      p.Add(line, fmt::format("{}: unknown node '{}' ({})", RangeName(r), r.node,
                              NameList(c.nodes)));
    }
    const bool valid_state = r.state == RangeState::kStable || r.state == RangeState::kCopying ||
                             r.state == RangeState::kReadsSwitched;
    if (!valid_state) {
      p.Add(line, fmt::format("{}: invalid state {}", RangeName(r), static_cast<int>(r.state)));
    } else if (r.state == RangeState::kStable && !r.read_node.empty()) {
      p.Add(line, fmt::format("{}: read_node '{}' is set but state is stable (read_node names a "
                              "move's target; set state = \"copying\" or \"reads_switched\", or "
                              "remove read_node)", RangeName(r), r.read_node));
    } else if (r.state != RangeState::kStable && r.read_node.empty()) {
      p.Add(line, fmt::format("{}: state {} needs read_node (the node the range is moving to)",
                              RangeName(r), RangeStateName(r.state)));
    }
    if (!r.read_node.empty()) {
      if (!nodes.contains(r.read_node)) {
        p.Add(line, fmt::format("{}: unknown read_node '{}' ({})", RangeName(r), r.read_node,
                                NameList(c.nodes)));
      } else if (r.read_node == r.node) {
        p.Add(line, fmt::format("{}: read_node '{}' is the owner itself (it must name the node "
                                "the range is moving to)", RangeName(r), r.read_node));
      }
    }
  }

  // Coverage: walk the ranges by lo, tracking the highest hash covered so far and which range
  // covers it, so that every gap and overlap names both ranges.
  if (ordered.empty()) {
    if (c.ranges.empty()) {
      p.Add(0, fmt::format("the map has no ranges: hash values {}..{} are not covered (a map "
                           "needs [[ranges]] covering the whole signed 64-bit hash space)",
                           kMinHash, kMaxHash));
    }
    return;
  }
  std::stable_sort(ordered.begin(), ordered.end(), [&](std::size_t a, std::size_t b) {
    const RangeConfig& ra = c.ranges[a];
    const RangeConfig& rb = c.ranges[b];
    return ra.lo != rb.lo ? ra.lo < rb.lo : ra.hi < rb.hi;
  });
  const RangeConfig& first = c.ranges[ordered.front()];
  if (first.lo != kMinHash) {
    p.Add(line_of(ordered.front()),
          fmt::format("no range starts at {}: hash values {}..{} are not covered (the lowest is "
                      "{})", kMinHash, kMinHash, first.lo - 1, RangeName(first)));
  }
  std::size_t cover = ordered.front();
  std::int64_t covered_hi = first.hi;
  for (std::size_t k = 1; k < ordered.size(); ++k) {
    const std::size_t i = ordered[k];
    const RangeConfig& r = c.ranges[i];
    const RangeConfig& prev = c.ranges[cover];
    if (r.lo <= covered_hi) {
      p.Add(line_of(i), fmt::format("{}{} overlaps {}{}: hash values {}..{} are in both",
                                    RangeName(r), Problems::AlsoAt(line_of(i)), RangeName(prev),
                                    Problems::AlsoAt(line_of(cover)), r.lo,
                                    std::min(r.hi, covered_hi)));
    } else if (r.lo - 1 > covered_hi) {  // r.lo > covered_hi >= kMinHash: no overflow
      p.Add(line_of(i), fmt::format("gap between {}{} and {}{}: hash values {}..{} are not "
                                    "covered", RangeName(prev), Problems::AlsoAt(line_of(cover)),
                                    RangeName(r), Problems::AlsoAt(line_of(i)), covered_hi + 1,
                                    r.lo - 1));
    }
    if (r.hi > covered_hi) {
      covered_hi = r.hi;
      cover = i;
    }
  }
  if (covered_hi != kMaxHash) {
    p.Add(line_of(cover), fmt::format("no range ends at {}: hash values {}..{} are not covered "
                                      "(the highest is {})", kMaxHash, covered_hi + 1, kMaxHash,
                                      RangeName(c.ranges[cover])));
  }
}

// Appends [lo, hi] to `out`, merging it into the last pair when adjacent.
void AppendCoalesced(std::vector<std::pair<std::int64_t, std::int64_t>>& out, std::int64_t lo,
                     std::int64_t hi) {
  if (!out.empty() && out.back().second != kMaxHash && out.back().second + 1 == lo) {
    out.back().second = hi;
  } else {
    out.emplace_back(lo, hi);
  }
}

int FindByName(const std::vector<std::pair<std::string_view, int>>& sorted,
               std::string_view name) noexcept {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), name,
                             [](const auto& e, std::string_view n) { return e.first < n; });
  return it != sorted.end() && it->first == name ? it->second : -1;
}

// Index of the first element of his[0..n) that is >= hash (n >= 1; his[n-1] >= hash is not
// required). Branch-free: the loop runs ceil(log2(n)) times whatever the data, and the select
// compiles to a conditional move, so random hashes cost no mispredictions.
inline std::size_t BranchFreeLowerBound(const std::int64_t* his, std::size_t n,
                                        std::int64_t hash) noexcept {
  const std::int64_t* base = his;
  while (n > 1) {
    const std::size_t half = n / 2;
    base = base[half] < hash ? base + half : base;
    n -= half;
  }
  return static_cast<std::size_t>(base - his) + (*base < hash ? 1 : 0);
}

}  // namespace

std::string_view RangeStateName(RangeState state) {
  switch (state) {
    case RangeState::kStable:
      return "stable";
    case RangeState::kCopying:
      return "copying";
    case RangeState::kReadsSwitched:
      return "reads_switched";
    default:
      return "?";
  }
}

std::string_view PoolerName(Pooler pooler) {
  switch (pooler) {
    case Pooler::kNone:
      return "none";
    case Pooler::kTransaction:
      return "transaction";
    default:
      return "unset";
  }
}

absl::StatusOr<Pooler> ParsePooler(std::string_view name) {
  if (name == "none") return Pooler::kNone;
  if (name == "transaction") return Pooler::kTransaction;
  return absl::InvalidArgumentError(fmt::format(
      "unknown pooler '{}' (expected \"none\" or \"transaction\"; a session-mode pooler is "
      "\"none\")",
      name));
}

absl::StatusOr<std::string> AdminDsn(const NodeConfig& node) {
  if (!node.admin_dsn.empty()) return node.admin_dsn;
  if (node.pooler == Pooler::kTransaction) {
    return absl::FailedPreconditionError(fmt::format(
        "node {}: its dsn goes through a transaction-mode pooler (pooler = \"transaction\") "
        "and the shardline tool needs the server itself (replication, advisory locks, session "
        "settings): add admin_dsn = \"...\" (a connection string straight to the server) to "
        "its [[nodes]] entry and publish the map",
        node.name));
  }
  return node.dsn;
}

absl::StatusOr<RangeState> ParseRangeState(std::string_view name) {
  if (name == "stable") return RangeState::kStable;
  if (name == "copying") return RangeState::kCopying;
  if (name == "reads_switched") return RangeState::kReadsSwitched;
  return absl::InvalidArgumentError(fmt::format(
      "unknown range state '{}' (expected stable, copying or reads_switched)", name));
}

absl::Status ValidateShardMapConfig(const ShardMapConfig& config,
                                    const SourceLocations* locations) {
  Problems p(locations);
  const int version_line = locations ? locations->version_line : 0;
  if (config.version <= 0) {
    p.Add(version_line,
          fmt::format("version must be a positive integer, got {}", config.version));
  }
  const auto kt = config.key_type;
  if (kt != KeyType::kBigint && kt != KeyType::kText && kt != KeyType::kUuid) {
    p.Add(locations ? locations->key_type_line : 0,
          fmt::format("unknown key_type {} (expected bigint, text or uuid)",
                      static_cast<int>(kt)));
  }
  ValidateNodes(config, locations, p);
  ValidateRanges(config, locations, p);
  ValidateTables(config, locations, p);
  return p.ToStatus();
}

absl::StatusOr<std::shared_ptr<const ShardMap>> ShardMap::Create(
    ShardMapConfig config, const SourceLocations* locations) {
  if (absl::Status s = ValidateShardMapConfig(config, locations); !s.ok()) return s;
  return std::shared_ptr<const ShardMap>(new ShardMap(std::move(config)));
}

ShardMap::ShardMap(ShardMapConfig config) : config_(std::move(config)) {
  std::vector<RangeConfig>& ranges = config_.ranges;
  std::sort(ranges.begin(), ranges.end(),
            [](const RangeConfig& a, const RangeConfig& b) { return a.lo < b.lo; });

  node_by_name_.reserve(config_.nodes.size());
  for (std::size_t i = 0; i < config_.nodes.size(); ++i) {
    node_by_name_.emplace_back(config_.nodes[i].name, static_cast<int>(i));
  }
  std::sort(node_by_name_.begin(), node_by_name_.end());
  table_by_name_.reserve(config_.tables.size());
  for (std::size_t i = 0; i < config_.tables.size(); ++i) {
    table_by_name_.emplace_back(config_.tables[i].name, static_cast<int>(i));
  }
  std::sort(table_by_name_.begin(), table_by_name_.end());

  his_.reserve(ranges.size());
  owner_.reserve(ranges.size());
  reader_.reserve(ranges.size());
  for (const RangeConfig& r : ranges) {
    his_.push_back(r.hi);
    const int owner = NodeIndex(r.node);
    owner_.push_back(owner);
    reader_.push_back(r.state == RangeState::kReadsSwitched ? NodeIndex(r.read_node) : owner);
  }

  // One bucket per range or so (2^k >= count), capped; each bucket's first candidate.
  const int bits = std::clamp(static_cast<int>(std::bit_width(ranges.size())), 1, kMaxBucketBits);
  bucket_shift_ = 64 - bits;
  const std::size_t buckets = std::size_t{1} << bits;
  bucket_first_.resize(buckets + 1);
  std::size_t r = 0;
  for (std::size_t b = 0; b < buckets; ++b) {
    const std::int64_t start = FromOffset(static_cast<std::uint64_t>(b) << bucket_shift_);
    while (his_[r] < start) ++r;  // his_.back() == kMaxHash stops the walk
    bucket_first_[b] = static_cast<std::uint32_t>(r);
  }
  bucket_first_[buckets] = static_cast<std::uint32_t>(ranges.size() - 1);
}

std::size_t ShardMap::RangeIndex(std::int64_t hash) const noexcept {
  const std::size_t bucket = Offset(hash) >> bucket_shift_;
  const std::size_t first = bucket_first_[bucket];
  // The range holding the next bucket's first hash: `hash` is in ranges first..last.
  const std::size_t last = bucket_first_[bucket + 1];
  if (last - first > 1) [[unlikely]] {
    // A bucket with many ranges (over 2^16 ranges, or small ranges crowded together).
    return first + BranchFreeLowerBound(his_.data() + first, last - first + 1, hash);
  }
  // One or two candidates (always, for equal ranges): his_[last] >= hash, so one compare
  // decides, without a branch. Testing the size first keeps the branch above predictable.
  return first + (his_[first] < hash ? 1 : 0);
}

int ShardMap::NodeIndex(std::string_view name) const noexcept {
  return FindByName(node_by_name_, name);
}

const TableConfig* ShardMap::FindTable(std::string_view name) const noexcept {
  const int i = FindByName(table_by_name_, name);
  return i < 0 ? nullptr : &config_.tables[static_cast<std::size_t>(i)];
}

std::vector<std::pair<std::int64_t, std::int64_t>> ShardMap::OwnedRanges(int node_index) const {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (std::size_t i = 0; i < owner_.size(); ++i) {
    if (owner_[i] == node_index) AppendCoalesced(out, config_.ranges[i].lo, config_.ranges[i].hi);
  }
  return out;
}

std::vector<std::pair<std::int64_t, std::int64_t>> ShardMap::ReadRanges(int node_index) const {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (std::size_t i = 0; i < reader_.size(); ++i) {
    if (reader_[i] == node_index) AppendCoalesced(out, config_.ranges[i].lo, config_.ranges[i].hi);
  }
  return out;
}

absl::StatusOr<std::vector<RangeConfig>> EqualRanges(std::int64_t count,
                                                     const std::vector<std::string>& node_names) {
  if (node_names.empty()) {
    return absl::InvalidArgumentError("cannot split the hash space: no node given");
  }
  if (count < 1 || count > kMaxEqualRanges) {
    return absl::InvalidArgumentError(fmt::format(
        "cannot split the hash space into {} ranges: the count must be 1..{}", count,
        kMaxEqualRanges));
  }
  const std::uint64_t n = static_cast<std::uint64_t>(count);
  const std::uint64_t nodes = node_names.size();
  if (n < nodes) {
    return absl::InvalidArgumentError(fmt::format(
        "cannot give each of {} nodes a range with only {} ranges: use at least {} ranges",
        nodes, count, nodes));
  }
  // Range i starts at offset floor(i * 2^64 / n) from kMinHash (exact in 128 bits), so the
  // sizes differ by at most one and the last range ends exactly at kMaxHash.
  auto start = [n](std::uint64_t i) {
    return FromOffset(static_cast<std::uint64_t>((static_cast<Uint128>(i) << 64) / n));
  };
  std::vector<RangeConfig> out(n);
  std::size_t node = 0;
  std::uint64_t block_end = n / nodes;  // first range of the next node's block: floor(j*n/N)
  for (std::uint64_t i = 0; i < n; ++i) {
    while (i >= block_end) {
      ++node;
      block_end = static_cast<std::uint64_t>(static_cast<Uint128>(node + 1) * n / nodes);
    }
    out[i].lo = start(i);
    out[i].hi = i + 1 < n ? start(i + 1) - 1 : kMaxHash;
    out[i].node = node_names[node];
  }
  return out;
}

}  // namespace shardline
