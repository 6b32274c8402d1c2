// The private side of shardline::Result (include/shardline/result.h): the owned PGresult, the
// node that produced it, and the column names for lookup. Built by the statement layer
// (statement.cc) and by tests (tests/unit/fake_result.h); never seen by application code.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pg_conn.h"
#include "shardline/result.h"

namespace shardline::internal {

// Immutable after construction, so shared by every copy of a Result and readable from any
// thread.
struct ResultImpl {
  ResultImpl(pg::ResultPtr r, std::string n);

  // Exact (case-sensitive) column lookup; -1 when absent. Unlike PQfnumber, does not fold
  // case or interpret quotes: the name is compared as the server returned it.
  int ColumnIndex(std::string_view name) const;

  const pg::ResultPtr res;  // may be null only for an empty Result
  const std::string node;
  const int rows;
  const int columns;
  std::vector<std::string_view> column_names;  // point into `res`
};

}  // namespace shardline::internal
