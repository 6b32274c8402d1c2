// The shard map's text form (TOML, see docs/map-format.md): parsing with file:line in every
// error, and printing. All functions are thread-safe (no shared state).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shardline/shard_map.h"

namespace shardline {

struct ParsedShardMap {
  std::shared_ptr<const ShardMap> map;  // never null
  // In file order, e.g. "maps/a.toml:7: unknown field 'colour' in nodes[0] (ignored)".
  std::vector<std::string> warnings;
};

// Parses and validates TOML text. `source_name` (a path, "catalog version 7", ...) prefixes
// every message. InvalidArgument for:
//   syntax errors             "source:line:column: invalid TOML: <toml++'s description>"
//   wrong types, missing keys "source:line: ranges[3].lo: expected an integer, got string"
//   every rule of ShardMap::Create, with the element's line ("source:line: ...").
// Several problems are reported together, one per line of the message, in file order
// (type errors first: validation runs only on a document whose values have the right types).
// Unknown fields are not errors: they are listed in `warnings`. Indexes are 0-based.
absl::StatusOr<ParsedShardMap> ParseShardMapToml(std::string_view text,
                                                 std::string_view source_name);
// Reads and parses a file; messages are prefixed with `path`. NotFound / PermissionDenied
// ("cannot read shard map file 'PATH': ...") when it cannot be opened, InvalidArgument for a
// directory or any ParseShardMapToml error. Blocks on the file read.
absl::StatusOr<ParsedShardMap> LoadShardMapFile(const std::string& path);

enum class PasswordMode { kKeep, kMask };
// TOML text of a map config in a stable order (version, key_type, then [[nodes]], [[ranges]],
// [[tables]] in the config's order; each table's fields in the order of docs/map-format.md;
// optional fields only when set), which ParseShardMapToml reads back to an equal config.
// Ranges are printed as integers. With kMask, a DSN (or replica) that holds a password is
// printed through DsnWithoutPassword ("password=********"), one that does not parse as
// "<unparseable connection string>", others as written. Use kKeep only for storage (catalog,
// files written on purpose), never for display. Does not validate.
std::string ShardMapToToml(const ShardMapConfig& config, PasswordMode mode);

}  // namespace shardline
