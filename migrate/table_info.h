// What the migration engine needs to know about a sharded table on one node: its columns (in
// order, with types), its primary key, its replica identity, and whether the shard-key column is
// part of the key. Read from pg_catalog; every later step (backfill, verify, rollout) checks its
// preconditions against this and says which table and what to do when one fails.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pg_conn.h"
#include "shardline/key.h"
#include "shardline/shard_map.h"

namespace shardline::migrate {

// One privilege of a relation's (or a column's) ACL, from aclexplode: what GRANT reproduces.
struct AclEntry {
  std::string grantee;    // role name; "" = PUBLIC
  std::string privilege;  // "SELECT", "INSERT", "USAGE", ...
  bool grantable = false;  // WITH GRANT OPTION
  std::string column;     // "" for the relation; the column for a column privilege
};

// Who owns a relation and who may use it: pg_class.relowner, relacl (and the columns' attacl).
struct Privileges {
  std::string owner;  // role name
  // False when relacl is NULL: the owner's default privileges, nothing granted to others.
  bool explicit_acl = false;
  std::vector<AclEntry> acl;  // relation entries (explicit_acl), then column entries
  // The roles named (owner and grantees other than PUBLIC), each once, sorted.
  std::vector<std::string> Roles() const;
};

// A sequence a column draws from: its identity sequence, or one its default calls (a serial's
// nextval('users_id_seq'::regclass)). Catalog facts only; the current value is read when needed
// (it takes SELECT on the sequence, which backfill and verify do not need).
struct SequenceInfo {
  std::string schema;  // unquoted, e.g. "public"
  std::string name;    // unquoted, e.g. "users_id_seq"
  std::string type;    // format_type of seqtypid: "bigint", "integer", "smallint"
  std::int64_t start = 1;
  std::int64_t increment = 1;
  std::int64_t min = 1;
  std::int64_t max = 0;
  std::int64_t cache = 1;
  bool cycle = false;
  bool owned_by_column = false;  // OWNED BY this column (a serial's), not merely called
  Privileges privileges;         // its owner and ACL
};

struct ColumnInfo {
  std::string name;
  std::string type;  // format_type() text, e.g. "bigint", "character varying(20)"
  bool not_null = false;
  bool generated = false;   // GENERATED ALWAYS ... STORED: cannot be copied into
  // pg_get_expr of the default, "" if none. For a generated column, its generation expression.
  std::string default_expr;
  // pg_attribute.attidentity: 'a' GENERATED ALWAYS AS IDENTITY, 'd' BY DEFAULT, '\0' none.
  char identity = '\0';
  // COLLATE clause operand (quoted, schema-qualified) when the column's collation is not its
  // type's default; "" otherwise.
  std::string collation;
  // False for a nondeterministic (ICU) collation, under which equal texts may differ in bytes.
  bool collation_deterministic = true;
  // Identity: its sequence. Otherwise the sequences the default expression depends on.
  std::vector<SequenceInfo> sequences;
};

// A table constraint from pg_constraint (NOT NULL is a column property in PostgreSQL 15).
struct ConstraintInfo {
  std::string name;        // unquoted
  char type = 'c';  // contype: p primary, u unique, c check, f foreign, x exclusion, t trigger
  std::string definition;  // pg_get_constraintdef, e.g. "CHECK ((qty > 0))", "UNIQUE (email)"
};

struct TableInfo {
  std::string name;          // as configured ("schema.table" or "table")
  std::string quoted;        // quoted, schema-qualified when configured so
  std::uint32_t oid = 0;
  std::vector<ColumnInfo> columns;           // attnum order, dropped columns skipped
  std::vector<std::string> primary_key;      // column names in key order; empty if none
  char replica_identity = 'd';               // d default, n nothing, f full, i index
  std::int64_t estimated_rows = 0;           // pg_class.reltuples (>= 0)
  std::int64_t total_bytes = 0;              // pg_total_relation_size
  char relkind = 'r';                        // r table, p partitioned, v view, m matview, f foreign
  char persistence = 'p';                    // relpersistence: p permanent, u unlogged, t temp
  bool is_partition = false;                 // a partition of a partitioned table
  bool has_parents = false;                  // INHERITS from another table
  bool has_children = false;                 // other tables inherit from it (or partitions)
  bool row_security = false;                 // ENABLE ROW LEVEL SECURITY
  std::vector<ConstraintInfo> constraints;   // all of pg_constraint for the table, by name
  // pg_get_indexdef of the indexes that back no constraint (a UNIQUE or PRIMARY KEY constraint
  // brings its own index), by name.
  std::vector<std::string> index_defs;
  std::string replica_identity_index;        // unquoted index name when replica_identity == 'i'
  std::vector<std::string> user_triggers;    // non-internal triggers other than shardline_fence
  Privileges privileges;                     // owner, table and column ACLs

  bool HasColumn(std::string_view column) const;
  const ColumnInfo* FindColumn(std::string_view column) const;
  // Comma-separated quoted column names (the non-generated ones), for COPY and SELECT lists.
  std::string QuotedColumnList(const pg::Conn& conn) const;
  // Quoted primary-key column list.
  std::string QuotedKeyList(const pg::Conn& conn) const;
};

// Reads the table's description (catalog queries only; expressions and definitions are
// rendered under the session's search_path). NotFound "node a: table "public.users" does not
// exist" when absent.
absl::StatusOr<TableInfo> DescribeTable(pg::Conn& conn, const std::string& table);

// The key to order and resume by: the configured primary_key if the map gives one, else the
// table's primary key. FailedPrecondition naming table and node when there is none, or when it
// does not contain the shard-key column (a move must never split a key's rows).
absl::StatusOr<std::vector<std::string>> ResolveKey(const TableInfo& info, const TableConfig& table,
                                                    std::string_view node);

// Checks that `target` can receive `source`'s rows: every source column exists on the target
// with the same type. FailedPrecondition naming the table, the column and both types otherwise.
absl::Status CheckCompatible(const TableInfo& source, const TableInfo& target,
                             std::string_view source_node, std::string_view target_node);

// `hash_expr BETWEEN lo AND hi` for the map's key type and a quoted column; integers are
// formatted by us (no user text is spliced).
std::string HashRangePredicate(KeyType type, std::string_view quoted_column, std::int64_t lo,
                               std::int64_t hi);
// OR of several ranges (false for none).
std::string HashRangesPredicate(KeyType type, std::string_view quoted_column,
                                const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges);

}  // namespace shardline::migrate
