// Table introspection from pg_catalog: see table_info.h.
#include "table_info.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace shardline::migrate {
namespace {

// The owner and ACL of relation `oid` (a table with its columns' ACLs, or a sequence).
absl::StatusOr<Privileges> ReadPrivileges(pg::Conn& conn, const std::string& oid) {
  auto r = conn.Exec(
      "SELECT 0 AS kind, pg_get_userbyid(c.relowner) AS who, (c.relacl IS NOT NULL)::text AS "
      "what, false AS grantable, '' AS col FROM pg_class c WHERE c.oid = $1::oid "
      "UNION ALL SELECT 1, CASE WHEN x.grantee = 0 THEN '' ELSE pg_get_userbyid(x.grantee) END, "
      "x.privilege_type, x.is_grantable, '' FROM pg_class c, aclexplode(c.relacl) x "
      "WHERE c.oid = $1::oid "
      "UNION ALL SELECT 2, CASE WHEN x.grantee = 0 THEN '' ELSE pg_get_userbyid(x.grantee) END, "
      "x.privilege_type, x.is_grantable, a.attname FROM pg_attribute a, aclexplode(a.attacl) x "
      "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
      "ORDER BY kind, col, who, what",
      {oid});
  if (!r.ok()) return r.status();
  Privileges p;
  for (int i = 0; i < r->rows(); ++i) {
    if (r->Text(i, 0) == "0") {
      p.owner = r->String(i, 1);
      p.explicit_acl = r->Text(i, 2) == "true";
      continue;
    }
    p.acl.push_back(AclEntry{r->String(i, 1), r->String(i, 2), r->Text(i, 3) == "t",
                             r->String(i, 4)});
  }
  return p;
}

}  // namespace

std::vector<std::string> Privileges::Roles() const {
  std::set<std::string> roles;
  if (!owner.empty()) roles.insert(owner);
  for (const AclEntry& e : acl) {
    if (!e.grantee.empty()) roles.insert(e.grantee);
  }
  return {roles.begin(), roles.end()};
}

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
      "pg_total_relation_size(c.oid), c.relkind, c.relpersistence, c.relispartition, "
      "EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid), "
      "EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = c.oid), c.relrowsecurity "
      "FROM pg_class c WHERE c.oid = to_regclass($1)",
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
  if (auto k = rel->Text(0, 4); !k.empty()) info.relkind = k[0];
  if (auto p = rel->Text(0, 5); !p.empty()) info.persistence = p[0];
  info.is_partition = rel->Text(0, 6) == "t";
  info.has_parents = rel->Text(0, 7) == "t";
  info.has_children = rel->Text(0, 8) == "t";
  info.row_security = rel->Text(0, 9) == "t";

  const std::string oid = std::to_string(info.oid);
  auto cols = conn.Exec(
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
      "a.attgenerated <> '', coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity, "
      "CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation "
      "THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END, a.attnum, "
      "coalesce(co.collisdeterministic, true) "
      "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
      "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
      "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
      "LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace "
      "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
      {oid});
  if (!cols.ok()) return cols.status();
  std::vector<std::string> attnums;  // parallel to info.columns
  for (int r = 0; r < cols->rows(); ++r) {
    ColumnInfo c;
    c.name = cols->String(r, 0);
    c.type = cols->String(r, 1);
    c.not_null = cols->Text(r, 2) == "t";
    c.generated = cols->Text(r, 3) == "t";
    c.default_expr = cols->String(r, 4);
    if (auto id = cols->Text(r, 5); !id.empty()) c.identity = id[0];
    c.collation = cols->String(r, 6);
    c.collation_deterministic = cols->Text(r, 8) != "f";
    info.columns.push_back(std::move(c));
    attnums.push_back(cols->String(r, 7));
  }
  // The sequences behind the columns: an identity's own (an internal dependency of the
  // sequence on the column), a default's (a normal dependency of the default on the sequence).
  auto seqs = conn.Exec(
      "SELECT x.attnum, n.nspname, s.relname, format_type(q.seqtypid, NULL), q.seqstart, "
      "q.seqincrement, q.seqmin, q.seqmax, q.seqcache, q.seqcycle, "
      "EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass "
      "        AND o.objid = s.oid AND o.refclassid = 'pg_class'::regclass "
      "        AND o.refobjid = $1::oid AND o.refobjsubid = x.attnum AND o.deptype = 'a'), "
      "s.oid::bigint "
      "FROM ("
      "  SELECT dep.refobjsubid AS attnum, dep.objid AS seq FROM pg_depend dep "
      "  WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass "
      "    AND dep.refobjid = $1::oid AND dep.deptype = 'i' "
      "  UNION "
      "  SELECT d.adnum, dep.refobjid FROM pg_attrdef d JOIN pg_depend dep "
      "    ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid "
      "    AND dep.refclassid = 'pg_class'::regclass "
      "  WHERE d.adrelid = $1::oid) x "
      "JOIN pg_class s ON s.oid = x.seq AND s.relkind = 'S' "
      "JOIN pg_namespace n ON n.oid = s.relnamespace JOIN pg_sequence q ON q.seqrelid = s.oid "
      "ORDER BY x.attnum, n.nspname, s.relname",
      {oid});
  if (!seqs.ok()) return seqs.status();
  for (int r = 0; r < seqs->rows(); ++r) {
    const std::string attnum = seqs->String(r, 0);
    for (std::size_t i = 0; i < attnums.size(); ++i) {
      if (attnums[i] != attnum) continue;
      SequenceInfo q;
      q.schema = seqs->String(r, 1);
      q.name = seqs->String(r, 2);
      q.type = seqs->String(r, 3);
      q.start = seqs->Int64Or0(r, 4);
      q.increment = seqs->Int64Or0(r, 5);
      q.min = seqs->Int64Or0(r, 6);
      q.max = seqs->Int64Or0(r, 7);
      q.cache = seqs->Int64Or0(r, 8);
      q.cycle = seqs->Text(r, 9) == "t";
      q.owned_by_column = seqs->Text(r, 10) == "t";
      auto privileges = ReadPrivileges(conn, seqs->String(r, 11));
      if (!privileges.ok()) return privileges.status();
      q.privileges = *std::move(privileges);
      info.columns[i].sequences.push_back(std::move(q));
    }
  }
  auto pk = conn.Exec(
      "SELECT a.attname FROM pg_index i "
      "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
      "WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.ord",
      {oid});
  if (!pk.ok()) return pk.status();
  for (int r = 0; r < pk->rows(); ++r) info.primary_key.push_back(pk->String(r, 0));

  auto cons = conn.Exec(
      "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
      "WHERE conrelid = $1::oid ORDER BY conname",
      {oid});
  if (!cons.ok()) return cons.status();
  for (int r = 0; r < cons->rows(); ++r) {
    ConstraintInfo c;
    c.name = cons->String(r, 0);
    if (auto t = cons->Text(r, 1); !t.empty()) c.type = t[0];
    c.definition = cons->String(r, 2);
    info.constraints.push_back(std::move(c));
  }
  auto idx = conn.Exec(
      "SELECT pg_get_indexdef(i.indexrelid), i.indisreplident, x.relname, "
      "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = i.indrelid "
      "        AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')) "
      "FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid WHERE i.indrelid = $1::oid "
      "ORDER BY x.relname",
      {oid});
  if (!idx.ok()) return idx.status();
  for (int r = 0; r < idx->rows(); ++r) {
    if (idx->Text(r, 1) == "t") info.replica_identity_index = idx->String(r, 2);
    if (idx->Text(r, 3) != "t") info.index_defs.push_back(idx->String(r, 0));
  }
  auto trg = conn.Exec(
      "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::oid AND NOT tgisinternal "
      "AND tgname <> 'shardline_fence' ORDER BY tgname",
      {oid});
  if (!trg.ok()) return trg.status();
  for (int r = 0; r < trg->rows(); ++r) info.user_triggers.push_back(trg->String(r, 0));
  auto privileges = ReadPrivileges(conn, oid);
  if (!privileges.ok()) return privileges.status();
  info.privileges = *std::move(privileges);
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
