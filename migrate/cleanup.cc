// Throttled deletion of unowned ranges (see cleanup.h). One batch = one statement (so one
// transaction): pick the next `batch` rows of the ranges in primary-key order after the last key
// deleted (keyset: the index is walked once over the whole run, never rescanned from the start
// over dead tuples), delete them by ctid, return the batch's last key.
#include "cleanup.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "stats.h"
#include "table_info.h"

namespace shardline::migrate {
namespace {

using Clock = std::chrono::steady_clock;

std::string RangeText(std::int64_t lo, std::int64_t hi) { return fmt::format("{}..{}", lo, hi); }

}  // namespace

absl::Status CheckNotOwned(const ShardMap& map, const std::string& node,
                           const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
                           bool node_may_be_absent) {
  const int ni = map.NodeIndex(node);
  if (ni < 0 && !node_may_be_absent) {
    return absl::InvalidArgumentError(
        fmt::format("node {} is not a node of the map (version {})", node, map.version()));
  }
  if (ranges.empty()) return absl::InvalidArgumentError("cleanup: no hash range given");
  for (const auto& [lo, hi] : ranges) {
    if (lo > hi) {
      return absl::InvalidArgumentError(fmt::format("range {}: lo > hi", RangeText(lo, hi)));
    }
    for (std::size_t ri = map.RangeIndex(lo); ri < map.ranges().size(); ++ri) {
      const RangeConfig& r = map.ranges()[ri];
      if (r.lo > hi) break;
      // Owner (writes) or read node (reads switched to it mid-move): the node still serves it.
      if (map.OwnerNodeIndex(ri) == ni || map.ReadNodeIndex(ri) == ni) {
        return absl::FailedPreconditionError(fmt::format(
            "node {} still owns range {} (map version {}{}); cleanup deletes only rows of ranges a "
            "node no longer owns: publish the map that moves it first",
            node, RangeText(std::max(lo, r.lo), std::min(hi, r.hi)), map.version(),
            map.OwnerNodeIndex(ri) == ni ? "" : ", it serves the range's reads"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CleanupResult> CleanupRanges(
    pg::Conn& conn, const ShardMap& map, const std::string& node,
    const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges,
    const CleanupOptions& options) {
  if (absl::Status s = CheckNotOwned(map, node, ranges, options.node_may_be_absent);
      !s.ok()) {
    return s;
  }
  auto tables = SelectShardedTables(map, options.tables);
  if (!tables.ok()) return tables.status();
  const std::size_t batch = std::max<std::size_t>(1, options.batch);
  CleanupResult result;
  result.node = node;
  for (const TableConfig* t : *tables) {
    auto info = DescribeTable(conn, t->name);
    if (!info.ok()) return info.status();
    auto key = ResolveKey(*info, *t, node);
    if (!key.ok()) return key.status();
    const std::string quoted_key = "t." + conn.QuoteIdent(t->key);
    const std::string pred = HashRangesPredicate(map.key_type(), quoted_key, ranges);
    std::string cols;
    std::string text_cols;
    std::string after;  // (t."a", t."b") > ($1::bigint, $2::text)
    std::string params_row;
    for (std::size_t i = 0; i < key->size(); ++i) {
      const std::string q = conn.QuoteIdent((*key)[i]);
      const std::string sep = i == 0 ? "" : ", ";
      cols += sep + "b." + q;
      text_cols += sep + "b." + q + "::text";
      after += sep + "t." + q;
      params_row += fmt::format("{}${}::{}", sep, i + 1, info->FindColumn((*key)[i])->type);
    }
    std::string order_inner;
    std::string order_desc;
    for (std::size_t i = 0; i < key->size(); ++i) {
      const std::string q = conn.QuoteIdent((*key)[i]);
      order_inner += (i == 0 ? "" : ", ") + std::string("t.") + q;
      order_desc += (i == 0 ? "" : ", ") + std::string("b.") + q + " DESC";
    }
    auto sql = [&](bool first) {
      return fmt::format(
          "WITH b AS (SELECT t.ctid AS row_id, {inner} FROM {table} AS t WHERE {pred}{after} "
          "ORDER BY {inner} LIMIT {limit}), "
          "d AS (DELETE FROM {table} AS t WHERE t.ctid = ANY (ARRAY(SELECT row_id FROM b)) "
          "RETURNING 1) "
          "SELECT (SELECT count(*) FROM d), {text_cols} FROM b ORDER BY {order_desc} LIMIT 1",
          fmt::arg("inner", order_inner), fmt::arg("table", info->quoted),
          fmt::arg("pred", pred),
          fmt::arg("after", first ? std::string()
                                  : fmt::format(" AND ({}) > ({})", after, params_row)),
          fmt::arg("limit", batch), fmt::arg("text_cols", text_cols),
          fmt::arg("order_desc", order_desc));
    };
    const std::string first_sql = sql(true);
    const std::string next_sql = sql(false);
    CleanupTableResult tr;
    tr.table = t->name;
    const auto start = Clock::now();
    pg::Params last;
    for (;;) {
      auto res = conn.Exec(last.empty() ? first_sql : next_sql, last);
      if (!res.ok()) {
        return absl::Status(res.status().code(),
                            fmt::format("node {}: table {}: cleanup after {} rows: {}", node,
                                        info->quoted, tr.deleted,
                                        std::string(res.status().message())));
      }
      if (res->rows() == 0) break;  // nothing left in the ranges
      const std::int64_t deleted = res->Int64Or0(0, 0);
      tr.deleted += deleted;
      ++tr.batches;
      last.clear();
      for (int c = 1; c < res->cols(); ++c) last.emplace_back(res->String(0, c));
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      if (options.progress) {
        options.progress(t->name, tr.deleted,
                         elapsed > 0 ? static_cast<double>(tr.deleted) / elapsed : 0);
      }
      if (options.rows_per_second > 0) {
        const double due = static_cast<double>(tr.deleted) / options.rows_per_second;
        if (due > elapsed) {
          std::this_thread::sleep_for(std::chrono::duration<double>(due - elapsed));
        }
      }
      if (deleted < static_cast<std::int64_t>(batch)) break;  // that was the last batch
    }
    tr.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    result.tables.push_back(std::move(tr));
  }
  return result;
}

}  // namespace shardline::migrate
