// A count of every allocation made through global operator new in the binary that links
// alloc_counter.cc, so that a test or a benchmark can prove a code path allocates nothing
// (hash_test, shard_map_test, tools/bench/lookup_bench). Sanitizer runtimes define operator new
// themselves (clang links them statically: a replacement would not link), so the count is
// only kept in plain builds: there kAllocationsCounted is true; under ASan/TSan it is false,
// AllocationCount() stays 0, and tests that rely on it skip.
//
//   const long before = shardline::testing::AllocationCount();
//   ... code under test ...
//   EXPECT_EQ(shardline::testing::AllocationCount() - before, 0);
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHARDLINE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SHARDLINE_SANITIZED 1
#endif
#endif

namespace shardline::testing {

#ifdef SHARDLINE_SANITIZED
inline constexpr bool kAllocationsCounted = false;
#else
inline constexpr bool kAllocationsCounted = true;
#endif

// Global operator new calls so far in this process (all threads). Thread-safe.
long AllocationCount();

}  // namespace shardline::testing
