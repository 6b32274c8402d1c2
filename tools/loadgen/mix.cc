// Parsing and drawing from the operation mix (see mix.h).
#include "mix.h"

#include <charconv>

#include <fmt/format.h>

namespace shardline::loadgen {

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kProfile:
      return "profile";
    case Op::kFeed:
      return "feed";
    case Op::kLog:
      return "log";
    case Op::kUpdate:
      return "update";
    case Op::kLeaderboard:
      return "leaderboard";
    default:
      return "unknown";
  }
}

std::optional<Op> ParseOpName(std::string_view name) {
  for (Op op : kAllOps) {
    if (OpName(op) == name) return op;
  }
  return std::nullopt;
}

bool IsWrite(Op op) { return op == Op::kLog || op == Op::kUpdate; }

Mix Mix::Default() {
  Mix m;
  m.weights_ = {40, 30, 20, 8, 2};
  m.total_ = 100;
  return m;
}

Op Mix::Pick(std::uint64_t r) const {
  std::uint64_t x = r % static_cast<std::uint64_t>(total_);
  for (Op op : kAllOps) {
    const auto w = static_cast<std::uint64_t>(weight(op));
    if (x < w) return op;
    x -= w;
  }
  return Op::kProfile;  // unreachable when total_ > 0
}

std::string Mix::ToString() const {
  std::string out;
  for (Op op : kAllOps) {
    if (weight(op) == 0) continue;
    if (!out.empty()) out += ',';
    out += fmt::format("{}={}", OpName(op), weight(op));
  }
  return out;
}

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string KnownOps() {
  std::string out;
  for (Op op : kAllOps) {
    if (!out.empty()) out += ", ";
    out += OpName(op);
  }
  return out;
}

}  // namespace

absl::StatusOr<Mix> ParseMix(std::string_view text) {
  Mix mix;
  std::array<bool, kNumOps> seen{};
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = Trim(text.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          fmt::format("mix item '{}': expected OP=WEIGHT, e.g. profile=40", item));
    }
    const std::string_view name = Trim(item.substr(0, eq));
    const std::string_view value = Trim(item.substr(eq + 1));
    const std::optional<Op> op = ParseOpName(name);
    if (!op) {
      return absl::InvalidArgumentError(fmt::format(
          "mix item '{}': unknown operation '{}' (known: {})", item, name, KnownOps()));
    }
    int w = -1;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), w);
    if (ec != std::errc() || end != value.data() + value.size() || w < 0 || w > 1000000) {
      return absl::InvalidArgumentError(fmt::format(
          "mix item '{}': weight '{}' is not an integer in 0..1000000", item, value));
    }
    const auto i = static_cast<std::size_t>(*op);
    if (seen[i]) {
      return absl::InvalidArgumentError(
          fmt::format("mix item '{}': operation '{}' given twice", item, name));
    }
    seen[i] = true;
    mix.weights_[i] = w;
    mix.total_ += w;
  }
  if (mix.total_ == 0) {
    return absl::InvalidArgumentError(
        fmt::format("mix '{}': the weights sum to 0; give at least one operation a weight", text));
  }
  return mix;
}

}  // namespace shardline::loadgen
