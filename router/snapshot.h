// A slot holding the current immutable snapshot (the router's routing table) as a
// std::shared_ptr<const T>: readers copy the pointer, a writer replaces it, and a reader keeps
// the snapshot it copied alive for as long as it needs it (work in flight finishes on the map it
// started with).
//
// Why not std::atomic<std::shared_ptr<T>>: GCC 12's libstdc++ implements it with a lock bit in
// the control-block pointer, which is what this class does too, but its load() releases that
// lock with memory_order_relaxed, so a reader's read of the stored pointer is not ordered
// before a later store's write: a formal data race (ThreadSanitizer reports it on every map
// swap under load). This slot uses the same technique with acquire/release on both sides.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

namespace shardline::internal {

// Thread-safe. Load() and Store() hold a spin lock for the duration of a pointer copy (a
// reference-count increment): no mutex, no system call, no allocation. A waiter spins briefly,
// then yields, so a lock holder preempted on a busy machine does not cost others a time slice.
template <class T>
class SnapshotSlot {
 public:
  SnapshotSlot() = default;
  SnapshotSlot(const SnapshotSlot&) = delete;
  SnapshotSlot& operator=(const SnapshotSlot&) = delete;

  std::shared_ptr<const T> Load() const {
    Lock();
    std::shared_ptr<const T> copy = value_;
    Unlock();
    return copy;
  }

  // Replaces the snapshot. The previous one is released after the lock is dropped (its
  // destruction, when this was the last reference, can be expensive).
  void Store(std::shared_ptr<const T> value) {
    Lock();
    value_.swap(value);
    Unlock();
  }

 private:
  void Lock() const {
    for (int spins = 0; busy_.exchange(true, std::memory_order_acquire);) {
      while (busy_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  void Unlock() const { busy_.store(false, std::memory_order_release); }

  mutable std::atomic<bool> busy_{false};
  std::shared_ptr<const T> value_;
};

}  // namespace shardline::internal
