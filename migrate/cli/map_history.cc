// `shardline map history` (see map_history.h).
#include "cli/map_history.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "catalog.h"
#include "cli/common.h"

namespace shardline::migrate {
namespace {

std::string Time(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", t, absl::UTCTimeZone());
}

}  // namespace

CLI::App* SetupMapHistory(CLI::App& map, MapHistoryOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "history", "List the catalog's audit trail: every init, publish and revert");
  cmd->add_option("--catalog", options.catalog_dsn,
                  fmt::format("Control database (default: ${})", kCatalogEnv));
  cmd->add_flag("--json", options.json, "Print a JSON array");
  cmd->footer(
      "BY is the database role, with the OS user the client reported in parentheses.\n"
      "\n"
      "Example:\n"
      "  shardline map history --catalog 'host=10.0.0.9 dbname=control'\n"
      "  VERSION  ACTION   AT                    BY            COMMENT\n"
      "        -  init     2026-11-28 09:00:01Z  dba (alice)   catalog schema version 1\n"
      "        1  publish  2026-11-28 09:01:12Z  dba (alice)   initial map\n"
      "        2  revert   2026-11-28 10:44:03Z  dba (bob)     back to version 1: ...");
  return cmd;
}

absl::Status RunMapHistory(const MapHistoryOptions& options) {
  absl::StatusOr<std::string> dsn = ResolveCatalog(options.catalog_dsn, std::getenv(kCatalogEnv));
  if (!dsn.ok()) return dsn.status();
  absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Create(*dsn);
  if (!catalog.ok()) return catalog.status();
  absl::StatusOr<std::vector<HistoryEntry>> history = (*catalog)->History();
  if (!history.ok()) return history.status();
  if (options.json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const HistoryEntry& e : *history) {
      nlohmann::ordered_json j = {{"at", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", e.at,
                                                  absl::UTCTimeZone())},
                          {"action", e.action},
                          {"db_user", e.db_user},
                          {"os_user", e.os_user},
                          {"comment", e.comment}};
      j["version"] = e.version > 0 ? nlohmann::ordered_json(e.version) : nlohmann::ordered_json(nullptr);
      j["reverted_from"] =
          e.reverted_from > 0 ? nlohmann::ordered_json(e.reverted_from) : nlohmann::ordered_json(nullptr);
      out.push_back(std::move(j));
    }
    fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {{"VERSION", "ACTION", "AT", "BY", "COMMENT"}};
  for (const HistoryEntry& e : *history) {
    std::string by = e.db_user;
    if (!e.os_user.empty() && e.os_user != e.db_user) by += fmt::format(" ({})", e.os_user);
    std::string comment = e.comment;
    if (e.reverted_from > 0) {
      comment = fmt::format("content of version {}{}{}", e.reverted_from,
                            comment.empty() ? "" : ": ", comment);
    }
    rows.push_back({e.version > 0 ? std::to_string(e.version) : "-", e.action, Time(e.at), by,
                    comment});
  }
  std::fputs(FormatTable(rows, {true, false, false, false, false}, 0).c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
