// Call deadlines enforced by one watcher thread instead of a kernel timer per wait.
//
// Why: a call used to wait for its answer with poll(fd, timeout = time left). Every finite
// poll timeout arms (and cancels) a kernel hrtimer; on the KVM machines we run on that cost the
// router benchmark 1.4 points of its ratio to bare libpq (0.941 vs 0.955, 4 alternating runs
// each; docs/performance.md), the whole regression of issue 10's deadlines. Now a call
// registers its socket and deadline here (a mutex and a list link, no syscall) and polls with no
// timeout; this watcher wakes every `tick` while calls are registered and shuts down
// (shutdown(2)) the socket of any call past its deadline, which wakes that call's poll at once.
// The call then sees fired() and reports its deadline exceeded (the connection is already dead,
// and is discarded as a timed-out one). Deadlines are thus kept to within one tick (10 ms).
// Idle (nothing registered for a second) the watcher sleeps until the next registration.
//
// Safety of shutdown on a raw fd: the watcher touches a socket only while its registration is
// linked, under the mutex, and a registration is unlinked (under the same mutex) before its call
// may close the socket, so a closed and reused descriptor is never shut down.
#pragma once

#include <chrono>
#include <thread>

#include "mutex.h"

namespace shardline::internal {

class DeadlineWatch {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // One registered wait. Lives on the waiting caller's stack; unlinks itself on destruction.
  class Registration {
   public:
    Registration(DeadlineWatch* watch, int fd, TimePoint deadline);
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    // The watcher shut the socket down: the deadline passed.
    bool fired() const;
    // Unlinks now (the watcher no longer touches the socket) and returns fired(). Idempotent;
    // the destructor does it too. Call it before deciding whether the connection is reusable:
    // a fire between a fired() check and the unlink would go unnoticed.
    bool Finish();

   private:
    friend class DeadlineWatch;
    DeadlineWatch* const watch_;
    const int fd_;
    const TimePoint deadline_;
    bool fired_ = false;   // guarded by watch_->mu_
    bool linked_ = false;  // written by the owning thread only, under watch_->mu_
    Registration* prev_ = nullptr;
    Registration* next_ = nullptr;
  };

  // The process's watcher (its thread starts with the first registration's process).
  static DeadlineWatch& Global();

  // With `start_thread` false nothing fires unless the owner calls ScanOnce (unit tests).
  explicit DeadlineWatch(bool start_thread, std::chrono::milliseconds tick = kTick);
  ~DeadlineWatch();  // stops and joins the thread
  DeadlineWatch(const DeadlineWatch&) = delete;
  DeadlineWatch& operator=(const DeadlineWatch&) = delete;

  // Shuts down the socket of every registration past its deadline at `now`; returns how many.
  int ScanOnce(TimePoint now) ABSL_LOCKS_EXCLUDED(mu_);

  static constexpr std::chrono::milliseconds kTick{10};

 private:
  void Link(Registration* r) ABSL_LOCKS_EXCLUDED(mu_);
  bool Unlink(Registration* r) ABSL_LOCKS_EXCLUDED(mu_);  // returns fired_
  int ScanLocked(TimePoint now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  const std::chrono::milliseconds tick_;
  mutable Mutex mu_;
  CondVar cv_;
  Registration* head_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool idle_ ABSL_GUARDED_BY(mu_) = false;  // the thread waits for a registration
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace shardline::internal
