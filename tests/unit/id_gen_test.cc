// Unit tests of the id generator (include/shardline/id_gen.h): uniqueness across threads and
// workers, monotonicity, clock steps back, sequence overflow, bit layout.
#include "shardline/id_gen.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardline {
namespace {

using ::testing::HasSubstr;

constexpr std::int64_t kT = kIdEpochMs + 1'000'000;  // an arbitrary instant after the epoch

// A clock that replays `script` (one value per call) and then repeats its last value.
// Single-threaded.
IdGenerator::Clock ScriptedClock(std::vector<std::int64_t> script, int* calls) {
  return [script = std::move(script), calls]() {
    int i = (*calls)++;
    return script[std::min<std::size_t>(i, script.size() - 1)];
  };
}

void ExpectAllUnique(std::vector<std::int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  auto dup = std::adjacent_find(ids.begin(), ids.end());
  EXPECT_EQ(dup, ids.end()) << "duplicate id " << *dup;
}

TEST(IdGen, UniqueAndPerThreadIncreasingAcross8ThreadsX100k) {
  auto gen = IdGenerator::Create(5);
  ASSERT_TRUE(gen.ok()) << gen.status();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100'000;
  std::vector<std::vector<std::int64_t>> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      per_thread[t].reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i) per_thread[t].push_back((*gen)->Next());
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::int64_t> all;
  for (const auto& v : per_thread) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    EXPECT_EQ(std::adjacent_find(v.begin(), v.end()), v.end());
    all.insert(all.end(), v.begin(), v.end());
  }
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kThreads) * kPerThread);
  ExpectAllUnique(all);
  for (std::int64_t id : all) {
    ASSERT_GT(id, 0);
    ASSERT_EQ(DecodeId(id).worker_id, 5);
  }
}

TEST(IdGen, UniqueAcross4WorkerIdsOnTheSameClock) {
  // All four generators see the same millisecond: only the worker bits tell them apart.
  std::vector<std::int64_t> all;
  for (int worker : {0, 1, 512, kMaxWorkerId}) {
    auto gen = IdGenerator::Create(worker, [] { return kT; });
    ASSERT_TRUE(gen.ok()) << gen.status();
    for (int i = 0; i < 4096; ++i) {
      std::int64_t id = (*gen)->Next();
      IdParts p = DecodeId(id);
      ASSERT_EQ(p.worker_id, worker);
      ASSERT_EQ(p.unix_ms, kT);
      ASSERT_EQ(p.sequence, i);
      all.push_back(id);
    }
  }
  ExpectAllUnique(all);
}

TEST(IdGen, UniqueAcross4WorkerIdsInParallelOnTheRealClock) {
  std::vector<std::vector<std::int64_t>> per_worker(4);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      auto gen = IdGenerator::Create(100 + w);
      if (!gen.ok()) return;
      for (int i = 0; i < 50'000; ++i) per_worker[w].push_back((*gen)->Next());
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::int64_t> all;
  for (const auto& v : per_worker) {
    ASSERT_EQ(v.size(), 50'000u);
    all.insert(all.end(), v.begin(), v.end());
  }
  ExpectAllUnique(all);
}

TEST(IdGen, StrictlyIncreasingAndTimeOrdered) {
  int calls = 0;
  auto gen = IdGenerator::Create(3, ScriptedClock({kT, kT, kT + 1, kT + 1, kT + 7, kT + 8}, &calls));
  ASSERT_TRUE(gen.ok());
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back((*gen)->Next());
  for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]);
  EXPECT_EQ(DecodeId(ids[0]).unix_ms, kT);
  EXPECT_EQ(DecodeId(ids[1]).sequence, 1);
  EXPECT_EQ(DecodeId(ids[2]).unix_ms, kT + 1);
  EXPECT_EQ(DecodeId(ids[2]).sequence, 0);
  EXPECT_EQ(DecodeId(ids[5]).unix_ms, kT + 8);
}

TEST(IdGen, ClockGoingBackwardsNeverRepeatsOrDecreases) {
  int calls = 0;
  auto gen = IdGenerator::Create(
      9, ScriptedClock({kT + 10, kT + 10, kT + 5, kT + 5, kT, kT - 3600'000, kT + 11}, &calls));
  ASSERT_TRUE(gen.ok());
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 7; ++i) ids.push_back((*gen)->Next());
  for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]) << i;
  // While the clock is behind, ids continue in the last millisecond.
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(DecodeId(ids[i]).unix_ms, kT + 10) << i;
    EXPECT_EQ(DecodeId(ids[i]).sequence, i) << i;
  }
  EXPECT_EQ(DecodeId(ids[6]).unix_ms, kT + 11);
  EXPECT_EQ(DecodeId(ids[6]).sequence, 0);
  EXPECT_EQ(calls, 7);  // no waiting: the sequence was not exhausted
}

TEST(IdGen, SequenceOverflowWaitsForTheNextMillisecond) {
  // 4096 ids fit in kT; the 4097th reads kT once more (exhausted, so it spins), then kT + 1.
  std::vector<std::int64_t> script(4097, kT);
  script.push_back(kT + 1);
  int calls = 0;
  auto gen = IdGenerator::Create(1, ScriptedClock(script, &calls));
  ASSERT_TRUE(gen.ok());
  std::int64_t prev = 0;
  for (int i = 0; i < 4096; ++i) {
    std::int64_t id = (*gen)->Next();
    ASSERT_GT(id, prev);
    prev = id;
    ASSERT_EQ(DecodeId(id).unix_ms, kT);
    ASSERT_EQ(DecodeId(id).sequence, i);
  }
  EXPECT_EQ(calls, 4096);
  std::int64_t id = (*gen)->Next();
  EXPECT_GT(id, prev);
  EXPECT_EQ(DecodeId(id).unix_ms, kT + 1);
  EXPECT_EQ(DecodeId(id).sequence, 0);
  EXPECT_EQ(calls, 4098);  // it read the clock again until it moved on
}

TEST(IdGen, ExhaustedMillisecondWithClockBehindWaitsUntilClockPassesIt) {
  std::vector<std::int64_t> script(4096, kT + 10);
  for (int i = 0; i < 50; ++i) script.push_back(kT + 2);  // stepped back
  script.push_back(kT + 10);                              // caught up, not past
  script.push_back(kT + 12);
  int calls = 0;
  auto gen = IdGenerator::Create(1, ScriptedClock(script, &calls));
  ASSERT_TRUE(gen.ok());
  std::int64_t last = 0;
  for (int i = 0; i < 4096; ++i) last = (*gen)->Next();
  std::int64_t id = (*gen)->Next();
  EXPECT_GT(id, last);
  EXPECT_EQ(DecodeId(id).unix_ms, kT + 12);
  EXPECT_EQ(calls, 4096 + 52);
}

TEST(IdGen, DecodeIdRoundTripsTheBitLayout) {
  int calls = 0;
  auto gen = IdGenerator::Create(kMaxWorkerId, ScriptedClock({kT + 123}, &calls));
  ASSERT_TRUE(gen.ok());
  (*gen)->Next();
  std::int64_t id = (*gen)->Next();
  EXPECT_EQ(id, ((kT + 123 - kIdEpochMs) << 22) | (std::int64_t{kMaxWorkerId} << 12) | 1);
  IdParts p = DecodeId(id);
  EXPECT_EQ(p.unix_ms, kT + 123);
  EXPECT_EQ(p.worker_id, kMaxWorkerId);
  EXPECT_EQ(p.sequence, 1);
  EXPECT_EQ((*gen)->worker_id(), kMaxWorkerId);
}

TEST(IdGen, RealClockIdsDecodeToNow) {
  auto gen = IdGenerator::Create(0);
  ASSERT_TRUE(gen.ok());
  std::int64_t before = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  std::int64_t id = (*gen)->Next();
  EXPECT_GT(id, 0);
  EXPECT_GE(DecodeId(id).unix_ms, before);
}

TEST(IdGen, ClockBeforeEpochReadsAsEpoch) {
  auto gen = IdGenerator::Create(2, [] { return std::int64_t{0}; });  // 1970
  ASSERT_TRUE(gen.ok());
  std::int64_t a = (*gen)->Next();
  std::int64_t b = (*gen)->Next();
  EXPECT_GT(a, 0);
  EXPECT_LT(a, b);
  EXPECT_EQ(DecodeId(a).unix_ms, kIdEpochMs);
}

TEST(IdGen, InvalidWorkerIdIsRefused) {
  for (int bad : {-1, kMaxWorkerId + 1, 5000}) {
    auto gen = IdGenerator::Create(bad);
    EXPECT_EQ(gen.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(gen.status().message(),
                HasSubstr(fmt::format("worker id {} is outside 0..1023", bad)));
  }
}

}  // namespace
}  // namespace shardline
