// `shardline backfill` (see backfill_command.h): flags -> (source, target, ranges) pairs -> the
// backfill engine -> progress on stderr and a summary on stdout. Connection strings are never
// printed.
#include "cli/backfill_command.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/verify_command.h"  // ParseRangeArg
#include "plan_toml.h"

namespace shardline::migrate {
namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// Plain progress lines (not a terminal) at most this often per table.
constexpr std::chrono::seconds kPlainProgressInterval(10);

const NodeConfig* FindNode(const std::string& name, const ShardMap* a, const ShardMap* b) {
  for (const ShardMap* m : {a, b}) {
    if (m == nullptr) continue;
    const int i = m->NodeIndex(name);
    if (i >= 0) return &m->nodes()[static_cast<std::size_t>(i)];
  }
  return nullptr;
}

std::string Eta(std::int64_t rows, std::int64_t estimated, double rate) {
  if (estimated <= rows || rate <= 0) return "-";
  const auto secs = static_cast<std::int64_t>(static_cast<double>(estimated - rows) / rate);
  return fmt::format("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
}

// Prints progress to stderr: a redrawn bar on a terminal, else a line per interval.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool tty) : tty_(tty) {}

  void operator()(const BackfillProgress& p) {
    const std::string head = fmt::format("{} {}->{}", p.table, p.from, p.to);
    const double pct = p.estimated_rows > 0
                           ? std::min(100.0, 100.0 * static_cast<double>(p.rows) /
                                                 static_cast<double>(p.estimated_rows))
                           : 0.0;
    if (tty_) {
      constexpr int kWidth = 24;
      const int filled = p.table_done ? kWidth : static_cast<int>(pct / 100.0 * kWidth);
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(kWidth, '.');
      std::fprintf(stderr, "\r%s [%s] %lld rows  %.0f rows/s  ETA %s   %s", head.c_str(),
                   bar.c_str(), static_cast<long long>(p.rows), p.rows_per_second,
                   p.table_done ? "0:00:00" : Eta(p.rows, p.estimated_rows, p.rows_per_second).c_str(),
                   p.table_done ? "done\n" : "");
      std::fflush(stderr);
      return;
    }
    const Clock::time_point now = Clock::now();
    if (p.rows != 0 && !p.table_done && now - last_ < kPlainProgressInterval) return;
    last_ = now;
    std::fputs(fmt::format("backfill: {}: {} rows{} {:.0f} rows/s ETA {}{}\n", head, p.rows,
                           p.estimated_rows > 0 ? fmt::format(" (~{:.0f}%)", pct) : "",
                           p.rows_per_second,
                           p.table_done ? "0:00:00" : Eta(p.rows, p.estimated_rows,
                                                          p.rows_per_second),
                           p.table_done ? " done" : "")
                   .c_str(),
               stderr);
  }

 private:
  const bool tty_;
  Clock::time_point last_{};
};

std::int64_t PeakRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;  // kilobytes on Linux
}

absl::Status ReadKillHook(BackfillOptions& bo) {
  const char* n = std::getenv(kKillAfterBatchesEnvForTest);
  if (n == nullptr || *n == '\0') return absl::OkStatus();
  const std::string_view s(n);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), bo.kill_at_batch_for_test);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return absl::InvalidArgumentError(fmt::format("{}={}: not a number",
                                                  kKillAfterBatchesEnvForTest, s));
  }
  const char* point = std::getenv(kKillPointEnvForTest);
  const std::string_view ps = point == nullptr ? "after_checkpoint" : point;
  if (ps == "before_commit") {
    bo.kill_point_for_test = KillPointForTest::kBeforeCommit;
  } else if (ps == "after_commit") {
    bo.kill_point_for_test = KillPointForTest::kAfterTargetCommit;
  } else if (ps == "after_checkpoint") {
    bo.kill_point_for_test = KillPointForTest::kAfterCheckpoint;
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "{}={}: expected before_commit, after_commit or after_checkpoint", kKillPointEnvForTest,
        ps));
  }
  return absl::OkStatus();
}

std::string Status(const TableBackfillResult& r) {
  if (r.already_done) return "already done";
  return r.resumed ? "resumed, done" : "done";
}

}  // namespace

CLI::App* SetupBackfill(CLI::App& app, BackfillCommandOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "backfill", "Copy the rows of moving hash ranges from their source node to their target");
  AddMapSourceOptions(*cmd, options.source);
  CLI::Option* plan = cmd->add_option("--plan", options.plan_file,
                                      "Plan file: copy every move (from -> to) it lists");
  CLI::Option* from = cmd->add_option("--from", options.from, "Source node (the range's owner)");
  CLI::Option* to = cmd->add_option("--to", options.to, "Target node (the new owner)");
  CLI::Option* range = cmd->add_option("--range", options.ranges,
                                       "Hash range LO:HI to copy (repeatable)")
                           ->allow_extra_args(false);
  plan->excludes(from)->excludes(to)->excludes(range);
  cmd->add_option("--table", options.tables, "Sharded table to copy (repeatable; default all)")
      ->allow_extra_args(false);
  cmd->add_option("--rate", options.rate, "Throttle: at most this many rows per second (0 = off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", options.batch,
                  "Rows per batch (one source query, one target transaction, one checkpoint)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--restart", options.restart,
                "Delete the target's rows of the ranges and the checkpoint, then copy afresh");
  cmd->add_flag("--json", options.json, "Print the summary as JSON");
  cmd->footer(
      "Per table, the source is read once in primary-key order (keyset batches of --batch rows,\n"
      "binary format) and streamed into the target with binary COPY; each batch commits on the\n"
      "target together with its checkpoint. Checkpoints live in the catalog's\n"
      "shardline.backfill_checkpoints when the map comes from --catalog, else in\n"
      "shardline.backfill_state on the target. Killed at any point and run again, it resumes\n"
      "after the last committed batch (deleting target rows a lost checkpoint did not cover); a\n"
      "finished table is skipped. Every table's preconditions (present on both nodes, compatible\n"
      "columns, a primary key containing the shard key, no unexplained rows on the target) are\n"
      "checked before any row moves.\n"
      "\n"
      "Examples:\n"
      "  shardline backfill --plan plan.toml --catalog \"$SHARDLINE_CATALOG\"\n"
      "  shardline backfill --map map.toml --from a --to d --range 0:4611686018427387903 \\\n"
      "      --rate 50000 --json");
  return cmd;
}

absl::Status RunBackfillCommand(const BackfillCommandOptions& options) {
  const char* env_catalog = std::getenv(kCatalogEnv);
  const bool have_source = !options.source.map_file.empty() ||
                           !options.source.catalog_dsn.empty() ||
                           (env_catalog != nullptr && *env_catalog != '\0');
  std::optional<LoadedMap> loaded;
  if (options.plan_file.empty() || have_source) {
    auto l = LoadMapFromSource(options.source, env_catalog);
    if (!l.ok()) return l.status();
    PrintWarnings(l->parsed.warnings);
    loaded = *std::move(l);
  }
  const ShardMap* current = loaded ? loaded->parsed.map.get() : nullptr;

  BackfillOptions bo;
  bo.tables = options.tables;
  bo.batch_rows = options.batch;
  bo.rate_rows_per_second = options.rate;
  bo.restart = options.restart;
  if (options.source.map_file.empty() && have_source) {
    auto dsn = ResolveCatalog(options.source.catalog_dsn, env_catalog);
    if (!dsn.ok()) return dsn.status();
    bo.catalog_dsn = *dsn;
  }
  if (auto s = ReadKillHook(bo); !s.ok()) return s;

  std::optional<ParsedPlan> plan;
  std::vector<std::pair<std::string, std::string>> names;  // (from, to) per pair
  std::vector<BackfillRanges> ranges;
  if (!options.plan_file.empty()) {
    auto p = LoadPlanFile(options.plan_file);
    if (!p.ok()) return p.status();
    PrintWarnings(p->warnings);
    plan = *std::move(p);
    for (const RangeMove& m : plan->plan.moves) {
      std::size_t i = 0;
      while (i < names.size() && names[i] != std::make_pair(m.from, m.to)) ++i;
      if (i == names.size()) {
        names.emplace_back(m.from, m.to);
        ranges.emplace_back();
      }
      ranges[i].emplace_back(m.lo, m.hi);
    }
    if (names.empty()) {
      std::fputs(fmt::format("plan {} has no moves: nothing to copy\n", options.plan_file).c_str(),
                 stdout);
      return absl::OkStatus();
    }
  } else {
    if (options.from.empty() || options.to.empty() || options.ranges.empty()) {
      return UsageError("give --plan PLAN, or --from NODE --to NODE --range LO:HI");
    }
    names.emplace_back(options.from, options.to);
    ranges.emplace_back();
    for (const std::string& r : options.ranges) {
      auto range = ParseRangeArg(r);
      if (!range.ok()) return range.status();
      ranges.back().push_back(*range);
    }
  }
  const ShardMap* plan_map = plan ? plan->result_map.get() : nullptr;
  const ShardMap& map = current != nullptr ? *current : *plan_map;

  std::vector<BackfillPair> pairs;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const NodeConfig* f = FindNode(names[i].first, current, plan_map);
    const NodeConfig* t = FindNode(names[i].second, current, plan_map);
    for (const auto& [node, name] : {std::pair{f, names[i].first}, {t, names[i].second}}) {
      if (node == nullptr) {
        return absl::InvalidArgumentError(
            fmt::format("node {} is not a node of the map{}", name,
                        plan_map != nullptr ? " nor of the plan's resulting map" : ""));
      }
    }
    pairs.push_back({*f, *t, ranges[i]});
  }

  // Batch buffers (megabytes) are allocated and freed once per batch. glibc raises its mmap
  // threshold to the largest block freed so far and then serves such blocks from the heap, where
  // they fragment and the peak RSS creeps up with the number of batches; a fixed threshold keeps
  // them mmapped and returned on free, so the peak stays flat in the table size.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  ProgressPrinter printer(isatty(STDERR_FILENO) != 0);
  if (!options.json) bo.progress = [&](const BackfillProgress& p) { printer(p); };
  auto summary = RunBackfill(map, pairs, bo);
  if (!summary.ok()) return summary.status();
  const double rate =
      summary->seconds > 0 ? static_cast<double>(summary->rows_copied) / summary->seconds : 0;
  if (options.json) {
    Json tables = Json::array();
    for (const TableBackfillResult& r : summary->tables) {
      tables.push_back({{"table", r.table},
                        {"from", r.from},
                        {"to", r.to},
                        {"ranges", r.ranges},
                        {"key", r.key},
                        {"rows_copied", r.rows_copied},
                        {"rows_total", r.rows_total},
                        {"batches", r.batches},
                        {"estimated_rows", r.estimated_rows},
                        {"already_done", r.already_done},
                        {"resumed", r.resumed},
                        {"deleted_before_resume", r.deleted_before_resume},
                        {"deleted_on_restart", r.deleted_on_restart},
                        {"seconds", r.seconds},
                        {"source_wait_seconds", r.source_wait_seconds},
                        {"throttle_seconds", r.throttle_seconds}});
    }
    Json out{{"tables", tables},
             {"rows_copied", summary->rows_copied},
             {"seconds", summary->seconds},
             {"rows_per_second", rate},
             {"rate_limit", options.rate},
             {"batch", options.batch},
             {"throttle_seconds", summary->throttle_seconds},
             {"checkpoints", summary->checkpoint_store},
             {"peak_rss_kb", PeakRssKb()}};
    std::fputs((out.dump(2, ' ', false, Json::error_handler_t::replace) + "\n").c_str(), stdout);
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"table", "from", "to", "rows_copied", "rows_total", "batches", "seconds", "rows/s",
       "status"}};
  for (const TableBackfillResult& r : summary->tables) {
    rows.push_back({r.table, r.from, r.to, std::to_string(r.rows_copied),
                    std::to_string(r.rows_total), std::to_string(r.batches),
                    fmt::format("{:.2f}", r.seconds),
                    r.seconds > 0
                        ? fmt::format("{:.0f}", static_cast<double>(r.rows_copied) / r.seconds)
                        : "-",
                    Status(r)});
  }
  std::string out = "backfill summary\n";
  out += FormatTable(rows, {false, false, false, true, true, true, true, true, false});
  out += fmt::format("total: {} rows copied in {:.2f} s ({:.0f} rows/s){}; checkpoints: {}\n",
                     summary->rows_copied, summary->seconds, rate,
                     options.rate > 0 ? fmt::format(", throttled {:.2f} s at --rate {}",
                                                    summary->throttle_seconds, options.rate)
                                      : "",
                     summary->checkpoint_store);
  for (const TableBackfillResult& r : summary->tables) {
    if (r.deleted_before_resume > 0 || r.deleted_on_restart > 0) {
      out += fmt::format("  {}: deleted {} target rows above the checkpoint, {} by --restart\n",
                         r.table, r.deleted_before_resume, r.deleted_on_restart);
    }
  }
  std::fputs(out.c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
