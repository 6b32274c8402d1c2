// The operations of the fitness-app workload and the mix that weighs them: parsing
// `profile=40,feed=30,log=20,update=8,leaderboard=2` and drawing an operation from a random
// number. Pure functions, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace shardline::loadgen {

// The workload's operations (see workload.h for what each runs).
enum class Op {
  kProfile,      // read a user's profile (users by key)
  kFeed,         // read a user's 20 most recent posts
  kLog,          // insert a workout log (and bump the user's points) in one transaction
  kUpdate,       // update one of a user's workouts
  kLeaderboard,  // fan-out: top 10 users by points across all nodes, merged
};
inline constexpr int kNumOps = 5;
inline constexpr std::array<Op, kNumOps> kAllOps = {Op::kProfile, Op::kFeed, Op::kLog,
                                                    Op::kUpdate, Op::kLeaderboard};

// "profile", "feed", "log", "update", "leaderboard".
std::string_view OpName(Op op);
// The inverse of OpName; nullopt for any other text.
std::optional<Op> ParseOpName(std::string_view name);
// True for the operations that write (their acknowledged writes go to the ledger).
bool IsWrite(Op op);

// Relative weights of the operations. Value type, thread-compatible (immutable once built:
// Pick() may be called from many threads).
class Mix {
 public:
  // profile=40, feed=30, log=20, update=8, leaderboard=2.
  static Mix Default();

  int weight(Op op) const { return weights_[static_cast<std::size_t>(op)]; }
  int total() const { return total_; }
  // The operation for `r` (any 64-bit random number): operation i with probability
  // weight(i) / total(). Precondition: total() > 0 (ParseMix guarantees it).
  Op Pick(std::uint64_t r) const;
  // "profile=40,feed=30,log=20,update=8,leaderboard=2" (zero weights left out).
  std::string ToString() const;

 private:
  friend absl::StatusOr<Mix> ParseMix(std::string_view text);
  std::array<int, kNumOps> weights_{};
  int total_ = 0;
};

// Parses "op=weight,op=weight,...": operations not named get weight 0. InvalidArgument naming
// the offending item for: an unknown operation (listing the known ones), a weight that is not
// an integer in 0..1000000, an operation named twice, an item without '=', or weights that
// sum to 0.
absl::StatusOr<Mix> ParseMix(std::string_view text);

}  // namespace shardline::loadgen
