// Target tables cloned from the source's definition, and the checks before: see table_clone.h.
#include "table_clone.h"

#include <fmt/format.h>

#include <map>
#include <set>
#include <utility>

#include "txn.h"

namespace shardline::migrate {
namespace {

absl::Status WithPrefix(const absl::Status& s, std::string_view prefix) {
  return absl::Status(s.code(), fmt::format("{}: {}", prefix, std::string(s.message())));
}

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

}  // namespace

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

absl::Status CloneTable(pg::Conn& source, pg::Conn& target, const TableInfo& info,
                        const TableConfig& table) {
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
  if (!path.ok()) return WithPrefix(path.status(), where);
  struct Position {
    std::string last_value;
    bool is_called = false;
  };
  std::map<std::pair<std::string, std::string>, Position> positions;
  for (const ColumnInfo& c : info.columns) {
    for (const SequenceInfo& q : c.sequences) {
      auto r = source.Exec(
          fmt::format("SELECT last_value, is_called FROM {}", QuotedSequence(source, q)));
      if (!r.ok()) return WithPrefix(r.status(), where);
      positions[{q.schema, q.name}] = {r->String(0, 0), r->Text(0, 1) == "t"};
    }
  }

  Txn txn(target);
  if (auto s = txn.Begin(); !s.ok()) return WithPrefix(s, where);
  auto exec = [&](const std::string& sql, const pg::Params& params = {}) -> absl::Status {
    auto r = target.Exec(sql, params);
    return r.ok() ? absl::OkStatus() : WithPrefix(r.status(), where);
  };
  if (auto s = exec("SELECT set_config('search_path', $1, true)", {path->String(0, 0)});
      !s.ok()) {
    return s;
  }
  const std::string quoted = target.QuoteQualified(table.name);
  auto exists = target.Exec("SELECT to_regclass($1) IS NOT NULL", {quoted});
  if (!exists.ok()) return WithPrefix(exists.status(), where);
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
    if (!r.ok()) return WithPrefix(r.status(), where);
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
      if (!r.ok()) return WithPrefix(r.status(), where);
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
  if (auto s = txn.Commit(); !s.ok()) return WithPrefix(s, where);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
