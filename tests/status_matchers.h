// gMock matchers shared by the unit and integration tests: StatusIs(code, message_matcher)
// matches an absl::Status, or the status of an absl::StatusOr, by its code and its message, and
// explains a mismatch with the actual code and message.
#pragma once

#include <string>

#include <gmock/gmock.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shardline::testing {

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = [&]() -> const absl::Status& {
    if constexpr (requires { arg.status(); }) {
      return arg.status();
    } else {
      return arg;
    }
  }();
  if (s.code() != code) {
    *result_listener << "code is " << absl::StatusCodeToString(s.code()) << ": " << s.message();
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher, std::string(s.message()),
                                       result_listener);
}

}  // namespace shardline::testing
