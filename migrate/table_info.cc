// Table introspection from pg_catalog: see table_info.h.
#include "table_info.h"

#include <fmt/format.h>

#include <algorithm>

namespace shardline::migrate {

bool TableInfo::HasColumn(std::string_view column) const { return FindColumn(column) != nullptr; }

const ColumnInfo* TableInfo::FindColumn(std::string_view column) const {
  for (const auto& c : columns) {
    if (c.name == column) return &c;
  }
  return nullptr;
}

std::string TableInfo::QuotedColumnList(const pg::Conn& conn) const {
  std::string out;
  for (const auto& c : columns) {
    if (c.generated) continue;
    if (!out.empty()) out += ", ";
    out += conn.QuoteIdent(c.name);
  }
  return out;
}

std::string TableInfo::QuotedKeyList(const pg::Conn& conn) const {
  std::string out;
  for (const auto& c : primary_key) {
    if (!out.empty()) out += ", ";
    out += conn.QuoteIdent(c);
  }
  return out;
}

absl::StatusOr<TableInfo> DescribeTable(pg::Conn& conn, const std::string& table) {
  TableInfo info;
  info.name = table;
  info.quoted = conn.QuoteQualified(table);
  // to_regclass takes the quoted name as a parameter: no splicing.
  auto rel = conn.Exec(
      "SELECT c.oid::bigint, c.relreplident, greatest(c.reltuples, 0)::bigint, "
      "pg_total_relation_size(c.oid) FROM pg_class c WHERE c.oid = to_regclass($1)",
      {info.quoted});
  if (!rel.ok()) return rel.status();
  if (rel->rows() == 0) {
    return absl::NotFoundError(
        fmt::format("node {}: table {} does not exist", conn.node(), info.quoted));
  }
  info.oid = static_cast<std::uint32_t>(rel->Int64Or0(0, 0));
  std::string_view ident = rel->Text(0, 1);
  info.replica_identity = ident.empty() ? 'd' : ident[0];
  info.estimated_rows = rel->Int64Or0(0, 2);
  info.total_bytes = rel->Int64Or0(0, 3);

  const std::string oid = std::to_string(info.oid);
  auto cols = conn.Exec(
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
      "a.attgenerated <> '', coalesce(pg_get_expr(d.adbin, d.adrelid), '') "
      "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
      "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
      {oid});
  if (!cols.ok()) return cols.status();
  for (int r = 0; r < cols->rows(); ++r) {
    ColumnInfo c;
    c.name = cols->String(r, 0);
    c.type = cols->String(r, 1);
    c.not_null = cols->Text(r, 2) == "t";
    c.generated = cols->Text(r, 3) == "t";
    c.default_expr = cols->String(r, 4);
    info.columns.push_back(std::move(c));
  }
  auto pk = conn.Exec(
      "SELECT a.attname FROM pg_index i "
      "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
      "WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.ord",
      {oid});
  if (!pk.ok()) return pk.status();
  for (int r = 0; r < pk->rows(); ++r) info.primary_key.push_back(pk->String(r, 0));
  return info;
}

absl::StatusOr<std::vector<std::string>> ResolveKey(const TableInfo& info, const TableConfig& table,
                                                    std::string_view node) {
  std::vector<std::string> key = table.primary_key.empty() ? info.primary_key : table.primary_key;
  if (key.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "node {}: table {} has no primary key; add one that contains the shard key column {} "
        "(or list primary_key in the map's [[tables]] entry)",
        node, info.quoted, table.key));
  }
  for (const auto& k : key) {
    if (!info.HasColumn(k)) {
      return absl::FailedPreconditionError(fmt::format(
          "node {}: table {}: key column \"{}\" does not exist", node, info.quoted, k));
    }
  }
  if (!table.key.empty() && std::find(key.begin(), key.end(), table.key) == key.end()) {
    return absl::FailedPreconditionError(fmt::format(
        "node {}: table {}: the key ({}) does not contain the shard key column \"{}\"; rows of "
        "one key could then not be moved and replicated as a unit. Make the primary key "
        "include \"{}\"",
        node, info.quoted, fmt::join(key, ", "), table.key, table.key));
  }
  return key;
}

absl::Status CheckCompatible(const TableInfo& source, const TableInfo& target,
                             std::string_view source_node, std::string_view target_node) {
  for (const auto& c : source.columns) {
    if (c.generated) continue;
    const ColumnInfo* t = target.FindColumn(c.name);
    if (t == nullptr) {
      return absl::FailedPreconditionError(fmt::format(
          "table {}: column \"{}\" exists on node {} but not on node {}; create it on {} first",
          source.quoted, c.name, source_node, target_node, target_node));
    }
    if (t->type != c.type) {
      return absl::FailedPreconditionError(fmt::format(
          "table {}: column \"{}\" is {} on node {} but {} on node {}", source.quoted, c.name,
          c.type, source_node, t->type, target_node));
    }
  }
  return absl::OkStatus();
}

std::string HashRangePredicate(KeyType type, std::string_view quoted_column, std::int64_t lo,
                               std::int64_t hi) {
  const std::string expr = HashSqlExpression(type, quoted_column);
  if (lo == kMinHash && hi == kMaxHash) return "true";
  if (lo == kMinHash) return fmt::format("{} <= {}", expr, hi);
  if (hi == kMaxHash) return fmt::format("{} >= {}", expr, lo);
  return fmt::format("{} BETWEEN {} AND {}", expr, lo, hi);
}

std::string HashRangesPredicate(KeyType type, std::string_view quoted_column,
                                const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges) {
  if (ranges.empty()) return "false";
  std::string out = "(";
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (i) out += " OR ";
    out += HashRangePredicate(type, quoted_column, ranges[i].first, ranges[i].second);
  }
  out += ")";
  return out;
}

}  // namespace shardline::migrate
