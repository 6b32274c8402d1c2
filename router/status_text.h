// The two status helpers the library, the migration engine and the CLI share (one copy instead
// of one per file): a status's message as a std::string_view, and a status annotated with where
// it happened, its code and payloads kept.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/cord.h"

namespace shardline {

// The message of `s` as a std::string_view (Debian's abseil has its own string_view type, which
// fmt and std::string do not take): valid while `s` lives and is not modified.
inline std::string_view Msg(const absl::Status& s) {
  const auto m = s.message();
  return std::string_view(m.data(), m.size());
}

// `s` with "what: " before its message; the code and every payload (SQLSTATE, node, write
// outcome) are kept, so a caller up the stack still sees what the node said (a timeout's
// explanation reads the SQLSTATE). OK stays OK.
inline absl::Status Annotate(const absl::Status& s, std::string_view what) {
  if (s.ok()) return s;
  std::string message(what);
  message += ": ";
  message += Msg(s);
  absl::Status out(s.code(), message);
  s.ForEachPayload([&out](auto url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace shardline
