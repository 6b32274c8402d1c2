// The ledger of acknowledged writes (`--ledger FILE`): one JSON object per line, appended after
// the router returned OK for a write, so a later `check-ledger` can prove that no acknowledged
// write was lost (e.g. across a rollout that moved the user's range to another node).
//
// Line format (keys in this order; "id" absent for tables keyed by user_id alone):
//   {"v":1,"t":<unix ms>,"op":"log","table":"workout_logs","user_id":42,"id":7312..,
//    "hash":"9e3779b97f4a7c15","acked":true}
// "hash" is ContentHash() of the row's content columns (app_tables.h) as the server prints
// them. "acked":false marks a write whose outcome is unknown (the call failed, but it may have
// committed, e.g. a connection cut after COMMIT): the checker accepts that content as well as
// the last acknowledged one. An unknown-outcome write whose row id the client never learned
// has "id":0 and stands for every row of that user in the table.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shardline::loadgen {

inline constexpr int kLedgerVersion = 1;

struct LedgerEntry {
  std::int64_t unix_ms = 0;
  std::string op;      // the workload operation ("log", "update")
  std::string table;   // "workout_logs", "workouts", ...
  std::int64_t user_id = 0;
  std::optional<std::int64_t> id;  // the second primary-key column, when the table has one
  std::uint64_t hash = 0;          // ContentHash of the content columns
  bool acked = true;
  friend bool operator==(const LedgerEntry&, const LedgerEntry&) = default;
};

// FNV-1a (64-bit) over the values in order, each prefixed by 'V' (or just 'N' for NULL) and
// followed by 0x1F, so ("ab","c") and ("a","bc") differ. Stable across versions: ledgers
// written by one build are checked by another.
std::uint64_t ContentHash(const std::vector<std::optional<std::string_view>>& values);

// The JSON line for `entry`, ending in '\n'.
std::string FormatLedgerLine(const LedgerEntry& entry);
// Parses one line (with or without its '\n'). InvalidArgument prefixed by `where` (e.g.
// "run.ledger:17") for malformed JSON, a missing or mistyped key, or another "v".
absl::StatusOr<LedgerEntry> ParseLedgerLine(std::string_view line, std::string_view where);

// Appends entries to a ledger file. Thread-safe: every entry is one write(2) of one whole line
// to a file opened with O_APPEND, so lines from concurrent workers never interleave, and a
// line is in the kernel (it survives a kill -9 of this process) when Append returns.
// Not fsync'ed: a machine crash may lose the tail (the ledger proves the database, not the
// ledger's disk).
class LedgerWriter {
 public:
  // Opens (creating, appending to an existing file) `path`. The errno text naming the path
  // on failure.
  static absl::StatusOr<std::unique_ptr<LedgerWriter>> Open(const std::string& path);
  ~LedgerWriter();
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  // Appends one line. Internal (with the errno text) when the write fails.
  absl::Status Append(const LedgerEntry& entry);
  std::uint64_t appended() const;

 private:
  LedgerWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  const int fd_;
  const std::string path_;
  std::atomic<std::uint64_t> appended_{0};
};

// Every entry of the ledger at `path`, in file order. A last line without its '\n' (a writer
// killed mid-line cannot happen with one write(2), but a truncated copy can) is ignored and
// counted in `*truncated_tail` when given. NotFound / the errno text when it cannot be read;
// the first malformed line's error (path:line) otherwise.
absl::StatusOr<std::vector<LedgerEntry>> ReadLedger(const std::string& path,
                                                    bool* truncated_tail = nullptr);

}  // namespace shardline::loadgen
