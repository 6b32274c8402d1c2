// The rebalance planner (see planner.h for the algorithm): input checks, the apportioning of size
// estimates onto the map's ranges, the greedy balancer over range pieces, and the assembly of the
// resulting map and summary numbers. No I/O, no clock, no randomness; every tie is broken by
// index so the output is a function of the input.
#include "planner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

namespace shardline::migrate {
namespace {

// The greedy stops when every node is within this share of the tolerance; the rest is headroom
// for the estimates (sizes of split halves are proportional guesses).
constexpr double kAimShare = 0.5;
// A range larger than what is wanted may still move (instead of being split) if it overshoots by
// at most this share of the tolerance, and while all overshoots together stay within
// kOvershootBudget of the minimum movement: without overshoots nothing moves beyond the minimum
// (donors never go below the target, receivers never above), so the plan moves at most
// (1 + kOvershootBudget) times the minimum. Smaller = less data moved, more splits.
constexpr double kOvershootShare = 0.25;
constexpr double kOvershootBudget = 0.02;

// Number of hash values in [lo, hi] (up to 2^64, hence long double).
long double Span(std::int64_t lo, std::int64_t hi) {
  return static_cast<long double>(static_cast<std::uint64_t>(hi) -
                                  static_cast<std::uint64_t>(lo)) +
         1.0L;
}

// round(value * part / whole), clamped to [0, value]; 0 <= part <= whole.
std::int64_t Share(std::int64_t value, long double part, long double whole) {
  if (value <= 0 || part <= 0) return 0;
  if (part >= whole) return value;
  const long double v = std::roundl(static_cast<long double>(value) * part / whole);
  return std::clamp(static_cast<std::int64_t>(v), std::int64_t{0}, value);
}

// A contiguous part of one range of the current map (the whole range until it is split).
struct Piece {
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  std::int64_t rows = 0;
  std::int64_t bytes = 0;
  std::int64_t weight = 0;  // bytes, or 1 in kRanges mode
  int origin = 0;           // index of the current range (sorted by lo) it comes from
  int from = 0;             // node owning it in the current map
  int owner = 0;            // node owning it now
  bool alive = true;        // false once split into two new pieces
};

// A node's pieces ordered by (weight, piece index), for best-fit lookups.
using PieceSet = std::set<std::pair<std::int64_t, int>>;

struct NodeLoad {
  bool removed = false;
  std::int64_t load = 0;  // sum of the weights of `pieces`
  PieceSet pieces;
};

// The greedy over pieces. Single-threaded; owns its pieces and node loads.
class Balancer {
 public:
  Balancer(BalanceMode mode, double tolerance, std::vector<Piece> pieces, std::size_t node_count,
           const std::vector<bool>& removed)
      : mode_(mode), pieces_(std::move(pieces)), nodes_(node_count) {
    std::int64_t total = 0;
    std::size_t active = 0;
    for (std::size_t n = 0; n < node_count; ++n) {
      nodes_[n].removed = removed[n];
      if (!removed[n]) ++active;
    }
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
      Piece& p = pieces_[i];
      p.weight = mode_ == BalanceMode::kSize ? p.bytes : 1;
      total += p.weight;
      nodes_[p.owner].load += p.weight;
      nodes_[p.owner].pieces.emplace(p.weight, static_cast<int>(i));
    }
    target_ = static_cast<double>(total) / static_cast<double>(active);
    aim_ = kAimShare * tolerance * target_;
    // Counting ranges, one range is the unit: any move that narrows the gap between two nodes
    // is worth it, and there is nothing to split.
    overshoot_ = mode_ == BalanceMode::kRanges ? std::numeric_limits<double>::infinity()
                                               : kOvershootShare * tolerance * target_;
    double min_moved = 0;
    for (std::size_t n = 0; n < node_count; ++n) {
      min_moved += std::max(0.0, static_cast<double>(nodes_[n].load) - Target(static_cast<int>(n)));
    }
    overshoot_budget_ = mode_ == BalanceMode::kRanges ? std::numeric_limits<double>::infinity()
                                                      : kOvershootBudget * min_moved;
  }

  // Runs the greedy to its end. Internal error only if the loop fails to terminate (a bug).
  absl::Status Run() {
    std::vector<bool> blocked(nodes_.size(), false);
    // Every step moves a piece (the imbalance strictly shrinks) or blocks a donor; splits are
    // bounded by the 64-bit hash space. The cap only guards against a bug.
    const std::size_t max_steps = 64 * (pieces_.size() + nodes_.size()) + 1000;
    for (std::size_t step = 0; step < max_steps; ++step) {
      // Drain removed nodes first, the fullest first.
      int drain = -1;
      for (std::size_t n = 0; n < nodes_.size(); ++n) {
        if (!nodes_[n].removed || nodes_[n].pieces.empty()) continue;
        if (drain < 0 || nodes_[n].load > nodes_[drain].load) drain = static_cast<int>(n);
      }
      if (drain >= 0) {
        Drain(drain);
        continue;
      }

      int receiver = -1;
      int donor = -1;
      for (std::size_t n = 0; n < nodes_.size(); ++n) {
        if (nodes_[n].removed) continue;
        const int i = static_cast<int>(n);
        if (receiver < 0 || nodes_[n].load < nodes_[receiver].load) receiver = i;
        if (blocked[n] || nodes_[n].pieces.empty() || nodes_[n].pieces.rbegin()->first == 0) {
          continue;
        }
        if (donor < 0 || nodes_[n].load > nodes_[donor].load) donor = i;
      }
      if (receiver < 0 || donor < 0) return absl::OkStatus();
      const double deficit = target_ - static_cast<double>(nodes_[receiver].load);
      const double excess = static_cast<double>(nodes_[donor].load) - target_;
      // Done when nobody is outside the aim that a move could still help.
      if (deficit <= aim_ && excess <= aim_) return absl::OkStatus();
      if (deficit <= 0 || excess <= 0) return absl::OkStatus();
      if (!TryMove(donor, receiver)) blocked[donor] = true;
    }
    return absl::InternalError("rebalance planner did not converge (a bug: please report it)");
  }

  const std::vector<Piece>& pieces() const { return pieces_; }

 private:
  double Target(int node) const { return nodes_[node].removed ? 0.0 : target_; }

  void Move(int piece, int to) {
    Piece& p = pieces_[piece];
    NodeLoad& src = nodes_[p.owner];
    src.pieces.erase({p.weight, piece});
    src.load -= p.weight;
    NodeLoad& dst = nodes_[to];
    dst.pieces.emplace(p.weight, piece);
    dst.load += p.weight;
    p.owner = to;
  }

  bool CanSplit(const Piece& p) const {
    return mode_ == BalanceMode::kSize && p.lo < p.hi && p.weight >= 2;
  }

  // Replaces piece `index` by its two halves of the hash span, sizes shared in proportion.
  void Split(int index) {
    const Piece p = pieces_[index];  // copy: push_back below may reallocate
    nodes_[p.owner].pieces.erase({p.weight, index});
    pieces_[index].alive = false;
    const std::uint64_t width = static_cast<std::uint64_t>(p.hi) - static_cast<std::uint64_t>(p.lo);
    const std::int64_t mid =
        static_cast<std::int64_t>(static_cast<std::uint64_t>(p.lo) + width / 2);
    const long double whole = Span(p.lo, p.hi);
    const long double part = Span(p.lo, mid);
    Piece first = p;
    first.hi = mid;
    first.rows = Share(p.rows, part, whole);
    first.bytes = Share(p.bytes, part, whole);
    first.weight = first.bytes;
    Piece second = p;
    second.lo = mid + 1;
    second.rows = p.rows - first.rows;
    second.bytes = p.bytes - first.bytes;
    second.weight = second.bytes;
    for (Piece* half : {&first, &second}) {
      const int i = static_cast<int>(pieces_.size());
      pieces_.push_back(*half);
      nodes_[half->owner].pieces.emplace(half->weight, i);
    }
  }

  // Moves one piece off removed node `donor`: best fit for the most under-target node; pieces
  // holding nothing go to the node with the fewest pieces.
  void Drain(int donor) {
    NodeLoad& d = nodes_[donor];
    const bool only_empty = d.pieces.rbegin()->first == 0;
    int receiver = -1;
    for (std::size_t n = 0; n < nodes_.size(); ++n) {
      if (nodes_[n].removed) continue;
      const int i = static_cast<int>(n);
      if (receiver < 0) {
        receiver = i;
        continue;
      }
      const NodeLoad& a = nodes_[n];
      const NodeLoad& b = nodes_[receiver];
      const bool better = only_empty ? a.pieces.size() < b.pieces.size()
                                     : (a.load < b.load ||
                                        (a.load == b.load && a.pieces.size() < b.pieces.size()));
      if (better) receiver = i;
    }
    if (only_empty) {
      Move(d.pieces.begin()->second, receiver);
      return;
    }
    TryMove(donor, receiver);  // always moves a piece when draining
  }

  // Moves one piece (splitting as needed) from `donor` to `receiver`, choosing the largest piece
  // that fits min(deficit, excess), else the smallest larger one if it overshoots by at most
  // overshoot_ and narrows the gap. False when no piece can move (never when draining: then an
  // indivisible range moves even if it overshoots).
  bool TryMove(int donor, int receiver) {
    NodeLoad& d = nodes_[donor];
    const bool draining = d.removed;
    for (;;) {
      const double deficit = target_ - static_cast<double>(nodes_[receiver].load);
      const double excess = static_cast<double>(d.load) - Target(donor);
      const double want = std::min(deficit, excess);
      const std::int64_t fit =
          want < 0 ? -1
                   : static_cast<std::int64_t>(std::floor(std::min(want, 9.0e18)));
      auto it = d.pieces.upper_bound({fit, std::numeric_limits<int>::max()});
      if (it != d.pieces.begin() && std::prev(it)->first > 0) {
        Move(std::prev(it)->second, receiver);
        return true;
      }
      while (it != d.pieces.end() && it->first == 0) ++it;  // only when want < 0
      if (it == d.pieces.end()) return false;
      const int above = it->second;
      const double w = static_cast<double>(it->first);
      const double over = w - std::max(want, 0.0);
      bool acceptable = over <= overshoot_ && over <= overshoot_budget_;
      if (!draining) acceptable = acceptable && w < deficit + excess;
      if (acceptable) {
        overshoot_budget_ -= over;
        Move(above, receiver);
        return true;
      }
      if (!CanSplit(pieces_[above])) {
        if (!draining) return false;
        Move(above, receiver);  // too large and indivisible, but a drain must complete
        return true;
      }
      Split(above);
    }
  }

  const BalanceMode mode_;
  std::vector<Piece> pieces_;
  std::vector<NodeLoad> nodes_;
  double target_ = 0;     // mean load of a remaining node
  double aim_ = 0;        // the greedy stops when all are within target_ +- aim_
  double overshoot_ = 0;  // largest acceptable overshoot of one move
  double overshoot_budget_ = 0;  // what all further overshoots may add up to
};

absl::Status CheckRequest(const ShardMapConfig& current, const PlanRequest& request) {
  if (request.mode != BalanceMode::kSize && request.mode != BalanceMode::kRanges) {
    return absl::InvalidArgumentError(
        fmt::format("unknown balance mode {}", static_cast<int>(request.mode)));
  }
  const double tol = request.tolerance_percent;
  if (!(tol >= kMinTolerancePercent && tol <= kMaxTolerancePercent)) {  // also rejects NaN
    return absl::InvalidArgumentError(fmt::format("tolerance must be between {} and {} percent, got {}",
                                                  kMinTolerancePercent, kMaxTolerancePercent, tol));
  }
  if (absl::Status s = ValidateShardMapConfig(current); !s.ok()) {
    return absl::InvalidArgumentError(fmt::format("the current map (version {}) is invalid: {}",
                                                  current.version, std::string(s.message())));
  }
  for (const RangeConfig& r : current.ranges) {
    if (r.state != RangeState::kStable) {
      return absl::FailedPreconditionError(fmt::format(
          "range {}..{} is {} (moving from node '{}' to node '{}'): a rollout is under way; "
          "finish it or roll it back before planning another rebalance",
          r.lo, r.hi, RangeStateName(r.state), r.node, r.read_node));
    }
  }
  std::unordered_set<std::string> existing;
  for (const NodeConfig& n : current.nodes) existing.insert(n.name);
  std::unordered_set<std::string> removed;
  for (const std::string& name : request.remove_nodes) {
    if (!existing.contains(name)) {
      return absl::InvalidArgumentError(fmt::format(
          "cannot remove node '{}': map version {} has no such node", name, current.version));
    }
    if (!removed.insert(name).second) {
      return absl::InvalidArgumentError(
          fmt::format("node '{}' is named twice in the nodes to remove", name));
    }
  }
  std::unordered_set<std::string> added;
  for (const NodeConfig& n : request.add_nodes) {
    if (n.name.empty()) return absl::InvalidArgumentError("cannot add a node with an empty name");
    if (existing.contains(n.name)) {
      return absl::InvalidArgumentError(
          fmt::format("cannot add node '{}': map version {} already has a node of that name",
                      n.name, current.version));
    }
    if (!added.insert(n.name).second) {
      return absl::InvalidArgumentError(
          fmt::format("node '{}' is named twice in the nodes to add", n.name));
    }
    if (n.dsn.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("cannot add node '{}': its dsn is empty", n.name));
    }
  }
  if (current.nodes.size() + request.add_nodes.size() == removed.size()) {
    return absl::InvalidArgumentError(
        "cannot remove every node: no node would be left to own the ranges");
  }
  for (const RangeStats& s : request.stats) {
    if (s.lo > s.hi) {
      return absl::InvalidArgumentError(
          fmt::format("stats for range {}..{}: lo is greater than hi", s.lo, s.hi));
    }
    if (s.rows < 0 || s.bytes < 0) {
      return absl::InvalidArgumentError(fmt::format(
          "stats for range {}..{}: rows ({}) and bytes ({}) must not be negative", s.lo, s.hi,
          s.rows, s.bytes));
    }
  }
  return absl::OkStatus();
}

// Adds `stats` onto `ranges` (sorted, covering the hash space): rows and bytes of an entry
// spanning several ranges are shared in proportion to the overlap.
void Apportion(const std::vector<RangeStats>& stats, const std::vector<RangeConfig>& ranges,
               std::vector<std::int64_t>& rows, std::vector<std::int64_t>& bytes) {
  for (const RangeStats& s : stats) {
    auto it = std::lower_bound(ranges.begin(), ranges.end(), s.lo,
                               [](const RangeConfig& r, std::int64_t lo) { return r.hi < lo; });
    std::int64_t rows_left = s.rows;
    std::int64_t bytes_left = s.bytes;
    long double span_left = Span(s.lo, s.hi);
    for (; it != ranges.end() && it->lo <= s.hi; ++it) {
      const std::size_t i = static_cast<std::size_t>(it - ranges.begin());
      const long double part = Span(std::max(it->lo, s.lo), std::min(it->hi, s.hi));
      const std::int64_t r = Share(rows_left, part, span_left);
      const std::int64_t b = Share(bytes_left, part, span_left);
      rows[i] += r;
      bytes[i] += b;
      rows_left -= r;
      bytes_left -= b;
      span_left -= part;
    }
  }
}

double Deviation(std::int64_t value, double mean) {
  return mean > 0 ? std::fabs(static_cast<double>(value) - mean) / mean * 100.0 : 0.0;
}

}  // namespace

std::string_view BalanceModeName(BalanceMode mode) {
  switch (mode) {
    case BalanceMode::kSize:
      return "size";
    case BalanceMode::kRanges:
      return "ranges";
    default:
      return "?";
  }
}

absl::StatusOr<BalanceMode> ParseBalanceMode(std::string_view name) {
  if (name == "size") return BalanceMode::kSize;
  if (name == "ranges") return BalanceMode::kRanges;
  return absl::InvalidArgumentError(
      fmt::format("unknown balance mode '{}' (expected size or ranges)", name));
}

std::string_view NodeRoleName(NodeRole role) {
  switch (role) {
    case NodeRole::kKept:
      return "kept";
    case NodeRole::kAdded:
      return "added";
    case NodeRole::kRemoved:
      return "removed";
    default:
      return "?";
  }
}

absl::StatusOr<NodeRole> ParseNodeRole(std::string_view name) {
  if (name == "kept") return NodeRole::kKept;
  if (name == "added") return NodeRole::kAdded;
  if (name == "removed") return NodeRole::kRemoved;
  return absl::InvalidArgumentError(
      fmt::format("unknown node role '{}' (expected kept, added or removed)", name));
}

absl::StatusOr<RebalancePlan> PlanRebalance(const ShardMapConfig& current,
                                            const PlanRequest& request) {
  if (absl::Status s = CheckRequest(current, request); !s.ok()) return s;

  RebalancePlan plan;
  plan.mode = request.mode;
  plan.tolerance_percent = request.tolerance_percent;
  plan.source_map_version = current.version;

  // Nodes of the result: the current ones, then the added ones.
  ShardMapConfig& result = plan.result;
  result.version = current.version + 1;
  result.key_type = current.key_type;
  result.tables = current.tables;
  result.nodes = current.nodes;
  result.nodes.insert(result.nodes.end(), request.add_nodes.begin(), request.add_nodes.end());
  const std::size_t node_count = result.nodes.size();
  std::vector<bool> removed(node_count, false);
  plan.nodes.resize(node_count);
  for (std::size_t n = 0; n < node_count; ++n) {
    plan.nodes[n].name = result.nodes[n].name;
    plan.nodes[n].role = n < current.nodes.size() ? NodeRole::kKept : NodeRole::kAdded;
    if (std::find(request.remove_nodes.begin(), request.remove_nodes.end(),
                  result.nodes[n].name) != request.remove_nodes.end()) {
      removed[n] = true;
      plan.nodes[n].role = NodeRole::kRemoved;
    } else if (n < current.nodes.size() && !request.use_empty_nodes &&
               std::none_of(current.ranges.begin(), current.ranges.end(),
                            [&](const RangeConfig& r) { return r.node == result.nodes[n].name; })) {
      removed[n] = true;
      plan.nodes[n].role = NodeRole::kRemoved;
      plan.warnings.push_back(fmt::format(
          "node '{}' owns no range in map version {}: planned as removed (it gets no ranges and "
          "leaves the map at the rollout's cleanup); pass --use-empty-nodes to give it ranges",
          result.nodes[n].name, current.version));
    }
  }
  std::vector<std::pair<std::string_view, int>> by_name;
  for (std::size_t n = 0; n < node_count; ++n) {
    by_name.emplace_back(result.nodes[n].name, static_cast<int>(n));
  }
  std::sort(by_name.begin(), by_name.end());
  auto node_index = [&by_name](std::string_view name) {
    return std::lower_bound(by_name.begin(), by_name.end(), std::make_pair(name, -1))->second;
  };

  std::vector<RangeConfig> ranges = current.ranges;
  std::sort(ranges.begin(), ranges.end(),
            [](const RangeConfig& a, const RangeConfig& b) { return a.lo < b.lo; });
  std::vector<std::int64_t> rows(ranges.size(), 0);
  std::vector<std::int64_t> bytes(ranges.size(), 0);
  Apportion(request.stats, ranges, rows, bytes);

  std::vector<Piece> pieces(ranges.size());
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    Piece& p = pieces[i];
    p.lo = ranges[i].lo;
    p.hi = ranges[i].hi;
    p.rows = rows[i];
    p.bytes = bytes[i];
    p.origin = static_cast<int>(i);
    p.from = p.owner = node_index(ranges[i].node);
    NodeBalance& nb = plan.nodes[p.from];
    ++nb.ranges_before;
    nb.rows_before += p.rows;
    nb.bytes_before += p.bytes;
    plan.total_rows += p.rows;
    plan.total_bytes += p.bytes;
  }

  Balancer balancer(request.mode, request.tolerance_percent / 100.0, std::move(pieces),
                    node_count, removed);
  if (absl::Status s = balancer.Run(); !s.ok()) return s;

  // Live pieces by lo; adjacent pieces of one original range on one node are joined again.
  std::vector<Piece> live;
  for (const Piece& p : balancer.pieces()) {
    if (p.alive) live.push_back(p);
  }
  std::sort(live.begin(), live.end(), [](const Piece& a, const Piece& b) { return a.lo < b.lo; });
  std::vector<Piece> merged;
  merged.reserve(live.size());
  for (const Piece& p : live) {
    if (!merged.empty() && merged.back().origin == p.origin && merged.back().owner == p.owner) {
      Piece& m = merged.back();
      m.hi = p.hi;
      m.rows += p.rows;
      m.bytes += p.bytes;
    } else {
      merged.push_back(p);
    }
  }

  result.ranges.reserve(merged.size());
  for (const Piece& p : merged) {
    RangeConfig r;
    r.lo = p.lo;
    r.hi = p.hi;
    r.node = result.nodes[p.owner].name;
    result.ranges.push_back(std::move(r));
    NodeBalance& nb = plan.nodes[p.owner];
    ++nb.ranges_after;
    nb.rows_after += p.rows;
    nb.bytes_after += p.bytes;
    if (p.owner != p.from) {
      plan.moves.push_back(RangeMove{p.lo, p.hi, result.nodes[p.from].name,
                                     result.nodes[p.owner].name, p.rows, p.bytes});
      plan.rows_moved += p.rows;
      plan.bytes_moved += p.bytes;
    }
  }
  plan.ranges_moved = static_cast<std::int64_t>(plan.moves.size());
  plan.splits = static_cast<std::int64_t>(merged.size()) - static_cast<std::int64_t>(ranges.size());

  // Lower bounds and the deviation, in the mode's unit for the latter.
  const std::int64_t active = static_cast<std::int64_t>(
      std::count(removed.begin(), removed.end(), false));
  const long double mean_bytes = static_cast<long double>(plan.total_bytes) / active;
  const std::int64_t total_ranges_before = static_cast<std::int64_t>(ranges.size());
  const std::int64_t ceil_ranges = (total_ranges_before + active - 1) / active;
  long double min_bytes = 0;
  for (std::size_t n = 0; n < node_count; ++n) {
    const NodeBalance& nb = plan.nodes[n];
    if (removed[n]) {
      min_bytes += nb.bytes_before;
      plan.min_ranges_moved += nb.ranges_before;
    } else {
      min_bytes += std::max(0.0L, nb.bytes_before - mean_bytes);
      plan.min_ranges_moved += std::max<std::int64_t>(0, nb.ranges_before - ceil_ranges);
    }
  }
  plan.min_bytes_moved = static_cast<std::int64_t>(std::llroundl(min_bytes));

  const bool by_size = request.mode == BalanceMode::kSize;
  const double mean = by_size ? static_cast<double>(plan.total_bytes) / static_cast<double>(active)
                              : static_cast<double>(merged.size()) / static_cast<double>(active);
  int worst = -1;
  for (std::size_t n = 0; n < node_count; ++n) {
    if (removed[n]) continue;
    const NodeBalance& nb = plan.nodes[n];
    const double dev = Deviation(by_size ? nb.bytes_after : nb.ranges_after, mean);
    if (dev > plan.max_deviation_percent) {
      plan.max_deviation_percent = dev;
      worst = static_cast<int>(n);
    }
  }

  if (by_size && plan.total_bytes == 0) {
    plan.warnings.push_back(
        "no size estimates: every range counts as 0 bytes, so only the ranges of removed nodes "
        "move; plan with --by ranges to balance the number of ranges");
  } else if (plan.max_deviation_percent > request.tolerance_percent && worst >= 0) {
    std::string why;
    if (by_size) {
      const Piece* largest = nullptr;
      for (const Piece& p : merged) {
        if (p.lo == p.hi && (largest == nullptr || p.bytes > largest->bytes)) largest = &p;
      }
      why = largest != nullptr
                ? fmt::format("range {}..{} is a single hash value holding {} bytes and cannot be "
                              "split",
                              largest->lo, largest->hi, largest->bytes)
                : std::string("the ranges could not be balanced finer");
    } else {
      why = fmt::format("{} ranges cannot be spread over {} nodes more evenly; split the map "
                        "into more ranges or raise the tolerance",
                        merged.size(), active);
    }
    plan.warnings.push_back(fmt::format(
        "node '{}' ends {:.1f}% from the mean, beyond the tolerance of {}%: {}",
        plan.nodes[worst].name, plan.max_deviation_percent, request.tolerance_percent, why));
  }

  if (absl::Status s = ValidateShardMapConfig(result); !s.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("the resulting map is invalid: {}", std::string(s.message())));
  }
  return plan;
}

}  // namespace shardline::migrate
