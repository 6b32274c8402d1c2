// Test helper: builds PGresults without a server (libpq's PQmakeEmptyPGresult +
// PQsetResultAttrs + PQsetvalue) and wraps them as shardline::Result / NodeResult.
#pragma once

#include <libpq-fe.h>

#include <optional>
#include <string>
#include <vector>

#include "pg_conn.h"
#include "result_impl.h"
#include "shardline/result.h"
#include "shardline/router.h"

namespace shardline::testing {

using FakeRow = std::vector<std::optional<std::string>>;  // nullopt = NULL

// Well-known type oids (pg_type.dat).
inline constexpr Oid kInt8Oid = 20;
inline constexpr Oid kTextOid = 25;

// A PGRES_TUPLES_OK result with text-format columns `columns` (all typed text unless `types`
// is given) and `rows`. Aborts the test binary on libpq allocation failure.
inline pg::ResultPtr MakeFakePgResult(const std::vector<std::string>& columns,
                                      const std::vector<FakeRow>& rows,
                                      const std::vector<Oid>& types = {},
                                      const std::vector<int>& formats = {}) {
  pg::ResultPtr res(PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK));
  if (!res) std::abort();
  std::vector<PGresAttDesc> attrs(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    attrs[c].name = const_cast<char*>(columns[c].c_str());  // copied by libpq
    attrs[c].tableid = 0;
    attrs[c].columnid = 0;
    attrs[c].format = c < formats.size() ? formats[c] : 0;
    attrs[c].typid = c < types.size() ? types[c] : kTextOid;
    attrs[c].typlen = -1;
    attrs[c].atttypmod = -1;
  }
  if (!PQsetResultAttrs(res.get(), static_cast<int>(attrs.size()), attrs.data())) std::abort();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      const auto& v = rows[r][c];
      // PQsetvalue copies; len -1 stores NULL.
      if (!PQsetvalue(res.get(), static_cast<int>(r), static_cast<int>(c),
                      v ? const_cast<char*>(v->data()) : nullptr,
                      v ? static_cast<int>(v->size()) : -1)) {
        std::abort();
      }
    }
  }
  return res;
}

inline Result MakeFakeResult(const std::string& node, const std::vector<std::string>& columns,
                             const std::vector<FakeRow>& rows,
                             const std::vector<Oid>& types = {},
                             const std::vector<int>& formats = {}) {
  return Result(std::make_shared<const internal::ResultImpl>(
      MakeFakePgResult(columns, rows, types, formats), node));
}

inline NodeResult MakeNodeResult(const std::string& node, const std::vector<std::string>& columns,
                                 const std::vector<FakeRow>& rows) {
  return NodeResult{node, MakeFakeResult(node, columns, rows)};
}

}  // namespace shardline::testing
