// Verification of moved ranges (see verify.h). The checksum pass groups by `hash(key) >> shift`
// (a shift chosen so that the ranges' span falls into at most `buckets` groups) and sums the row
// hash (see HashesExactly) as numeric beside count(*); the drill-down streams (key columns, row
// hash) of the mismatching buckets through a cursor per side and merges them; the repair deletes by key on the
// target and copies by key from the source (a parameterised SELECT with binary results streamed
// into a binary COPY on the target: values never pass through SQL text).
#include "verify.h"
#include "admin_conn.h"
#include "status_text.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "stats.h"
#include "table_info.h"

namespace shardline::migrate {
namespace {

using Clock = std::chrono::steady_clock;

// A key as its columns' text values (PK columns are never NULL on a table that has the PK).
using Key = std::vector<std::string>;

std::string RenderKey(const Key& key) {
  if (key.size() == 1) return key[0];
  std::string out = "(";
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (i > 0) out += ',';
    out += key[i];
  }
  return out + ")";
}

// `{"a","b"}`: an array literal of text values, each quoted and escaped, for a $n::type[] param.
std::string ArrayLiteral(const std::vector<const Key*>& keys, std::size_t column) {
  std::string out = "{";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : (*keys[i])[column]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// Everything about one table that both sides' statements need.
struct TablePlan {
  const TableConfig* config = nullptr;
  std::string quoted;                    // "schema"."table"
  std::vector<std::string> key;          // key columns (names)
  std::vector<std::string> key_types;    // their format_type() on the source
  std::string key_list;                  // t."a", t."b"
  std::string key_text_list;             // t."a"::text, t."b"::text
  std::string row_hash;                  // int8 hash of the row content (see RowHashFast)
  std::string column_list;               // "a", "b", ... (non-generated source columns)
  std::string select_column_list;        // t."a", t."b", ...
  std::string hash;                      // hash expression of the shard key
  std::string range_predicate;           // hash in the ranges
};

// Types whose extended hash function distinguishes exactly the values their text form does, so
// hash_record_extended over them is as strict as hashing the row's text (and much cheaper: no
// output functions). Others go through ::text inside the ROW: numeric (1.5 = 1.50 by value but
// not by text), float (-0 = 0), interval ('1 day' = '24 hours'), arrays, user types, ...
bool HashesExactly(std::string_view type) {
  const std::size_t paren = type.find('(');
  std::string base(type.substr(0, paren));
  if (paren != std::string_view::npos) {
    const std::size_t close = type.find(')', paren);
    if (close != std::string_view::npos) base += type.substr(close + 1);  // "timestamp(3) with ..."
  }
  static constexpr std::string_view kExact[] = {
      "bigint", "integer", "smallint", "text", "character varying", "character", "uuid",
      "boolean", "bytea", "date", "timestamp with time zone", "timestamp without time zone",
      "time without time zone", "jsonb", "oid", "name"};
  for (std::string_view t : kExact) {
    if (base == t) return true;
  }
  return false;
}

// hash_record_extended exists from PostgreSQL 14 on; older servers hash the row's text.
absl::StatusOr<bool> RowHashFast(pg::Conn& conn) {
  auto v = conn.Exec("SELECT current_setting('server_version_num')::int >= 140000");
  if (!v.ok()) return v.status();
  return v->Text(0, 0) == "t";
}

absl::StatusOr<TablePlan> PlanTable(pg::Conn& source, pg::Conn& target, const ShardMap& map,
                                    const TableConfig& table, const HashRanges& ranges) {
  auto src = DescribeTable(source, table.name);
  if (!src.ok()) return src.status();
  auto dst = DescribeTable(target, table.name);
  if (!dst.ok()) return dst.status();
  auto key = ResolveKey(*src, table, source.node());
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckCompatible(*src, *dst, source.node(), target.node()); !s.ok()) {
    return s;
  }
  auto fast = RowHashFast(source);
  if (!fast.ok()) return fast.status();
  if (*fast) {
    auto target_fast = RowHashFast(target);
    if (!target_fast.ok()) return target_fast.status();
    *fast = *target_fast;
  }
  TablePlan p;
  p.config = &table;
  p.quoted = src->quoted;
  p.key = *key;
  for (const std::string& k : p.key) {
    p.key_types.push_back(src->FindColumn(k)->type);
    if (!p.key_list.empty()) {
      p.key_list += ", ";
      p.key_text_list += ", ";
    }
    p.key_list += "t." + source.QuoteIdent(k);
    p.key_text_list += "t." + source.QuoteIdent(k) + "::text";
  }
  std::string row;
  for (const ColumnInfo& c : src->columns) {
    // Generated columns follow from the others (and may be plain columns on the other side).
    if (c.generated) continue;
    if (!row.empty()) {
      row += ", ";
      p.column_list += ", ";
      p.select_column_list += ", ";
    }
    const std::string q = "t." + source.QuoteIdent(c.name);
    row += HashesExactly(c.type) ? q : q + "::text";
    p.column_list += source.QuoteIdent(c.name);
    p.select_column_list += q;
  }
  p.row_hash = *fast ? fmt::format("hash_record_extended(ROW({}), 0)", row)
                     : fmt::format("hashtextextended(ROW({})::text, 0)", row);
  const std::string quoted_key = "t." + source.QuoteIdent(table.key);
  p.hash = HashSqlExpression(map.key_type(), quoted_key);
  p.range_predicate = HashRangesPredicate(map.key_type(), quoted_key, ranges);
  return p;
}

// Per bucket: count and the sum of row hashes (numeric text, exact).
struct BucketSum {
  std::int64_t count = 0;
  std::string sum;
  friend bool operator==(const BucketSum&, const BucketSum&) = default;
};
using BucketSums = std::map<std::int64_t, BucketSum>;

struct PassResult {
  BucketSums buckets;
  std::int64_t rows = 0;
  double seconds = 0;
};

absl::StatusOr<PassResult> ChecksumPass(pg::Conn& conn, const TablePlan& p, int shift) {
  const auto start = Clock::now();
  const std::string sql = fmt::format(
      "SELECT {} >> {} AS b, count(*), sum({})::text FROM {} AS t WHERE {} GROUP BY 1",
      p.hash, shift, p.row_hash, p.quoted, p.range_predicate);
  auto res = conn.Exec(sql);
  if (!res.ok()) return Annotate(res.status(), fmt::format("table {}", p.quoted));
  PassResult out;
  for (int r = 0; r < res->rows(); ++r) {
    BucketSum b{res->Int64Or0(r, 1), res->String(r, 2)};
    out.rows += b.count;
    out.buckets.emplace(res->Int64Or0(r, 0), std::move(b));
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

struct KeyRow {
  std::int64_t bucket = 0;
  Key key;
  std::string row_hash;
};

// Rows fetched per round trip by a drill-down cursor: the drill-down's memory bound.
constexpr int kDrillFetch = 10000;

// Reads (bucket, key, row hash) of the given buckets of one side through a cursor, ordered by
// bucket, then by the key columns' text in byte order (COLLATE "C", which is how std::string
// compares), kDrillFetch rows at a time: memory stays bounded however many rows differ.
// Single-threaded; opens a transaction on `conn` unless one is open (the snapshot's).
class DrillCursor {
 public:
  DrillCursor(pg::Conn& conn, const TablePlan& p) : conn_(conn), p_(p) {}

  absl::Status Open(int shift, const std::vector<std::int64_t>& buckets) {
    std::string array = "{";
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      if (i > 0) array += ',';
      array += std::to_string(buckets[i]);
    }
    array += '}';
    std::string order;
    for (const std::string& k : p_.key) {
      order += fmt::format(", t.{}::text COLLATE \"C\"", conn_.QuoteIdent(k));
    }
    if (PQtransactionStatus(conn_.raw()) == PQTRANS_IDLE) {
      if (auto s = conn_.Exec("BEGIN"); !s.ok()) return s.status();
      began_ = true;
    }
    const std::string sql = fmt::format(
        "DECLARE shardline_verify_drill NO SCROLL CURSOR FOR "
        "SELECT {hash} >> {shift}, {keys}, ({row})::text FROM {table} AS t "
        "WHERE {pred} AND ({hash} >> {shift}) = ANY($1::bigint[]) ORDER BY 1{order}",
        fmt::arg("hash", p_.hash), fmt::arg("shift", shift), fmt::arg("keys", p_.key_text_list),
        fmt::arg("row", p_.row_hash), fmt::arg("table", p_.quoted),
        fmt::arg("pred", p_.range_predicate), fmt::arg("order", order));
    if (auto s = conn_.Exec(sql, {array}); !s.ok()) return Fail(s.status());
    open_ = true;
    return Fetch();
  }

  // The current row, or nullptr after the last.
  const KeyRow* Peek() const { return pos_ < rows_.size() ? &rows_[pos_] : nullptr; }

  absl::Status Advance() {
    ++pos_;
    if (pos_ >= rows_.size() && !done_) return Fetch();
    return absl::OkStatus();
  }

  // Closes the cursor (and the transaction it opened). Safe to call twice.
  void Close() {
    if (open_) (void)conn_.Exec("CLOSE shardline_verify_drill");
    open_ = false;
    if (began_) (void)conn_.Exec("COMMIT");
    began_ = false;
  }
  ~DrillCursor() { Close(); }

 private:
  absl::Status Fail(const absl::Status& s) {
    if (began_) (void)conn_.Exec("ROLLBACK");
    began_ = false;
    open_ = false;
    return Annotate(s, fmt::format("table {}: drill-down", p_.quoted));
  }

  absl::Status Fetch() {
    auto res = conn_.Exec(fmt::format("FETCH {} FROM shardline_verify_drill", kDrillFetch));
    if (!res.ok()) return Fail(res.status());
    rows_.clear();
    pos_ = 0;
    const int nkey = static_cast<int>(p_.key.size());
    for (int r = 0; r < res->rows(); ++r) {
      KeyRow kr;
      kr.bucket = res->Int64Or0(r, 0);
      for (int c = 0; c < nkey; ++c) kr.key.push_back(res->String(r, 1 + c));
      kr.row_hash = res->String(r, 1 + nkey);
      rows_.push_back(std::move(kr));
    }
    done_ = res->rows() < kDrillFetch;
    return absl::OkStatus();
  }

  pg::Conn& conn_;
  const TablePlan& p_;
  std::vector<KeyRow> rows_;
  std::size_t pos_ = 0;
  bool done_ = false;
  bool open_ = false;
  bool began_ = false;
};

void Remember(std::vector<std::string>& list, const Key& key, std::size_t max) {
  if (list.size() < max) list.push_back(RenderKey(key));
}

// Classifies one key from both sides' row hashes (each sorted): counts and first keys into `out`;
// returns whether the key differs.
bool Classify(const Key& key, const std::vector<std::string>& s, const std::vector<std::string>& d,
              std::size_t max, TableVerifyResult& out) {
  if (s == d) return false;
  if (d.empty()) {
    ++out.missing;
    Remember(out.missing_keys, key, max);
    if (s.size() > 1) {
      out.duplicated += static_cast<std::int64_t>(s.size()) - 1;
      Remember(out.duplicated_keys, key, max);
    }
  } else if (s.empty()) {
    ++out.extra;
    Remember(out.extra_keys, key, max);
    if (d.size() > 1) {
      out.duplicated += static_cast<std::int64_t>(d.size()) - 1;
      Remember(out.duplicated_keys, key, max);
    }
  } else if (s.size() != d.size()) {
    out.duplicated += static_cast<std::int64_t>(s.size() > d.size() ? s.size() - d.size()
                                                                    : d.size() - s.size());
    Remember(out.duplicated_keys, key, max);
  } else {
    ++out.different;
    Remember(out.different_keys, key, max);
  }
  return true;
}

bool Before(const KeyRow& a, const KeyRow& b) {
  return a.bucket != b.bucket ? a.bucket < b.bucket : a.key < b.key;
}

// Merges both sides' cursors (same order) key by key into the result; the differing keys go to
// `repair_keys` when it is not null (every kind: the target's rows of a key are replaced).
absl::Status MergeDrill(DrillCursor& src, DrillCursor& dst, std::size_t max,
                        TableVerifyResult& out, std::vector<Key>* repair_keys) {
  for (;;) {
    const KeyRow* a = src.Peek();
    const KeyRow* b = dst.Peek();
    if (a == nullptr && b == nullptr) return absl::OkStatus();
    const KeyRow current = (b == nullptr || (a != nullptr && !Before(*b, *a))) ? *a : *b;
    std::vector<std::string> s;
    std::vector<std::string> d;
    for (const KeyRow* r; (r = src.Peek()) != nullptr && r->bucket == current.bucket &&
                          r->key == current.key;) {
      s.push_back(r->row_hash);
      if (absl::Status st = src.Advance(); !st.ok()) return st;
    }
    for (const KeyRow* r; (r = dst.Peek()) != nullptr && r->bucket == current.bucket &&
                          r->key == current.key;) {
      d.push_back(r->row_hash);
      if (absl::Status st = dst.Advance(); !st.ok()) return st;
    }
    std::sort(s.begin(), s.end());
    std::sort(d.begin(), d.end());
    if (Classify(current.key, s, d, max, out) && repair_keys != nullptr) {
      repair_keys->push_back(current.key);
    }
  }
}

// The key columns compared with arrays of key values: `(t."a", t."b") IN (SELECT * FROM
// unnest($1::bigint[], $2::text[]))`, parameters starting at $first.
std::string KeyInArrays(const TablePlan& p, int first) {
  std::string arrays;
  for (std::size_t c = 0; c < p.key.size(); ++c) {
    if (c > 0) arrays += ", ";
    arrays += fmt::format("${}::{}[]", first + static_cast<int>(c), p.key_types[c]);
  }
  return fmt::format("({}) IN (SELECT * FROM unnest({}))", p.key_list, arrays);
}

void AppendBE16(std::string& out, std::uint16_t v) {
  const std::uint16_t n = htons(v);
  out.append(reinterpret_cast<const char*>(&n), 2);
}
void AppendBE32(std::string& out, std::uint32_t v) {
  const std::uint32_t n = htonl(v);
  out.append(reinterpret_cast<const char*>(&n), 4);
}

// Replaces the target's rows of `keys` by the source's: in one target transaction, DELETE by key,
// then a binary COPY of the source rows fetched by key (binary results). Returns (deleted, copied).
absl::StatusOr<std::pair<std::int64_t, std::int64_t>> RepairKeys(pg::Conn& source,
                                                                 pg::Conn& target,
                                                                 const TablePlan& p,
                                                                 const std::vector<Key>& keys) {
  std::vector<const Key*> ptrs;
  ptrs.reserve(keys.size());
  for (const Key& k : keys) ptrs.push_back(&k);
  pg::Params params;
  for (std::size_t c = 0; c < p.key.size(); ++c) params.emplace_back(ArrayLiteral(ptrs, c));

  // Source rows by key, binary results.
  const std::string select = fmt::format("SELECT {} FROM {} AS t WHERE {}", p.select_column_list,
                                         p.quoted, KeyInArrays(p, 1));
  std::vector<const char*> values;
  for (const auto& v : params) values.push_back(v->c_str());
  pg::ResultPtr rows(PQexecParams(source.raw(), select.c_str(), static_cast<int>(values.size()),
                                  nullptr, values.data(), nullptr, nullptr, /*resultFormat=*/1));
  if (!rows || PQresultStatus(rows.get()) != PGRES_TUPLES_OK) {
    return Annotate(pg::StatusFromResult(rows.get(), source.node(), "repair: read source rows"),
                    fmt::format("table {}", p.quoted));
  }

  if (auto s = target.Exec("BEGIN"); !s.ok()) return s.status();
  auto fail = [&](const absl::Status& s) {
    (void)target.Exec("ROLLBACK");
    return Annotate(s, fmt::format("table {}: repair", p.quoted));
  };
  const std::string del = fmt::format("DELETE FROM {} AS t WHERE {}", p.quoted, KeyInArrays(p, 1));
  auto deleted = target.Exec(del, params);
  if (!deleted.ok()) return fail(deleted.status());
  const int ntuples = PQntuples(rows.get());
  if (ntuples > 0) {
    auto copy = target.Exec(
        fmt::format("COPY {} ({}) FROM STDIN (FORMAT binary)", p.quoted, p.column_list));
    if (!copy.ok()) return fail(copy.status());
    std::string buf("PGCOPY\n\377\r\n\0", 11);
    AppendBE32(buf, 0);  // flags
    AppendBE32(buf, 0);  // header extension length
    const int nfields = PQnfields(rows.get());
    for (int r = 0; r < ntuples; ++r) {
      AppendBE16(buf, static_cast<std::uint16_t>(nfields));
      for (int c = 0; c < nfields; ++c) {
        if (PQgetisnull(rows.get(), r, c)) {
          AppendBE32(buf, 0xFFFFFFFFu);
          continue;
        }
        const int len = PQgetlength(rows.get(), r, c);
        AppendBE32(buf, static_cast<std::uint32_t>(len));
        buf.append(PQgetvalue(rows.get(), r, c), static_cast<std::size_t>(len));
      }
      if (buf.size() > (1 << 20)) {
        if (PQputCopyData(target.raw(), buf.data(), static_cast<int>(buf.size())) != 1) {
          return fail(pg::StatusFromConn(target.raw(), target.node(), "repair: COPY"));
        }
        buf.clear();
      }
    }
    AppendBE16(buf, 0xFFFF);  // trailer
    if (PQputCopyData(target.raw(), buf.data(), static_cast<int>(buf.size())) != 1 ||
        PQputCopyEnd(target.raw(), nullptr) != 1) {
      return fail(pg::StatusFromConn(target.raw(), target.node(), "repair: COPY"));
    }
    pg::ResultPtr end(PQgetResult(target.raw()));
    const bool ok = end && PQresultStatus(end.get()) == PGRES_COMMAND_OK;
    absl::Status copy_status =
        ok ? absl::OkStatus() : pg::StatusFromResult(end.get(), target.node(), "repair: COPY");
    while (PGresult* extra = PQgetResult(target.raw())) PQclear(extra);
    if (!copy_status.ok()) return fail(copy_status);
  }
  if (auto s = target.Exec("COMMIT"); !s.ok()) return fail(s.status());
  return std::make_pair(deleted->AffectedRows(), static_cast<std::int64_t>(ntuples));
}

// Opens the snapshot transaction on `conn` when `snapshot` is set.
absl::Status BeginSnapshot(pg::Conn& conn, const std::string& snapshot, std::string_view side) {
  if (snapshot.empty()) return absl::OkStatus();
  if (auto s = conn.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); !s.ok()) return s.status();
  // SET TRANSACTION SNAPSHOT takes no parameters: the id goes in as a quoted literal.
  if (auto s = conn.Exec("SET TRANSACTION SNAPSHOT " + conn.QuoteLiteral(snapshot)); !s.ok()) {
    (void)conn.Exec("ROLLBACK");
    return Annotate(s.status(), fmt::format("{} snapshot {}", side, snapshot));
  }
  return absl::OkStatus();
}

void EndSnapshot(pg::Conn& conn, const std::string& snapshot) {
  if (!snapshot.empty()) (void)conn.Exec("COMMIT");
}

// Compares one table; fills `out`, and `repair_keys` with every key that differs.
absl::Status VerifyTable(pg::Conn& source, pg::Conn& target, const TablePlan& p, int shift,
                         const VerifyOptions& options, TableVerifyResult& out,
                         std::vector<Key>& repair_keys) {
  out.table = p.config->name;
  absl::StatusOr<PassResult> src = absl::UnknownError("not run");
  absl::StatusOr<PassResult> dst = absl::UnknownError("not run");
  if (options.parallel) {
    std::thread t([&] { dst = ChecksumPass(target, p, shift); });
    src = ChecksumPass(source, p, shift);
    t.join();
  } else {
    src = ChecksumPass(source, p, shift);
    dst = ChecksumPass(target, p, shift);
  }
  if (!src.ok()) return src.status();
  if (!dst.ok()) return dst.status();
  out.source_rows = src->rows;
  out.target_rows = dst->rows;
  out.source_seconds = src->seconds;
  out.target_seconds = dst->seconds;
  std::vector<std::int64_t> mismatched;
  std::int64_t buckets = 0;
  auto a = src->buckets.begin();
  auto b = dst->buckets.begin();
  while (a != src->buckets.end() || b != dst->buckets.end()) {
    ++buckets;
    if (b == dst->buckets.end() || (a != src->buckets.end() && a->first < b->first)) {
      mismatched.push_back((a++)->first);
    } else if (a == src->buckets.end() || b->first < a->first) {
      mismatched.push_back((b++)->first);
    } else {
      if (!(a->second == b->second)) mismatched.push_back(a->first);
      ++a;
      ++b;
    }
  }
  out.buckets = static_cast<int>(buckets);
  out.mismatched_buckets = static_cast<int>(mismatched.size());
  if (mismatched.empty()) return absl::OkStatus();
  // Both sides sort their mismatching buckets at the first FETCH: open them concurrently.
  DrillCursor src_cursor(source, p);
  DrillCursor dst_cursor(target, p);
  absl::Status src_open;
  absl::Status dst_open;
  {
    std::thread t([&] { dst_open = dst_cursor.Open(shift, mismatched); });
    src_open = src_cursor.Open(shift, mismatched);
    t.join();
  }
  if (!src_open.ok()) return src_open;
  if (!dst_open.ok()) return dst_open;
  absl::Status merged = MergeDrill(src_cursor, dst_cursor, options.max_keys_reported, out,
                                   options.repair ? &repair_keys : nullptr);
  src_cursor.Close();
  dst_cursor.Close();
  return merged;
}

absl::StatusOr<std::vector<TableVerifyResult>> VerifyAll(
    pg::Conn& source, pg::Conn& target, const std::vector<TablePlan>& plans, int shift,
    const VerifyOptions& options, std::vector<std::vector<Key>>* repair_keys) {
  if (absl::Status s = BeginSnapshot(source, options.source_snapshot, "source"); !s.ok()) return s;
  if (absl::Status s = BeginSnapshot(target, options.target_snapshot, "target"); !s.ok()) {
    EndSnapshot(source, options.source_snapshot);
    return s;
  }
  std::vector<TableVerifyResult> results(plans.size());
  std::vector<std::vector<Key>> keys(plans.size());
  absl::Status status;
  for (std::size_t i = 0; i < plans.size() && status.ok(); ++i) {
    status = VerifyTable(source, target, plans[i], shift, options, results[i], keys[i]);
  }
  EndSnapshot(source, options.source_snapshot);
  EndSnapshot(target, options.target_snapshot);
  if (!status.ok()) return status;
  if (repair_keys != nullptr) *repair_keys = std::move(keys);
  return results;
}

}  // namespace

int BucketShiftFor(std::int64_t lo, std::int64_t hi, int buckets) {
  if (buckets < 1) buckets = 1;
  for (int shift = 0; shift < 64; ++shift) {
    // Arithmetic shifts, as the server's bigint >> does.
    // Buckets - 1 in unsigned arithmetic: (hi >> shift) >= (lo >> shift), and the difference
    // fits in 64 unsigned bits even for the whole space at shift 0.
    const std::uint64_t last = static_cast<std::uint64_t>(hi >> shift) -
                               static_cast<std::uint64_t>(lo >> shift);
    if (last < static_cast<std::uint64_t>(buckets)) return shift;
  }
  return 63;
}

bool VerifyReport::clean() const {
  const std::vector<TableVerifyResult>& t = repaired ? after_repair : tables;
  for (const TableVerifyResult& r : t) {
    if (!r.clean()) return false;
  }
  return true;
}

std::int64_t VerifyReport::total_source_rows() const {
  std::int64_t n = 0;
  for (const TableVerifyResult& r : tables) n += r.source_rows;
  return n;
}

absl::StatusOr<VerifyReport> VerifyRanges(pg::Conn& source, pg::Conn& target, const ShardMap& map,
                                          const HashRanges& ranges, const VerifyOptions& options) {
  if (options.buckets < 1 || options.buckets > (1 << 20)) {
    return absl::InvalidArgumentError(
        fmt::format("--buckets {}: give 1..1048576 buckets", options.buckets));
  }
  if (ranges.empty()) return absl::InvalidArgumentError("verify: no hash range given");
  std::int64_t lo = kMaxHash;
  std::int64_t hi = kMinHash;
  for (const auto& [rlo, rhi] : ranges) {
    if (rlo > rhi) {
      return absl::InvalidArgumentError(fmt::format("range {}..{}: lo > hi", rlo, rhi));
    }
    lo = std::min(lo, rlo);
    hi = std::max(hi, rhi);
  }
  auto tables = SelectShardedTables(map, options.tables);
  if (!tables.ok()) return tables.status();
  std::vector<TablePlan> plans;
  for (const TableConfig* t : *tables) {
    auto p = PlanTable(source, target, map, *t, ranges);
    if (!p.ok()) return p.status();
    plans.push_back(*std::move(p));
  }
  const int shift = BucketShiftFor(lo, hi, options.buckets);

  VerifyReport report;
  report.source_node = source.node();
  report.target_node = target.node();
  report.ranges = ranges;
  std::vector<std::vector<Key>> repair_keys;
  auto first = VerifyAll(source, target, plans, shift, options, &repair_keys);
  if (!first.ok()) return first.status();
  report.tables = *std::move(first);
  if (!options.repair || report.clean()) return report;

  // Repair: the source is read at the same snapshot as the comparison when one was given.
  if (absl::Status s = BeginSnapshot(source, options.source_snapshot, "source"); !s.ok()) return s;
  absl::Status status;
  const std::size_t batch = std::max<std::size_t>(1, options.repair_batch);
  for (std::size_t ti = 0; ti < plans.size() && status.ok(); ++ti) {
    const std::vector<Key>& keys = repair_keys[ti];
    for (std::size_t from = 0; from < keys.size() && status.ok(); from += batch) {
      const std::vector<Key> chunk(keys.begin() + static_cast<std::ptrdiff_t>(from),
                                   keys.begin() + static_cast<std::ptrdiff_t>(
                                                      std::min(keys.size(), from + batch)));
      auto done = RepairKeys(source, target, plans[ti], chunk);
      if (!done.ok()) {
        status = done.status();
        break;
      }
      report.tables[ti].repair_deleted += done->first;
      report.tables[ti].repair_copied += done->second;
    }
  }
  EndSnapshot(source, options.source_snapshot);
  if (!status.ok()) return status;
  report.repaired = true;
  auto again = VerifyAll(source, target, plans, shift, options, nullptr);
  if (!again.ok()) return again.status();
  report.after_repair = *std::move(again);
  return report;
}

absl::StatusOr<std::vector<OrphanResult>> FindOrphans(const ShardMap& map,
                                                      const std::vector<std::string>& tables,
                                                      std::size_t max_keys) {
  auto selected = SelectShardedTables(map, tables);
  if (!selected.ok()) return selected.status();
  const std::size_t n = map.nodes().size();
  std::vector<std::vector<OrphanResult>> per_node(n);
  std::vector<absl::Status> statuses(n);
  std::vector<std::thread> threads;
  for (std::size_t ni = 0; ni < n; ++ni) {
    threads.emplace_back([&, ni] {
      const NodeConfig& node = map.nodes()[ni];
      auto conn = ConnectAdmin(node);
      if (!conn.ok()) {
        statuses[ni] = conn.status();
        return;
      }
      pg::Conn& c = **conn;
      const auto owned = map.OwnedRanges(static_cast<int>(ni));
      for (const TableConfig* t : *selected) {
        auto info = DescribeTable(c, t->name);
        if (!info.ok()) {
          statuses[ni] = info.status();
          return;
        }
        auto key = ResolveKey(*info, *t, node.name);
        if (!key.ok()) {
          statuses[ni] = key.status();
          return;
        }
        const std::string quoted_key = "t." + c.QuoteIdent(t->key);
        const std::string pred =
            fmt::format("{} IS NOT NULL AND NOT {}", quoted_key,
                        HashRangesPredicate(map.key_type(), quoted_key, owned));
        std::string key_text;
        std::string order;
        for (const std::string& k : *key) {
          if (!key_text.empty()) {
            key_text += ", ";
            order += ", ";
          }
          key_text += "t." + c.QuoteIdent(k) + "::text";
          order += "t." + c.QuoteIdent(k);
        }
        auto count = c.Exec(fmt::format("SELECT count(*) FROM {} AS t WHERE {}", info->quoted,
                                        pred));
        if (!count.ok()) {
          statuses[ni] = Annotate(count.status(), fmt::format("table {}", info->quoted));
          return;
        }
        OrphanResult r;
        r.node = node.name;
        r.table = t->name;
        r.rows = count->Int64Or0(0, 0);
        if (r.rows > 0 && max_keys > 0) {
          auto keys = c.Exec(fmt::format("SELECT {} FROM {} AS t WHERE {} ORDER BY {} LIMIT {}",
                                         key_text, info->quoted, pred, order, max_keys));
          if (!keys.ok()) {
            statuses[ni] = Annotate(keys.status(), fmt::format("table {}", info->quoted));
            return;
          }
          for (int row = 0; row < keys->rows(); ++row) {
            Key k;
            for (int col = 0; col < keys->cols(); ++col) k.push_back(keys->String(row, col));
            r.first_keys.push_back(RenderKey(k));
          }
        }
        per_node[ni].push_back(std::move(r));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : statuses) {
    if (!s.ok()) return s;
  }
  // Table-major order, nodes in map order within a table.
  std::vector<OrphanResult> out;
  for (std::size_t ti = 0; ti < selected->size(); ++ti) {
    for (std::size_t ni = 0; ni < n; ++ni) out.push_back(per_node[ni][ti]);
  }
  return out;
}

}  // namespace shardline::migrate
