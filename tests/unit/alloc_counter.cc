// The counting replacement of global operator new behind alloc_counter.h. Link this file into
// exactly the binaries that need the count (a second replacement in the same binary would not
// link).
#include "alloc_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

namespace shardline::testing {
long AllocationCount() { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace shardline::testing

#ifndef SHARDLINE_SANITIZED
__attribute__((noinline)) void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// The whole non-aligned family is replaced, so that no variant from the C++ runtime or a
// sanitizer's runtime frees memory this one allocated (ASan checks the pairing). noinline:
// inlined into callers, GCC flags free() of memory from `new` (a -Wmismatched-new-delete false
// positive for replaced operators).
void* operator new[](std::size_t size) { return ::operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& nt) noexcept {
  return ::operator new(size, nt);
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete[](void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
__attribute__((noinline)) void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
#endif  // SHARDLINE_SANITIZED
