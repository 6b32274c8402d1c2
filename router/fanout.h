// Cross-shard statements: the `$owned(col)` placeholder, expanded per node into a predicate
// on the hash of the key column that is true exactly for the hash ranges the node owns, so a
// fan-out counts every row once even while a move has left copies on the old owner. The
// parallel execution itself is RouterImpl::FanOut (fanout.cc), on the router's worker pool.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/key.h"

namespace shardline::internal {

// `sql` with every `$owned(col)` replaced by the predicate for `owned` (sorted, coalesced
// inclusive hash ranges) on column `col`:
//   (hashint8extended("user_id", 0) BETWEEN -9223372036854775808 AND -1 OR ...)
// `true` when `owned` covers the whole hash space, `false` when it is empty. `col` may be
// qualified (`w.user_id`); each part is quoted, and folded to lower case unless already quoted
// (as PostgreSQL folds unquoted names). The text is not parsed as SQL: `$owned(` inside a
// string literal is expanded too. InvalidArgument for an unterminated or empty `$owned(`.
// Pure; allocates the result.
absl::StatusOr<std::string> ExpandOwned(
    std::string_view sql, KeyType key_type,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& owned);

// The predicate alone (what `$owned(col)` expands to) for an already quoted column.
std::string OwnedPredicate(KeyType key_type, std::string_view quoted_column,
                           const std::vector<std::pair<std::int64_t, std::int64_t>>& owned);

}  // namespace shardline::internal
