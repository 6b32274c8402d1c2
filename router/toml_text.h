// TOML text shared by the shard-map and plan files: parsing a document with errors that carry
// file:line:column, and quoting strings for the writers (they emit TOML themselves: toml++'s
// formatter would reorder keys and turn strings with newlines into multi-line literals, and our
// files are meant to be read and diffed by people).
#pragma once

#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "absl/status/statusor.h"

namespace shardline::internal {

// A TOML basic string: quotes, backslashes and control characters escaped; UTF-8 kept.
std::string TomlQuote(std::string_view s);

// TOML's own names for value types, as used in "expected X, got Y".
std::string_view TomlTypeName(toml::node_type t);

// Parses `text`; InvalidArgument "<source_name>:<line>:<column>: invalid TOML: ..." otherwise.
absl::StatusOr<toml::table> ParseTomlText(std::string_view text, std::string_view source_name);

}  // namespace shardline::internal
