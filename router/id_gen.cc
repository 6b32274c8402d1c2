// The id generator (include/shardline/id_gen.h): a CAS loop over the last issued
// (millisecond, sequence) pair, so concurrent callers never take a lock and never repeat.
#include "shardline/id_gen.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

namespace shardline {

namespace {

constexpr std::int64_t kSequenceMask = (std::int64_t{1} << kIdSequenceBits) - 1;
constexpr int kTimestampShift = kIdWorkerBits + kIdSequenceBits;

std::int64_t SystemUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<IdGenerator>> IdGenerator::Create(int worker_id, Clock clock) {
  if (worker_id < 0 || worker_id > kMaxWorkerId) {
    return absl::InvalidArgumentError(
        fmt::format("id generator: worker id {} is outside 0..{}", worker_id, kMaxWorkerId));
  }
  if (!clock) clock = SystemUnixMs;
  return std::unique_ptr<IdGenerator>(new IdGenerator(worker_id, std::move(clock)));
}

std::int64_t IdGenerator::Next() {
  std::int64_t last = last_.load(std::memory_order_relaxed);
  for (;;) {
    std::int64_t now_ms = clock_() - kIdEpochMs;
    if (now_ms < 0) now_ms = 0;
    const std::int64_t last_ms = last >> kIdSequenceBits;
    std::int64_t next;
    if (now_ms > last_ms) {
      next = now_ms << kIdSequenceBits;  // a new millisecond: sequence 0
    } else if ((last & kSequenceMask) != kSequenceMask) {
      next = last + 1;  // same millisecond, or the clock stepped back: continue after `last`
    } else {
      // This millisecond is used up: wait for the clock to pass it.
      std::this_thread::yield();
      last = last_.load(std::memory_order_relaxed);
      continue;
    }
    // On failure `last` is reloaded and the decision is made again with a fresh clock reading.
    if (last_.compare_exchange_weak(last, next, std::memory_order_relaxed)) {
      const std::int64_t ms = next >> kIdSequenceBits;
      const std::int64_t seq = next & kSequenceMask;
      return (ms << kTimestampShift) | (static_cast<std::int64_t>(worker_id_) << kIdSequenceBits) |
             seq;
    }
  }
}

IdParts DecodeId(std::int64_t id) {
  IdParts p;
  p.unix_ms = (id >> kTimestampShift) + kIdEpochMs;
  p.worker_id = static_cast<int>((id >> kIdSequenceBits) & kMaxWorkerId);
  p.sequence = static_cast<int>(id & kSequenceMask);
  return p;
}

}  // namespace shardline
