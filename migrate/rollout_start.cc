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

  std::vector<std::string> problems;
  // The catalog: the plan must start from the current map, and no other rollout may run.
  auto current = (*catalog)->CurrentVersion();
  if (!current.ok()) return current.status();
  if (*current != plan->plan.source_map_version) {
    problems.push_back(fmt::format(
        "the plan was made from map version {} but the catalog is at version {}: make a new "
        "plan (`shardline rebalance plan`)",
        plan->plan.source_map_version, *current));
  }
  auto active = ActiveMigration(cat);
  if (!active.ok()) return active.status();
  if (*active > 0) {
    problems.push_back(fmt::format(
        "migration {0} is still active: continue it (`shardline rollout status` says how) or "
        "end it (rollback, abort) first",
        *active));
  }


  // Waves.
  const std::vector<std::vector<std::size_t>> waves =
      SplitIntoWaves(plan->plan.moves, start.wave_percents);
  const ShardMap& result = *plan->result_map;

  // Nodes: connect, server settings, privileges, and the replication capacity every wave and
  // pair will need at its peak (slots and WAL senders as a publisher, workers as a subscriber).
  std::map<std::string, std::unique_ptr<pg::Conn>> conns;
  std::set<std::string> sources, targets;
  for (const RangeMove& m : plan->plan.moves) {
    sources.insert(m.from);
    targets.insert(m.to);
  }
  const std::map<std::string, ReplicationNeed> needs =
      ReplicationNeeds(plan->plan.moves, waves, kSyncWorkersPerSubscription);
  for (const auto& [name, need] : needs) {
    const int i = result.NodeIndex(name);
    auto c = ConnectAdmin(result.nodes()[static_cast<std::size_t>(i)]);
    if (!c.ok()) {
      problems.emplace_back(Msg(c.status()));
      continue;
    }
    if (auto s = SetTimeouts(**c, options); !s.ok()) {
      problems.emplace_back(Msg(s));
      continue;
    }
    CheckNode(**c, need, problems);
    conns[name] = std::move(*c);
  }
  // Each subscriber's server must reach its publisher with the map's connection string, in
  // both directions (forward: the target subscribes to the source; reverse, after the switch:
  // the source to the target). Probed now rather than found out in the write window.
  std::set<std::pair<std::string, std::string>> pairs;
  for (const RangeMove& m : plan->plan.moves) pairs.insert({m.from, m.to});
  // The tool's connection strings (admin_dsn when given): a subscription must reach the server
  // itself. A node whose AdminDsn is refused was named above already (ConnectAdmin).
  auto dsn_of = [&](const std::string& node) -> std::string {
    const NodeConfig& n = result.nodes()[static_cast<std::size_t>(result.NodeIndex(node))];
    return AdminDsn(n).value_or(n.dsn);
  };
  for (const auto& [from, to] : pairs) {
    for (const auto& [subscriber, publisher] : {std::pair(to, from), std::pair(from, to)}) {
      if (!conns.count(subscriber)) continue;
      if (auto s = ProbeReplicationConnection(*conns[subscriber], publisher, dsn_of(publisher));
          !s.ok()) {
        problems.emplace_back(Msg(s));
      }
    }
  }
  // Tables: on every source as a publisher; on every target present and compatible (and
  // publishable, for reverse replication), or to be created.
  std::vector<std::pair<std::string, const TableConfig*>> to_create;  // (target, table)
  std::map<std::string, TableInfo> source_info;                       // by table, from some source
  std::map<std::string, std::string> source_of_info;                  // by table: that source
  for (const TableConfig& t : result.tables()) {
    if (t.reference) continue;
    for (const auto& s : sources) {
      if (!conns.count(s)) continue;
      auto info = DescribeTable(*conns[s], t.name);
      if (!info.ok()) {
        problems.emplace_back(Msg(ExplainTimeout(
            Annotate(info.status(), fmt::format("node {}: reading table {}", s, t.name)),
            options)));
        continue;
      }
      CheckShardable(*info, t, result.key_type(), s, problems);
      CheckPublishable(*info, t, s, problems);
      WarnPerNodeSequences(*info, t, s, log);
      if (!source_info.count(t.name)) {
        source_info[t.name] = *info;
        source_of_info[t.name] = s;
      }
    }
    for (const auto& tg : targets) {
      if (!conns.count(tg) || !source_info.count(t.name)) continue;
      auto info = DescribeTable(*conns[tg], t.name);
      if (!info.ok()) {
        if (info.status().code() == absl::StatusCode::kNotFound) {
          // Created like the source's, or refused now when that cannot be done faithfully.
          CheckClonable(source_info[t.name], t, result.key_type(), source_of_info[t.name],
                        problems);
          if (auto s = CheckRolesOnTarget(*conns[tg], source_info[t.name],
                                          source_of_info[t.name], problems);
              !s.ok()) {
            problems.emplace_back(Msg(s));
          }
          to_create.push_back({tg, &t});
          continue;
        }
        problems.emplace_back(Msg(ExplainTimeout(
            Annotate(info.status(), fmt::format("node {}: reading table {}", tg, t.name)),
            options)));
        continue;
      }
      if (auto s = CheckCompatible(source_info[t.name], *info, source_of_info[t.name], tg);
          !s.ok()) {
        problems.emplace_back(Msg(s));
      }
      CheckShardable(*info, t, result.key_type(), tg, problems);
      CheckPublishable(*info, t, tg, problems);
    }
  }
  // Reference tables (a full copy on every node): on every target present and compatible with
  // a source's, or created like it with its rows (joins and fan-outs over them work there).
  std::vector<std::pair<std::string, const TableConfig*>> references_to_create;
  for (const TableConfig& t : result.tables()) {
    if (!t.reference) continue;
    for (const auto& s : sources) {
      if (!conns.count(s) || source_info.count(t.name)) continue;
      auto info = DescribeTable(*conns[s], t.name);
      if (info.ok()) {
        source_info[t.name] = *info;
        source_of_info[t.name] = s;
      } else if (info.status().code() != absl::StatusCode::kNotFound) {
        problems.emplace_back(Msg(ExplainTimeout(
            Annotate(info.status(), fmt::format("node {}: reading table {}", s, t.name)),
            options)));
      }
    }
    if (!source_info.count(t.name)) {
      log(fmt::format("warning: reference table {} exists on none of the sources ({}); it is "
                      "neither checked nor created on the targets",
                      t.name, fmt::join(sources, ", ")));
      continue;
    }
    const TableInfo& src = source_info[t.name];
    for (const auto& tg : targets) {
      if (!conns.count(tg)) continue;
      auto info = DescribeTable(*conns[tg], t.name);
      if (info.ok()) {
        if (auto s = CheckCompatible(src, *info, source_of_info[t.name], tg); !s.ok()) {
          problems.push_back(fmt::format("reference {}", Msg(s)));
        }
        continue;
      }
      if (info.status().code() != absl::StatusCode::kNotFound) {
        problems.emplace_back(Msg(ExplainTimeout(
            Annotate(info.status(), fmt::format("node {}: reading table {}", tg, t.name)),
            options)));
        continue;
      }
      CheckReferenceClonable(src, source_of_info[t.name], problems);
      if (auto s = CheckRolesOnTarget(*conns[tg], src, source_of_info[t.name], problems);
          !s.ok()) {
        problems.emplace_back(Msg(s));
      }
      references_to_create.push_back({tg, &t});
    }
  }
  if (!problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += "\n  " + p;
    return absl::FailedPreconditionError(fmt::format(
        "rollout of plan {} cannot start; nothing was changed:{}", start.plan_path, text));
  }

  // Everything holds: create what is missing, install the fence objects, record the migration.
  // A reference table is created with the source's rows in the same transaction.
  for (const bool reference : {false, true}) {
    for (const auto& [target, table] : reference ? references_to_create : to_create) {
      const std::string& src = source_of_info[table->name];
      if (auto s = CloneTable(*conns[src], *conns[target], source_info[table->name], *table,
                              /*with_rows=*/reference);
          !s.ok()) {
        if (s.code() == absl::StatusCode::kAlreadyExists) {
          return absl::FailedPreconditionError(fmt::format(
              "node {}: table {} appeared while `rollout start` ran (someone created it); "
              "nothing was recorded: run start again so that it checks the table",
              target, table->name));
        }
        return s;
      }
      log(fmt::format("created {}table {} on node {} like node {}'s{}",
                      reference ? "reference " : "", table->name, target, src,
                      reference ? ", with its rows" : ""));
    }
  }
  for (auto& [name, conn] : conns) {
    if (auto s = InstallNodeObjects(*conn, result); !s.ok()) return s;
  }

  std::int64_t total_bytes = 0;
  for (const RangeMove& m : plan->plan.moves) total_bytes += std::max<std::int64_t>(m.bytes, 0);
  std::vector<RangeRecord> ranges;
  std::vector<double> shares;
  std::int64_t done_bytes = 0;
  std::size_t done_moves = 0;
  for (std::size_t w = 0; w < waves.size(); ++w) {
    for (std::size_t i : waves[w]) {
      const RangeMove& m = plan->plan.moves[i];
      ranges.push_back(
          RangeRecord{static_cast<int>(w + 1), m.lo, m.hi, m.from, m.to, m.rows, m.bytes});
      done_bytes += std::max<std::int64_t>(m.bytes, 0);
      ++done_moves;
    }
    shares.push_back(total_bytes > 0 ? 100.0 * static_cast<double>(done_bytes) /
                                           static_cast<double>(total_bytes)
                                     : 100.0 * static_cast<double>(done_moves) /
                                           static_cast<double>(plan->plan.moves.size()));
  }
  std::ifstream in(start.plan_path);
  std::stringstream text;
  text << in.rdbuf();
  auto id = CreateMigration(cat, text.str(), plan->plan.source_map_version, start.wave_percents,
                            start.soak_seconds, CurrentOsUser(), shares, ranges);
  if (!id.ok()) return id.status();
  log(fmt::format("migration {}: {} move(s) in {} wave(s)", *id, plan->plan.moves.size(),
                  waves.size()));
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
