// A one-shot event for unit tests: threads Wait() until some thread Notify()s. The way tests
// here synchronise with threads they started (never with sleeps).
#pragma once

#include <condition_variable>
#include <mutex>

namespace shardline::testing {

class Event {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }
  bool notified() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

}  // namespace shardline::testing
