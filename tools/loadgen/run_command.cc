// `shardline-loadgen run` (see run_command.h).
#include "run_command.h"

#include <cstdlib>

#include <fmt/format.h>

#include "ledger.h"
#include "metrics_server.h"
#include "mix.h"
#include "report.h"
#include "runner.h"
#include "shardline/router.h"
#include "threshold.h"
#include "workload.h"

namespace shardline::loadgen {

CLI::App* SetupRun(CLI::App& app, RunCommandOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "run", "Run the fitness-app workload through the router and report latencies");
  AddRouterFlags(*cmd, options.router);
  cmd->add_option("--users", options.users, "Users to draw from (as loaded)")
      ->capture_default_str();
  cmd->add_option("--first-user", options.first_user, "The first user id (as loaded)")
      ->capture_default_str();
  cmd->add_option("--workouts-per-user", options.workouts_per_user,
                  "Workouts per user (as loaded): `update` picks one of them")
      ->capture_default_str();
  cmd->add_option("--mix", options.mix,
                  "Operation weights: profile, feed, log, update, leaderboard")
      ->capture_default_str();
  cmd->add_option("--workers", options.workers,
                  "Concurrent calls (closed loop: the load; open loop: the most in flight)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--rate", options.rate,
                  "Open loop: calls per second at fixed intervals (0: closed loop at max rate)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--duration", options.duration, "Measured time, e.g. 30s, 2m")
      ->capture_default_str();
  cmd->add_option("--warmup", options.warmup, "Unmeasured time before it")->capture_default_str();
  cmd->add_option("--calls", options.calls,
                  "Stop after this many calls in all, warm-up included (0: run for --duration)")
      ->capture_default_str();
  cmd->add_option("--progress", options.progress,
                  "Interval of progress lines on stderr (0: none)")
      ->capture_default_str();
  cmd->add_option("--seed", options.seed, "Seed of the random choices (worker i: seed + i)")
      ->capture_default_str();
  cmd->add_option("--ledger", options.ledger,
                  "Append every acknowledged write to FILE (for check-ledger)");
  cmd->add_option("--threshold", options.thresholds,
                  "A budget, e.g. p99<20ms, error_rate<0.1%, throughput>500, log.p99<30ms "
                  "(repeatable): exit 1 when broken");
  cmd->add_flag("--json", options.json, "Print the report as JSON instead of a table");
  cmd->add_option("--metrics-port", options.metrics_port,
                  "Serve the router's metrics at http://127.0.0.1:PORT/metrics while running "
                  "(0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->footer(
      "Latency is measured per call from its start (closed loop) or from its intended start\n"
      "time (open loop, --rate), so a stall counts against every call it delayed. Failed calls\n"
      "are counted by kind and the run goes on (through node failures and map changes); with\n"
      "--catalog the router follows published maps. SIGINT/SIGTERM stop the run early with a\n"
      "report. Thresholds apply to all operations, or to one with an OP. prefix.\n"
      "\n"
      "Examples:\n"
      "  shardline-loadgen run --map schemas/maps/app_3_nodes.toml --users 100000 --workers 16 \\\n"
      "      --duration 60s --warmup 5s --threshold p99<20ms --threshold error_rate<0.1%\n"
      "  shardline-loadgen run --catalog \"$SHARDLINE_CATALOG\" --users 100000 --rate 2000 \\\n"
      "      --workers 64 --duration 5m --ledger run.ledger --metrics-port 9464 --json");
  return cmd;
}

absl::Status RunRun(const RunCommandOptions& options, const std::atomic<bool>* stop) {
  absl::StatusOr<Mix> mix = ParseMix(options.mix);
  if (!mix.ok()) return migrate::UsageError(fmt::format("--mix: {}", std::string(mix.status().message())));
  std::vector<Threshold> thresholds;
  for (const std::string& t : options.thresholds) {
    absl::StatusOr<Threshold> parsed = ParseThreshold(t);
    if (!parsed.ok()) {
      return migrate::UsageError(fmt::format("--threshold: {}", std::string(parsed.status().message())));
    }
    thresholds.push_back(*parsed);
  }
  absl::StatusOr<double> duration = ParseDurationSeconds(options.duration, "--duration");
  if (!duration.ok()) return migrate::UsageError(std::string(duration.status().message()));
  absl::StatusOr<double> warmup = ParseDurationSeconds(options.warmup, "--warmup");
  if (!warmup.ok()) return migrate::UsageError(std::string(warmup.status().message()));
  absl::StatusOr<double> progress = ParseDurationSeconds(options.progress, "--progress");
  if (!progress.ok()) return migrate::UsageError(std::string(progress.status().message()));
  if (options.users < 1) return migrate::UsageError("--users must be at least 1");

  absl::StatusOr<RouterOptions> ropts =
      MakeRouterOptions(options.router, std::getenv(migrate::kCatalogEnv));
  if (!ropts.ok()) return ropts.status();
  absl::StatusOr<std::unique_ptr<Router>> router = Router::Create(std::move(*ropts));
  if (!router.ok()) return router.status();
  if (mix->weight(Op::kLog) > 0) {  // the only operation that inserts rows with new ids
    if (absl::Status s = CheckCanGenerateIds(**router); !s.ok()) return s;
  }

  std::unique_ptr<LedgerWriter> ledger;
  if (!options.ledger.empty()) {
    absl::StatusOr<std::unique_ptr<LedgerWriter>> opened = LedgerWriter::Open(options.ledger);
    if (!opened.ok()) return opened.status();
    ledger = std::move(*opened);
  }
  std::unique_ptr<MetricsServer> metrics;
  if (options.metrics_port >= 0) {
    Router* r = router->get();
    absl::StatusOr<std::unique_ptr<MetricsServer>> started =
        MetricsServer::Start(options.metrics_port, [r] { return r->MetricsText(); });
    if (!started.ok()) return started.status();
    metrics = std::move(*started);
    fmt::print(stderr, "{}: metrics at http://127.0.0.1:{}/metrics\n", kProgram, metrics->port());
  }

  Workload workload(**router,
                    WorkloadOptions{.first_user = options.first_user,
                                    .users = options.users,
                                    .workouts_per_user = options.workouts_per_user},
                    ledger.get());
  RunOptions run;
  run.mix = *mix;
  run.workers = options.workers;
  run.rate = options.rate;
  run.duration = std::chrono::duration<double>(*duration);
  run.warmup = std::chrono::duration<double>(*warmup);
  run.seed = options.seed;
  run.max_calls = options.calls;
  run.stop = stop;
  run.progress_interval = std::chrono::duration<double>(*progress);
  run.progress = [](const std::string& line) { fmt::print(stderr, "{}: {}\n", kProgram, line); };
  absl::StatusOr<RunReport> report = RunWorkload(workload, **router, run);
  if (!report.ok()) return report.status();
  if (ledger != nullptr) report->ledger_entries = ledger->appended();

  const std::vector<ThresholdResult> results = EvaluateThresholds(thresholds, *report);
  if (options.json) {
    fmt::print("{}\n", ReportToJson(*report, results));
  } else {
    fmt::print("{}", FormatReportTable(*report, results));
  }
  std::fflush(stdout);
  std::string broken;
  for (const ThresholdResult& r : results) {
    if (r.ok) continue;
    if (!broken.empty()) broken += '\n';
    broken += "threshold broken: " + r.message;
  }
  if (!broken.empty()) return absl::FailedPreconditionError(broken);
  return absl::OkStatus();
}

}  // namespace shardline::loadgen
