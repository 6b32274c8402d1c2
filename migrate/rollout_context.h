// The context a rollout's phases run in (migrate/rollout_phases.h): one migration loaded from the
// catalog with its plan, the catalog connection (locked for this process, with the rollout's
// timeouts), one connection per node opened on first use (with the same timeouts), the names of
// the migration's replication objects and lock key, and the few actions every phase shares:
// record a step, publish a stage's map (refusing over someone else's), fence and drain, wait for
// routers, drop the replication objects. Every catalog statement it runs is in rollout_store.h.
//
// Single-threaded: one process drives a migration at a time (the catalog advisory lock taken by
// Open), and the connections are used from the calling thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "catalog.h"
#include "pg_conn.h"
#include "plan_toml.h"
#include "rollout.h"
#include "rollout_node.h"
#include "rollout_store.h"
#include "status_text.h"
#include "table_clone.h"

namespace shardline::migrate {

// A source -> target pair of a wave and the (coalesced) ranges it moves.
struct Pair {
  std::string source;
  std::string target;
  HashRangeList ranges;
};

// A pair of wave `w` with its open connections (owned by the context) and its replication
// object names, for the phases' per-pair steps:
//   auto open = ctx.Open(w, p);
//   if (!open.ok()) return open.status();
//   const auto& [s_conn, t_conn, fwd, rev] = *open;
struct OpenPair {
  pg::Conn* source;
  pg::Conn* target;
  std::string fwd;  // forward publication, slot and subscription (source -> target)
  std::string rev;  // reverse ones (target -> source)
};

using RolloutClock = std::chrono::steady_clock;

// Milliseconds since `t`.
double MsSince(RolloutClock::time_point t);

// `s` with what a timeout means and how to go on, when it is one: a lock wait past lock_timeout
// (SQLSTATE 55P03) or a statement past statement_timeout (57014); `s` unchanged otherwise.
absl::Status ExplainTimeout(const absl::Status& s, const RolloutOptions& o);

// "lo..hi, lo..hi" for messages.
std::string RangesText(const HashRangeList& ranges);

// Deletes the rows of `ranges` from every sharded table on `conn` (node `node`) in keyset
// batches (cleanup.h), with the fence trigger bypassed (session_replication_role = replica: the
// ranges are fenced on this node, and these deletes are the rollout's own). `current` is the
// catalog's current map: CleanupRanges refuses, before deleting anything, a range that it gives
// to `node` for writes or reads, so no row the map still routes to is deleted.
absl::StatusOr<std::int64_t> DeleteCopies(pg::Conn& conn, const ShardMap& current,
                                          const std::string& node, const HashRangeList& ranges,
                                          std::int64_t batch, double rows_per_second);

// statement_timeout and lock_timeout of a connection the engine opens, as session defaults
// (functions that set their own timeouts for a step restore these afterwards).
absl::Status SetTimeouts(pg::Conn& conn, const RolloutOptions& o);

class RolloutContext {
 public:
  // Connects to the catalog (upgrading its schema when `lock`), locks migration `id` for this
  // process and loads it with its plan. Without `lock` (status), reads only: it must not keep a
  // driver from starting. FailedPrecondition when another process drives the migration.
  static absl::StatusOr<std::unique_ptr<RolloutContext>> Open(const RolloutOptions& o,
                                                              std::int64_t id, bool lock = true);

  RolloutContext(const RolloutContext&) = delete;
  RolloutContext& operator=(const RolloutContext&) = delete;

  // Reads the migration's state again (after a step changed it).
  absl::Status Reload();

  const RolloutOptions& options() const { return o_; }
  std::int64_t id() const { return id_; }
  std::int64_t lock_key() const { return key_; }
  const MigrationState& state() const { return st_; }
  pg::Conn& catalog() { return catalog_->conn(); }
  absl::StatusOr<ParsedShardMap> LoadCurrentMap() { return catalog_->LoadCurrent(); }
  // The plan's resulting map: every node's DSN, the tables.
  const std::shared_ptr<const ShardMap>& Result() const { return plan_.result_map; }
  // The plan's nodes of `role` (NodeRole::kAdded: new nodes; kRemoved: drained ones).
  std::vector<std::string> PlanNodes(NodeRole role) const { return NodesWithRole(plan_.plan, role); }

  // OK when `command` may act on the migration now: any command while it runs; once a one-way
  // ending began, only the command that began it (a rerun continues it). FailedPrecondition
  // saying what began and what to run otherwise.
  absl::Status RequireState(std::string_view command) const;

  void Log(const std::string& line) const;
  // A named point between the actions of a step (tests kill the CLI there).
  void Point(const std::string& name) const;

  // Runs `fn` as step `step` of wave `wave` (0 = the migration), recorded before and after,
  // with last_error set from its outcome.
  absl::Status RunStep(int wave, const std::string& step, const std::function<absl::Status()>& fn);

  // The connection to `node` (opened on first use, reopened when broken), with the timeouts.
  absl::StatusOr<pg::Conn*> Node(const std::string& node);
  // The connections to pair `p`'s source and target (Node of each).
  absl::StatusOr<std::pair<pg::Conn*, pg::Conn*>> Ends(const Pair& p);
  // Ends(p) and the pair's object names in wave `w`.
  absl::StatusOr<OpenPair> Open(int w, const Pair& p);
  // The connections to the other ends of `pairs`, each once: by target node its sources
  // (`by_target`), or by source node its targets.
  absl::StatusOr<std::map<std::string, std::vector<pg::Conn*>>> OtherEnds(
      const std::vector<Pair>& pairs, bool by_target);
  // A new connection to `node` of its own (the gate's pause and snapshots).
  absl::StatusOr<std::unique_ptr<pg::Conn>> Connect(const std::string& node) const;
  // The connection string the tool (and a subscription on another node) uses for `node`: its
  // admin_dsn when the map gives one (AdminDsn), else its dsn.
  std::string Dsn(const std::string& node) const;

  std::vector<int> AllWaves() const;
  // The source -> target pairs of wave `wave`, each with its ranges coalesced.
  std::vector<Pair> Pairs(int wave) const;
  // The moving ranges of `waves`, coalesced, by source / by target node.
  std::map<std::string, HashRangeList> RangesBySource(const std::vector<int>& waves) const;
  std::map<std::string, HashRangeList> RangesByTarget(const std::vector<int>& waves) const;
  // The name of wave `wave`'s forward or reverse replication objects of pair `p`.
  std::string Name(int wave, const Pair& p, bool reverse) const;
  std::vector<WaveStep> Steps() const;

  // Publishes the map for `steps` unless the current map already says the same. Returns the
  // version that holds it. FailedPrecondition, publishing nothing, when the current map is not
  // the one this migration published last (someone else published in between): overwriting it
  // would undo their change, or route writes where no rows are.
  // `drop_nodes` leave the published map when they own and serve nothing in it (WithoutNodes):
  // the plan's drained nodes at the end of cleanup, its added nodes at the end of a rollback.
  absl::StatusOr<std::int64_t> PublishStage(const std::vector<WaveStep>& steps,
                                            const std::string& comment,
                                            const std::vector<std::string>& drop_nodes = {});

  // Fences `ranges` on `conn` for wave `w` (under the pause lock, after waiting for writer
  // transactions that predate the moving marks) and returns the WAL position after the fence:
  // every write into the ranges that the node accepted, of any isolation level, is before it.
  // No session is waited for or terminated after the fence: a transaction whose snapshot
  // predates it is refused by the node if it writes (schemas/node.sql, the fence epoch), and
  // one that wrote into the ranges before it held the pause lock, which the fence waited for.
  absl::StatusOr<std::string> Fence(pg::Conn& conn, const HashRangeList& ranges, int w,
                                    std::string_view why);

  // Raises the map epoch of every sharded table on `nodes` to `version` (schemas/node.sql): a
  // statement a router sends on an older map is refused there, whether or not it matches rows.
  absl::Status RaiseMapEpochs(const std::set<std::string>& nodes, std::int64_t version,
                              const std::string& why);

  // Ids continue on the nodes of one side of `pairs` (the targets, `on_targets`, taking rows
  // from their sources; or the sources taking them back from their targets): PrepareIds before
  // the nodes are fenced (catalogs and scans), ContinueIds once the side has every row and
  // before it takes writes (a few round trips per node), logging each sequence moved after
  // `why`. See table_clone.h (PrepareContinueSequences, ContinueSequencesPast).
  using IdColumnsByNode = std::map<std::string, std::vector<IdColumn>>;
  absl::StatusOr<IdColumnsByNode> PrepareIds(const std::vector<Pair>& pairs, bool on_targets);
  absl::Status ContinueIds(const std::vector<Pair>& pairs, bool on_targets,
                           const IdColumnsByNode& ids, std::string_view why);

  // Waits (at most replica_wait in all) until every read replica the plan's map lists for each
  // of `nodes` has replayed past that node's WAL position now (replica_wait.h). Errors name the
  // replica and its lag, say that `what` was refused and nothing published, and what to run.
  absl::Status WaitReplicas(const std::set<std::string>& nodes, const std::string& what);

  // Waits (at most router_wait) until every live router applies `version` (or later).
  // DeadlineExceeded naming the routers behind.
  absl::Status WaitRouters(std::int64_t version);

  // Drops every subscription, publication and slot of the migration on every node involved.
  absl::Status DropAllReplication();

 private:
  RolloutContext(const RolloutOptions& o, std::unique_ptr<Catalog> catalog, std::int64_t id)
      : o_(o), catalog_(std::move(catalog)), id_(id) {}

  std::map<std::string, HashRangeList> RangesByNode(const std::vector<int>& waves,
                                                    std::string Pair::*node) const;

  const RolloutOptions& o_;
  std::unique_ptr<Catalog> catalog_;
  const std::int64_t id_;
  MigrationState st_;
  bool plan_loaded_ = false;
  ParsedPlan plan_;
  std::string prefix_;
  std::int64_t key_ = 0;
  std::vector<int> move_waves_;
  std::map<std::string, std::unique_ptr<pg::Conn>> conns_;
};

}  // namespace shardline::migrate
