// Shared CLI plumbing: see common.h.
#include "cli/common.h"
#include "status_text.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include <fmt/format.h>

#include "absl/strings/cord.h"
#include "catalog.h"
#include "publish_guard.h"
#include "shardline/dsn.h"

namespace shardline::migrate {
namespace {

constexpr std::string_view kUsageUrl = "type.shardline.dev/usage";

absl::StatusOr<LoadedMap> LoadFile(const std::string& path) {
  absl::StatusOr<ParsedShardMap> parsed = LoadShardMapFile(path);
  if (!parsed.ok()) return parsed.status();
  return LoadedMap{*std::move(parsed), fmt::format("map file {}", path)};
}

// Loads version `version` (0 = current) from the catalog at `dsn`.
absl::StatusOr<LoadedMap> LoadCatalog(const std::string& dsn, std::int64_t version) {
  absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Create(dsn);
  if (!catalog.ok()) return catalog.status();
  absl::StatusOr<ParsedShardMap> parsed =
      version == 0 ? (*catalog)->LoadCurrent() : (*catalog)->Load(version);
  if (!parsed.ok()) return parsed.status();
  const std::int64_t v = parsed->map->version();
  return LoadedMap{*std::move(parsed),
                   fmt::format("catalog {}, version {}", DsnWithoutPassword(dsn), v)};
}

}  // namespace

absl::Status UsageError(std::string message) {
  absl::Status status = absl::InvalidArgumentError(std::move(message));
  status.SetPayload(absl::string_view(kUsageUrl.data(), kUsageUrl.size()), absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(absl::string_view(kUsageUrl.data(), kUsageUrl.size())).has_value();
}

int ExitCodeForStatus(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (IsUsageError(status)) return kExitUsage;
  return kExitFailure;
}

int ExitCodeForParseError(int cli11_exit_code) {
  return cli11_exit_code == 0 ? kExitOk : kExitUsage;
}

void PrintError(const absl::Status& status) {
  std::string_view msg = Msg(status);
  if (msg.empty()) msg = "unknown error";
  while (!msg.empty()) {
    const std::size_t nl = msg.find('\n');
    std::string_view line = msg.substr(0, nl);
    // libpq continues its messages on tab-indented lines.
    while (!line.empty() && (line.front() == '\t' || line.front() == ' ')) line.remove_prefix(1);
    if (!line.empty()) fmt::print(stderr, "shardline: error: {}\n", line);
    if (nl == std::string_view::npos) break;
    msg.remove_prefix(nl + 1);
  }
  if (IsUsageError(status)) fmt::print(stderr, "Run with --help for more information.\n");
}

void PrintWarnings(const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings) fmt::print(stderr, "shardline: warning: {}\n", w);
}

absl::StatusOr<std::string> ResolveCatalog(const std::string& flag, const char* env_value) {
  if (!flag.empty()) return flag;
  if (env_value != nullptr && *env_value != '\0') return std::string(env_value);
  return UsageError(fmt::format("give the control database with --catalog DSN or set {}",
                                kCatalogEnv));
}

void AddMapSourceOptions(CLI::App& cmd, MapSourceOptions& options) {
  CLI::Option* map = cmd.add_option("--map", options.map_file, "Shard map file (TOML)");
  CLI::Option* catalog = cmd.add_option(
      "--catalog", options.catalog_dsn,
      fmt::format("Control database to read the current map from (default: ${})", kCatalogEnv));
  map->excludes(catalog);
  catalog->excludes(map);
}

absl::StatusOr<LoadedMap> LoadMapFromSource(const MapSourceOptions& options,
                                            const char* env_value) {
  if (!options.map_file.empty()) return LoadFile(options.map_file);
  if (!options.catalog_dsn.empty() || (env_value != nullptr && *env_value != '\0')) {
    absl::StatusOr<std::string> dsn = ResolveCatalog(options.catalog_dsn, env_value);
    if (!dsn.ok()) return dsn.status();
    return LoadCatalog(*dsn, 0);
  }
  return UsageError(fmt::format("give the map with --map FILE or --catalog DSN (or set {})",
                                kCatalogEnv));
}

absl::StatusOr<LoadedMap> LoadMapRef(const std::string& ref, const std::string& catalog_dsn) {
  if (!ref.starts_with("@")) return LoadFile(ref);
  if (catalog_dsn.empty()) {
    return UsageError(fmt::format(
        "'{}' names a catalog version: give the control database with --catalog DSN or set {}",
        ref, kCatalogEnv));
  }
  const std::string_view spec = std::string_view(ref).substr(1);
  if (spec == "current") return LoadCatalog(catalog_dsn, 0);
  std::int64_t version = 0;
  auto [p, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), version);
  if (spec.empty() || ec != std::errc() || p != spec.data() + spec.size() || version <= 0) {
    return UsageError(fmt::format(
        "'{}' is not a map reference: use a file path, @current or @N (a catalog version)", ref));
  }
  return LoadCatalog(catalog_dsn, version);
}

absl::StatusOr<std::pair<std::string, std::string>> ParseNameEqualsDsn(std::string_view arg,
                                                                       std::string_view flag) {
  const std::size_t eq = arg.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(fmt::format(
        "{} expects NAME=DSN, e.g. {} 'a=host=10.0.0.5 dbname=app user=app'", flag, flag));
  }
  std::string name(arg.substr(0, eq));
  std::string dsn(arg.substr(eq + 1));
  // "--node host=10.0.0.5 dbname=app": a connection string without the node's name.
  for (std::string_view keyword : {"host", "hostaddr", "port", "dbname", "user", "password"}) {
    if (name == keyword) {
      return absl::InvalidArgumentError(fmt::format(
          "{} expects NAME=DSN and got a connection string without a node name (it starts "
          "with '{}='); write e.g. {} 'a=host=10.0.0.5 dbname=app'",
          flag, name, flag));
    }
  }
  if (dsn.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("{} {}=: the connection string after '=' is empty", flag, name));
  }
  return std::make_pair(std::move(name), std::move(dsn));
}

std::string FormatShare(double share) { return fmt::format("{:.2f}%", share * 100.0); }

std::string MaskedDsn(const std::string& dsn) {
  std::string masked = DsnWithoutPassword(dsn);
  if (masked.starts_with("<") || masked.find("password=") != std::string::npos) return masked;
  return dsn;
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows,
                        const std::vector<bool>& right_align, int indent) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (row.size() > width.size()) width.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line(static_cast<std::size_t>(indent), ' ');
    for (std::size_t c = 0; c < row.size(); ++c) {
      const bool last = c + 1 == row.size();
      const bool right = c < right_align.size() && right_align[c];
      const std::size_t pad = width[c] - row[c].size();
      if (right) line.append(pad, ' ');
      line += row[c];
      if (!right && !last) line.append(pad, ' ');
      if (!last) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

absl::Status GuardHandPublish(Catalog& catalog, const ShardMap& candidate, bool force) {
  absl::StatusOr<ParsedShardMap> current = catalog.LoadCurrent();
  if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
  absl::StatusOr<std::vector<std::string>> warnings = CheckHandPublish(
      catalog, current.ok() ? current->map.get() : nullptr, candidate, force);
  if (!warnings.ok()) return warnings.status();
  PrintWarnings(*warnings);
  return absl::OkStatus();
}

}  // namespace shardline::migrate
