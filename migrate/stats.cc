// The stats pass (see stats.h): one bucketed scan per table per node, nodes measured
// concurrently, rows of ranges a node does not own kept apart as orphans.
#include "stats.h"
#include "admin_conn.h"

#include <fmt/format.h>

#include <string>
#include <thread>
#include <utility>

namespace shardline::migrate {

absl::StatusOr<std::vector<const TableConfig*>> SelectShardedTables(
    const ShardMap& map, const std::vector<std::string>& names) {
  std::vector<const TableConfig*> out;
  if (names.empty()) {
    for (const TableConfig& t : map.tables()) {
      if (!t.reference) out.push_back(&t);
    }
    return out;
  }
  for (const std::string& name : names) {
    const TableConfig* t = map.FindTable(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(
          fmt::format("table \"{}\" is not a table of the shard map (version {})", name,
                      map.version()));
    }
    if (t->reference) {
      return absl::InvalidArgumentError(fmt::format(
          "table \"{}\" is a reference table (a full copy on every node), not a sharded one",
          name));
    }
    out.push_back(t);
  }
  return out;
}

absl::StatusOr<std::vector<RowsBytes>> MeasureTableOnNode(pg::Conn& conn, const ShardMap& map,
                                                          const TableConfig& table) {
  const std::size_t n = map.ranges().size();
  const std::string quoted = conn.QuoteQualified(table.name);
  auto exists = conn.Exec("SELECT to_regclass($1) IS NOT NULL", {quoted});
  if (!exists.ok()) return exists.status();
  if (exists->Text(0, 0) != "t") {
    return absl::NotFoundError(
        fmt::format("node {}: table {} does not exist", conn.node(), quoted));
  }
  const std::string hash = HashSqlExpression(map.key_type(), "t." + conn.QuoteIdent(table.key));
  // width_bucket(h, ARRAY[lo_1, ..., lo_{n-1}]) is the index of the range holding h: 0 below
  // lo_1, i when lo_i <= h < lo_{i+1}. The bounds travel as one array parameter.
  std::string bucket = "0";
  pg::Params params;
  if (n > 1) {
    std::string bounds = "{";
    for (std::size_t i = 1; i < n; ++i) {
      if (i > 1) bounds += ',';
      bounds += std::to_string(map.ranges()[i].lo);
    }
    bounds += '}';
    params.emplace_back(std::move(bounds));
    bucket = fmt::format("width_bucket({}, $1::bigint[])", hash);
  }
  const std::string sql = fmt::format(
      "SELECT {} AS r, count(*), coalesce(sum(pg_column_size(t.*)), 0)::bigint "
      "FROM {} AS t WHERE t.{} IS NOT NULL GROUP BY 1",
      bucket, quoted, conn.QuoteIdent(table.key));
  auto res = conn.Exec(sql, params);
  if (!res.ok()) {
    return absl::Status(res.status().code(),
                        fmt::format("table {}: {}", quoted, std::string(res.status().message())));
  }
  std::vector<RowsBytes> out(n);
  for (int r = 0; r < res->rows(); ++r) {
    const std::int64_t idx = res->Int64Or0(r, 0);
    if (idx < 0 || static_cast<std::size_t>(idx) >= n) continue;  // cannot happen: 0..n-1
    out[static_cast<std::size_t>(idx)] += {res->Int64Or0(r, 1), res->Int64Or0(r, 2)};
  }
  return out;
}

absl::StatusOr<StatsDetail> CollectStatsDetail(const ShardMap& map,
                                               const CollectStatsOptions& options) {
  auto tables = SelectShardedTables(map, options.tables);
  if (!tables.ok()) return tables.status();
  const std::size_t node_count = map.nodes().size();
  const std::size_t range_count = map.ranges().size();

  // Per node: one thread, one connection, every table; results[node][table].
  std::vector<std::vector<std::vector<RowsBytes>>> results(node_count);
  std::vector<absl::Status> statuses(node_count);
  std::vector<std::vector<std::string>> notes(node_count);
  std::vector<std::thread> threads;
  threads.reserve(node_count);
  for (std::size_t ni = 0; ni < node_count; ++ni) {
    threads.emplace_back([&, ni] {
      const NodeConfig& node = map.nodes()[ni];
      auto conn = ConnectAdmin(node);
      if (!conn.ok()) {
        statuses[ni] = conn.status();
        return;
      }
      const bool idle =
          map.OwnedRanges(static_cast<int>(ni)).empty() && map.ReadRanges(static_cast<int>(ni)).empty();
      for (const TableConfig* t : *tables) {
        auto m = MeasureTableOnNode(**conn, map, *t);
        if (!m.ok() && absl::IsNotFound(m.status()) && idle &&
            options.missing_table_empty_on_idle_nodes) {
          notes[ni].push_back(fmt::format(
              "node {}: table {} does not exist yet (counted as empty; rollout start creates it)",
              node.name, (*conn)->QuoteQualified(t->name)));
          m = std::vector<RowsBytes>(range_count);
        }
        if (!m.ok()) {
          statuses[ni] = m.status();
          return;
        }
        results[ni].push_back(*std::move(m));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : statuses) {
    if (!s.ok()) return s;
  }

  StatsDetail detail;
  for (std::vector<std::string>& n : notes) {
    for (std::string& line : n) detail.empty_nodes.push_back(std::move(line));
  }
  for (std::size_t ti = 0; ti < tables->size(); ++ti) {
    for (std::size_t ni = 0; ni < node_count; ++ni) {
      TableNodeStats e;
      e.table = (*tables)[ti]->name;
      e.node = map.nodes()[ni].name;
      e.owned_by_range.assign(range_count, {});
      e.orphans_by_range.assign(range_count, {});
      const std::vector<RowsBytes>& m = results[ni][ti];
      for (std::size_t ri = 0; ri < range_count; ++ri) {
        if (m[ri].rows == 0 && m[ri].bytes == 0) continue;
        if (static_cast<std::size_t>(map.OwnerNodeIndex(ri)) == ni) {
          e.owned_by_range[ri] = m[ri];
          e.owned += m[ri];
        } else {
          e.orphans_by_range[ri] = m[ri];
          e.orphans += m[ri];
        }
      }
      detail.entries.push_back(std::move(e));
    }
  }
  return detail;
}

std::vector<RangeStats> RangeTotals(const ShardMap& map, const StatsDetail& detail) {
  std::vector<RangeStats> out;
  out.reserve(map.ranges().size());
  for (const RangeConfig& r : map.ranges()) out.push_back({.lo = r.lo, .hi = r.hi});
  for (const TableNodeStats& e : detail.entries) {
    for (std::size_t ri = 0; ri < e.owned_by_range.size() && ri < out.size(); ++ri) {
      out[ri].rows += e.owned_by_range[ri].rows;
      out[ri].bytes += e.owned_by_range[ri].bytes;
    }
  }
  return out;
}

absl::StatusOr<std::vector<RangeStats>> CollectRangeStats(const ShardMap& map,
                                                          const CollectStatsOptions& options) {
  auto detail = CollectStatsDetail(map, options);
  if (!detail.ok()) return detail.status();
  return RangeTotals(map, *detail);
}

}  // namespace shardline::migrate
