// Target tables cloned from the source's definition, and the checks before: see table_clone.h.
#include "table_clone.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "status_text.h"
#include "txn.h"

namespace shardline::migrate {
namespace {

std::string QuotedSequence(const pg::Conn& conn, const SequenceInfo& q) {
  return conn.QuoteIdent(q.schema) + "." + conn.QuoteIdent(q.name);
}

// The options of CREATE SEQUENCE / an identity's sequence, integers formatted by us.
std::string SequenceOptions(const SequenceInfo& q) {
  return fmt::format("INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}",
                     q.increment, q.min, q.max, q.start, q.cache, q.cycle ? "CYCLE" : "NO CYCLE");
}

// The parts of a definition CloneTable does not reproduce (shared by CheckClonable and CloneTable's
// own refusal).
void CheckReproducible(const TableInfo& info, std::string_view node,
                       std::vector<std::string>& problems) {
  for (const ConstraintInfo& c : info.constraints) {
    if (c.type == 'f') {
      problems.push_back(fmt::format(
          "node {}: table {}: foreign key \"{}\" ({}) is not reproduced on a new target table: a "
          "sharded table's foreign key would point at rows that may live on other nodes, and the "
          "two tables' rows reach the target in no common order. Drop the constraint, or create "
          "the table on the target yourself",
          node, info.name, c.name, c.definition));
    } else if (c.type != 'p' && c.type != 'u' && c.type != 'c' && c.type != 'x') {
      problems.push_back(fmt::format(
          "node {}: table {}: constraint \"{}\" ({}) of type '{}' is not reproduced on a new "
          "target table; drop it, or create the table on the target yourself",
          node, info.name, c.name, c.definition, c.type));
    }
  }
  for (const std::string& t : info.user_triggers) {
    problems.push_back(fmt::format(
        "node {}: table {}: trigger \"{}\" is not reproduced on a new target table (its function "
        "and effects are not shardline's to copy); create the table with its triggers on the "
        "target yourself, or drop the trigger",
        node, info.name, t));
  }
  if (info.row_security) {
    problems.push_back(fmt::format(
        "node {}: table {} has row level security enabled; its policies are not reproduced on a "
        "new target table: create the table with its policies on the target yourself",
        node, info.name));
  }
}

// GRANT/REVOKE statements that give relation `quoted` (`kind`: "TABLE" or "SEQUENCE") the owner
// and ACL `p` describes, on a relation just created (owned by us, default ACL). With
// `set_owner` false the owner is left (a sequence that follows its table's owner).
std::vector<std::string> PrivilegeStatements(const pg::Conn& conn, std::string_view kind,
                                             const std::string& quoted, const Privileges& p,
                                             bool set_owner) {
  std::vector<std::string> out;
  auto role = [&](const std::string& r) { return r.empty() ? "PUBLIC" : conn.QuoteIdent(r); };
  if (set_owner && !p.owner.empty()) {
    out.push_back(fmt::format("ALTER {} {} OWNER TO {}", kind, quoted, role(p.owner)));
  }
  if (p.explicit_acl) {
    // The source's ACL replaces the owner's defaults (which may have been revoked there).
    out.push_back(fmt::format("REVOKE ALL ON {} {} FROM PUBLIC", kind, quoted));
    if (!p.owner.empty()) {
      out.push_back(fmt::format("REVOKE ALL ON {} {} FROM {}", kind, quoted, role(p.owner)));
    }
  }
  for (const AclEntry& e : p.acl) {
    if (e.column.empty() && !p.explicit_acl) continue;
    out.push_back(fmt::format(
        "GRANT {}{} ON {} {} TO {}{}", e.privilege,
        e.column.empty() ? "" : fmt::format(" ({})", conn.QuoteIdent(e.column)), kind, quoted,
        role(e.grantee), e.grantable ? " WITH GRANT OPTION" : ""));
  }
  return out;
}

// Streams every row of the source's table into the target's `quoted` table (inside the
// caller's transaction on the target): COPY TO STDOUT on the source piped into COPY FROM STDIN
// on the target, binary (the types are the same: the target table is the source's clone).
absl::Status CopyRows(pg::Conn& source, pg::Conn& target, const TableInfo& info,
                      const std::string& quoted) {
  auto out = source.Exec(fmt::format("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
                                     info.QuotedColumnList(source), info.quoted));
  if (!out.ok()) return out.status();
  auto in = target.Exec(fmt::format("COPY {} ({}) FROM STDIN (FORMAT binary)", quoted,
                                    info.QuotedColumnList(target)));
  if (!in.ok()) {
    while (PGresult* r = PQgetResult(source.raw())) PQclear(r);  // ends the COPY OUT
    return in.status();
  }
  bool sent = true;
  int n = 0;
  for (;;) {
    char* buf = nullptr;
    n = PQgetCopyData(source.raw(), &buf, 0);
    if (n < 0) break;
    sent = sent && PQputCopyData(target.raw(), buf, n) == 1;
    PQfreemem(buf);
  }
  absl::Status status;
  while (PGresult* raw = PQgetResult(source.raw())) {
    pg::ResultPtr r(raw);
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK && status.ok()) {
      status = pg::StatusFromResult(r.get(), source.node(), "COPY TO STDOUT");
    }
  }
  if (n == -2 && status.ok()) status = pg::StatusFromConn(source.raw(), source.node(), "COPY");
  const bool ended = PQputCopyEnd(target.raw(), status.ok() && sent ? nullptr : "source failed");
  while (PGresult* raw = PQgetResult(target.raw())) {
    pg::ResultPtr r(raw);
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK && status.ok()) {
      status = pg::StatusFromResult(r.get(), target.node(), "COPY FROM STDIN");
    }
  }
  if (status.ok() && (!sent || !ended)) {
    status = pg::StatusFromConn(target.raw(), target.node(), "COPY FROM STDIN");
  }
  return status;
}

// A column's sequence on one node, from the catalogs: its quoted name, its increment, and
// whether an index leads with the column (then max() is an index probe).
struct ColumnSequence {
  std::string column;
  std::string sequence;  // quoted, schema-qualified
  std::int64_t increment = 1;
  bool indexed = false;
};

// The sequences behind `quoted`'s columns on `conn` (identity sequences and those a default
// calls, as DescribeTable finds them); none when the table does not exist there.
absl::StatusOr<std::vector<ColumnSequence>> ReadColumnSequences(pg::Conn& conn,
                                                                const std::string& quoted) {
  auto r = conn.Exec(
      "SELECT a.attname, quote_ident(n.nspname) || '.' || quote_ident(s.relname), "
      "q.seqincrement, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid "
      "  AND i.indkey[0] = a.attnum AND i.indpred IS NULL) "
      "FROM pg_attribute a JOIN LATERAL ("
      "  SELECT dep.objid AS seq FROM pg_depend dep "
      "  WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass "
      "    AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype = 'i' "
      "  UNION "
      "  SELECT dep.refobjid FROM pg_attrdef d JOIN pg_depend dep "
      "    ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid "
      "    AND dep.refclassid = 'pg_class'::regclass "
      "  WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) x ON true "
      "JOIN pg_class s ON s.oid = x.seq AND s.relkind = 'S' "
      "JOIN pg_namespace n ON n.oid = s.relnamespace JOIN pg_sequence q ON q.seqrelid = s.oid "
      "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
      "ORDER BY a.attnum, 2",
      {quoted});
  if (!r.ok()) return r.status();
  std::vector<ColumnSequence> out;
  for (int i = 0; i < r->rows(); ++i) {
    out.push_back(
        ColumnSequence{r->String(i, 0), r->String(i, 1), r->Int64Or0(i, 2), r->Text(i, 3) == "t"});
  }
  return out;
}

// The furthest of `a` and `b` in the direction of `increment` (either may be unset).
std::optional<std::int64_t> Further(std::optional<std::int64_t> a, std::optional<std::int64_t> b,
                                    std::int64_t increment) {
  if (!a) return b;
  if (!b) return a;
  return increment > 0 ? std::max(*a, *b) : std::min(*a, *b);
}

}  // namespace

absl::StatusOr<std::vector<IdColumn>> PrepareContinueSequences(const std::vector<pg::Conn*>& from,
                                                               pg::Conn& to,
                                                               const ShardMap& map) {
  std::vector<IdColumn> out;
  for (const TableConfig& t : map.tables()) {
    if (t.reference) continue;
    const std::string where = fmt::format("node {}: table {}: reading its ids", to.node(), t.name);
    const std::string quoted = to.QuoteQualified(t.name);
    auto mine = ReadColumnSequences(to, quoted);
    if (!mine.ok()) return Annotate(mine.status(), where);
    if (mine->empty()) continue;
    const std::size_t first = out.size();
    for (const ColumnSequence& m : *mine) {
      out.push_back(IdColumn{t.name, m.column, m.sequence, m.increment, m.indexed, std::nullopt,
                             {}});
    }
    for (pg::Conn* f : from) {
      auto theirs = ReadColumnSequences(*f, f->QuoteQualified(t.name));
      if (!theirs.ok()) {
        return Annotate(theirs.status(), fmt::format("node {}: table {}: reading its ids",
                                                       f->node(), t.name));
      }
      for (const ColumnSequence& c : *theirs) {
        for (std::size_t i = first; i < out.size(); ++i) {
          if (out[i].column == c.column) out[i].source_sequences[f->node()] = c.sequence;
        }
      }
    }
    // The scans, now rather than in the window: the extremes of the columns no index leads.
    std::string scan;
    for (std::size_t i = first; i < out.size(); ++i) {
      if (out[i].indexed) continue;
      scan += fmt::format("{}{}({})::bigint", scan.empty() ? "" : ", ",
                          out[i].increment > 0 ? "max" : "min", to.QuoteIdent(out[i].column));
    }
    if (scan.empty()) continue;
    auto r = to.Exec(fmt::format("SELECT {} FROM {}", scan, quoted));
    if (!r.ok()) return Annotate(r.status(), where);
    int col = 0;
    for (std::size_t i = first; i < out.size(); ++i) {
      if (out[i].indexed) continue;
      if (!r->IsNull(0, col)) out[i].scanned = r->Int64Or0(0, col);
      ++col;
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ContinueSequencesPast(
    const std::vector<IdColumn>& columns, const std::vector<pg::Conn*>& from, pg::Conn& to) {
  if (columns.empty()) return std::vector<std::string>{};
  const std::string where = fmt::format("node {}: continuing ids", to.node());
  std::vector<std::optional<std::int64_t>> goal;
  for (const IdColumn& c : columns) goal.push_back(c.scanned);
  // Each source: the positions of its sequences, one statement.
  for (pg::Conn* f : from) {
    std::string select;
    pg::Params params;
    std::vector<std::size_t> of;
    for (std::size_t i = 0; i < columns.size(); ++i) {
      auto it = columns[i].source_sequences.find(f->node());
      if (it == columns[i].source_sequences.end()) continue;
      params.push_back(it->second);
      select += fmt::format("{}pg_sequence_last_value(${}::regclass)", select.empty() ? "" : ", ",
                            params.size());
      of.push_back(i);
    }
    if (select.empty()) continue;
    auto r = f->Exec("SELECT " + select, params);
    if (!r.ok()) {
      return Annotate(r.status(), fmt::format("{} (node {}'s sequences)", where, f->node()));
    }
    for (std::size_t k = 0; k < of.size(); ++k) {
      const int col = static_cast<int>(k);
      if (r->IsNull(0, col)) continue;
      goal[of[k]] = Further(goal[of[k]], r->Int64Or0(0, col), columns[of[k]].increment);
    }
  }
  // This node, one statement: its own positions and the indexed columns' extremes (probes).
  std::string select;
  pg::Params params;
  for (const IdColumn& c : columns) {
    params.push_back(c.sequence);
    select += fmt::format("{}pg_sequence_last_value(${}::regclass), {}", select.empty() ? "" : ", ",
                          params.size(),
                          c.indexed ? fmt::format("(SELECT {}({})::bigint FROM {})",
                                                  c.increment > 0 ? "max" : "min",
                                                  to.QuoteIdent(c.column),
                                                  to.QuoteQualified(c.table))
                                    : std::string("NULL::bigint"));
  }
  auto mine = to.Exec("SELECT " + select, params);
  if (!mine.ok()) return Annotate(mine.status(), where);
  // The sequences behind their goal, set in one statement; never backwards.
  std::string set;
  pg::Params set_params;
  std::vector<std::string> moved;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    const IdColumn& c = columns[i];
    const int col = static_cast<int>(2 * i);
    std::optional<std::int64_t> position;
    if (!mine->IsNull(0, col)) position = mine->Int64Or0(0, col);
    if (!mine->IsNull(0, col + 1)) goal[i] = Further(goal[i], mine->Int64Or0(0, col + 1), c.increment);
    if (!goal[i] || Further(position, goal[i], c.increment) == position) continue;
    set_params.push_back(c.sequence);
    set_params.push_back(std::to_string(*goal[i]));
    // setval(g, true): the next value is g + increment, past everything read above.
    set += fmt::format("{}setval(${}::regclass, ${}::bigint, true)", set.empty() ? "" : ", ",
                       set_params.size() - 1, set_params.size());
    moved.push_back(fmt::format("node {}: sequence {} of {}.{}: {} -> {}", to.node(), c.sequence,
                                c.table, c.column,
                                position ? std::to_string(*position) : "unused", *goal[i]));
  }
  if (set.empty()) return moved;
  auto r = to.Exec("SELECT " + set, set_params);
  if (!r.ok()) return Annotate(r.status(), where);
  return moved;
}

absl::Status CheckRolesOnTarget(pg::Conn& target, const TableInfo& info,
                                std::string_view source_node,
                                std::vector<std::string>& problems) {
  // (object, role) pairs the clone would name.
  std::vector<std::pair<std::string, std::string>> named;
  for (const std::string& r : info.privileges.Roles()) {
    named.push_back({fmt::format("table {}", info.name), r});
  }
  for (const ColumnInfo& c : info.columns) {
    for (const SequenceInfo& q : c.sequences) {
      for (const std::string& r : q.privileges.Roles()) {
        named.push_back({fmt::format("sequence {}.{}", q.schema, q.name), r});
      }
    }
  }
  if (named.empty()) return absl::OkStatus();
  std::set<std::string> missing;
  for (const auto& [object, role] : named) {
    if (missing.count(role)) continue;
    auto r = target.Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role});
    if (!r.ok()) {
      return Annotate(r.status(), fmt::format("node {}: reading roles", target.node()));
    }
    if (r->rows() == 0) missing.insert(role);
  }
  // One line per missing role, naming what it owns or is granted on the source.
  std::map<std::string, std::vector<std::string>> uses;
  for (const auto& [object, role] : named) {
    if (!missing.count(role)) continue;
    const bool owns = object.starts_with("table ") && role == info.privileges.owner;
    std::vector<std::string>& u = uses[role];
    const std::string use = fmt::format("{} {}", owns ? "owns" : "is granted privileges on", object);
    if (std::find(u.begin(), u.end(), use) == u.end()) u.push_back(use);
  }
  for (const auto& [role, u] : uses) {
    std::string list;
    for (const std::string& x : u) list += (list.empty() ? "" : ", ") + x;
    problems.push_back(fmt::format(
        "node {}: role \"{}\" does not exist on this server, but on node {} it {}: the copy "
        "would not get the same owner and grants. Create the role on node {} (CREATE ROLE), or "
        "change the owner or grants on node {}",
        target.node(), role, source_node, list, target.node(), source_node));
  }
  return absl::OkStatus();
}

bool KeyColumnTypeAccepted(KeyType key_type, std::string_view column_type) {
  switch (key_type) {
    case KeyType::kBigint:
      return column_type == "bigint" || column_type == "integer" || column_type == "smallint";
    case KeyType::kText:
      return column_type == "text" || column_type == "character varying" ||
             column_type.starts_with("character varying(");
    case KeyType::kUuid:
      return column_type == "uuid";
    default:
      return false;
  }
}

void CheckShardable(const TableInfo& info, const TableConfig& table, KeyType key_type,
                    std::string_view node, std::vector<std::string>& problems) {
  if (info.relkind == 'p') {
    problems.push_back(fmt::format(
        "node {}: table {} is partitioned; shardline moves rows of plain tables only (a "
        "partitioned table's rows live in its partitions, which a publication and a clone would "
        "each have to follow): shard a plain table, or list its partitions as the tables",
        node, info.name));
  } else if (info.relkind != 'r') {
    problems.push_back(fmt::format(
        "node {}: {} is not a table (pg_class.relkind '{}'); only plain tables can be sharded",
        node, info.name, info.relkind));
  }
  if (info.is_partition) {
    problems.push_back(fmt::format(
        "node {}: table {} is a partition of a partitioned table; a moved range would leave its "
        "parent: shard the rows in a plain table",
        node, info.name));
  } else if (info.relkind != 'p' && (info.has_parents || info.has_children)) {
    // (A partitioned table's partitions are pg_inherits children too: said above.)
    problems.push_back(fmt::format(
        "node {}: table {} {} (INHERITS); a publication and a clone of one member of an "
        "inheritance tree would not carry the others' rows: shard a table outside inheritance",
        node, info.name, info.has_parents ? "inherits from another table" : "has child tables"));
  }
  if (info.persistence != 'p') {
    problems.push_back(fmt::format(
        "node {}: table {} is {}; such tables cannot be published for logical replication: "
        "make it a permanent table (ALTER TABLE ... SET LOGGED)",
        node, info.name, info.persistence == 'u' ? "UNLOGGED" : "temporary"));
  }
  const ColumnInfo* key = info.FindColumn(table.key);
  if (key == nullptr) {
    problems.push_back(fmt::format("node {}: table {} has no shard key column \"{}\"", node,
                                   info.name, table.key));
  } else if (!KeyColumnTypeAccepted(key_type, key->type)) {
    const char* accepted = key_type == KeyType::kBigint ? "bigint, integer or smallint"
                           : key_type == KeyType::kText ? "text or character varying"
                                                        : "uuid";
    problems.push_back(fmt::format(
        "node {}: table {}: shard key column \"{}\" is {}, but the map's key type is {} and its "
        "row filter hash ({}) takes {}: change the column's type (or the map's key type)",
        node, info.name, table.key, key->type, KeyTypeName(key_type),
        HashSqlExpression(key_type, "..."), accepted));
  } else if (key_type == KeyType::kText && !key->collation_deterministic) {
    problems.push_back(fmt::format(
        "node {}: table {}: shard key column \"{}\" has the nondeterministic collation {}; the "
        "row filter would hash its values under that collation while the router hashes their "
        "bytes: give the column a deterministic collation",
        node, info.name, table.key, key->collation));
  }
}

void CheckClonable(const TableInfo& info, const TableConfig& table, KeyType key_type,
                   std::string_view node, std::vector<std::string>& problems) {
  CheckShardable(info, table, key_type, node, problems);
  CheckReproducible(info, node, problems);
}

void CheckReferenceClonable(const TableInfo& info, std::string_view node,
                            std::vector<std::string>& problems) {
  if (info.relkind != 'r' || info.persistence != 'p') {
    problems.push_back(fmt::format(
        "node {}: reference table {} is not a plain permanent table (relkind '{}', persistence "
        "'{}'); create it on the target yourself",
        node, info.name, info.relkind, info.persistence));
  }
  CheckReproducible(info, node, problems);
}

absl::Status CloneTable(pg::Conn& source, pg::Conn& target, const TableInfo& info,
                        const TableConfig& table, bool with_rows) {
  const std::string where =
      fmt::format("node {}: creating table {} like node {}'s", target.node(), table.name,
                  source.node());
  {
    std::vector<std::string> refused;
    CheckReproducible(info, source.node(), refused);
    if (info.relkind != 'r' || info.persistence != 'p') {
      refused.push_back(fmt::format("node {}: table {} is not a plain permanent table",
                                    source.node(), info.name));
    }
    if (!refused.empty()) return absl::FailedPreconditionError(refused.front());
  }

  // From the source: its search_path (under which its pg_get_* texts were rendered) and the
  // current positions of the sequences.
  auto path = source.Exec("SELECT current_setting('search_path')");
  if (!path.ok()) return Annotate(path.status(), where);
  struct Position {
    std::string last_value;
    bool is_called = false;
  };
  std::map<std::pair<std::string, std::string>, Position> positions;
  for (const ColumnInfo& c : info.columns) {
    for (const SequenceInfo& q : c.sequences) {
      auto r = source.Exec(
          fmt::format("SELECT last_value, is_called FROM {}", QuotedSequence(source, q)));
      if (!r.ok()) return Annotate(r.status(), where);
      positions[{q.schema, q.name}] = {r->String(0, 0), r->Text(0, 1) == "t"};
    }
  }

  Txn txn(target);
  if (auto s = txn.Begin(); !s.ok()) return Annotate(s, where);
  auto exec = [&](const std::string& sql, const pg::Params& params = {}) -> absl::Status {
    auto r = target.Exec(sql, params);
    return r.ok() ? absl::OkStatus() : Annotate(r.status(), where);
  };
  if (auto s = exec("SELECT set_config('search_path', $1, true)", {path->String(0, 0)});
      !s.ok()) {
    return s;
  }
  const std::string quoted = target.QuoteQualified(table.name);
  auto exists = target.Exec("SELECT to_regclass($1) IS NOT NULL", {quoted});
  if (!exists.ok()) return Annotate(exists.status(), where);
  if (exists->Text(0, 0) == "t") {
    return absl::AlreadyExistsError(
        fmt::format("{}: table {} already exists on node {}; nothing was changed", where,
                    table.name, target.node()));
  }

  // Schemas: the table's (when qualified) and its sequences'. Created only when missing
  // (CREATE SCHEMA checks the CREATE privilege even when the schema exists).
  std::set<std::string> schemas;
  if (const auto dot = table.name.find('.'); dot != std::string::npos) {
    schemas.insert(table.name.substr(0, dot));
  }
  for (const ColumnInfo& c : info.columns) {
    for (const SequenceInfo& q : c.sequences) schemas.insert(q.schema);
  }
  for (const std::string& schema : schemas) {
    auto r = target.Exec("SELECT 1 FROM pg_namespace WHERE nspname = $1", {schema});
    if (!r.ok()) return Annotate(r.status(), where);
    if (r->rows() > 0) continue;
    if (auto s = exec(fmt::format("CREATE SCHEMA IF NOT EXISTS {}", target.QuoteIdent(schema)));
        !s.ok()) {
      return s;
    }
  }

  auto set_position = [&](const SequenceInfo& q) -> absl::Status {
    const Position& p = positions[{q.schema, q.name}];
    return exec("SELECT setval($1::regclass, $2::bigint, $3::boolean)",
                {QuotedSequence(target, q), p.last_value, p.is_called ? "true" : "false"});
  };
  // Sequences the defaults call. One that exists on the target already (another table's, say)
  // is left alone: setting it back could hand out values twice.
  std::set<std::pair<std::string, std::string>> done, created;
  for (const ColumnInfo& c : info.columns) {
    if (c.identity != '\0') continue;
    for (const SequenceInfo& q : c.sequences) {
      if (!done.insert({q.schema, q.name}).second) continue;
      auto r = target.Exec(
          "SELECT 1 FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace "
          "WHERE n.nspname = $1 AND s.relname = $2",
          {q.schema, q.name});
      if (!r.ok()) return Annotate(r.status(), where);
      if (r->rows() > 0) continue;
      if (auto s = exec(fmt::format("CREATE SEQUENCE {} AS {} {}", QuotedSequence(target, q),
                                    q.type, SequenceOptions(q)));
          !s.ok()) {
        return s;
      }
      if (auto s = set_position(q); !s.ok()) return s;
      created.insert({q.schema, q.name});
    }
  }

  // The table: columns, then constraints (primary key first) with their names.
  std::string body;
  for (const ColumnInfo& c : info.columns) {
    if (!body.empty()) body += ",\n  ";
    body += fmt::format("{} {}", target.QuoteIdent(c.name), c.type);
    if (!c.collation.empty()) body += " COLLATE " + c.collation;
    if (c.generated) {
      body += fmt::format(" GENERATED ALWAYS AS ({}) STORED", c.default_expr);
    } else if (c.identity != '\0') {
      body += fmt::format(" GENERATED {} AS IDENTITY", c.identity == 'a' ? "ALWAYS" : "BY DEFAULT");
      if (!c.sequences.empty()) {
        const SequenceInfo& q = c.sequences.front();
        body += fmt::format(" (SEQUENCE NAME {} {})", QuotedSequence(target, q),
                            SequenceOptions(q));
      }
    } else if (!c.default_expr.empty()) {
      body += " DEFAULT " + c.default_expr;
    }
    if (c.not_null) body += " NOT NULL";
  }
  for (char type : {'p', 'u', 'c', 'x'}) {
    for (const ConstraintInfo& k : info.constraints) {
      if (k.type != type) continue;
      body += fmt::format(",\n  CONSTRAINT {} {}", target.QuoteIdent(k.name), k.definition);
    }
  }
  if (auto s = exec(fmt::format("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", quoted, body));
      !s.ok()) {
    return s;
  }
  for (const ColumnInfo& c : info.columns) {
    if (c.identity != '\0') {
      if (c.sequences.empty()) continue;
      if (auto s = set_position(c.sequences.front()); !s.ok()) return s;
      continue;
    }
    // A serial's sequence belongs to its column (dropped with it), when created here.
    for (const SequenceInfo& q : c.sequences) {
      if (!q.owned_by_column || !created.count({q.schema, q.name})) continue;
      if (auto s = exec(fmt::format("ALTER SEQUENCE {} OWNED BY {}.{}", QuotedSequence(target, q),
                                    quoted, target.QuoteIdent(c.name)));
          !s.ok()) {
        return s;
      }
    }
  }

  for (std::string def : info.index_defs) {
    // "CREATE [UNIQUE] INDEX name ON ..." -> "... INDEX IF NOT EXISTS name ON ...".
    const auto at = def.find("INDEX ");
    if (at != std::string::npos) def.insert(at + 6, "IF NOT EXISTS ");
    if (auto s = exec(def); !s.ok()) return s;
  }

  std::string identity;
  switch (info.replica_identity) {
    case 'f':
      identity = "FULL";
      break;
    case 'n':
      identity = "NOTHING";
      break;
    case 'i':
      identity = "USING INDEX " + target.QuoteIdent(info.replica_identity_index);
      break;
    default:
      break;  // 'd': the primary key, what a new table has
  }
  if (!identity.empty()) {
    if (auto s = exec(fmt::format("ALTER TABLE {} REPLICA IDENTITY {}", quoted, identity));
        !s.ok()) {
      return s;
    }
  }

  // The source's owner and ACLs (the service roles keep working on the copy). A sequence the
  // table owns (identity, serial) follows the table's owner; a created sequence that only a
  // default calls gets its own. Sequences that existed already are left as they are.
  std::vector<std::string> grants =
      PrivilegeStatements(target, "TABLE", quoted, info.privileges, /*set_owner=*/true);
  for (const ColumnInfo& c : info.columns) {
    for (const SequenceInfo& q : c.sequences) {
      const bool identity_seq = c.identity != '\0';
      if (!identity_seq && !created.count({q.schema, q.name})) continue;
      std::vector<std::string> more =
          PrivilegeStatements(target, "SEQUENCE", QuotedSequence(target, q), q.privileges,
                              /*set_owner=*/!identity_seq && !q.owned_by_column);
      grants.insert(grants.end(), more.begin(), more.end());
    }
  }
  for (const std::string& g : grants) {
    if (auto s = exec(g); !s.ok()) return s;
  }
  if (with_rows) {
    if (auto s = CopyRows(source, target, info, quoted); !s.ok()) return Annotate(s, where);
  }
  if (auto s = txn.Commit(); !s.ok()) return Annotate(s, where);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
