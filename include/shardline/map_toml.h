// The shard map's text form (TOML): parsing with file:line in every error, and printing.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/shard_map.h"

namespace shardline {

struct ParsedShardMap {
  std::shared_ptr<const ShardMap> map;
  std::vector<std::string> warnings;  // e.g. "maps/a.toml:7: unknown field 'colour' (ignored)"
};

// Parses and validates TOML text. `source_name` (a path, "catalog version 7", ...) prefixes
// every message. InvalidArgument with "source:line:column: ..." for syntax errors, wrong value
// types, missing fields and every validation rule of ShardMap::Create.
absl::StatusOr<ParsedShardMap> ParseShardMapToml(std::string_view text,
                                                 std::string_view source_name);
// Reads and parses a file. NotFound / PermissionDenied naming the path when it cannot be read.
absl::StatusOr<ParsedShardMap> LoadShardMapFile(const std::string& path);

enum class PasswordMode { kKeep, kMask };
// TOML text of a map config. With kMask, passwords in DSNs are replaced by "********"; use
// kKeep only for storage (catalog, files written on purpose), never for display.
std::string ShardMapToToml(const ShardMapConfig& config, PasswordMode mode);

}  // namespace shardline
