// `shardline verify` (see verify_command.h): flags -> (source, target, ranges) pairs -> the
// verify library -> a report. Connection strings are never printed.
#include "cli/verify_command.h"
#include "admin_conn.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "pg_conn.h"
#include "plan_toml.h"
#include "verify.h"

namespace shardline::migrate {
namespace {

using Json = nlohmann::ordered_json;

// One comparison to run: the ranges moving from `from` to `to`.
struct Pair {
  std::string from;
  std::string to;
  HashRanges ranges;
};

std::string KeysText(const std::vector<std::string>& keys, std::int64_t total) {
  std::string out = fmt::format("{}", fmt::join(keys, ", "));
  if (total > static_cast<std::int64_t>(keys.size())) {
    out += fmt::format(", ... ({} more)", total - static_cast<std::int64_t>(keys.size()));
  }
  return out;
}

std::string ResultsText(const std::vector<TableVerifyResult>& results) {
  std::vector<std::vector<std::string>> rows = {
      {"table", "source_rows", "target_rows", "buckets", "mismatched", "missing", "extra",
       "different", "duplicated", "rows/s/side"}};
  for (const TableVerifyResult& r : results) {
    const double secs = std::max(r.source_seconds, r.target_seconds);
    rows.push_back({r.table, std::to_string(r.source_rows), std::to_string(r.target_rows),
                    std::to_string(r.buckets), std::to_string(r.mismatched_buckets),
                    std::to_string(r.missing), std::to_string(r.extra),
                    std::to_string(r.different), std::to_string(r.duplicated),
                    secs > 0 ? fmt::format("{:.0f}", static_cast<double>(std::max(
                                                         r.source_rows, r.target_rows)) /
                                                         secs)
                             : "-"});
  }
  std::string out = FormatTable(
      rows, {false, true, true, true, true, true, true, true, true, true});
  for (const TableVerifyResult& r : results) {
    auto kind = [&](const char* name, std::int64_t n, const std::vector<std::string>& keys) {
      if (n > 0) out += fmt::format("  {}: {} {}: {}\n", r.table, n, name, KeysText(keys, n));
    };
    kind("missing on target (key)", r.missing, r.missing_keys);
    kind("extra on target (key)", r.extra, r.extra_keys);
    kind("different (key)", r.different, r.different_keys);
    kind("duplicated (surplus rows; key)", r.duplicated, r.duplicated_keys);
  }
  return out;
}

Json ResultsJson(const std::vector<TableVerifyResult>& results) {
  Json out = Json::array();
  for (const TableVerifyResult& r : results) {
    out.push_back({{"table", r.table},
                   {"source_rows", r.source_rows},
                   {"target_rows", r.target_rows},
                   {"buckets", r.buckets},
                   {"mismatched_buckets", r.mismatched_buckets},
                   {"missing", r.missing},
                   {"extra", r.extra},
                   {"different", r.different},
                   {"duplicated", r.duplicated},
                   {"missing_keys", r.missing_keys},
                   {"extra_keys", r.extra_keys},
                   {"different_keys", r.different_keys},
                   {"duplicated_keys", r.duplicated_keys},
                   {"source_seconds", r.source_seconds},
                   {"target_seconds", r.target_seconds},
                   {"repair_deleted", r.repair_deleted},
                   {"repair_copied", r.repair_copied},
                   {"clean", r.clean()}});
  }
  return out;
}

std::int64_t Differences(const std::vector<TableVerifyResult>& results) {
  std::int64_t n = 0;
  for (const TableVerifyResult& r : results) n += r.missing + r.extra + r.different + r.duplicated;
  return n;
}

absl::Status RunOrphans(const VerifyCommandOptions& options, const ShardMap& map) {
  auto orphans = FindOrphans(map, options.tables, options.max_keys);
  if (!orphans.ok()) return orphans.status();
  std::int64_t total = 0;
  for (const OrphanResult& o : *orphans) total += o.rows;
  if (options.json) {
    Json arr = Json::array();
    for (const OrphanResult& o : *orphans) {
      arr.push_back({{"table", o.table}, {"node", o.node}, {"rows", o.rows},
                     {"first_keys", o.first_keys}});
    }
    Json out{{"map_version", map.version()}, {"orphans", arr}, {"total", total},
             {"clean", total == 0}};
    std::fputs((out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n").c_str(), stdout);
  } else {
    std::vector<std::vector<std::string>> rows = {{"table", "node", "orphan_rows", "first keys"}};
    for (const OrphanResult& o : *orphans) {
      rows.push_back({o.table, o.node, std::to_string(o.rows), KeysText(o.first_keys, o.rows)});
    }
    std::fputs(fmt::format("orphans: rows on a node outside the ranges it owns (map version {})\n",
                           map.version())
                   .c_str(),
               stdout);
    std::fputs(FormatTable(rows, {false, false, true, false}).c_str(), stdout);
    std::fputs(total == 0 ? "result: no orphans\n"
                          : fmt::format("result: {} orphan rows\n", total).c_str(),
               stdout);
  }
  if (total > 0) {
    return absl::FailedPreconditionError(fmt::format(
        "verify --orphans found {} rows on nodes that do not own their range (shardline cleanup "
        "deletes them once no move is in flight)",
        total));
  }
  return absl::OkStatus();
}

const NodeConfig* FindNode(const std::string& name, const ShardMap* a, const ShardMap* b) {
  for (const ShardMap* m : {a, b}) {
    if (m == nullptr) continue;
    const int i = m->NodeIndex(name);
    if (i >= 0) return &m->nodes()[static_cast<std::size_t>(i)];
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::pair<std::int64_t, std::int64_t>> ParseRangeArg(const std::string& text) {
  // The first ':' after position 0 separates LO and HI (LO may start with '-').
  const std::size_t colon = text.find(':', 1);
  auto parse = [](std::string_view s, std::int64_t& v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
  };
  std::int64_t lo = 0;
  std::int64_t hi = 0;
  if (colon == std::string::npos ||
      !parse(std::string_view(text).substr(0, colon), lo) ||
      !parse(std::string_view(text).substr(colon + 1), hi)) {
    return absl::InvalidArgumentError(fmt::format(
        "--range {}: expected LO:HI with signed 64-bit integers, e.g. --range "
        "-9223372036854775808:-4611686018427387905",
        text));
  }
  if (lo > hi) {
    return absl::InvalidArgumentError(fmt::format("--range {}: LO is greater than HI", text));
  }
  return std::make_pair(lo, hi);
}

CLI::App* SetupVerify(CLI::App& app, VerifyCommandOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "verify", "Compare moved ranges between two nodes down to the keys that differ");
  AddMapSourceOptions(*cmd, options.source);
  CLI::Option* plan = cmd->add_option("--plan", options.plan_file,
                                      "Plan file: verify every move (from -> to) it lists");
  CLI::Option* from = cmd->add_option("--from", options.from, "Source node (the range's owner)");
  CLI::Option* to = cmd->add_option("--to", options.to, "Target node (where it was copied)");
  CLI::Option* range = cmd->add_option("--range", options.ranges,
                                       "Hash range LO:HI to compare (repeatable)")
                           ->allow_extra_args(false);
  CLI::Option* orphans = cmd->add_flag(
      "--orphans", options.orphans, "Instead: list rows on any node outside its owned ranges");
  plan->excludes(from)->excludes(to)->excludes(range)->excludes(orphans);
  orphans->excludes(from)->excludes(to)->excludes(range);
  cmd->add_option("--table", options.tables, "Sharded table to compare (repeatable; default all)")
      ->allow_extra_args(false);
  cmd->add_option("--buckets", options.buckets, "Hash buckets per table for the checksum pass")
      ->capture_default_str();
  cmd->add_option("--max-keys", options.max_keys, "Keys listed per kind of difference")
      ->capture_default_str();
  cmd->add_flag("--json", options.json, "Print the report as JSON");
  cmd->add_flag("--sequential", options.sequential,
                "Scan the source, then the target (default: both at once, on two threads); for "
                "nodes that share one host's CPUs");
  cmd->add_flag("--repair", options.repair,
                "Re-copy what differs (delete the target's rows of those keys, copy the "
                "source's), then verify again");
  cmd->footer(
      "Per table, each side computes in one pass, per hash bucket, count(*) and the exact sum of\n"
      "a 64-bit hash of each row's content; only mismatching buckets are fetched as (key, hash)\n"
      "and merged into keys missing on the target, extra on the target, different, or\n"
      "duplicated. Exit status 0 when clean (after --repair: when the repair made it clean), 1\n"
      "on any difference. --orphans exits 1 when any node holds rows of a range it does not own.\n"
      "\n"
      "Examples:\n"
      "  shardline verify --plan plan.toml\n"
      "  shardline verify --map map.toml --from a --to d --range 0:4611686018427387903 --json\n"
      "  shardline verify --catalog \"$SHARDLINE_CATALOG\" --orphans");
  return cmd;
}

absl::Status RunVerify(const VerifyCommandOptions& options) {
  const bool have_source =
      !options.source.map_file.empty() || !options.source.catalog_dsn.empty() ||
      (std::getenv(kCatalogEnv) != nullptr && *std::getenv(kCatalogEnv) != '\0');
  std::optional<LoadedMap> loaded;
  if (options.plan_file.empty() || have_source) {
    auto l = LoadMapFromSource(options.source, std::getenv(kCatalogEnv));
    if (!l.ok()) return l.status();
    PrintWarnings(l->parsed.warnings);
    loaded = *std::move(l);
  }
  const ShardMap* current = loaded ? loaded->parsed.map.get() : nullptr;
  if (options.orphans) return RunOrphans(options, *current);

  std::optional<ParsedPlan> plan;
  std::vector<Pair> pairs;
  if (!options.plan_file.empty()) {
    auto p = LoadPlanFile(options.plan_file);
    if (!p.ok()) return p.status();
    PrintWarnings(p->warnings);
    plan = *std::move(p);
    for (const RangeMove& m : plan->plan.moves) {
      auto it = std::find_if(pairs.begin(), pairs.end(),
                             [&](const Pair& x) { return x.from == m.from && x.to == m.to; });
      if (it == pairs.end()) {
        pairs.push_back({m.from, m.to, {}});
        it = pairs.end() - 1;
      }
      it->ranges.emplace_back(m.lo, m.hi);
    }
    if (pairs.empty()) {
      std::fputs(fmt::format("plan {} has no moves: nothing to verify\n", options.plan_file).c_str(),
                 stdout);
      return absl::OkStatus();
    }
  } else {
    if (options.from.empty() || options.to.empty() || options.ranges.empty()) {
      return UsageError(
          "give --plan PLAN, or --from NODE --to NODE --range LO:HI (or --orphans)");
    }
    Pair p{options.from, options.to, {}};
    for (const std::string& r : options.ranges) {
      auto range = ParseRangeArg(r);
      if (!range.ok()) return range.status();
      p.ranges.push_back(*range);
    }
    pairs.push_back(std::move(p));
  }
  const ShardMap* plan_map = plan ? plan->result_map.get() : nullptr;
  const ShardMap& map = current != nullptr ? *current : *plan_map;

  VerifyOptions vo;
  vo.tables = options.tables;
  vo.buckets = options.buckets;
  vo.max_keys_reported = options.max_keys;
  vo.repair = options.repair;
  vo.parallel = !options.sequential;

  Json json_pairs = Json::array();
  std::int64_t differences = 0;
  for (const Pair& pair : pairs) {
    if (pair.from == pair.to) {
      return absl::InvalidArgumentError(
          fmt::format("--from and --to are both node {}: nothing to compare", pair.from));
    }
    std::unique_ptr<pg::Conn> conns[2];
    const std::string names[2] = {pair.from, pair.to};
    for (int i = 0; i < 2; ++i) {
      const NodeConfig* node = FindNode(names[i], current, plan_map);
      if (node == nullptr) {
        return absl::InvalidArgumentError(
            fmt::format("node {} is not a node of the map{}", names[i],
                        plan_map != nullptr ? " nor of the plan's resulting map" : ""));
      }
      auto c = ConnectAdmin(*node);
      if (!c.ok()) return c.status();
      conns[i] = *std::move(c);
    }
    auto report = VerifyRanges(*conns[0], *conns[1], map, pair.ranges, vo);
    if (!report.ok()) return report.status();
    const std::vector<TableVerifyResult>& final_results =
        report->repaired ? report->after_repair : report->tables;
    differences += Differences(final_results);
    if (options.json) {
      Json ranges = Json::array();
      for (const auto& [lo, hi] : pair.ranges) ranges.push_back({{"lo", lo}, {"hi", hi}});
      Json j{{"from", pair.from}, {"to", pair.to}, {"ranges", ranges},
             {"tables", ResultsJson(report->tables)}, {"repaired", report->repaired}};
      if (report->repaired) j["after_repair"] = ResultsJson(report->after_repair);
      j["clean"] = report->clean();
      json_pairs.push_back(std::move(j));
      continue;
    }
    std::string out = fmt::format("verify {} -> {}: {} range{}", pair.from, pair.to,
                                  pair.ranges.size(), pair.ranges.size() == 1 ? "" : "s");
    for (std::size_t i = 0; i < pair.ranges.size() && i < 4; ++i) {
      out += fmt::format("{} {}..{}", i == 0 ? ":" : ",", pair.ranges[i].first,
                         pair.ranges[i].second);
    }
    if (pair.ranges.size() > 4) out += ", ...";
    out += "\n" + ResultsText(report->tables);
    if (report->repaired) {
      std::int64_t deleted = 0;
      std::int64_t copied = 0;
      for (const TableVerifyResult& r : report->tables) {
        deleted += r.repair_deleted;
        copied += r.repair_copied;
      }
      out += fmt::format("repair on {}: deleted {} rows, copied {} rows from {}; verified again:\n",
                         pair.to, deleted, copied, pair.from);
      out += ResultsText(report->after_repair);
    }
    out += report->clean() ? "result: clean\n"
                           : fmt::format("result: {} differences\n",
                                         Differences(final_results));
    std::fputs(out.c_str(), stdout);
  }
  if (options.json) {
    Json out{{"pairs", json_pairs}, {"differences", differences}, {"clean", differences == 0}};
    std::fputs((out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n").c_str(), stdout);
  }
  std::fflush(stdout);
  if (differences > 0) {
    return absl::FailedPreconditionError(fmt::format(
        "verify found {} differences{}", differences,
        options.repair ? " left after the repair" : " (rerun with --repair to re-copy them)"));
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
