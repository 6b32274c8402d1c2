// `rollout start`: every precondition on every node and table, listed at once with nothing
// touched when one fails; then the target tables, the node objects, the migration's record, and
// the first wave's catch-up (rollout.h).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "catalog.h"
#include "status_text.h"
#include "plan_toml.h"
#include "rollout.h"
#include "rollout_context.h"
#include "admin_conn.h"
#include "rollout_node.h"
#include "rollout_store.h"
#include "rollout_waves.h"
#include "table_clone.h"
#include "table_info.h"

namespace shardline::migrate {
namespace {

// max_sync_workers_per_subscription's default: table-sync workers (and slots) per subscription
// during an initial copy.
constexpr int kSyncWorkersPerSubscription = 2;

// Appends to `problems` whatever keeps `conn` (node `name`) from taking part.
// Appends to `problems` whatever keeps `conn` (node `name`) from taking part, `need` being what
// the rollout will use of its replication capacity at its peak.
void CheckNode(pg::Conn& conn, const ReplicationNeed& need, std::vector<std::string>& problems) {
  auto r = conn.Exec(
      "SELECT current_setting('wal_level'), r.rolsuper, r.rolreplication, "
      "has_database_privilege(current_database(), 'CREATE'), "
      "current_setting('max_replication_slots')::int - (SELECT count(*) FROM "
      "pg_replication_slots), current_setting('max_wal_senders')::int - (SELECT count(*) FROM "
      "pg_stat_replication), current_setting('server_version_num')::int, "
      "current_setting('max_logical_replication_workers')::int - (SELECT count(*) FROM "
      "pg_stat_subscription WHERE pid IS NOT NULL) "
      "FROM pg_roles r WHERE r.rolname = current_user");
  if (!r.ok()) {
    problems.emplace_back(Msg(r.status()));
    return;
  }
  const std::string& n = conn.node();
  if (r->Text(0, 0) != "logical") {
    problems.push_back(
        fmt::format("node {}: wal_level is {}; logical replication needs "
                    "wal_level = logical (set it and restart the server)",
                    n, r->Text(0, 0)));
  }
  if (r->Text(0, 1) != "t") {
    problems.push_back(fmt::format(
        "node {}: the role connecting is not a superuser; PostgreSQL 15 requires one to create "
        "subscriptions{}",
        n, r->Text(0, 2) == "t" ? "" : " (it lacks REPLICATION too)"));
  }
  if (r->Text(0, 3) != "t") {
    problems.push_back(
        fmt::format("node {}: no CREATE privilege on the database (needed for publications)", n));
  }
  if (r->Int64Or0(0, 4) < need.slots) {
    problems.push_back(
        fmt::format("node {}: {} free replication slot(s), {} needed at the rollout's peak "
                    "(raise max_replication_slots, drop unused slots, or use fewer waves)",
                    n, r->Int64Or0(0, 4), need.slots));
  }
  if (r->Int64Or0(0, 5) < need.slots) {
    problems.push_back(
        fmt::format("node {}: {} free WAL sender(s), {} needed at the rollout's peak (raise "
                    "max_wal_senders)",
                    n, r->Int64Or0(0, 5), need.slots));
  }
  if (r->Int64Or0(0, 7) < need.workers) {
    problems.push_back(fmt::format(
        "node {}: {} free logical replication worker(s), {} needed at the rollout's peak (raise "
        "max_logical_replication_workers, and max_worker_processes with it; or use fewer "
        "waves)",
        n, r->Int64Or0(0, 7), need.workers));
  }
  if (r->Int64Or0(0, 6) < 150000) {
    problems.push_back(
        fmt::format("node {}: PostgreSQL {} has no publication row filters; 15 or "
                    "later is needed",
                    n, r->Int64Or0(0, 6)));
  }
}

// Replica identity and key checks for a table on a node that will publish it.
void CheckPublishable(const TableInfo& info, const TableConfig& table, std::string_view node,
                      std::vector<std::string>& problems) {
  auto key = ResolveKey(info, table, node);
  if (!key.ok()) {
    problems.emplace_back(Msg(key.status()));
    return;
  }
  if (info.replica_identity == 'f') return;
  if (info.replica_identity != 'd') {
    problems.push_back(fmt::format(
        "node {}: table {} has REPLICA IDENTITY {}; a row filter on the shard key needs the "
        "key in the replica identity: use the primary key (DEFAULT) or FULL",
        node, table.name, info.replica_identity == 'n' ? "NOTHING" : "USING INDEX"));
    return;
  }
  if (info.primary_key.empty() || std::find(info.primary_key.begin(), info.primary_key.end(),
                                            table.key) == info.primary_key.end()) {
    problems.push_back(fmt::format(
        "node {}: table {}: the primary key ({}) does not contain the shard key {}, so UPDATE "
        "and DELETE could not be filtered by range; add it to the key or set REPLICA IDENTITY "
        "FULL",
        node, table.name, fmt::join(info.primary_key, ", "), table.key));
  }
}

// Warns (a log line, not a refusal) about shard-key and primary-key columns that draw from a
// sequence (serial, identity): the application may take them for globally unique ids, which a
// per-node sequence is not.
void WarnPerNodeSequences(const TableInfo& info, const TableConfig& table, std::string_view node,
                          const std::function<void(const std::string&)>& log) {
  for (const ColumnInfo& c : info.columns) {
    if (c.sequences.empty()) continue;
    const bool pk = std::find(info.primary_key.begin(), info.primary_key.end(), c.name) !=
                    info.primary_key.end();
    if (c.name != table.key && !pk) continue;
    const std::string what =
        c.identity != '\0'
            ? fmt::format("is an identity column (sequence {}.{})", c.sequences.front().schema,
                          c.sequences.front().name)
            : fmt::format("defaults to {}", c.default_expr);
    log(fmt::format("warning: node {}: table {}: {} {} {}, a per-node sequence: unique per node, "
                    "not across nodes; use Router::NextId for global ids",
                    node, table.name, c.name == table.key ? "shard key" : "primary-key column",
                    c.name, what));
  }
}

// What `start` learns before it changes anything: the nodes' connections, the problems found
// (all listed at once), the source definition of each table, and what to create where.
struct StartPlan {
  StartPlan(const RolloutOptions& o, const ParsedPlan& p,
            std::function<void(const std::string&)> l)
      : options(o), plan(p), result(*p.result_map), log(std::move(l)) {}

  const RolloutOptions& options;
  const ParsedPlan& plan;
  const ShardMap& result;
  std::function<void(const std::string&)> log;
  std::vector<std::vector<std::size_t>> waves;
  std::set<std::string> sources, targets;
  std::map<std::string, std::unique_ptr<pg::Conn>> conns;
  std::vector<std::string> problems;
  std::map<std::string, TableInfo> source_info;       // by table, from some source
  std::map<std::string, std::string> source_of_info;  // by table: that source
  std::vector<std::pair<std::string, const TableConfig*>> to_create;             // (target, table)
  std::vector<std::pair<std::string, const TableConfig*>> references_to_create;  // likewise

  // A failed read of a table's definition, as a problem.
  void TableReadFailed(const absl::Status& s, const std::string& node, const TableConfig& t) {
    problems.emplace_back(Msg(ExplainTimeout(
        Annotate(s, fmt::format("node {}: reading table {}", node, t.name)), options)));
  }
};

// The catalog: the plan must start from the current map, and no other rollout may run.
absl::Status CheckCatalog(pg::Conn& cat, Catalog& catalog, StartPlan& sp) {
  auto current = catalog.CurrentVersion();
  if (!current.ok()) return current.status();
  if (*current != sp.plan.plan.source_map_version) {
    sp.problems.push_back(fmt::format(
        "the plan was made from map version {} but the catalog is at version {}: make a new "
        "plan (`shardline rebalance plan`)",
        sp.plan.plan.source_map_version, *current));
  }
  auto active = ActiveMigration(cat);
  if (!active.ok()) return active.status();
  if (*active > 0) {
    sp.problems.push_back(fmt::format(
        "migration {0} is still active: continue it (`shardline rollout status` says how) or "
        "end it (rollback, abort) first",
        *active));
  }
  return absl::OkStatus();
}

// Nodes: connect, server settings, privileges, and the replication capacity every wave and
// pair will need at its peak (slots and WAL senders as a publisher, workers as a subscriber).
void ConnectAndCheckNodes(StartPlan& sp) {
  for (const RangeMove& m : sp.plan.plan.moves) {
    sp.sources.insert(m.from);
    sp.targets.insert(m.to);
  }
  const std::map<std::string, ReplicationNeed> needs =
      ReplicationNeeds(sp.plan.plan.moves, sp.waves, kSyncWorkersPerSubscription);
  for (const auto& [name, need] : needs) {
    const int i = sp.result.NodeIndex(name);
    auto c = ConnectAdmin(sp.result.nodes()[static_cast<std::size_t>(i)]);
    if (!c.ok()) {
      sp.problems.emplace_back(Msg(c.status()));
      continue;
    }
    if (auto s = SetTimeouts(**c, sp.options); !s.ok()) {
      sp.problems.emplace_back(Msg(s));
      continue;
    }
    CheckNode(**c, need, sp.problems);
    sp.conns[name] = std::move(*c);
  }
}

// Each subscriber's server must reach its publisher with the map's connection string, in both
// directions (forward: the target subscribes to the source; reverse, after the switch: the
// source to the target). Probed now rather than found out in the write window.
void ProbeReplicationPaths(StartPlan& sp) {
  std::set<std::pair<std::string, std::string>> pairs;
  for (const RangeMove& m : sp.plan.plan.moves) pairs.insert({m.from, m.to});
  // The tool's connection strings (admin_dsn when given): a subscription must reach the server
  // itself. A node whose AdminDsn is refused was named above already (ConnectAdmin).
  auto dsn_of = [&](const std::string& node) -> std::string {
    const NodeConfig& n = sp.result.nodes()[static_cast<std::size_t>(sp.result.NodeIndex(node))];
    return AdminDsn(n).value_or(n.dsn);
  };
  for (const auto& [from, to] : pairs) {
    for (const auto& [subscriber, publisher] : {std::pair(to, from), std::pair(from, to)}) {
      if (!sp.conns.count(subscriber)) continue;
      if (auto s = ProbeReplicationConnection(*sp.conns[subscriber], publisher,
                                              dsn_of(publisher));
          !s.ok()) {
        sp.problems.emplace_back(Msg(s));
      }
    }
  }
}

// Sharded tables: on every source as a publisher; on every target present and compatible (and
// publishable, for reverse replication), or to be created like the source's.
void CheckShardedTables(StartPlan& sp) {
  for (const TableConfig& t : sp.result.tables()) {
    if (t.reference) continue;
    for (const auto& s : sp.sources) {
      if (!sp.conns.count(s)) continue;
      auto info = DescribeTable(*sp.conns[s], t.name);
      if (!info.ok()) {
        sp.TableReadFailed(info.status(), s, t);
        continue;
      }
      CheckShardable(*info, t, sp.result.key_type(), s, sp.problems);
      CheckPublishable(*info, t, s, sp.problems);
      WarnPerNodeSequences(*info, t, s, sp.log);
      if (!sp.source_info.count(t.name)) {
        sp.source_info[t.name] = *info;
        sp.source_of_info[t.name] = s;
      }
    }
    for (const auto& tg : sp.targets) {
      if (!sp.conns.count(tg) || !sp.source_info.count(t.name)) continue;
      const TableInfo& src = sp.source_info[t.name];
      const std::string& src_node = sp.source_of_info[t.name];
      auto info = DescribeTable(*sp.conns[tg], t.name);
      if (!info.ok()) {
        if (info.status().code() != absl::StatusCode::kNotFound) {
          sp.TableReadFailed(info.status(), tg, t);
          continue;
        }
        // Created like the source's, or refused now when that cannot be done faithfully.
        CheckClonable(src, t, sp.result.key_type(), src_node, sp.problems);
        if (auto s = CheckRolesOnTarget(*sp.conns[tg], src, src_node, sp.problems); !s.ok()) {
          sp.problems.emplace_back(Msg(s));
        }
        sp.to_create.push_back({tg, &t});
        continue;
      }
      if (auto s = CheckCompatible(src, *info, src_node, tg); !s.ok()) {
        sp.problems.emplace_back(Msg(s));
      }
      CheckShardable(*info, t, sp.result.key_type(), tg, sp.problems);
      CheckPublishable(*info, t, tg, sp.problems);
    }
  }
}

// Reference tables (a full copy on every node): on every target present and compatible with a
// source's, or created like it with its rows (joins and fan-outs over them work there).
void CheckReferenceTables(StartPlan& sp) {
  for (const TableConfig& t : sp.result.tables()) {
    if (!t.reference) continue;
    for (const auto& s : sp.sources) {
      if (!sp.conns.count(s) || sp.source_info.count(t.name)) continue;
      auto info = DescribeTable(*sp.conns[s], t.name);
      if (info.ok()) {
        sp.source_info[t.name] = *info;
        sp.source_of_info[t.name] = s;
      } else if (info.status().code() != absl::StatusCode::kNotFound) {
        sp.TableReadFailed(info.status(), s, t);
      }
    }
    if (!sp.source_info.count(t.name)) {
      sp.log(fmt::format("warning: reference table {} exists on none of the sources ({}); it "
                         "is neither checked nor created on the targets",
                         t.name, fmt::join(sp.sources, ", ")));
      continue;
    }
    const TableInfo& src = sp.source_info[t.name];
    const std::string& src_node = sp.source_of_info[t.name];
    for (const auto& tg : sp.targets) {
      if (!sp.conns.count(tg)) continue;
      auto info = DescribeTable(*sp.conns[tg], t.name);
      if (info.ok()) {
        if (auto s = CheckCompatible(src, *info, src_node, tg); !s.ok()) {
          sp.problems.push_back(fmt::format("reference {}", Msg(s)));
        }
        continue;
      }
      if (info.status().code() != absl::StatusCode::kNotFound) {
        sp.TableReadFailed(info.status(), tg, t);
        continue;
      }
      CheckReferenceClonable(src, src_node, sp.problems);
      if (auto s = CheckRolesOnTarget(*sp.conns[tg], src, src_node, sp.problems); !s.ok()) {
        sp.problems.emplace_back(Msg(s));
      }
      sp.references_to_create.push_back({tg, &t});
    }
  }
}

// Everything holds: create what is missing (a reference table with the source's rows, in the
// same transaction) and install the fence objects on every node.
absl::Status CreateTablesAndFences(StartPlan& sp) {
  for (const bool reference : {false, true}) {
    for (const auto& [target, table] : reference ? sp.references_to_create : sp.to_create) {
      const std::string& src = sp.source_of_info[table->name];
      if (auto s = CloneTable(*sp.conns[src], *sp.conns[target], sp.source_info[table->name],
                              *table, /*with_rows=*/reference);
          !s.ok()) {
        if (s.code() == absl::StatusCode::kAlreadyExists) {
          return absl::FailedPreconditionError(fmt::format(
              "node {}: table {} appeared while `rollout start` ran (someone created it); "
              "nothing was recorded: run start again so that it checks the table",
              target, table->name));
        }
        return s;
      }
      sp.log(fmt::format("created {}table {} on node {} like node {}'s{}",
                         reference ? "reference " : "", table->name, target, src,
                         reference ? ", with its rows" : ""));
    }
  }
  for (auto& [name, conn] : sp.conns) {
    if (auto s = InstallNodeObjects(*conn, sp.result); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Records the migration: its waves' ranges and cumulative shares (of bytes, or of moves when
// the plan has no sizes), and the plan's text. Returns its id.
absl::StatusOr<std::int64_t> RecordMigration(pg::Conn& cat, const RolloutStartOptions& start,
                                             const StartPlan& sp) {
  const std::vector<RangeMove>& moves = sp.plan.plan.moves;
  std::int64_t total_bytes = 0;
  for (const RangeMove& m : moves) total_bytes += std::max<std::int64_t>(m.bytes, 0);
  std::vector<RangeRecord> ranges;
  std::vector<double> shares;
  std::int64_t done_bytes = 0;
  std::size_t done_moves = 0;
  for (std::size_t w = 0; w < sp.waves.size(); ++w) {
    for (std::size_t i : sp.waves[w]) {
      const RangeMove& m = moves[i];
      ranges.push_back(
          RangeRecord{static_cast<int>(w + 1), m.lo, m.hi, m.from, m.to, m.rows, m.bytes});
      done_bytes += std::max<std::int64_t>(m.bytes, 0);
      ++done_moves;
    }
    shares.push_back(total_bytes > 0 ? 100.0 * static_cast<double>(done_bytes) /
                                           static_cast<double>(total_bytes)
                                     : 100.0 * static_cast<double>(done_moves) /
                                           static_cast<double>(moves.size()));
  }
  std::ifstream in(start.plan_path);
  std::stringstream text;
  text << in.rdbuf();
  return CreateMigration(cat, text.str(), sp.plan.plan.source_map_version, start.wave_percents,
                         start.soak_seconds, CurrentOsUser(), shares, ranges);
}

}  // namespace

absl::StatusOr<std::int64_t> StartRollout(const RolloutOptions& options,
                                          const RolloutStartOptions& start) {
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  auto plan = LoadPlanFile(start.plan_path);
  if (!plan.ok()) return plan.status();
  for (const auto& w : plan->warnings) log("warning: " + w);
  if (plan->plan.moves.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("plan {} moves nothing: there is nothing to roll out", start.plan_path));
  }
  auto catalog = Catalog::Create(options.catalog_dsn);
  if (!catalog.ok()) return catalog.status();
  if (auto s = (*catalog)->Init(Actor{CurrentOsUser()}); !s.ok()) return s.status();
  pg::Conn& cat = (*catalog)->conn();
  if (auto s = SetTimeouts(cat, options); !s.ok()) return s;
  // One start at a time per catalog, for the whole of its checks and creations (a session
  // lock: a killed start releases it); the catalog's unique index on the active migration is
  // what finally decides (CreateMigration).
  if (auto s = LockStart(cat); !s.ok()) return s;

  StartPlan sp(options, *plan, log);
  sp.waves = SplitIntoWaves(plan->plan.moves, start.wave_percents);
  // Every check runs and every problem is listed before anything is touched.
  if (auto s = CheckCatalog(cat, **catalog, sp); !s.ok()) return s;
  ConnectAndCheckNodes(sp);
  ProbeReplicationPaths(sp);
  CheckShardedTables(sp);
  CheckReferenceTables(sp);
  if (!sp.problems.empty()) {
    std::string text;
    for (const auto& p : sp.problems) text += "\n  " + p;
    return absl::FailedPreconditionError(fmt::format(
        "rollout of plan {} cannot start; nothing was changed:{}", start.plan_path, text));
  }
  if (auto s = CreateTablesAndFences(sp); !s.ok()) return s;
  auto id = RecordMigration(cat, start, sp);
  if (!id.ok()) return id.status();
  log(fmt::format("migration {}: {} move(s) in {} wave(s)", *id, plan->plan.moves.size(),
                  sp.waves.size()));
  if (auto s = AdvanceRollout(options, *id, start.auto_advance); !s.ok()) {
    return Annotate(
        s, fmt::format("migration {0} was recorded, and a step of it failed (once fixed, `shardline "
                       "rollout advance --migration {0}` runs it again; `rollout status` says "
                       "where it is; `rollout abort --migration {0}` ends it)",
                       *id));
  }
  return *id;
}

}  // namespace shardline::migrate
