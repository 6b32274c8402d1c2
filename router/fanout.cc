// Fan-out: `$owned(col)` expansion and RouterImpl::FanOut, which runs a statement on every node
// of the map snapshot the call started with, in parallel on the router's worker pool (the
// calling thread runs the first node itself). See fanout.h and router_impl.h.
#include "fanout.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include "router_impl.h"
#include "shardline/errors.h"
#include "shardline/shard_map.h"
#include "statement.h"

namespace shardline::internal {
namespace {

constexpr std::string_view kOwnedOpen = "$owned(";
// How long a node found without shardline's node objects gets `$owned` without the map
// version check before it is tried again (a rollout installs them at its start, long before
// any map epoch is raised).
constexpr std::chrono::seconds kNodeObjectsRecheck{2};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// One identifier part: kept if already quoted, else folded to lower case and quoted.
absl::StatusOr<std::string> QuotePart(std::string_view part, std::string_view whole) {
  part = Trim(part);
  if (part.empty()) {
    return absl::InvalidArgumentError(fmt::format("$owned({}): empty column name part", whole));
  }
  if (part.front() == '"') {
    if (part.size() < 2 || part.back() != '"') {
      return absl::InvalidArgumentError(
          fmt::format("$owned({}): unterminated quoted identifier", whole));
    }
    return std::string(part);
  }
  std::string out = "\"";
  for (char c : part) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

absl::StatusOr<std::string> QuoteColumn(std::string_view col) {
  std::string out;
  bool in_quote = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= col.size(); ++i) {
    if (i < col.size() && col[i] == '"') in_quote = !in_quote;  // "" toggles twice
    if (i == col.size() || (col[i] == '.' && !in_quote)) {
      absl::StatusOr<std::string> part = QuotePart(col.substr(start, i - start), col);
      if (!part.ok()) return part.status();
      if (!out.empty()) out.push_back('.');
      out += *part;
      start = i + 1;
    }
  }
  return out;
}

// A part that waited in the workers' queue past the fan-out's deadline: its node's share of
// the workers was busy with other fan-outs. Recorded in the node's metrics; says nothing about
// the node, so its pool (and breaker) is never touched.
absl::Status NotStartedInTime(const NodeRoute& route) {
  absl::Status status = absl::DeadlineExceededError(fmt::format(
      "node {}: fan-out part did not start before the deadline (this node's share of the "
      "fan-out workers was busy with other fan-outs)",
      route.name));
  SetNode(status, route.name);
  route.metrics.RecordQuery(QueryKind::kFanout, OutcomeOf(status), status, 0);
  return status;
}

}  // namespace

FanOutParts::FanOutParts(std::size_t n) : state_(n, State::kQueued) {
  if (n > 0) state_[0] = State::kDone;  // part 0 runs on the calling thread
}

bool FanOutParts::Start(std::size_t i) {
  MutexLock lock(&mu_);
  if (state_[i] != State::kQueued) return false;  // abandoned
  state_[i] = State::kRunning;
  return true;
}

void FanOutParts::Finish(std::size_t i) {
  MutexLock lock(&mu_);
  state_[i] = State::kDone;
  cv_.SignalAll();
}

std::vector<std::size_t> FanOutParts::AwaitOrAbandon(std::chrono::steady_clock::time_point deadline) {
  MutexLock lock(&mu_);
  auto all = [&](auto pred) { return std::all_of(state_.begin(), state_.end(), pred); };
  while (!all([](State s) { return s == State::kDone; })) {
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      cv_.Wait(&mu_);
    } else if (cv_.WaitUntil(&mu_, deadline)) {
      break;
    }
  }
  std::vector<std::size_t> abandoned;
  for (std::size_t i = 0; i < state_.size(); ++i) {
    if (state_[i] == State::kQueued) {
      state_[i] = State::kAbandoned;
      abandoned.push_back(i);
    }
  }
  // Running parts end by the deadline (statement.cc bounds each statement by it).
  while (!all([](State s) { return s == State::kDone || s == State::kAbandoned; })) {
    cv_.Wait(&mu_);
  }
  return abandoned;
}

std::string OwnedPredicate(KeyType key_type, std::string_view quoted_column,
                           const std::vector<std::pair<std::int64_t, std::int64_t>>& owned,
                           std::int64_t check_version) {
  const std::string check =
      check_version > 0 ? fmt::format("shardline.map_version_ok({})", check_version) : "";
  if (owned.empty()) return check.empty() ? "false" : fmt::format("(NOT {})", check);
  if (owned.size() == 1 && owned[0].first == kMinHash && owned[0].second == kMaxHash) {
    return check.empty() ? "true" : check;
  }
  if (!check.empty()) {
    return fmt::format("({} AND {})", check, OwnedPredicate(key_type, quoted_column, owned, 0));
  }
  const std::string expr = HashSqlExpression(key_type, quoted_column);
  std::string out = "(";
  for (std::size_t i = 0; i < owned.size(); ++i) {
    const auto [lo, hi] = owned[i];
    if (i > 0) out += " OR ";
    // Open-ended comparisons at the ends of the space also keep the literal
    // -9223372036854775808 (parsed as numeric by some clients' tooling) out of the text.
    if (lo == kMinHash) {
      out += fmt::format("{} <= {}", expr, hi);
    } else if (hi == kMaxHash) {
      out += fmt::format("{} >= {}", expr, lo);
    } else {
      out += fmt::format("{} BETWEEN {} AND {}", expr, lo, hi);
    }
  }
  out += ")";
  return out;
}

absl::StatusOr<std::string> ExpandOwned(
    std::string_view sql, KeyType key_type,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& owned,
    std::int64_t check_version) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t p = sql.find(kOwnedOpen, pos);
    if (p == std::string_view::npos) break;
    out.append(sql.substr(pos, p - pos));
    const std::size_t begin = p + kOwnedOpen.size();
    std::size_t end = begin;
    bool in_quote = false;
    while (end < sql.size() && (in_quote || sql[end] != ')')) {
      if (sql[end] == '"') in_quote = !in_quote;
      ++end;
    }
    if (end >= sql.size()) {
      return absl::InvalidArgumentError(
          fmt::format("unterminated $owned( at offset {} of the statement", p));
    }
    const std::string_view col = Trim(sql.substr(begin, end - begin));
    if (col.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("$owned() at offset {} of the statement needs a column name", p));
    }
    absl::StatusOr<std::string> quoted = QuoteColumn(col);
    if (!quoted.ok()) return quoted.status();
    out += OwnedPredicate(key_type, *quoted, owned, check_version);
    pos = end + 1;
  }
  if (pos == 0) return std::string(sql);
  out.append(sql.substr(pos));
  return out;
}

absl::StatusOr<std::vector<NodeResult>> RouterImpl::FanOut(std::string_view sql,
                                                           ParamList params,
                                                           FanOutOptions options) {
  const bool expand = sql.find(kOwnedOpen) != std::string_view::npos;
  if (expand) {
    // The expansion's errors are the statement's (the same for every node): reported once.
    if (absl::StatusOr<std::string> text = ExpandOwned(sql, KeyType::kBigint, {}); !text.ok()) {
      return text.status();
    }
  }
  // Each node's part ends by this deadline whatever the node does (statement.cc), so a hung
  // node holds a fan-out worker at most this long and the others' rows are kept.
  const auto deadline = DeadlineOf(options.timeout);
  std::shared_ptr<const RoutingTable> t = table();
  for (int attempt = 0;; ++attempt) {
    std::vector<NodeResult> results = FanOutOnce(*t, sql, params, expand, deadline);
    const bool stale = std::any_of(results.begin(), results.end(), [](const NodeResult& r) {
      return !r.result.ok() && IsStaleMap(r.result.status());
    });
    if (stale && attempt < options_.fence_retries) {
      // A node refused the map (its ranges moved since): once more on a newer map, if the
      // source has one now.
      (void)RefreshMap();
      std::shared_ptr<const RoutingTable> next = table();
      if (next->map->version() > t->map->version()) {
        metrics_.fence_retries.Inc();
        t = std::move(next);
        continue;
      }
    }
    if (options.fail_on_any_error) {
      for (const NodeResult& r : results) {
        if (!r.result.ok()) return r.result.status();
      }
    }
    return results;
  }
}

namespace {

// Whether `status` says the node lacks shardline's node objects (schemas/node.sql): the
// `$owned` check function or its schema does not exist.
bool LacksNodeObjects(const absl::Status& status) {
  const std::optional<std::string> state = SqlStateOf(status);
  if (!state) return false;
  const std::string_view m(status.message().data(), status.message().size());
  return (*state == "42883" && m.find("shardline.map_version_ok") != std::string_view::npos) ||
         (*state == "3F000" && m.find("\"shardline\"") != std::string_view::npos);
}

}  // namespace

std::vector<NodeResult> RouterImpl::FanOutOnce(const RoutingTable& t, std::string_view sql,
                                               ParamList params, bool expand,
                                               std::chrono::steady_clock::time_point deadline) {
  const ShardMap& map = *t.map;
  const std::int64_t version = map.version();
  // The nodes the call goes to: all of them, except that a sharded fan-out (one with
  // `$owned(...)`) skips a node owning no range of the call's map: its expansion would be
  // `false`, so it could return nothing, and a drained node whose server is already shut down
  // must not fail the call. Completeness holds: a node that owns ranges under a newer map got
  // them from nodes this call does reach, whose map check refuses the stale call. A fan-out
  // without `$owned` reaches every node of the map (a reference table is on every node, a node
  // being added included).
  std::vector<std::size_t> nodes;
  // Each node's owned ranges, computed once (a walk over every range of the map) for both the
  // choice of nodes and the expansion.
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> owned;
  for (std::size_t i = 0; i < t.nodes.size(); ++i) {
    if (!expand) {
      nodes.push_back(i);
      continue;
    }
    auto ranges = map.OwnedRanges(static_cast<int>(i));
    if (ranges.empty()) continue;
    nodes.push_back(i);
    owned.push_back(std::move(ranges));
  }
  const std::size_t n = nodes.size();
  std::vector<NodeResult> results(n);
  auto run = [&](std::size_t j) {
    const std::size_t i = nodes[j];
    const NodeRoute& route = t.nodes[i];
    results[j].node = route.name;
    const auto start = std::chrono::steady_clock::now();
    if (start >= deadline) {
      results[j].result = NotStartedInTime(route);
      return;
    }
    // `$owned` with the map version check, unless the node was found lacking the function
    // lately (no migration ever touched it: nothing moved there, nothing to check).
    auto text_for = [&](bool check) -> std::string {
      if (!expand) return std::string(sql);
      absl::StatusOr<std::string> text =
          ExpandOwned(sql, map.key_type(), owned[j], check ? version : 0);
      return text.ok() ? *std::move(text) : std::string(sql);  // checked by FanOut
    };
    const auto now_ticks = start.time_since_epoch().count();
    bool check = expand && route.facts->no_node_objects_until.load(std::memory_order_relaxed) <
                               now_ticks;
    absl::StatusOr<Lease> lease = AcquireFrom(route.pool, route.metrics, deadline, version);
    if (lease.ok()) {
      results[j].result = ExecPrepared(*lease, text_for(check), params);
      if (check && !results[j].result.ok() && LacksNodeObjects(results[j].result.status())) {
        route.facts->no_node_objects_until.store(
            (std::chrono::steady_clock::now() + kNodeObjectsRecheck).time_since_epoch().count(),
            std::memory_order_relaxed);
        results[j].result = ExecPrepared(*lease, text_for(false), params);
      }
    } else {
      results[j].result = lease.status();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const absl::Status& status = results[j].result.status();
    route.metrics.RecordQuery(QueryKind::kFanout, OutcomeOf(status), status, seconds);
  };
  if (n == 0) return results;  // a valid map has an owner for every range: not reached

  // Parts 1..n-1 run on the workers, at most fanout_per_node_ at once per node (so one hung
  // node cannot take them all); part 0 on this thread. A part still queued at the deadline is
  // abandoned (DeadlineExceeded) rather than waited for: the shared state outlives this call
  // for a worker that reaches such a part later, which then touches nothing else.
  auto parts = std::make_shared<FanOutParts>(n);
  for (std::size_t j = 1; j < n; ++j) {
    workers_->Submit(t.nodes[nodes[j]].pool.get(), fanout_per_node_, [parts, &run, j] {
      if (parts->Start(j)) {
        run(j);
        parts->Finish(j);
      }
    });
  }
  run(0);
  for (std::size_t j : parts->AwaitOrAbandon(deadline)) {
    results[j].node = t.nodes[nodes[j]].name;
    results[j].result = NotStartedInTime(t.nodes[nodes[j]]);
  }
  return results;
}

}  // namespace shardline::internal
