// Pure rollout decisions: see rollout_waves.h.
#include "rollout_waves.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <numeric>
#include <set>

namespace shardline::migrate {

std::string_view WaveStepName(WaveStep step) {
  switch (step) {
    case WaveStep::kPending:
      return "pending";
    case WaveStep::kCatchingUp:
      return "catching_up";
    case WaveStep::kVerified:
      return "verified";
    case WaveStep::kReadsSwitched:
      return "reads_switched";
    case WaveStep::kWritesSwitched:
      return "writes_switched";
    default:
      return "unknown";
  }
}

absl::StatusOr<WaveStep> ParseWaveStep(std::string_view name) {
  for (WaveStep s : {WaveStep::kPending, WaveStep::kCatchingUp, WaveStep::kVerified,
                     WaveStep::kReadsSwitched, WaveStep::kWritesSwitched}) {
    if (WaveStepName(s) == name) return s;
  }
  return absl::InvalidArgumentError(fmt::format("unknown wave step '{}'", name));
}

absl::StatusOr<std::vector<double>> ParseWavePercents(std::string_view text) {
  std::vector<double> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    std::string_view number = item;
    if (!number.empty() && number.back() == '%') number.remove_suffix(1);
    double v = 0;
    // std::from_chars for double is in libstdc++ 11+.
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
    if (number.empty() || ec != std::errc() || end != number.data() + number.size()) {
      return absl::InvalidArgumentError(
          fmt::format("--waves '{}': '{}' is not a percentage (e.g. 1%,10%,50%,100%)", text, item));
    }
    if (!(v > 0 && v <= 100)) {
      return absl::InvalidArgumentError(
          fmt::format("--waves '{}': {} is outside (0%, 100%]", text, item));
    }
    if (!out.empty() && v <= out.back()) {
      return absl::InvalidArgumentError(
          fmt::format("--waves '{}': shares are cumulative and must increase ({} after {}%)", text,
                      item, out.back()));
    }
    out.push_back(v);
    pos = comma + 1;
  }
  if (out.back() != 100) {
    return absl::InvalidArgumentError(
        fmt::format("--waves '{}': the last wave must be 100% (every move)", text));
  }
  return out;
}

std::vector<std::vector<std::size_t>> SplitIntoWaves(const std::vector<RangeMove>& moves,
                                                     const std::vector<double>& percents) {
  std::vector<std::size_t> order(moves.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  bool any_bytes = false;
  for (const auto& m : moves) any_bytes = any_bytes || m.bytes > 0;
  auto weight = [&](std::size_t i) -> double {
    return any_bytes ? static_cast<double>(std::max<std::int64_t>(moves[i].bytes, 0)) : 1.0;
  };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    if (weight(a) != weight(b)) return weight(a) < weight(b);
    return moves[a].lo < moves[b].lo;
  });
  double total = 0;
  for (std::size_t i : order) total += weight(i);

  std::vector<std::vector<std::size_t>> waves;
  std::size_t next = 0;
  double done = 0;
  for (std::size_t w = 0; w < percents.size() && next < order.size(); ++w) {
    const bool last = w + 1 == percents.size();
    const double goal = total * percents[w] / 100.0;
    std::vector<std::size_t> wave;
    while (next < order.size()) {
      const double after = done + weight(order[next]);
      if (!last && !wave.empty() && after > goal * (1 + 1e-12)) break;
      if (!last && wave.empty() && done >= goal && w > 0) break;  // share reached already
      wave.push_back(order[next]);
      done = after;
      ++next;
    }
    if (wave.empty()) continue;
    std::sort(wave.begin(), wave.end(),
              [&](std::size_t a, std::size_t b) { return moves[a].lo < moves[b].lo; });
    waves.push_back(std::move(wave));
  }
  return waves;
}

ShardMapConfig MapAtStage(const ShardMapConfig& result, const std::vector<RangeMove>& moves,
                          const std::vector<int>& move_waves,
                          const std::vector<WaveStep>& wave_steps, std::int64_t version) {
  ShardMapConfig out = result;
  out.version = version;
  for (RangeConfig& r : out.ranges) {
    r.read_node.clear();
    r.state = RangeState::kStable;
    for (std::size_t i = 0; i < moves.size(); ++i) {
      if (moves[i].lo != r.lo || moves[i].hi != r.hi) continue;
      const int w = i < move_waves.size() ? move_waves[i] : -1;
      const WaveStep step = (w >= 0 && static_cast<std::size_t>(w) < wave_steps.size())
                                ? wave_steps[static_cast<std::size_t>(w)]
                                : WaveStep::kPending;
      if (step >= WaveStep::kWritesSwitched) {
        r.node = moves[i].to;
      } else if (step == WaveStep::kReadsSwitched) {
        r.node = moves[i].from;
        r.read_node = moves[i].to;
        r.state = RangeState::kReadsSwitched;
      } else {
        r.node = moves[i].from;
      }
      break;
    }
  }
  return out;
}

bool SameMapContent(const ShardMapConfig& a, const ShardMapConfig& b) {
  ShardMapConfig x = a;
  ShardMapConfig y = b;
  x.version = 0;
  y.version = 0;
  auto by_lo = [](const RangeConfig& p, const RangeConfig& q) { return p.lo < q.lo; };
  std::sort(x.ranges.begin(), x.ranges.end(), by_lo);
  std::sort(y.ranges.begin(), y.ranges.end(), by_lo);
  return x == y;
}

ShardMapConfig WithoutNodes(const ShardMapConfig& map, const std::vector<std::string>& drop) {
  ShardMapConfig out = map;
  auto serves = [&](const std::string& node) {
    for (const RangeConfig& r : map.ranges) {
      if (r.node == node || r.read_node == node) return true;
    }
    return false;
  };
  std::erase_if(out.nodes, [&](const NodeConfig& n) {
    return std::find(drop.begin(), drop.end(), n.name) != drop.end() && !serves(n.name);
  });
  return out;
}

std::vector<std::string> NodesWithRole(const RebalancePlan& plan, NodeRole role) {
  std::vector<std::string> out;
  for (const NodeBalance& n : plan.nodes) {
    if (n.role == role) out.push_back(n.name);
  }
  return out;
}

std::string ReplicationPrefix(std::int64_t migration_id, std::string_view tag) {
  return fmt::format("shardline_m{}_{}_", migration_id, tag);
}

std::string ReplicationName(std::string_view prefix, int wave, int source, int target,
                            bool reverse) {
  return fmt::format("{}w{}_{}_{}_{}", prefix, wave, reverse ? "rev" : "fwd", source, target);
}

std::int64_t PauseLockKey(std::string_view tag) {
  std::uint64_t v = 0;
  for (char c : tag.substr(0, 8)) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : 0;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  // 'SHRD' in the top 32 bits keeps clear of small application lock keys.
  return static_cast<std::int64_t>((std::uint64_t{0x53485244} << 32) | (v & 0xffffffffu));
}

std::vector<std::pair<std::int64_t, std::int64_t>> CoalesceRanges(
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& r : ranges) {
    if (!out.empty() && out.back().second != kMaxHash && out.back().second + 1 == r.first) {
      out.back().second = r.second;
    } else {
      out.push_back(r);
    }
  }
  return out;
}

std::map<std::string, ReplicationNeed> ReplicationNeeds(
    const std::vector<RangeMove>& moves, const std::vector<std::vector<std::size_t>>& waves,
    int sync_workers) {
  std::map<std::string, ReplicationNeed> peak;
  std::map<std::string, int> reverse_slots, reverse_workers;  // of the waves so far
  for (const auto& wave : waves) {
    std::set<std::pair<std::string, std::string>> pairs;
    for (std::size_t i : wave) pairs.insert({moves[i].from, moves[i].to});
    std::map<std::string, ReplicationNeed> now;
    for (const auto& [from, to] : pairs) {
      now[from].slots += 1 + sync_workers;
      now[to].workers += 1 + sync_workers;
      reverse_slots[to] += 1;  // made before this wave's window, kept until cleanup
      reverse_workers[from] += 1;
    }
    for (const auto& [node, n] : reverse_slots) now[node].slots += n;
    for (const auto& [node, n] : reverse_workers) now[node].workers += n;
    for (const auto& [node, n] : now) {
      peak[node].slots = std::max(peak[node].slots, n.slots);
      peak[node].workers = std::max(peak[node].workers, n.workers);
    }
  }
  return peak;
}

namespace {

// The parts of `ranges` inside map ranges for which `keep(range)` holds, coalesced.
template <typename Keep>
std::vector<std::pair<std::int64_t, std::int64_t>> Intersect(
    const ShardMap& map, const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    Keep keep) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& [lo, hi] : ranges) {
    for (const RangeConfig& r : map.ranges()) {
      if (r.hi < lo || r.lo > hi || !keep(r)) continue;
      out.emplace_back(std::max(lo, r.lo), std::min(hi, r.hi));
    }
  }
  return CoalesceRanges(std::move(out));
}

const std::string& ReadNodeOf(const RangeConfig& r) {
  return r.read_node.empty() ? r.node : r.read_node;
}

}  // namespace

std::vector<std::pair<std::int64_t, std::int64_t>> PartsHeldBy(
    const ShardMap& map, const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    std::string_view node) {
  return Intersect(map, ranges,
                   [&](const RangeConfig& r) { return r.node == node && ReadNodeOf(r) == node; });
}

std::vector<std::pair<std::int64_t, std::int64_t>> PartsNotServedBy(
    const ShardMap& map, const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    std::string_view node) {
  return Intersect(map, ranges,
                   [&](const RangeConfig& r) { return r.node != node && ReadNodeOf(r) != node; });
}

}  // namespace shardline::migrate
