// `shardline-loadgen check-ledger` (see check_ledger_command.h).
#include "check_ledger_command.h"

#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "check_ledger.h"
#include "ledger.h"

namespace shardline::loadgen {

CLI::App* SetupCheckLedger(CLI::App& app, CheckLedgerCommandOptions& options) {
  CLI::App* cmd = app.add_subcommand(
      "check-ledger",
      "Confirm that every acknowledged write of a ledger is on the node that owns it now");
  migrate::AddMapSourceOptions(*cmd, options.source);
  cmd->add_option("--ledger", options.ledger, "The ledger a `run --ledger FILE` wrote")
      ->required();
  cmd->add_flag("--strict", options.strict,
                "Also require that no other node holds the row (after a move's cleanup)");
  cmd->add_flag("--json", options.json, "Print the counts and problems as JSON");
  cmd->add_option("--max-listed", options.max_listed, "How many problems to list")
      ->capture_default_str();
  cmd->add_option("--application-name", options.application_name,
                  "application_name of the connections")
      ->capture_default_str();
  cmd->footer(
      "Each row's expected content is its last acknowledged write's (or that of a later write\n"
      "whose outcome the run did not learn). Rows are looked up directly on the nodes, not\n"
      "through a router. Exit 1 when any is missing or differs.\n"
      "\n"
      "Example:\n"
      "  shardline-loadgen check-ledger --catalog \"$SHARDLINE_CATALOG\" --ledger run.ledger "
      "--strict");
  return cmd;
}

absl::Status RunCheckLedger(const CheckLedgerCommandOptions& options) {
  absl::StatusOr<migrate::LoadedMap> loaded =
      migrate::LoadMapFromSource(options.source, std::getenv(migrate::kCatalogEnv));
  if (!loaded.ok()) return loaded.status();
  bool truncated = false;
  absl::StatusOr<std::vector<LedgerEntry>> entries = ReadLedger(options.ledger, &truncated);
  if (!entries.ok()) return entries.status();
  CheckLedgerOptions check;
  check.strict = options.strict;
  check.max_listed = options.max_listed;
  check.application_name = options.application_name;
  absl::StatusOr<CheckLedgerResult> r = CheckLedger(*entries, *loaded->parsed.map, check);
  if (!r.ok()) return r.status();

  if (options.json) {
    nlohmann::ordered_json j = {{"ledger", options.ledger},
                                {"map_version", loaded->parsed.map->version()},
                                {"entries", r->entries},
                                {"rows", r->rows},
                                {"present", r->present},
                                {"missing", r->missing},
                                {"wrong_content", r->wrong_content},
                                {"elsewhere", r->elsewhere},
                                {"unacked_only", r->unacked_only},
                                {"strict", options.strict},
                                {"truncated_tail", truncated},
                                {"problems", r->problems},
                                {"ok", r->ok()}};
    fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
  } else {
    fmt::print("ledger {}: {} entries, {} rows checked against map version {} ({})\n",
               options.ledger, r->entries, r->rows, loaded->parsed.map->version(),
               loaded->origin);
    fmt::print("  present {}, missing {}, wrong content {}{}\n", r->present, r->missing,
               r->wrong_content,
               options.strict ? fmt::format(", elsewhere {}", r->elsewhere) : std::string());
    if (r->unacked_only > 0) {
      fmt::print("  {} rows had only writes of unknown outcome (not checked)\n", r->unacked_only);
    }
    if (truncated) fmt::print("  the ledger's last line was incomplete and was ignored\n");
    for (const std::string& p : r->problems) fmt::print("  {}\n", p);
  }
  if (r->ok()) return absl::OkStatus();
  std::string message = fmt::format(
      "check-ledger: {} of {} acknowledged rows missing, {} with other content{}", r->missing,
      r->rows, r->wrong_content,
      options.strict ? fmt::format(", {} also on another node", r->elsewhere) : std::string());
  for (const std::string& p : r->problems) message += "\n" + p;
  return absl::DataLossError(message);
}

}  // namespace shardline::loadgen
