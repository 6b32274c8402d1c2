// Checking a ledger against the nodes (see check_ledger.h).
#include "check_ledger.h"

#include <map>
#include <set>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "app_tables.h"
#include "pg_conn.h"
#include "shardline/hash.h"

namespace shardline::loadgen {
namespace {

struct RowKey {
  std::string table;
  std::int64_t user_id = 0;
  std::int64_t id = 0;  // 0 for tables keyed by user_id alone
  auto operator<=>(const RowKey&) const = default;
};

struct Expectation {
  std::set<std::uint64_t> accepted;
};

std::string Describe(const RowKey& k, const LedgeredTable& t) {
  return t.has_id ? fmt::format("{} user_id={} id={}", k.table, k.user_id, k.id)
                  : fmt::format("{} user_id={}", k.table, k.user_id);
}

std::string ArrayLiteral(const std::vector<std::int64_t>& v, std::size_t from, std::size_t to) {
  std::string out = "{";
  for (std::size_t i = from; i < to; ++i) {
    if (i > from) out += ',';
    out += std::to_string(v[i]);
  }
  out += '}';
  return out;
}

// What one node reported: rows found (key -> content hash).
using Found = std::map<RowKey, std::uint64_t>;

// Looks up `keys` (all of table `t`) on `conn`; adds what exists to `found`.
absl::Status Lookup(pg::Conn& conn, const LedgeredTable& t, const std::vector<RowKey>& keys,
                    std::size_t batch, Found& found) {
  std::string cols;
  for (std::string_view c : t.content_columns) cols += ", " + conn.QuoteIdent(c);
  const std::string table = conn.QuoteIdent(t.name);
  const std::string sql =
      t.has_id ? fmt::format("SELECT user_id, id{} FROM {} WHERE (user_id, id) IN "
                             "(SELECT * FROM unnest($1::bigint[], $2::bigint[]))",
                             cols, table)
               : fmt::format("SELECT user_id, 0::bigint{} FROM {} WHERE user_id = ANY($1::bigint[])",
                             cols, table);
  std::vector<std::int64_t> uids, ids;
  for (const RowKey& k : keys) {
    uids.push_back(k.user_id);
    ids.push_back(k.id);
  }
  for (std::size_t from = 0; from < keys.size(); from += batch) {
    const std::size_t to = std::min(keys.size(), from + batch);
    pg::Params params = {ArrayLiteral(uids, from, to)};
    if (t.has_id) params.push_back(ArrayLiteral(ids, from, to));
    auto r = conn.Exec(sql, params);
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          fmt::format("checking table {}: {}", t.name, std::string(r.status().message())));
    }
    for (int row = 0; row < r->rows(); ++row) {
      std::vector<std::optional<std::string_view>> values;
      for (int c = 0; c < static_cast<int>(t.content_columns.size()); ++c) {
        if (r->IsNull(row, 2 + c)) {
          values.emplace_back(std::nullopt);
        } else {
          values.emplace_back(r->Text(row, 2 + c));
        }
      }
      found[RowKey{std::string(t.name), r->Int64Or0(row, 0), r->Int64Or0(row, 1)}] =
          ContentHash(values);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CheckLedgerResult> CheckLedger(const std::vector<LedgerEntry>& entries,
                                              const ShardMap& map,
                                              const CheckLedgerOptions& options) {
  CheckLedgerResult result;
  result.entries = entries.size();

  // Per row: the index of the last acknowledged write; then the contents accepted.
  struct History {
    std::vector<std::tuple<std::size_t, std::uint64_t, bool>> writes;  // (index, hash, acked)
  };
  std::map<RowKey, History> rows;
  // Unknown-outcome writes whose row id is unknown (id 0): (table, user) -> (index, hash).
  std::map<std::pair<std::string, std::int64_t>, std::vector<std::pair<std::size_t, std::uint64_t>>>
      user_unknowns;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const LedgerEntry& e = entries[i];
    const LedgeredTable* t = FindLedgeredTable(e.table);
    if (t == nullptr) {
      return absl::InvalidArgumentError(
          fmt::format("ledger entry {} names table '{}', which the load generator does not write",
                      i + 1, e.table));
    }
    const std::int64_t id = t->has_id ? e.id.value_or(0) : 0;
    if (t->has_id && id == 0) {
      if (!e.acked) user_unknowns[{e.table, e.user_id}].emplace_back(i, e.hash);
      continue;
    }
    rows[RowKey{e.table, e.user_id, id}].writes.emplace_back(i, e.hash, e.acked);
  }

  std::map<RowKey, Expectation> expect;
  for (const auto& [key, h] : rows) {
    std::optional<std::size_t> last_ack;
    for (const auto& [index, hash, acked] : h.writes) {
      if (acked) last_ack = index;
    }
    if (!last_ack) {
      ++result.unacked_only;
      continue;
    }
    Expectation& x = expect[key];
    for (const auto& [index, hash, acked] : h.writes) {
      if (index >= *last_ack) x.accepted.insert(hash);
    }
    auto it = user_unknowns.find({key.table, key.user_id});
    if (it != user_unknowns.end()) {
      for (const auto& [index, hash] : it->second) {
        if (index > *last_ack) x.accepted.insert(hash);
      }
    }
  }
  result.rows = expect.size();

  // Per node and table: the keys it must hold (owned) and, when strict, those it must not.
  const std::size_t n = map.nodes().size();
  std::vector<std::map<std::string, std::vector<RowKey>>> owned(n), foreign(n);
  std::map<RowKey, int> owner_of;
  for (const auto& [key, x] : expect) {
    const std::size_t range = map.RangeIndex(HashInt8(key.user_id));
    const int owner = map.OwnerNodeIndex(range);
    owner_of[key] = owner;
    owned[static_cast<std::size_t>(owner)][key.table].push_back(key);
    if (options.strict) {
      for (std::size_t node = 0; node < n; ++node) {
        if (static_cast<int>(node) != owner) foreign[node][key.table].push_back(key);
      }
    }
  }

  std::vector<Found> found_owned(n), found_foreign(n);
  std::vector<absl::Status> status(n);
  std::vector<std::thread> threads;
  for (std::size_t node = 0; node < n; ++node) {
    threads.emplace_back([&, node] {
      const NodeConfig& cfg = map.nodes()[node];
      auto conn = pg::Conn::Connect(cfg.dsn, cfg.name);
      if (!conn.ok()) {
        status[node] = conn.status();
        return;
      }
      (void)(*conn)->Exec("SELECT set_config('application_name', $1, false)",
                          {options.application_name});
      for (const auto& [table, keys] : owned[node]) {
        status[node] = Lookup(**conn, *FindLedgeredTable(table), keys, options.batch,
                              found_owned[node]);
        if (!status[node].ok()) return;
      }
      for (const auto& [table, keys] : foreign[node]) {
        status[node] = Lookup(**conn, *FindLedgeredTable(table), keys, options.batch,
                              found_foreign[node]);
        if (!status[node].ok()) return;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (std::size_t node = 0; node < n; ++node) {
    if (!status[node].ok()) {
      return absl::Status(status[node].code(),
                          fmt::format("node {}: {}", map.nodes()[node].name,
                                      std::string(status[node].message())));
    }
  }

  auto note = [&](std::string problem) {
    if (result.problems.size() < options.max_listed) result.problems.push_back(std::move(problem));
  };
  for (const auto& [key, x] : expect) {
    const int owner = owner_of[key];
    const LedgeredTable& t = *FindLedgeredTable(key.table);
    const NodeConfig& node = map.nodes()[static_cast<std::size_t>(owner)];
    const RangeConfig& range = map.RangeFor(HashInt8(key.user_id));
    const Found& f = found_owned[static_cast<std::size_t>(owner)];
    auto it = f.find(key);
    if (it == f.end()) {
      ++result.missing;
      note(fmt::format("missing: {} on node {} (owner of range {}..{})", Describe(key, t),
                       node.name, range.lo, range.hi));
    } else if (!x.accepted.contains(it->second)) {
      ++result.wrong_content;
      note(fmt::format("wrong content: {} on node {}: content hash {:016x} is not what the last "
                       "acknowledged write stored",
                       Describe(key, t), node.name, it->second));
    } else {
      ++result.present;
    }
    if (options.strict) {
      for (std::size_t other = 0; other < n; ++other) {
        if (static_cast<int>(other) == owner) continue;
        if (found_foreign[other].contains(key)) {
          ++result.elsewhere;
          note(fmt::format("elsewhere: {} is also on node {} (owner is {})", Describe(key, t),
                           map.nodes()[other].name, node.name));
        }
      }
    }
  }
  return result;
}

}  // namespace shardline::loadgen
