// The workload's operations (see workload.h).
#include "workload.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "metrics.h"
#include "shardline/errors.h"
#include "shardline/merge.h"

namespace shardline::loadgen {
namespace {

constexpr const char* kExercises[] = {"squat", "bench press", "deadlift", "pull-up",
                                      "row",   "overhead press", "lunge", "plank"};

constexpr const char* kProfileSql =
    "SELECT user_id, name, email, bio, points, created_at FROM users WHERE user_id = $1";
constexpr const char* kFeedSql =
    "SELECT id, body, created_at FROM posts WHERE user_id = $1 ORDER BY id DESC LIMIT 20";
// The workout is the user's latest (NULL when they have none); the casts fix the parameter
// types, which an INSERT ... SELECT cannot infer from the target columns.
constexpr const char* kLogInsertSql =
    "INSERT INTO workout_logs (user_id, id, workout_id, exercise, reps, weight, note) "
    "SELECT $1::bigint, $2::bigint, "
    "(SELECT id FROM workouts WHERE user_id = $1::bigint ORDER BY id DESC LIMIT 1), "
    "$3::text, $4::integer, $5::numeric, $6::text "
    "RETURNING workout_id, exercise, reps, weight, note";
constexpr const char* kLogPointsSql =
    "UPDATE users SET points = points + $2::bigint WHERE user_id = $1::bigint";
constexpr const char* kUpdateSql =
    "UPDATE workouts SET duration_s = $3::integer, calories = $4::integer, note = $5::text, "
    "updated_at = now() "
    "WHERE user_id = $1::bigint AND id = (SELECT id FROM workouts WHERE user_id = $1::bigint "
    "ORDER BY id LIMIT 1 OFFSET $2::integer) "
    "RETURNING id, duration_s, calories, note";
constexpr const char* kLeaderboardSql =
    "SELECT user_id, name, points FROM users WHERE $owned(user_id) "
    "ORDER BY points DESC, user_id LIMIT 10";
constexpr std::size_t kLeaderboardSize = 10;

std::int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The content hash of columns [from, to) of row 0 of `r`, as the server printed them.
std::uint64_t RowHash(const Result& r, int from, int to) {
  std::vector<std::optional<std::string_view>> values;
  for (int c = from; c < to; ++c) {
    if (r.IsNull(0, c)) {
      values.emplace_back(std::nullopt);
    } else {
      values.emplace_back(r.GetString(0, c).value_or(std::string_view()));
    }
  }
  return ContentHash(values);
}

}  // namespace

std::string Workload::ErrorKind(const absl::Status& status) {
  std::string kind = StatusCodeLabel(status.code());
  if (std::optional<std::string> state = SqlStateOf(status)) kind += "/" + *state;
  return kind;
}

absl::Status Workload::Run(Op op, std::mt19937_64& rng) {
  const std::int64_t uid =
      options_.first_user +
      static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(
                                            options_.users, 1)));
  switch (op) {
    case Op::kProfile:
      return Profile(uid);
    case Op::kFeed:
      return Feed(uid);
    case Op::kLog:
      return Log(uid, rng);
    case Op::kUpdate:
      return Update(uid, rng);
    case Op::kLeaderboard:
      return Leaderboard();
    default:
      return absl::InternalError("unknown operation");
  }
}

absl::Status Workload::Record(LedgerEntry entry) {
  if (ledger_ == nullptr) return absl::OkStatus();
  entry.unix_ms = NowUnixMs();
  absl::Status s = ledger_->Append(entry);
  if (!s.ok()) {
    absl::MutexLock lock(&fatal_mu_);
    if (fatal_.ok()) fatal_ = s;
    failed_.store(true, std::memory_order_release);
  }
  return s;
}

absl::Status Workload::fatal_status() const {
  absl::MutexLock lock(&fatal_mu_);
  return fatal_;
}

absl::Status Workload::Profile(std::int64_t uid) {
  return router_.ExecuteRead(uid, kProfileSql, {uid}).status();
}

absl::Status Workload::Feed(std::int64_t uid) {
  return router_.ExecuteRead(uid, kFeedSql, {uid}).status();
}

absl::Status Workload::Log(std::int64_t uid, std::mt19937_64& rng) {
  const absl::StatusOr<std::int64_t> next = router_.NextId();
  if (!next.ok()) return next.status();
  const std::int64_t id = *next;
  const std::string exercise = kExercises[rng() % std::size(kExercises)];
  const auto reps = static_cast<std::int64_t>(1 + rng() % 20);
  const std::uint64_t centi_kg = 500 + rng() % 20000;
  const std::string weight = fmt::format("{}.{:02}", centi_kg / 100, centi_kg % 100);
  const std::string note = fmt::format("set {}", rng() % 1000000);
  std::optional<std::uint64_t> hash;
  // No user lock: a log row is new (its id is unique), so no two writes of it can race.
  absl::Status s = router_.Transaction(uid, [&](Session& session) -> absl::Status {
    auto ins = session.Execute(kLogInsertSql, {uid, id, exercise, reps, weight, note});
    if (!ins.ok()) return ins.status();
    if (ins->rows() != 1) {
      return absl::InternalError(fmt::format("log insert returned {} rows", ins->rows()));
    }
    hash = RowHash(*ins, 0, 5);
    return session.Execute(kLogPointsSql, {uid, reps}).status();
  });
  if (!s.ok()) return s;
  return Record({.op = "log", .table = "workout_logs", .user_id = uid, .id = id, .hash = *hash});
}

absl::Status Workload::Update(std::int64_t uid, std::mt19937_64& rng) {
  const auto offset = static_cast<std::int64_t>(
      rng() % static_cast<std::uint64_t>(std::max(options_.workouts_per_user, 1)));
  const auto duration = static_cast<std::int64_t>(600 + rng() % 6000);
  const auto calories = static_cast<std::int64_t>(50 + rng() % 1500);
  const std::string note = fmt::format("updated {}", rng() % 1000000000);
  absl::MutexLock lock(&UserLock(uid));
  auto r = router_.Execute(uid, kUpdateSql, {uid, offset, duration, calories, note});
  if (!r.ok()) {
    // It may have committed (e.g. the connection dropped after COMMIT): record the content
    // it would have left, for whichever of the user's workouts it chose.
    const std::string d = std::to_string(duration), c = std::to_string(calories);
    absl::Status ledger = Record({.op = "update",
                                  .table = "workouts",
                                  .user_id = uid,
                                  .id = 0,
                                  .hash = ContentHash({d, c, note}),
                                  .acked = false});
    if (!ledger.ok()) return ledger;
    return r.status();
  }
  if (r->rows() == 0) return absl::OkStatus();  // the user has fewer workouts: nothing written
  return Record({.op = "update",
                 .table = "workouts",
                 .user_id = uid,
                 .id = r->GetInt64(0, 0).value_or(0),
                 .hash = RowHash(*r, 1, 4)});
}

absl::Status Workload::Leaderboard() {
  auto per_node = router_.FanOut(kLeaderboardSql);
  if (!per_node.ok()) return per_node.status();
  auto top = MergeOrdered(
      *per_node,
      [](const Row& a, const Row& b) {
        const std::int64_t pa = a.GetInt64(2).value_or(0), pb = b.GetInt64(2).value_or(0);
        if (pa != pb) return pa > pb;
        return a.GetInt64(0).value_or(0) < b.GetInt64(0).value_or(0);
      },
      kLeaderboardSize);
  return top.status();
}

}  // namespace shardline::loadgen
