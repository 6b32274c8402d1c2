// Connection strings: printing them without their password.
#pragma once

#include <string>
#include <string_view>

namespace shardline {

// The DSN (key=value form or postgres:// URI) with any password replaced by "********".
// If the DSN does not parse, returns "<unparseable connection string>" rather than risk
// printing a password.
std::string DsnWithoutPassword(std::string_view dsn);

}  // namespace shardline
