// Globally unique, time-ordered 64-bit ids for sharded rows. Per-node sequences collide when
// ranges move between nodes; these do not, because uniqueness comes from the generator, not
// from the node that stores the row.
//
// Bit layout (most significant first):
//   1 bit   0 (ids are positive bigints)
//   41 bits milliseconds since 2025-01-01T00:00:00Z (until year 2094)
//   10 bits worker id (0..1023): unique per live generator (router process)
//   12 bits sequence within the millisecond (4096 ids/ms per worker)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"

namespace shardline {

inline constexpr std::int64_t kIdEpochMs = 1735689600000;  // 2025-01-01T00:00:00Z
inline constexpr int kIdWorkerBits = 10;
inline constexpr int kIdSequenceBits = 12;
inline constexpr int kMaxWorkerId = (1 << kIdWorkerBits) - 1;

struct IdParts {
  std::int64_t unix_ms = 0;
  int worker_id = 0;
  int sequence = 0;
};

// Generates ids for one worker id. Thread-safe and lock-free (one CAS on the last id per call).
// Ids from one generator strictly increase. When the clock steps back, ids continue in the last
// id's millisecond; when that millisecond's 4096 sequence numbers are used up (a burst, or a
// clock that stepped back), Next() waits (spins, yielding) until the clock passes it: ids never
// repeat and never go backwards. Ids are unique across generators as long as no two live
// generators share a worker id. A clock before the epoch reads as the epoch.
//
//   auto gen = IdGenerator::Create(/*worker_id=*/7);
//   if (!gen.ok()) return gen.status();
//   std::int64_t id = (*gen)->Next();
class IdGenerator {
 public:
  using Clock = std::function<std::int64_t()>;  // unix milliseconds; injectable for tests
  // InvalidArgument when worker_id is outside 0..1023. An empty clock uses the system clock.
  // The clock must be thread-safe.
  static absl::StatusOr<std::unique_ptr<IdGenerator>> Create(int worker_id, Clock clock = {});
  // A new id. Blocks only while the current millisecond's sequence is exhausted (see above).
  std::int64_t Next();
  int worker_id() const { return worker_id_; }

 private:
  IdGenerator(int worker_id, Clock clock) : worker_id_(worker_id), clock_(std::move(clock)) {}
  const int worker_id_;
  const Clock clock_;
  std::atomic<std::int64_t> last_{0};  // (ms - epoch) << 12 | sequence of the last id
};

// Splits an id into its parts (for debugging and tests).
IdParts DecodeId(std::int64_t id);

}  // namespace shardline
