// `shardline map init` (see map_init.h): flags -> ShardMapConfig -> TOML file or stdout.
#include "cli/map_init.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "cli/common.h"
#include "shardline/map_toml.h"

namespace shardline::migrate {
namespace {

constexpr const char* kHeader =
    "# Shard map written by `shardline map init` (format: docs/map-format.md).\n"
    "# Check it with `shardline map validate FILE`; publish it with `shardline map publish`.\n"
    "\n";

std::string Errno(int err) { return std::strerror(err); }

// Writes all of `text` to `fd`; false with errno set on failure.
bool WriteAll(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Creates `path` with mode 0600 and writes `text`. Without `force` an existing file is an
// AlreadyExists error (O_EXCL: no window between the check and the create); with it the text
// goes to a temporary file in the same directory that is renamed over `path`, so a reader
// never sees a half-written map.
absl::Status WriteMapFile(const std::string& path, const std::string& text, bool force) {
  const std::string target = force ? fmt::format("{}.tmp.{}", path, ::getpid()) : path;
  const int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST && !force) {
      return absl::AlreadyExistsError(fmt::format(
          "{} already exists; not overwritten (use --force to replace it)", path));
    }
    return absl::PermissionDeniedError(fmt::format("cannot create {}: {}", target, Errno(err)));
  }
  const bool wrote = WriteAll(fd, text) && ::fsync(fd) == 0;
  const int write_err = errno;
  if (::close(fd) != 0 || !wrote) {
    ::unlink(target.c_str());
    return absl::UnavailableError(
        fmt::format("cannot write {}: {}", target, Errno(wrote ? errno : write_err)));
  }
  if (force && ::rename(target.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(target.c_str());
    return absl::PermissionDeniedError(
        fmt::format("cannot replace {}: {}", path, Errno(err)));
  }
  return absl::OkStatus();
}

}  // namespace

CLI::App* SetupMapInit(CLI::App& map, MapInitOptions& options) {
  CLI::App* cmd = map.add_subcommand(
      "init", "Write a new shard map: equal hash ranges, contiguous blocks per node");
  cmd->add_option("--node", options.nodes,
                  "A node as NAME=DSN (repeatable; ranges are assigned in this order)")
      ->required()
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_option("--ranges", options.ranges,
                  "Number of equal hash ranges (at least the number of nodes; e.g. 256, so "
                  "that ranges can later move between nodes one at a time)")
      ->required();
  cmd->add_option("--key-type", options.key_type, "Type of every table's shard key")
      ->check(CLI::IsMember({"bigint", "text", "uuid"}))
      ->capture_default_str();
  cmd->add_option("--table", options.tables,
                  "A sharded table as NAME:KEY (repeatable), e.g. workout_logs:user_id or "
                  "app.users:user_id")
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_option("--reference-table", options.reference_tables,
                  "A reference table, copied in full on every node (repeatable)")
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_option("--version", options.version, "The map's version")->capture_default_str();
  cmd->add_option("-o,--output", options.output,
                  "File to write (mode 0600: it holds the connection strings); default stdout");
  cmd->add_flag("--force", options.force, "Overwrite the output file if it exists");
  cmd->footer(
      "The map is validated before it is written. Written to stdout on a terminal, passwords\n"
      "are masked (redirect stdout or use -o FILE to get them).\n"
      "\n"
      "Examples:\n"
      "  shardline map init --node a='host=10.0.0.1 dbname=app' --node b='host=10.0.0.2 "
      "dbname=app' \\\n"
      "      --ranges 256 --table users:user_id --table workout_logs:user_id -o map.toml\n"
      "  shardline map init --node a=\"$SHARDLINE_NODE_1_DSN\" --ranges 4 --key-type text > "
      "m.toml");
  return cmd;
}

absl::StatusOr<ShardMapConfig> BuildInitialMap(const MapInitOptions& options) {
  ShardMapConfig config;
  config.version = options.version;
  absl::StatusOr<KeyType> key_type = ParseKeyType(options.key_type);
  if (!key_type.ok()) return key_type.status();
  config.key_type = *key_type;
  std::vector<std::string> names;
  for (const std::string& arg : options.nodes) {
    auto node = ParseNameEqualsDsn(arg, "--node");
    if (!node.ok()) return node.status();
    NodeConfig n;
    n.name = node->first;
    n.dsn = node->second;
    names.push_back(n.name);
    config.nodes.push_back(std::move(n));
  }
  absl::StatusOr<std::vector<RangeConfig>> ranges = EqualRanges(options.ranges, names);
  if (!ranges.ok()) return ranges.status();
  config.ranges = *std::move(ranges);
  for (const std::string& arg : options.tables) {
    const std::size_t colon = arg.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == arg.size()) {
      return absl::InvalidArgumentError(fmt::format(
          "--table '{}': expected NAME:KEY, e.g. --table workout_logs:user_id", arg));
    }
    TableConfig t;
    t.name = arg.substr(0, colon);
    t.key = arg.substr(colon + 1);
    config.tables.push_back(std::move(t));
  }
  for (const std::string& name : options.reference_tables) {
    TableConfig t;
    t.name = name;
    t.reference = true;
    config.tables.push_back(std::move(t));
  }
  if (absl::Status s = ValidateShardMapConfig(config); !s.ok()) return s;
  return config;
}

absl::Status RunMapInit(const MapInitOptions& options) {
  absl::StatusOr<ShardMapConfig> config = BuildInitialMap(options);
  if (!config.ok()) return config.status();
  const std::string text = kHeader + ShardMapToToml(*config, PasswordMode::kKeep);
  if (!options.output.empty()) {
    if (absl::Status s = WriteMapFile(options.output, text, options.force); !s.ok()) return s;
    fmt::print(stderr, "wrote {}: version {}, {} nodes, {} ranges, {} tables\n", options.output,
               config->version, config->nodes.size(), config->ranges.size(),
               config->tables.size());
    return absl::OkStatus();
  }
  // A terminal is display: mask. A pipe or a redirect is storage: keep.
  const std::string masked = kHeader + ShardMapToToml(*config, PasswordMode::kMask);
  const bool mask = ::isatty(STDOUT_FILENO) == 1 && masked != text;
  std::fputs(mask ? masked.c_str() : text.c_str(), stdout);
  if (mask) {
    PrintWarnings({"passwords are masked on a terminal; use -o FILE or redirect stdout to "
                   "write the map with them"});
  }
  if (std::fflush(stdout) != 0) {
    return absl::UnavailableError(fmt::format("cannot write to stdout: {}", Errno(errno)));
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
