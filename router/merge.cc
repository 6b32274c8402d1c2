// Merge helpers for fan-out results (include/shardline/merge.h): concatenation, a heap-based
// k-way ordered merge with a limit, and integer sums.
#include "shardline/merge.h"

#include <queue>
#include <utility>

#include <fmt/format.h>

#include "shardline/errors.h"

namespace shardline {

namespace {

// A node's error, made sure to name the node in its message and payload.
absl::Status NodeError(const NodeResult& nr) {
  absl::Status s = nr.result.status();
  const std::string mention = fmt::format("node {}:", nr.node);  // as pg::StatusFromResult writes
  // absl::string_view is not std::string_view in Debian's abseil: convert by hand.
  const std::string_view message(s.message().data(), s.message().size());
  if (message.find(mention) == std::string_view::npos) {
    absl::Status named(s.code(), fmt::format("{} {}", mention, message));
    s.ForEachPayload([&named](absl::string_view url, const absl::Cord& payload) {
      named.SetPayload(url, payload);
    });
    s = std::move(named);
  }
  if (!NodeOf(s).has_value()) SetNode(s, nr.node);
  return s;
}

// Checks every node succeeded; copies each Result handle into `out` (shared, so Rows made
// from them stay valid as long as `out` or its copies live).
absl::Status Collect(const std::vector<NodeResult>& results,
                     std::vector<std::shared_ptr<const Result>>* out) {
  out->reserve(results.size());
  for (const NodeResult& nr : results) {
    if (!nr.result.ok()) return NodeError(nr);
    out->push_back(std::make_shared<const Result>(*nr.result));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MergedRows> Concatenate(const std::vector<NodeResult>& results) {
  MergedRows m;
  absl::Status s = Collect(results, &m.results_);
  if (!s.ok()) return s;
  std::size_t total = 0;
  for (const auto& r : m.results_) total += static_cast<std::size_t>(r->rows());
  m.rows_.reserve(total);
  for (const auto& r : m.results_) {
    for (int i = 0; i < r->rows(); ++i) m.rows_.emplace_back(r.get(), i);
  }
  return m;
}

absl::StatusOr<MergedRows> MergeOrdered(const std::vector<NodeResult>& results,
                                        const std::function<bool(const Row&, const Row&)>& less,
                                        std::size_t limit) {
  MergedRows m;
  absl::Status s = Collect(results, &m.results_);
  if (!s.ok()) return s;
  // A cursor per node; the heap's top is the smallest current row. Ties go to the earlier
  // node, so equal rows come out in node order, then (one cursor per node) in row order.
  struct Cursor {
    std::size_t node;
    int row;
  };
  const auto& rs = m.results_;
  auto after = [&](const Cursor& a, const Cursor& b) {  // "a comes out after b"
    Row ra(rs[a.node].get(), a.row);
    Row rb(rs[b.node].get(), b.row);
    if (less(rb, ra)) return true;
    if (less(ra, rb)) return false;
    return a.node > b.node;
  };
  std::priority_queue<Cursor, std::vector<Cursor>, decltype(after)> heap(after);
  std::size_t total = 0;
  for (std::size_t n = 0; n < rs.size(); ++n) {
    total += static_cast<std::size_t>(rs[n]->rows());
    if (rs[n]->rows() > 0) heap.push(Cursor{n, 0});
  }
  const std::size_t want = limit == 0 ? total : std::min(limit, total);
  m.rows_.reserve(want);
  while (!heap.empty() && m.rows_.size() < want) {
    Cursor c = heap.top();
    heap.pop();
    m.rows_.emplace_back(rs[c.node].get(), c.row);
    if (c.row + 1 < rs[c.node]->rows()) heap.push(Cursor{c.node, c.row + 1});
  }
  return m;
}

absl::StatusOr<std::int64_t> SumInt64(const std::vector<NodeResult>& results, int col) {
  std::int64_t sum = 0;
  for (const NodeResult& nr : results) {
    if (!nr.result.ok()) return NodeError(nr);
    const Result& r = *nr.result;
    for (int i = 0; i < r.rows(); ++i) {
      if (r.IsNull(i, col) && col >= 0 && col < r.columns()) continue;  // NULL counts as 0
      absl::StatusOr<std::int64_t> v = r.GetInt64(i, col);
      if (!v.ok()) return v.status();
      if (__builtin_add_overflow(sum, *v, &sum)) {
        return absl::OutOfRangeError(
            fmt::format("node {}: sum of column {} overflows a 64-bit integer (row {})", nr.node,
                        col, i));
      }
    }
  }
  return sum;
}

}  // namespace shardline
