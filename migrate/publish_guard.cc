// Checks before a hand publish: see publish_guard.h.
#include "publish_guard.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "admin_conn.h"
#include "rollout_context.h"
#include "rollout_node.h"
#include "rollout_store.h"
#include "rollout_waves.h"
#include "shardline/errors.h"

namespace shardline::migrate {
namespace {

// The active migration as a finding, or "" when none (or the catalog has no rollout tables).
absl::StatusOr<std::string> ActiveMigrationFinding(Catalog& catalog, const ShardMap& candidate,
                                                   bool force) {
  absl::StatusOr<std::int64_t> id = ActiveMigration(catalog.conn());
  if (!id.ok()) {
    if (SqlStateOf(id.status()) == "42P01") return std::string();  // no rollout tables yet
    return id.status();
  }
  if (*id == 0) return std::string();
  absl::StatusOr<MigrationState> st = LoadMigration(catalog.conn(), *id);
  if (!st.ok()) return st.status();
  const MigrationRecord& m = st->migration;
  absl::StatusOr<ParsedShardMap> ours = catalog.Load(m.published_version);
  if (ours.ok() && SameMapContent(ours->map->config(), candidate.config())) return std::string();
  if (force) {
    return fmt::format(
        "--force: published while migration {0} is {1}. Its next publish (advance, rollback, "
        "abort, cleanup) will refuse because the current map is no longer version {2}, the one "
        "it published; a rollback may then have fenced the targets and stop with writes to the "
        "moved ranges refused. `shardline map revert --to {2}` makes its map current again",
        m.id, m.state, m.published_version);
  }
  return fmt::format(
      "migration {0} is {1} (it published map version {2}): a map published by hand now would "
      "be overwritten by its next step or make that step refuse. Finish it first (`shardline "
      "rollout status --migration {0}` says what to run), or pass --force",
      m.id, m.state, m.published_version);
}

// The parts of the hash space `candidate` routes to node index `i` (owner or read node) that
// `current` does not already route there.
HashRangeList NewlyRouted(const ShardMap* current, const ShardMap& candidate, int i) {
  HashRangeList wanted = candidate.OwnedRanges(i);
  const auto reads = candidate.ReadRanges(i);
  wanted.insert(wanted.end(), reads.begin(), reads.end());
  std::sort(wanted.begin(), wanted.end());
  wanted = CoalesceRanges(wanted);
  const std::string& name = candidate.nodes()[static_cast<std::size_t>(i)].name;
  return current == nullptr ? wanted : PartsNotServedBy(*current, wanted, name);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> CheckHandPublish(Catalog& catalog, const ShardMap* current,
                                                          const ShardMap& candidate, bool force) {
  std::vector<std::string> findings;
  std::vector<std::string> warnings;
  absl::StatusOr<std::string> active = ActiveMigrationFinding(catalog, candidate, force);
  if (!active.ok()) return active.status();
  if (!active->empty()) (force ? warnings : findings).push_back(*active);
  for (std::size_t i = 0; i < candidate.nodes().size(); ++i) {
    const NodeConfig& node = candidate.nodes()[i];
    const HashRangeList ranges = NewlyRouted(current, candidate, static_cast<int>(i));
    if (ranges.empty()) continue;
    auto conn = ConnectAdmin(node);
    if (!conn.ok()) {
      warnings.push_back(fmt::format("could not check node {} for fences (it gets {}): {}",
                                     node.name, RangesText(ranges), std::string(conn.status().message())));
      continue;
    }
    auto fences = FencesOverlapping(**conn, ranges);
    if (!fences.ok()) return fences.status();
    if (fences->empty()) continue;
    const std::string what = fmt::format(
        "map version {} routes {} to node {}, which fences it: {}", candidate.version(),
        RangesText(ranges), node.name, fmt::join(*fences, "; "));
    if (force) {
      warnings.push_back(fmt::format(
          "--force: {}. A cleanup or rollback emptied those ranges there: writes routed to the "
          "node are refused (SLF01) and reads find no rows until a map routes them back to the "
          "node that holds them",
          what));
    } else {
      findings.push_back(fmt::format(
          "{}: a cleanup or rollback emptied those ranges there, so writes would be refused and "
          "reads find no rows. Route them to the node that holds their rows (`shardline map "
          "history`, `shardline rollout status`), or pass --force",
          what));
    }
  }
  if (!findings.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("nothing was published: {}", fmt::join(findings, "; and ")));
  }
  return warnings;
}

}  // namespace shardline::migrate
