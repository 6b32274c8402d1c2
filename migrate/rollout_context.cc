// The context of a rollout's phases: see rollout_context.h.
#include "rollout_context.h"
#include "admin_conn.h"
#include "replica_wait.h"
#include "status_text.h"

#include <fmt/format.h>

#include <algorithm>

#include <set>
#include <thread>

#include "absl/strings/cord.h"
#include "cleanup.h"
#include "shardline/errors.h"
#include "rollout_waves.h"
#include "shardline/dsn.h"

namespace shardline::migrate {
namespace {

using Clock = RolloutClock;

}  // namespace

double MsSince(RolloutClock::time_point t) {
  return std::chrono::duration<double, std::milli>(RolloutClock::now() - t).count();
}

absl::Status ExplainTimeout(const absl::Status& s, const RolloutOptions& o) {
  const std::optional<std::string> state = SqlStateOf(s);
  std::string why;
  if (state == "55P03") {
    why = fmt::format(
        " (waited longer than lock_timeout = {} ms for a lock: a transaction holds it; run the "
        "command again once it ends, or raise --lock-timeout)",
        o.lock_timeout.count());
  } else if (state == "57014") {
    why = fmt::format(
        " (ran longer than statement_timeout = {} ms, or was cancelled; run the command again, "
        "with a larger --statement-timeout if the step is long)",
        o.statement_timeout.count());
  } else {
    return s;
  }
  absl::Status out(s.code(), fmt::format("{}{}", Msg(s), why));
  s.ForEachPayload([&](auto url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

absl::StatusOr<std::int64_t> DeleteCopies(pg::Conn& conn, const ShardMap& current,
                                          const std::string& node, const HashRangeList& ranges,
                                          std::int64_t batch, double rows_per_second) {
  if (ranges.empty()) return 0;
  if (auto r = conn.Exec("SET session_replication_role = replica"); !r.ok()) {
    return Annotate(r.status(), fmt::format("node {}: bypassing the fence to delete moved "
                                               "rows needs superuser",
                                               node));
  }
  CleanupOptions co;
  co.batch = static_cast<std::size_t>(batch);
  co.rows_per_second = rows_per_second;
  co.node_may_be_absent = true;  // a rollback's added node or a cleanup's drained one left it
  absl::StatusOr<CleanupResult> cr = CleanupRanges(conn, current, node, ranges, co);
  (void)conn.Exec("RESET session_replication_role");
  if (!cr.ok()) return cr.status();
  return cr->deleted();
}

std::string RangesText(const HashRangeList& ranges) {
  std::string out;
  for (const auto& [lo, hi] : ranges)
    out += fmt::format("{}{}..{}", out.empty() ? "" : ", ", lo, hi);
  return out;
}

absl::Status SetTimeouts(pg::Conn& conn, const RolloutOptions& o) {
  auto r = conn.Exec(
      "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false)",
      {std::to_string(o.statement_timeout.count()), std::to_string(o.lock_timeout.count())});
  return r.ok() ? absl::OkStatus() : r.status();
}

absl::StatusOr<std::unique_ptr<RolloutContext>> RolloutContext::Open(const RolloutOptions& o,
                                                                     std::int64_t id, bool lock) {
  auto catalog = Catalog::Create(o.catalog_dsn);
  if (!catalog.ok()) return catalog.status();
  auto e = std::unique_ptr<RolloutContext>(new RolloutContext(o, std::move(*catalog), id));
  if (auto s = SetTimeouts(e->catalog_->conn(), o); !s.ok()) return s;
  if (lock) {
    // Brings an older catalog's schema up to date (the one-way states, published_version).
    if (auto s = e->catalog_->Init(Actor{CurrentOsUser()}); !s.ok()) return s.status();
  }
  if (auto s = e->Reload(); !s.ok()) return s;
  if (!lock) return e;
  if (auto s = LockMigration(e->catalog_->conn(), id, e->st_.migration.tag); !s.ok()) return s;
  if (auto s = e->Reload(); !s.ok()) return s;  // another process may have moved it on
  return e;
}

absl::Status RolloutContext::Reload() {
  auto st = LoadMigration(catalog_->conn(), id_);
  if (!st.ok()) return st.status();
  st_ = std::move(*st);
  if (!plan_loaded_) {
    auto plan = ParsePlanToml(st_.migration.plan_toml, fmt::format("migration {} plan", id_));
    if (!plan.ok()) return plan.status();
    plan_ = std::move(*plan);
    prefix_ = ReplicationPrefix(id_, st_.migration.tag);
    key_ = PauseLockKey(st_.migration.tag);
    plan_loaded_ = true;
  }
  move_waves_.assign(plan_.plan.moves.size(), -1);
  for (std::size_t i = 0; i < plan_.plan.moves.size(); ++i) {
    for (const RangeRecord& r : st_.ranges) {
      if (r.lo == plan_.plan.moves[i].lo) move_waves_[i] = r.wave - 1;
    }
  }
  return absl::OkStatus();
}

absl::Status RolloutContext::RequireState(std::string_view command) const {
  const std::string& state = st_.migration.state;
  if (state == kMigrationRunning) return absl::OkStatus();
  if (state == kMigrationCleaning) {
    if (command == "cleanup") return absl::OkStatus();
    return absl::FailedPreconditionError(fmt::format(
        "migration {0} is cleaning up: its cleanup has begun deleting the moved rows from the "
        "sources, so {1} is refused (there is no way back past that point); run `shardline "
        "rollout cleanup --migration {0}` to finish it",
        id_, command));
  }
  if (state == kMigrationRollingBack || state == kMigrationAborting) {
    const bool aborting = state == kMigrationAborting;
    if (command == "rollback" || (aborting && command == "abort")) return absl::OkStatus();
    return absl::FailedPreconditionError(fmt::format(
        "migration {0} is {1}: it has begun giving the ranges back to their sources, so {2} "
        "is refused; run `shardline rollout {3} --migration {0}` to finish it",
        id_, aborting ? "aborting" : "rolling back", command, aborting ? "abort" : "rollback"));
  }
  return absl::FailedPreconditionError(
      fmt::format("migration {} is {}: nothing to do", id_, state));
}

void RolloutContext::Log(const std::string& line) const {
  if (o_.log) o_.log(line);
}

void RolloutContext::Point(const std::string& name) const {
  if (o_.at_point_for_test) o_.at_point_for_test(name);
}

absl::Status RolloutContext::RunStep(int wave, const std::string& step,
                                     const std::function<absl::Status()>& fn) {
  auto step_id = BeginStep(catalog_->conn(), id_, wave, step);
  if (!step_id.ok()) return step_id.status();
  const auto start = Clock::now();
  Log(wave > 0 ? fmt::format("wave {}: {} ...", wave, step) : fmt::format("{} ...", step));
  absl::Status s = ExplainTimeout(fn(), o_);
  const std::string detail =
      s.ok() ? fmt::format("{:.0f} ms", MsSince(start)) : std::string(s.message());
  (void)EndStep(catalog_->conn(), *step_id, s.ok(), detail);
  if (!s.ok()) {
    (void)SetLastError(catalog_->conn(), id_,
                       wave > 0 ? fmt::format("wave {} {}: {}", wave, step, Msg(s))
                                : fmt::format("{}: {}", step, Msg(s)));
  } else {
    (void)SetLastError(catalog_->conn(), id_, "");
    Log(wave > 0 ? fmt::format("wave {}: {} done ({})", wave, step, detail)
                 : fmt::format("{} done ({})", step, detail));
  }
  return s;
}

absl::StatusOr<pg::Conn*> RolloutContext::Node(const std::string& node) {
  auto it = conns_.find(node);
  if (it != conns_.end() && it->second->IsOk()) return it->second.get();
  auto c = Connect(node);
  if (!c.ok()) return c.status();
  pg::Conn* raw = c->get();
  conns_[node] = std::move(*c);
  return raw;
}

absl::StatusOr<std::pair<pg::Conn*, pg::Conn*>> RolloutContext::Ends(const Pair& p) {
  auto source = Node(p.source);
  if (!source.ok()) return source.status();
  auto target = Node(p.target);
  if (!target.ok()) return target.status();
  return std::pair(*source, *target);
}

absl::StatusOr<OpenPair> RolloutContext::Open(int w, const Pair& p) {
  auto ends = Ends(p);
  if (!ends.ok()) return ends.status();
  return OpenPair{ends->first, ends->second, Name(w, p, false), Name(w, p, true)};
}

absl::StatusOr<std::map<std::string, std::vector<pg::Conn*>>> RolloutContext::OtherEnds(
    const std::vector<Pair>& pairs, bool by_target) {
  std::map<std::string, std::vector<pg::Conn*>> out;
  for (const Pair& p : pairs) {
    auto other = Node(by_target ? p.source : p.target);
    if (!other.ok()) return other.status();
    std::vector<pg::Conn*>& ends = out[by_target ? p.target : p.source];
    if (std::find(ends.begin(), ends.end(), *other) == ends.end()) ends.push_back(*other);
  }
  return out;
}

absl::StatusOr<RolloutContext::IdColumnsByNode> RolloutContext::PrepareIds(
    const std::vector<Pair>& pairs, bool on_targets) {
  auto others = OtherEnds(pairs, on_targets);
  if (!others.ok()) return others.status();
  IdColumnsByNode out;
  for (const auto& [node, from] : *others) {
    auto c = Node(node);
    if (!c.ok()) return c.status();
    auto columns = PrepareContinueSequences(from, **c, *Result());
    if (!columns.ok()) return columns.status();
    out[node] = *std::move(columns);
  }
  return out;
}

absl::Status RolloutContext::ContinueIds(const std::vector<Pair>& pairs, bool on_targets,
                                         const IdColumnsByNode& ids, std::string_view why) {
  auto others = OtherEnds(pairs, on_targets);
  if (!others.ok()) return others.status();
  for (const auto& [node, from] : *others) {
    auto c = Node(node);
    if (!c.ok()) return c.status();
    auto it = ids.find(node);
    if (it == ids.end()) continue;
    auto moved = ContinueSequencesPast(it->second, from, **c);
    if (!moved.ok()) return moved.status();
    for (const std::string& m : *moved) Log(fmt::format("{}: {}", why, m));
  }
  return absl::OkStatus();
}

absl::Status RolloutContext::WaitReplicas(const std::set<std::string>& nodes,
                                          const std::string& what) {
  const auto deadline = RolloutClock::now() + o_.replica_wait;
  for (const std::string& node : nodes) {
    const int i = Result()->NodeIndex(node);
    if (i < 0) continue;
    const NodeConfig& config = Result()->nodes()[static_cast<std::size_t>(i)];
    if (config.replicas.empty()) continue;
    auto c = Node(node);
    if (!c.ok()) return c.status();
    const auto t0 = RolloutClock::now();
    const auto left = std::max(std::chrono::milliseconds(0),
                               std::chrono::duration_cast<std::chrono::milliseconds>(
                                   deadline - RolloutClock::now()));
    if (auto s = WaitReplicasReplayed(
            **c, config, left, fmt::format("{} of migration {}: nothing was published", what, id_),
            fmt::format("Run the same `shardline rollout` command again once it replays (a "
                        "replica that cannot keep up: raise --replica-wait, {:g} s now); meanwhile "
                        "reads stay where they were",
                        static_cast<double>(o_.replica_wait.count()) / 1000.0));
        !s.ok()) {
      return s;
    }
    Log(fmt::format("{}: the {} read replica(s) of node {} replayed past its WAL position in "
                    "{:.0f} ms",
                    what, config.replicas.size(), node, MsSince(t0)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<pg::Conn>> RolloutContext::Connect(const std::string& node) const {
  const int i = Result()->NodeIndex(node);
  if (i < 0) {
    return absl::FailedPreconditionError(
        fmt::format("migration {}: node {} is not in the plan's map", id_, node));
  }
  auto c = ConnectAdmin(Result()->nodes()[static_cast<std::size_t>(i)]);
  if (!c.ok()) return c.status();
  // Our commits (marks, fences) flush the WAL at once: the walsender sends only flushed
  // WAL, and a WAL writer round (200 ms by default) would otherwise lengthen the windows.
  if (auto r = (*c)->Exec("SET synchronous_commit = on"); !r.ok()) return r.status();
  // DROP ... IF EXISTS and friends: their NOTICEs are noise on the CLI's stderr.
  if (auto r = (*c)->Exec("SET client_min_messages = warning"); !r.ok()) return r.status();
  // No statement waits without bound (a hung node, a lock held by a long transaction).
  if (auto s = SetTimeouts(**c, o_); !s.ok()) return s;
  return c;
}

std::string RolloutContext::Dsn(const std::string& node) const {
  // Connect() refused a node without one first (every step connects before subscribing).
  const NodeConfig& n = Result()->nodes()[static_cast<std::size_t>(Result()->NodeIndex(node))];
  return AdminDsn(n).value_or(n.dsn);
}

std::vector<int> RolloutContext::AllWaves() const {
  std::vector<int> out;
  for (const WaveRecord& w : st_.waves) out.push_back(w.wave);
  return out;
}

std::vector<Pair> RolloutContext::Pairs(int wave) const {
  std::map<std::pair<std::string, std::string>, HashRangeList> m;
  for (const RangeRecord& r : st_.ranges) {
    if (r.wave == wave) m[{r.source, r.target}].push_back({r.lo, r.hi});
  }
  std::vector<Pair> out;
  for (auto& [k, v] : m) out.push_back(Pair{k.first, k.second, CoalesceRanges(v)});
  return out;
}

std::map<std::string, HashRangeList> RolloutContext::RangesBySource(
    const std::vector<int>& waves) const {
  return RangesByNode(waves, &Pair::source);
}

std::map<std::string, HashRangeList> RolloutContext::RangesByTarget(
    const std::vector<int>& waves) const {
  return RangesByNode(waves, &Pair::target);
}

std::map<std::string, HashRangeList> RolloutContext::RangesByNode(const std::vector<int>& waves,
                                                                  std::string Pair::*node) const {
  std::map<std::string, HashRangeList> m;
  for (int w : waves) {
    for (const Pair& p : Pairs(w)) {
      auto& v = m[p.*node];
      v.insert(v.end(), p.ranges.begin(), p.ranges.end());
    }
  }
  for (auto& [k, v] : m) v = CoalesceRanges(v);
  return m;
}

std::string RolloutContext::Name(int wave, const Pair& p, bool reverse) const {
  return ReplicationName(prefix_, wave, Result()->NodeIndex(p.source),
                         Result()->NodeIndex(p.target), reverse);
}

std::vector<WaveStep> RolloutContext::Steps() const {
  std::vector<WaveStep> out;
  for (const WaveRecord& w : st_.waves) out.push_back(w.step);
  return out;
}

absl::StatusOr<std::int64_t> RolloutContext::PublishStage(
    const std::vector<WaveStep>& steps, const std::string& comment,
    const std::vector<std::string>& drop_nodes) {
  auto current = catalog_->LoadCurrent();
  if (!current.ok()) return current.status();
  const std::int64_t at = current->map->version();
  const ShardMapConfig desired = WithoutNodes(
      MapAtStage(plan_.plan.result, plan_.plan.moves, move_waves_, steps, at + 1), drop_nodes);
  if (SameMapContent(current->map->config(), desired)) {
    if (at != st_.migration.published_version) {  // published, then killed before recording
      if (auto s = SetPublishedVersion(catalog_->conn(), id_, at); !s.ok()) return s;
      st_.migration.published_version = at;
    }
    return at;
  }
  if (at != st_.migration.published_version) {
    // A revert to the migration's last map (its content current again) is the same map.
    auto ours = catalog_->Load(st_.migration.published_version);
    if (!ours.ok()) return ours.status();
    if (SameMapContent(current->map->config(), ours->map->config())) {
      if (auto s = SetPublishedVersion(catalog_->conn(), id_, at); !s.ok()) return s;
      st_.migration.published_version = at;
    }
  }
  if (at != st_.migration.published_version) {
    return absl::FailedPreconditionError(fmt::format(
        "migration {0}: the catalog's current map is version {1}, but the last map this "
        "migration published is version {2}: someone else published in between, and "
        "publishing over it would undo that change. Nothing was published. See `shardline "
        "map history`; to go on, make version {2}'s content current again (`shardline map "
        "revert --to {2}`) and run the command again",
        id_, at, st_.migration.published_version));
  }
  if (auto s = catalog_->Publish(desired, comment, Actor{CurrentOsUser()}); !s.ok()) return s;
  Log(fmt::format("published map version {} ({})", desired.version, comment));
  if (auto s = SetPublishedVersion(catalog_->conn(), id_, desired.version); !s.ok()) return s;
  st_.migration.published_version = desired.version;
  return desired.version;
}

absl::StatusOr<std::string> RolloutContext::Fence(pg::Conn& conn, const HashRangeList& ranges,
                                                  int w, std::string_view why) {
  if (auto s = WaitForPreMarkTransactions(conn, key_, std::chrono::seconds(10)); !s.ok()) {
    return s;
  }
  auto fence = FenceRanges(conn, *Result(), ranges, key_, o_.pause_lock_timeout,
                           fmt::format("rollout {} wave {}: {}", id_, w, why));
  if (!fence.ok()) return fence.status();
  return fence->lsn;
}

absl::Status RolloutContext::RaiseMapEpochs(const std::set<std::string>& nodes,
                                            std::int64_t version, const std::string& why) {
  for (const std::string& n : nodes) {
    auto c = Node(n);
    if (!c.ok()) return c.status();
    if (auto s = RaiseMapEpoch(**c, *Result(), version, why); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status RolloutContext::WaitRouters(std::int64_t version) {
  const auto deadline = Clock::now() + o_.router_wait;
  for (;;) {
    auto behind = LiveRoutersBehind(catalog_->conn(), version, o_.router_stale_after);
    if (!behind.ok()) return behind.status();
    if (behind->empty()) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      std::string list;
      for (std::size_t i = 0; i < behind->size() && i < 5; ++i) {
        list += (i ? ", " : "") + (*behind)[i];
      }
      return absl::DeadlineExceededError(fmt::format(
          "migration {}: {} live router(s) have not applied map version {} within {} s: {}; "
          "run the command again once they have",
          id_, behind->size(), version, o_.router_wait.count() / 1000, list));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

absl::Status RolloutContext::DropAllReplication() {
  for (const WaveRecord& w : st_.waves) {
    for (const Pair& p : Pairs(w.wave)) {
      auto ends = Ends(p);
      if (!ends.ok()) return ends.status();
      auto [s_conn, t_conn] = *ends;
      const std::string fwd = Name(w.wave, p, false);
      const std::string rev = Name(w.wave, p, true);
      if (auto s = DropSubscriptionIfExists(*s_conn, *t_conn, rev); !s.ok()) return s;
      if (auto s = DropSubscriptionIfExists(*t_conn, *s_conn, fwd); !s.ok()) return s;
      if (auto s = DropPublicationIfExists(*t_conn, rev); !s.ok()) return s;
      if (auto s = DropPublicationIfExists(*s_conn, fwd); !s.ok()) return s;
    }
  }
  std::set<std::string> nodes;
  for (const RangeRecord& r : st_.ranges) {
    nodes.insert(r.source);
    nodes.insert(r.target);
  }
  for (const std::string& n : nodes) {
    auto c = Node(n);
    if (!c.ok()) return c.status();
    auto dropped = DropSlotsWithPrefix(**c, prefix_);
    if (!dropped.ok()) return dropped.status();
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
