// Creating a target node's copy of a sharded table from the source's definition, and deciding
// beforehand whether that copy can be made (and whether the table can be sharded at all).
// `rollout start` runs the checks on every table before it touches anything and clones only
// when every check passed, so a target table either has the source's definition or `start`
// said which difference it could not reproduce.
//
// Reproduced: columns in order with types, collations, NOT NULL and defaults; identity columns
// (ALWAYS / BY DEFAULT, same sequence name and options, continuing after the source's last
// value); defaults that call sequences (a serial's nextval(...): the sequence is created with the
// source's name, options and current value); generated columns (GENERATED ALWAYS AS (...)
// STORED); PRIMARY KEY, UNIQUE, CHECK and EXCLUDE constraints with their names; the other
// indexes; REPLICA IDENTITY; the owner and the ACLs of the table, its columns and the sequences
// it creates (so the application's roles keep working on the copy; CheckRolesOnTarget refuses
// what it cannot reproduce). Not reproduced, and so refused: see CheckClonable.
// Not compared and not reproduced (no effect on what rows are accepted): comments, storage
// parameters, statistics targets, column compression and storage; the grantor of a privilege
// (the owner grants it on the copy).
//
// Ids continue: ContinueSequencesPast sets a node's sequences past the ids other nodes handed
// out, at a switch of writes (and back, at a rollback).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "pg_conn.h"
#include "shardline/key.h"
#include "shardline/shard_map.h"
#include "table_info.h"

namespace shardline::migrate {

// Whether the row-filter hash of `key_type` (HashSqlExpression) takes a column of
// `column_type` (format_type text) and hashes its values as the router hashes the key:
//   bigint: bigint, integer, smallint (implicitly cast to bigint: same value, same hash);
//   text:   text, character varying[(n)] (binary-coercible to text). Not character(n): its
//           values are read back blank-padded while the cast to text strips the padding, so a
//           key routed by the value read back would hash differently from the row's filter;
//   uuid:   uuid.
// Domains and other types are not accepted. (CheckShardable also refuses a text key under a
// nondeterministic collation: the filter would hash by collation, the router by bytes.) Pure.
bool KeyColumnTypeAccepted(KeyType key_type, std::string_view column_type);

// Appends one problem line per reason `info` (the table as described on `node`) cannot be
// sharded by range on the shard key: not a plain table (partitioned, view, ...), a partition,
// in an inheritance tree, unlogged or temporary (cannot be published), no shard-key column, or a
// shard-key column type the row filter hash cannot take (KeyColumnTypeAccepted). Each line names
// the node, the table, the column and what to do. Applies to every source and target table,
// whether or not it is to be created. Pure.
void CheckShardable(const TableInfo& info, const TableConfig& table, KeyType key_type,
                    std::string_view node, std::vector<std::string>& problems);

// CheckShardable, plus one problem line per part of the definition CloneTable cannot
// reproduce on a target:
//   - FOREIGN KEY constraints are refused, not silently left out: a sharded table's foreign key
//     would have to point at rows that may live on another node, and the rows of the two tables
//     arrive on the target in no common order, so a copy would either fail or not mean what it
//     means on the source. Drop the constraint, or create the target table yourself (`start`
//     then checks it for compatibility instead of cloning).
//   - constraint triggers and user triggers (shardline's own fence trigger excepted): their
//     functions and effects are not ours to copy;
//   - row level security (policies are not copied).
// Call it for tables that are to be created on a target; a line names the node the table was
// described on. Pure.
void CheckClonable(const TableInfo& info, const TableConfig& table, KeyType key_type,
                   std::string_view node, std::vector<std::string>& problems);

// The checks for a reference table (a full copy on every node, no shard key) that is to be
// created on a target with the source's rows: a plain permanent table, and CheckClonable's
// refusals of what CloneTable cannot reproduce. Pure.
void CheckReferenceClonable(const TableInfo& info, std::string_view node,
                            std::vector<std::string>& problems);

// Appends one problem line per role that the owner or ACLs of `info` (the table as described on
// node `source_node`, with its sequences) name and that does not exist on `target`'s server: a
// clone could not be given the same owner and grants. Each line names the role, what it owns or
// is granted, and what to do. Errors only when the target cannot be read.
absl::Status CheckRolesOnTarget(pg::Conn& target, const TableInfo& info,
                                std::string_view source_node,
                                std::vector<std::string>& problems);

// Creates `table` on `target` with the definition `info` describes (DescribeTable on `source`),
// in one transaction on the target, so that either the whole table appears or nothing does:
// the schemas it needs, the sequences its defaults call (created when missing, set to the
// source's current value; an existing one is left as it is), the table with its columns and
// constraints, its other indexes, its replica identity, and its identity sequences set to
// continue after the source's, its owner and ACLs (and those of the sequences it created); with
// `with_rows`, every row of the source's table too (a reference table, COPY piped from source
// to target in the same transaction). Expressions and definitions are the source's pg_get_* text; the
// target runs them under the source session's search_path so names resolve alike. Identifiers
// are quoted with the target's libpq escaping; the values of setval travel as parameters.
// Precondition: CheckClonable reported no problems (CloneTable refuses FailedPrecondition,
// naming the table and the constraint or trigger, rather than leave a part out).
// Returns OK once committed; AlreadyExists (nothing changed) when the table already exists on
// the target; FailedPrecondition as above; otherwise the failing statement's status (e.g. a
// type or extension missing on the target), prefixed with the target node and table. Reads
// the source's sequences (needs SELECT on them). Blocks for a handful of round trips per side.
absl::Status CloneTable(pg::Conn& source, pg::Conn& target, const TableInfo& info,
                        const TableConfig& table, bool with_rows = false);

// Ids continue on a node that takes over rows from other nodes (`to`, taking rows from `from`):
// every serial or identity sequence of every sharded table on `to` is set past the furthest of
// (each `from` node's sequence of the same column) and (the column's greatest value on `to`),
// in the sequence's direction; a sequence already past is never moved back. So no id `to`
// hands out afterwards is one it holds. In two parts, so that the part inside the write window
// is a few round trips whatever the table sizes:
//   PrepareContinueSequences, before the window: the catalogs of `to` and of every `from`
//     (which sequence each column draws from, whether an index leads with the column), and a
//     scan of `to`'s table for the columns no index leads (max() of those is a full scan);
//   ContinueSequencesPast, in the window (while `from` take no writes into the moved ranges and
//     `to` not yet): one statement per `from` node (its sequences' positions), one on `to` (its
//     positions and the indexed columns' extremes, index probes), one setval statement.
// Rows that arrive on `to` between the two parts with an id above every `from` sequence (an id
// the application chose itself, in an unindexed column) are not seen; a source would hand out
// such an id itself later, so the application does not write them. setval is not atomic with a
// nextval on `to` between the read and the set (none on a node that owns nothing of the table
// yet; a rollback's sources run it while their other ranges take writes).

// A sequence-backed column of a sharded table on the node taking rows over.
struct IdColumn {
  std::string table;     // as the map names it
  std::string column;    // unquoted
  std::string sequence;  // on the node, quoted and schema-qualified
  std::int64_t increment = 1;
  bool indexed = false;  // an index leads with the column: its max() is read in the window
  std::optional<std::int64_t> scanned;  // not indexed: its extreme, read before the window
  std::map<std::string, std::string> source_sequences;  // by `from` node: its sequence, quoted
};

// Before the window (see above). Errors name the node and table.
absl::StatusOr<std::vector<IdColumn>> PrepareContinueSequences(const std::vector<pg::Conn*>& from,
                                                               pg::Conn& to,
                                                               const ShardMap& map);

// In the window (see above), with what PrepareContinueSequences returned for the same nodes.
// Returns one line per sequence moved ("node n3: sequence public.orders_id_seq of orders.id:
// 1500 -> 101500"); errors name the node.
absl::StatusOr<std::vector<std::string>> ContinueSequencesPast(
    const std::vector<IdColumn>& columns, const std::vector<pg::Conn*>& from, pg::Conn& to);

}  // namespace shardline::migrate
