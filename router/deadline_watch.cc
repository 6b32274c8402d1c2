// The watcher of call deadlines: see deadline_watch.h.
#include "deadline_watch.h"

#include <sys/socket.h>

namespace shardline::internal {

namespace {
// Nothing registered for this long: the thread stops ticking until the next registration.
constexpr std::chrono::seconds kIdleAfter{1};
}  // namespace

DeadlineWatch::Registration::Registration(DeadlineWatch* watch, int fd, TimePoint deadline)
    : watch_(watch), fd_(fd), deadline_(deadline) {
  watch_->Link(this);
}

DeadlineWatch::Registration::~Registration() {
  // linked_ is written only by this registration's own thread (under the mutex, for the
  // watcher's scan), so this thread may read it without the lock: no third lock per call.
  if (linked_) Finish();
}

bool DeadlineWatch::Registration::Finish() { return watch_->Unlink(this); }

bool DeadlineWatch::Registration::fired() const {
  MutexLock lock(&watch_->mu_);
  return fired_;
}

DeadlineWatch& DeadlineWatch::Global() {
  // Never destroyed: calls may still wait on it during static destruction at exit.
  static DeadlineWatch* watch = new DeadlineWatch(/*start_thread=*/true);
  return *watch;
}

DeadlineWatch::DeadlineWatch(bool start_thread, std::chrono::milliseconds tick) : tick_(tick) {
  if (start_thread) thread_ = std::thread([this] { Run(); });
}

DeadlineWatch::~DeadlineWatch() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void DeadlineWatch::Link(Registration* r) {
  bool wake = false;
  {
    MutexLock lock(&mu_);
    r->next_ = head_;
    if (head_ != nullptr) head_->prev_ = r;
    head_ = r;
    r->linked_ = true;
    wake = idle_;
    idle_ = false;
  }
  if (wake) cv_.Signal();
}

bool DeadlineWatch::Unlink(Registration* r) {
  MutexLock lock(&mu_);
  if (!r->linked_) return r->fired_;
  r->linked_ = false;
  if (r->prev_ != nullptr) {
    r->prev_->next_ = r->next_;
  } else {
    head_ = r->next_;
  }
  if (r->next_ != nullptr) r->next_->prev_ = r->prev_;
  r->prev_ = r->next_ = nullptr;
  return r->fired_;
}

int DeadlineWatch::ScanOnce(TimePoint now) {
  MutexLock lock(&mu_);
  return ScanLocked(now);
}

int DeadlineWatch::ScanLocked(TimePoint now) {
  int fired = 0;
  for (Registration* r = head_; r != nullptr; r = r->next_) {
    if (!r->fired_ && now >= r->deadline_) {
      ::shutdown(r->fd_, SHUT_RDWR);  // wakes the call's poll; never blocks
      r->fired_ = true;
      ++fired;
    }
  }
  return fired;
}

void DeadlineWatch::Run() {
  auto last_busy = std::chrono::steady_clock::now();
  MutexLock lock(&mu_);
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    if (head_ != nullptr) {
      last_busy = now;
      ScanLocked(now);
    } else if (now - last_busy >= kIdleAfter) {
      idle_ = true;
      while (idle_ && !stopping_) cv_.Wait(&mu_);  // Link clears idle_
      last_busy = std::chrono::steady_clock::now();
      continue;
    }
    cv_.WaitFor(&mu_, tick_);
  }
}

}  // namespace shardline::internal
