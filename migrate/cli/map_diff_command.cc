// `shardline map diff` (see map_diff_command.h).
#include "cli/map_diff_command.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "cli/common.h"

namespace shardline::migrate {
namespace {

std::string Names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string Changes(const std::vector<ElementChange>& changes) {
  std::string out;
  for (const ElementChange& c : changes) {
    out += fmt::format("{}{} ({})", out.empty() ? "" : ", ", c.name, Names(c.what));
  }
  return out;
}

std::string Stretches(const std::vector<HashStretchChange>& changes, std::string_view title) {
  std::string out = fmt::format("{}: {} stretch{}, {} of the hash space\n", title,
                                changes.size(), changes.size() == 1 ? "" : "es",
                                FormatShare(HashShare(changes)));
  std::vector<std::vector<std::string>> rows = {{"LO", "HI", "FROM", "TO", "SHARE"}};
  for (const HashStretchChange& c : changes) {
    rows.push_back({std::to_string(c.lo), std::to_string(c.hi), c.from, c.to,
                    FormatShare(HashShare(c.lo, c.hi))});
  }
  return out + FormatTable(rows, {true, true, false, false, true});
}

}  // namespace

CLI::App* SetupMapDiff(CLI::App& map, MapDiffOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "diff", "Show what changes from map A to map B: moved hash ranges, nodes, tables");
  cmd->add_option("A", options.a, "The old map: a file, @current or @N (catalog version N)")
      ->required();
  cmd->add_option("B", options.b, "The new map: a file, @current or @N")->required();
  cmd->add_option("--catalog", options.catalog_dsn,
                  fmt::format("Control database for @ references (default: ${})", kCatalogEnv));
  cmd->footer(
      "Maps are compared by hash coverage: ranges split or merged differently compare\n"
      "correctly, and only stretches of the hash space whose node changes are listed.\n"
      "Connection strings are never printed: a changed one shows as 'dsn'.\n"
      "\n"
      "Examples:\n"
      "  shardline map diff maps/v3.toml maps/v4.toml\n"
      "  shardline map diff --catalog 'host=10.0.0.9 dbname=control' @current maps/v5.toml\n"
      "  shardline map diff --catalog 'host=10.0.0.9 dbname=control' @3 @4");
  return cmd;
}

std::string MapDiffText(const MapDiff& d) {
  if (d.Empty()) {
    return fmt::format("no differences besides the version ({} -> {})\n", d.version_a,
                       d.version_b);
  }
  std::string out = fmt::format("map version {} -> {}\n", d.version_a, d.version_b);
  if (d.key_type_changed) {
    out += fmt::format("key_type: {} -> {} (every key hashes differently!)\n",
                       KeyTypeName(d.key_type_a), KeyTypeName(d.key_type_b));
  }
  if (!d.nodes_added.empty()) out += fmt::format("nodes added: {}\n", Names(d.nodes_added));
  if (!d.nodes_removed.empty()) out += fmt::format("nodes removed: {}\n", Names(d.nodes_removed));
  if (!d.nodes_changed.empty()) out += fmt::format("nodes changed: {}\n", Changes(d.nodes_changed));
  if (!d.owner_changes.empty()) out += Stretches(d.owner_changes, "owner changes");
  if (!d.read_changes.empty()) out += Stretches(d.read_changes, "read node changes");
  if (!d.tables_added.empty()) out += fmt::format("tables added: {}\n", Names(d.tables_added));
  if (!d.tables_removed.empty()) {
    out += fmt::format("tables removed: {}\n", Names(d.tables_removed));
  }
  if (!d.tables_changed.empty()) {
    out += fmt::format("tables changed: {}\n", Changes(d.tables_changed));
  }
  return out;
}

absl::Status RunMapDiff(const MapDiffOptions& options) {
  std::string catalog = options.catalog_dsn;
  if (catalog.empty()) {
    if (const char* env = std::getenv(kCatalogEnv); env != nullptr) catalog = env;
  }
  absl::StatusOr<LoadedMap> a = LoadMapRef(options.a, catalog);
  if (!a.ok()) return a.status();
  absl::StatusOr<LoadedMap> b = LoadMapRef(options.b, catalog);
  if (!b.ok()) return b.status();
  PrintWarnings(a->parsed.warnings);
  PrintWarnings(b->parsed.warnings);
  std::fputs(MapDiffText(DiffMaps(*a->parsed.map, *b->parsed.map)).c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
