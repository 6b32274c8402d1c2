// The backfill engine: see backfill.h.
#include "backfill.h"
#include "admin_conn.h"
#include "status_text.h"
#include "txn.h"

#include <algorithm>
#include <csignal>
#include <deque>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "backfill_checkpoint.h"
#include "mutex.h"
#include "pg_conn.h"
#include "table_info.h"

namespace shardline::migrate {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The binary COPY header (signature, flags, header extension length) and trailer.
const std::string& CopyHeader() {
  static const std::string* const kHeader =
      new std::string("PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
  return *kHeader;
}
constexpr char kCopyTrailer[2] = {'\377', '\377'};

void AppendInt32(std::string& out, std::int32_t v) {
  const auto u = static_cast<std::uint32_t>(v);
  const char b[4] = {static_cast<char>(u >> 24), static_cast<char>(u >> 16),
                     static_cast<char>(u >> 8), static_cast<char>(u)};
  out.append(b, 4);
}

// One batch read from the source, already framed as binary COPY tuples.
struct Batch {
  std::string copy_data;              // tuples only (no header, no trailer)
  std::int64_t rows = 0;
  std::vector<std::string> last_key;  // binary values of the last row's key columns
  bool last = false;                  // fewer rows than asked: the source is exhausted
  absl::Status status;                // a failed read (then nothing else is set)
};

// A bounded hand-off between the reader thread and the writer. Thread-safe.
class BatchQueue {
 public:
  explicit BatchQueue(std::size_t capacity) : capacity_(capacity) {}

  // Blocks while full; false when the consumer cancelled (the batch is dropped).
  bool Push(Batch&& b) ABSL_LOCKS_EXCLUDED(mu_) {
    internal::MutexLock lock(&mu_);
    while (!cancelled_ && items_.size() >= capacity_) not_full_.Wait(&mu_);
    if (cancelled_) return false;
    items_.push_back(std::move(b));
    not_empty_.Signal();
    return true;
  }
  // Blocks until a batch is there.
  Batch Pop() ABSL_LOCKS_EXCLUDED(mu_) {
    internal::MutexLock lock(&mu_);
    while (items_.empty()) not_empty_.Wait(&mu_);
    Batch b = std::move(items_.front());
    items_.pop_front();
    not_full_.Signal();
    return b;
  }
  // Drops what is queued and makes every later Push return false.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_) {
    internal::MutexLock lock(&mu_);
    cancelled_ = true;
    items_.clear();
    not_full_.SignalAll();
  }

 private:
  const std::size_t capacity_;
  internal::Mutex mu_;
  internal::CondVar not_full_;
  internal::CondVar not_empty_;
  std::deque<Batch> items_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// Everything known about one table of one pair after the preconditions passed.
struct TablePlan {
  const TableConfig* config = nullptr;
  TableInfo source;
  TableInfo target;
  std::vector<std::string> key;
  std::string column_list;         // quoted, non-generated source columns
  std::vector<int> key_positions;  // index of each key column in column_list
  std::string quoted_key_list;
  std::string range_predicate;     // over the quoted shard-key column
  std::int64_t estimated_rows = 0;
  BackfillJobKey job;
};

// "(k1, k2) > ($1, $2)" with parameter numbers from `first_param`.
std::string KeyAfter(const std::string& quoted_key_list, std::size_t n, int first_param) {
  std::string params;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) params += ", ";
    params += fmt::format("${}", first_param + static_cast<int>(i));
  }
  return fmt::format("({}) > ({})", quoted_key_list, params);
}

// The type OIDs of the key columns on `conn` (user types differ between servers).
absl::StatusOr<std::vector<Oid>> KeyTypes(pg::Conn& conn, const TablePlan& t,
                                          const std::string& quoted_table) {
  auto r = conn.Exec(fmt::format("SELECT {} FROM {} LIMIT 0", t.quoted_key_list, quoted_table));
  if (!r.ok()) return r.status();
  std::vector<Oid> out;
  for (int i = 0; i < r->cols(); ++i) out.push_back(PQftype(r->get(), i));
  return out;
}

pg::Params KeyParams(const std::vector<std::string>& key) {
  pg::Params p;
  for (const std::string& k : key) p.emplace_back(k);
  return p;
}

// Reads the table's rows in the ranges in keyset order, batch by batch, into `queue`.
void ReadBatches(pg::Conn& source, const TablePlan& t, std::int64_t batch_rows,
                 std::optional<std::vector<std::string>> after, const std::vector<Oid>& key_oids,
                 BatchQueue& queue) {
  const std::string first_sql =
      fmt::format("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}", t.column_list,
                  t.source.quoted, t.range_predicate, t.quoted_key_list, batch_rows);
  const std::string next_sql = fmt::format(
      "SELECT {} FROM {} WHERE {} AND {} ORDER BY {} LIMIT {}", t.column_list, t.source.quoted,
      t.range_predicate, KeyAfter(t.quoted_key_list, t.key.size(), 1), t.quoted_key_list,
      batch_rows);
  std::size_t reserve = 0;
  while (true) {
    Batch b;
    auto r = after ? source.ExecBinary(next_sql, KeyParams(*after), key_oids, true)
                   : source.ExecBinary(first_sql, {}, {}, true);
    if (!r.ok()) {
      b.status = Annotate(r.status(), fmt::format("reading table {}", t.config->name));
      queue.Push(std::move(b));
      return;
    }
    PGresult* res = r->get();
    const int rows = PQntuples(res);
    const int cols = PQnfields(res);
    b.copy_data.reserve(reserve);
    for (int row = 0; row < rows; ++row) {
      const char n[2] = {static_cast<char>(cols >> 8), static_cast<char>(cols)};
      b.copy_data.append(n, 2);
      for (int col = 0; col < cols; ++col) {
        if (PQgetisnull(res, row, col)) {
          AppendInt32(b.copy_data, -1);
          continue;
        }
        const int len = PQgetlength(res, row, col);
        AppendInt32(b.copy_data, len);
        b.copy_data.append(PQgetvalue(res, row, col), static_cast<std::size_t>(len));
      }
    }
    reserve = std::max(reserve, b.copy_data.size());
    b.rows = rows;
    b.last = rows < batch_rows;
    if (rows > 0) {
      std::vector<std::string> key;
      for (int pos : t.key_positions) {
        key.emplace_back(PQgetvalue(res, rows - 1, pos),
                         static_cast<std::size_t>(PQgetlength(res, rows - 1, pos)));
      }
      b.last_key = key;
      after = std::move(key);
    }
    const bool last = b.last;
    r = pg::Result();  // free the result before possibly waiting for the writer
    if (!queue.Push(std::move(b)) || last) return;
  }
}

// Runs one statement, returning the affected rows.
absl::StatusOr<std::int64_t> ExecCount(pg::Conn& conn, const std::string& sql,
                                       const pg::Params& params, const std::vector<Oid>& types) {
  auto r = conn.ExecBinary(sql, params, types, false);
  if (!r.ok()) return r.status();
  return r->AffectedRows();
}

// A transaction on the target that writes only the checkpoint.
absl::Status CommitCheckpoint(pg::Conn& target, CheckpointStore& store, const BackfillJobKey& job,
                              const BackfillCheckpoint& cp) {
  Txn txn(target);
  if (auto s = txn.Begin(); !s.ok()) return s;
  if (auto s = store.SaveInTargetTransaction(target, job, cp); !s.ok()) return s;
  if (auto s = txn.Commit(); !s.ok()) return s;
  return store.SaveCommitted(job, cp);
}

// Streams one batch into the target inside an open transaction.
absl::Status CopyBatch(pg::Conn& target, const TablePlan& t, const Batch& b) {
  auto started = target.Exec(
      fmt::format("COPY {} ({}) FROM STDIN (FORMAT binary)", t.target.quoted, t.column_list));
  if (!started.ok()) return started.status();
  PGconn* c = target.raw();
  const auto put = [&](const char* data, std::size_t n) {
    return PQputCopyData(c, data, static_cast<int>(n)) == 1;
  };
  bool ok = put(CopyHeader().data(), CopyHeader().size());
  // PQputCopyData takes an int length: send large batches in pieces.
  constexpr std::size_t kPiece = std::size_t{1} << 30;
  for (std::size_t pos = 0; ok && pos < b.copy_data.size(); pos += kPiece) {
    ok = put(b.copy_data.data() + pos, std::min(kPiece, b.copy_data.size() - pos));
  }
  ok = ok && put(kCopyTrailer, 2);
  if (PQputCopyEnd(c, ok ? nullptr : "backfill: send failed") != 1) {
    return pg::StatusFromConn(c, target.node(), "COPY");
  }
  absl::Status status;
  while (PGresult* raw = PQgetResult(c)) {
    pg::ResultPtr res(raw);
    if (PQresultStatus(res.get()) != PGRES_COMMAND_OK && status.ok()) {
      status = pg::StatusFromResult(res.get(), target.node(), "COPY");
    }
  }
  if (status.ok() && !ok) status = pg::StatusFromConn(c, target.node(), "COPY");
  return status;
}

void KillForTest(const BackfillOptions& o, KillPointForTest point, std::int64_t batch) {
  if (o.kill_point_for_test == point && o.kill_at_batch_for_test == batch) std::raise(SIGKILL);
}

// Sleeps so that `rows_done` rows took at least rows_done / rate seconds since `start`.
double Throttle(double rate, std::int64_t rows_done, Clock::time_point start) {
  if (rate <= 0) return 0;
  const auto due = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(static_cast<double>(rows_done) / rate));
  const auto now = Clock::now();
  if (due <= now) return 0;
  std::this_thread::sleep_until(due);
  return std::chrono::duration<double>(due - now).count();
}

// Copies one table of one pair. `run_rows` / `run_start` are the run's throttle state.
absl::StatusOr<TableBackfillResult> CopyTable(pg::Conn& target, const NodeConfig& from,
                                              CheckpointStore& store, const TablePlan& t,
                                              const BackfillOptions& o, std::int64_t& run_rows,
                                              Clock::time_point run_start) {
  TableBackfillResult res;
  res.table = t.config->name;
  res.from = t.job.source_node;
  res.to = t.job.target_node;
  res.ranges = t.job.ranges;
  res.key = t.key;
  res.estimated_rows = t.estimated_rows;
  const Clock::time_point start = Clock::now();
  const std::string where = fmt::format("table {} ({} -> {}, ranges {})", t.config->name,
                                        res.from, res.to, res.ranges);

  auto target_oids = KeyTypes(target, t, t.target.quoted);
  if (!target_oids.ok()) return Annotate(target_oids.status(), where);
  // Two runs of one job at once would copy the same rows twice: a session advisory lock on the
  // target (released when this connection ends, also on SIGKILL) lets only one of them in.
  auto locked = target.Exec(
      "SELECT pg_try_advisory_lock(hashtextextended('shardline.backfill ' || $1, 0))",
      {fmt::format("{} {} {} {}", t.job.source_node, t.job.target_node, t.job.table,
                   t.job.ranges)});
  if (!locked.ok()) return Annotate(locked.status(), where);
  if (locked->Text(0, 0) != "t") {
    return absl::FailedPreconditionError(fmt::format(
        "{}: another backfill of this table and ranges is running on node {} (wait for it, or "
        "stop it first)",
        where, t.job.target_node));
  }

  if (o.restart) {
    // The checkpoint goes first (in the same transaction when it lives on the target): a kill
    // between the two leaves rows without a checkpoint, which the next run refuses to copy over
    // (asking for --restart), never a checkpoint above rows that were deleted.
    Txn txn(target);
    absl::Status s = txn.Begin();
    if (s.ok()) s = store.Reset(t.job);
    std::int64_t deleted = 0;
    if (s.ok()) {
      auto n = ExecCount(target, fmt::format("DELETE FROM {} WHERE {}", t.target.quoted,
                                             t.range_predicate),
                         {}, {});
      if (n.ok()) deleted = *n;
      s = n.status();
    }
    if (s.ok()) s = txn.Commit();
    if (!s.ok()) return Annotate(s, where);
    res.deleted_on_restart = deleted;
  }
  auto cp = store.Load(t.job);
  if (!cp.ok()) return Annotate(cp.status(), where);
  if (cp->done) {
    res.already_done = true;
    res.rows_total = cp->rows;
    return res;
  }
  std::optional<std::vector<std::string>> after;
  if (cp->found) {
    res.resumed = cp->last_key.has_value();
    if (cp->last_key) {
      auto key = DecodeKey(*cp->last_key, t.key.size());
      if (!key.ok()) return Annotate(key.status(), where);
      after = *std::move(key);
    }
    if (!store.atomic_with_target()) {
      // Rows above the checkpoint came from a batch whose checkpoint never committed.
      std::string sql = fmt::format("DELETE FROM {} WHERE {}", t.target.quoted,
                                    t.range_predicate);
      absl::StatusOr<std::int64_t> n;
      if (after) {
        sql += " AND " + KeyAfter(t.quoted_key_list, t.key.size(), 1);
        n = ExecCount(target, sql, KeyParams(*after), *target_oids);
      } else {
        n = ExecCount(target, sql, {}, {});
      }
      if (!n.ok()) return Annotate(n.status(), where);
      res.deleted_before_resume = *n;
    }
  } else {
    BackfillCheckpoint started;
    started.found = true;
    if (auto s = CommitCheckpoint(target, store, t.job, started); !s.ok()) {
      return Annotate(s, where);
    }
  }
  BackfillCheckpoint state = *cp;
  state.found = true;
  res.rows_total = state.rows;

  // The reader: its own connection, its own thread.
  auto source = ConnectAdmin(from);
  if (!source.ok()) return Annotate(source.status(), where);
  auto source_oids = KeyTypes(**source, t, t.source.quoted);
  if (!source_oids.ok()) return Annotate(source_oids.status(), where);
  // One batch queued, one being read, one being written: the source and the target overlap and
  // memory stays at about three batches.
  BatchQueue queue(1);
  std::thread reader([&, after] {
    ReadBatches(**source, t, o.batch_rows, after, *source_oids, queue);
  });
  absl::Status status;
  BackfillProgress progress{t.config->name, res.from, res.to, state.rows, t.estimated_rows, 0,
                            false};
  if (o.progress) o.progress(progress);
  while (true) {
    const Clock::time_point wait = Clock::now();
    Batch b = queue.Pop();
    res.source_wait_seconds += SecondsSince(wait);
    if (!b.status.ok()) {
      status = Annotate(b.status, where);
      break;
    }
    if (b.rows > 0) {
      res.throttle_seconds += Throttle(o.rate_rows_per_second, run_rows, run_start);
      const std::int64_t n = res.batches + 1;
      state.rows += b.rows;
      state.batches += 1;
      state.last_key = EncodeKey(b.last_key);
      Txn txn(target);
      status = txn.Begin();
      if (status.ok()) status = CopyBatch(target, t, b);
      if (status.ok()) status = store.SaveInTargetTransaction(target, t.job, state);
      if (!status.ok()) {
        status = Annotate(status, fmt::format("{}, batch {}", where, n));
        break;  // the guard rolls back
      }
      KillForTest(o, KillPointForTest::kBeforeCommit, n);
      status = txn.Commit();
      if (status.ok()) {
        KillForTest(o, KillPointForTest::kAfterTargetCommit, n);
        status = store.SaveCommitted(t.job, state);
      }
      if (!status.ok()) {
        status = Annotate(status, fmt::format("{}, batch {}", where, n));
        break;
      }
      KillForTest(o, KillPointForTest::kAfterCheckpoint, n);
      res.batches = n;
      res.rows_copied += b.rows;
      run_rows += b.rows;
      progress.rows = state.rows;
      progress.rows_per_second = static_cast<double>(res.rows_copied) / SecondsSince(start);
      if (o.progress && !b.last) o.progress(progress);
    }
    if (b.last) break;
  }
  queue.Cancel();
  reader.join();
  if (!status.ok()) return status;
  state.done = true;
  if (auto s = CommitCheckpoint(target, store, t.job, state); !s.ok()) return Annotate(s, where);
  res.rows_total = state.rows;
  res.seconds = SecondsSince(start);
  progress.table_done = true;
  progress.rows = state.rows;
  progress.rows_per_second =
      res.seconds > 0 ? static_cast<double>(res.rows_copied) / res.seconds : 0;
  if (o.progress) o.progress(progress);
  return res;
}

double HashShare(const BackfillRanges& ranges) {
  double share = 0;
  for (const auto& [lo, hi] : ranges) {
    share += (static_cast<double>(hi) - static_cast<double>(lo) + 1.0) / 18446744073709551616.0;
  }
  return std::min(share, 1.0);
}

// Everything about one pair: connections, store, the tables' plans.
struct PairState {
  const BackfillPair* pair = nullptr;
  std::unique_ptr<pg::Conn> source;
  std::unique_ptr<pg::Conn> target;
  std::unique_ptr<CheckpointStore> store;
  std::vector<TablePlan> tables;
};

// "table T: <message>", unless the message already names the table.
std::string Problem(const TableConfig& cfg, const std::string& message) {
  if (message.find(fmt::format("table \"{}\"", cfg.name)) != std::string_view::npos) {
    return std::string(message);
  }
  return fmt::format("table {}: {}", cfg.name, message);
}

// Checks one table; appends each failed precondition to `problems`.
std::optional<TablePlan> CheckTable(const ShardMap& map, PairState& p, const TableConfig& cfg,
                                    const BackfillOptions& o, std::vector<std::string>& problems) {
  const std::string& from = p.pair->from.name;
  const std::string& to = p.pair->to.name;
  auto src = DescribeTable(*p.source, cfg.name);
  auto dst = DescribeTable(*p.target, cfg.name);
  bool ok = true;
  if (!src.ok()) {
    problems.push_back(Problem(cfg, fmt::format("{} (is the map's table name right?)",
                                                std::string(src.status().message()))));
    ok = false;
  }
  if (!dst.ok()) {
    problems.push_back(Problem(cfg, fmt::format("{} (create it on node {} with the source's schema first)",
                                                std::string(dst.status().message()), to)));
    ok = false;
  }
  if (!ok) return std::nullopt;
  TablePlan t;
  t.config = &cfg;
  t.source = *std::move(src);
  t.target = *std::move(dst);
  auto key = ResolveKey(t.source, cfg, from);
  if (!key.ok()) {
    problems.push_back(Problem(cfg, std::string(key.status().message())));
    ok = false;
  }
  if (auto k = ResolveKey(t.target, cfg, to); !k.ok()) {
    problems.push_back(Problem(cfg, std::string(k.status().message())));
    ok = false;
  }
  if (auto s = CheckCompatible(t.source, t.target, from, to); !s.ok()) {
    problems.push_back(Problem(cfg, std::string(s.message())));
    ok = false;
  }
  if (!ok) return std::nullopt;
  t.key = *std::move(key);
  // Key positions within the copied (non-generated) columns.
  int pos = 0;
  std::vector<std::pair<std::string, int>> positions;
  for (const ColumnInfo& c : t.source.columns) {
    if (c.generated) continue;
    positions.emplace_back(c.name, pos++);
  }
  for (const std::string& k : t.key) {
    auto it = std::find_if(positions.begin(), positions.end(),
                           [&](const auto& e) { return e.first == k; });
    if (it == positions.end()) {
      problems.push_back(fmt::format(
          "table {}: key column {} on node {} is generated or missing; a backfill needs a key "
          "of stored, copyable columns",
          cfg.name, k, from));
      return std::nullopt;
    }
    t.key_positions.push_back(it->second);
    if (!t.quoted_key_list.empty()) t.quoted_key_list += ", ";
    t.quoted_key_list += p.source->QuoteIdent(k);
  }
  t.column_list = t.source.QuotedColumnList(*p.source);
  t.range_predicate =
      HashRangesPredicate(map.key_type(), p.source->QuoteIdent(cfg.key), p.pair->ranges);
  t.estimated_rows = static_cast<std::int64_t>(static_cast<double>(t.source.estimated_rows) *
                                               HashShare(p.pair->ranges));
  t.job = {from, to, cfg.name, FormatRanges(p.pair->ranges)};

  // Rows of the ranges already on the target, with no checkpoint to say where they came from:
  // copying would fail on the primary key or, without one, duplicate them.
  if (!o.restart) {
    auto cp = p.store->Load(t.job);
    if (!cp.ok()) {
      problems.push_back(fmt::format("table {}: {}", cfg.name, std::string(cp.status().message())));
      return std::nullopt;
    }
    if (!cp->found) {
      auto r = p.target->Exec(fmt::format("SELECT EXISTS (SELECT 1 FROM {} WHERE {})",
                                          t.target.quoted, t.range_predicate));
      if (!r.ok()) {
        problems.push_back(fmt::format("table {}: {}", cfg.name, std::string(r.status().message())));
        return std::nullopt;
      }
      if (r->Text(0, 0) == "t") {
        problems.push_back(fmt::format(
            "table {}: node {} already holds rows of ranges {} and no checkpoint of a backfill "
            "from {} says how they got there: rerun with --restart to delete them and copy "
            "afresh, or check with `shardline verify`",
            cfg.name, to, t.job.ranges, from));
        return std::nullopt;
      }
    }
  }
  return t;
}

}  // namespace

std::string FormatRanges(const BackfillRanges& ranges) {
  std::string out;
  for (const auto& [lo, hi] : ranges) {
    if (!out.empty()) out += ',';
    out += fmt::format("{}:{}", lo, hi);
  }
  return out;
}

absl::StatusOr<BackfillSummary> RunBackfill(const ShardMap& map,
                                            const std::vector<BackfillPair>& pairs,
                                            const BackfillOptions& options) {
  if (options.batch_rows < 1) {
    return absl::InvalidArgumentError(
        fmt::format("--batch {}: must be at least 1", options.batch_rows));
  }
  if (options.rate_rows_per_second < 0) {
    return absl::InvalidArgumentError("--rate must not be negative");
  }
  std::vector<const TableConfig*> tables;
  for (const std::string& name : options.tables) {
    auto it = std::find_if(map.tables().begin(), map.tables().end(),
                           [&](const TableConfig& t) { return t.name == name; });
    if (it == map.tables().end() || it->reference) {
      return absl::InvalidArgumentError(fmt::format(
          "--table {}: not a sharded table of the map (see `shardline map show`)", name));
    }
    tables.push_back(&*it);
  }
  if (options.tables.empty()) {
    for (const TableConfig& t : map.tables()) {
      if (!t.reference) tables.push_back(&t);
    }
  }

  // Preconditions of every table of every pair, before any row moves.
  std::vector<PairState> states;
  std::vector<std::string> problems;
  for (const BackfillPair& pair : pairs) {
    if (pair.from.name == pair.to.name) {
      return absl::InvalidArgumentError(
          fmt::format("--from and --to are both node {}: nothing to copy", pair.from.name));
    }
    PairState p;
    p.pair = &pair;
    auto s = ConnectAdmin(pair.from);
    if (!s.ok()) return s.status();
    auto t = ConnectAdmin(pair.to);
    if (!t.ok()) return t.status();
    p.source = *std::move(s);
    p.target = *std::move(t);
    if (options.catalog_dsn.empty()) {
      p.store = NewTargetCheckpointStore(*p.target);
    } else {
      auto c = pg::Conn::Connect(options.catalog_dsn, "catalog");
      if (!c.ok()) return c.status();
      p.store = NewCatalogCheckpointStore(*std::move(c));
    }
    if (auto st = p.store->Prepare(); !st.ok()) return st;
    for (const TableConfig* cfg : tables) {
      auto plan = CheckTable(map, p, *cfg, options, problems);
      if (plan) p.tables.push_back(*std::move(plan));
    }
    states.push_back(std::move(p));
  }
  if (!problems.empty()) {
    std::string msg = fmt::format("backfill refused, no row was copied ({} problem{}):",
                                  problems.size(), problems.size() == 1 ? "" : "s");
    for (const std::string& line : problems) msg += "\n  " + line;
    return absl::FailedPreconditionError(msg);
  }

  BackfillSummary summary;
  const Clock::time_point start = Clock::now();
  std::int64_t run_rows = 0;
  for (PairState& p : states) {
    summary.checkpoint_store = p.store->Describe();
    for (const TablePlan& t : p.tables) {
      auto r = CopyTable(*p.target, p.pair->from, *p.store, t, options, run_rows, start);
      if (!r.ok()) return r.status();
      summary.rows_copied += r->rows_copied;
      summary.throttle_seconds += r->throttle_seconds;
      summary.tables.push_back(*std::move(r));
    }
  }
  summary.seconds = SecondsSince(start);
  return summary;
}

}  // namespace shardline::migrate
