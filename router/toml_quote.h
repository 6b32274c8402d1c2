// Writing TOML by hand: the map and plan writers emit TOML text themselves (toml++'s formatter
// would reorder keys and turn strings with newlines into multi-line literals, and our files are
// meant to be read and diffed by people), so they share this one string quoter.
#pragma once

#include <string>
#include <string_view>

namespace shardline::internal {

// A TOML basic string: quotes, backslashes and control characters escaped; UTF-8 kept.
std::string TomlQuote(std::string_view s);

}  // namespace shardline::internal
