// Merge helpers for fan-out results: concatenate, ordered k-way merge with a limit, sums.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/result.h"
#include "shardline/router.h"

namespace shardline {

// Rows drawn from several results, in a chosen order. Holds copies of the Result handles, so
// its rows stay valid as long as it lives. Thread-compatible.
class MergedRows {
 public:
  std::size_t size() const { return rows_.size(); }
  Row operator[](std::size_t i) const { return rows_[i]; }
  std::vector<Row>::const_iterator begin() const { return rows_.begin(); }
  std::vector<Row>::const_iterator end() const { return rows_.end(); }

 private:
  friend absl::StatusOr<MergedRows> Concatenate(const std::vector<NodeResult>&);
  friend absl::StatusOr<MergedRows> MergeOrdered(const std::vector<NodeResult>&,
                                                 const std::function<bool(const Row&, const Row&)>&,
                                                 std::size_t);
  std::vector<std::shared_ptr<const Result>> results_;
  std::vector<Row> rows_;
};

// All rows of all nodes, node order then row order. Fails with the first node's error if any.
absl::StatusOr<MergedRows> Concatenate(const std::vector<NodeResult>& results);
// K-way merge of per-node results that are each already sorted by `less` (e.g. each node ran
// ORDER BY score DESC LIMIT k); keeps the first `limit` rows (0 = all).
absl::StatusOr<MergedRows> MergeOrdered(const std::vector<NodeResult>& results,
                                        const std::function<bool(const Row&, const Row&)>& less,
                                        std::size_t limit);
// Sum of integer column `col` over every row of every node (NULL counts as 0): the merge for
// per-node count(*) / sum(...) results.
absl::StatusOr<std::int64_t> SumInt64(const std::vector<NodeResult>& results, int col);

}  // namespace shardline
