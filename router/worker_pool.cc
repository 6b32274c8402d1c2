// Fixed worker threads and a countdown latch: see worker_pool.h.
#include "worker_pool.h"

#include <algorithm>
#include <utility>

namespace shardline::internal {

WorkerPool::WorkerPool(int threads) {
  if (threads < 1) threads = 1;
  threads_.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Submit(std::function<void()> task) { Submit(nullptr, 0, std::move(task)); }

void WorkerPool::Submit(const void* key, int cap, std::function<void()> task) {
  {
    MutexLock lock(&mu_);
    queue_.push_back(Task{key, key == nullptr ? 0 : std::max(cap, 1), std::move(task)});
  }
  // All: the one woken might find this task capped and wait again, while another worker could
  // run an older queued task that is not.
  cv_.SignalAll();
}

std::deque<WorkerPool::Task>::iterator WorkerPool::NextRunnableLocked() {
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->key == nullptr) return it;
    auto r = running_.find(it->key);
    if (r == running_.end() || r->second < it->cap) return it;
  }
  return queue_.end();
}

void WorkerPool::Run() {
  for (;;) {
    Task task;
    {
      MutexLock lock(&mu_);
      auto it = NextRunnableLocked();
      // A queue holding only capped tasks waits for a running task of theirs to end (which
      // signals); stopping, the remaining tasks still run before the workers leave.
      while (it == queue_.end()) {
        if (queue_.empty() && stopping_) return;  // stopping and drained
        cv_.Wait(&mu_);
        it = NextRunnableLocked();
      }
      task = std::move(*it);
      queue_.erase(it);
      if (task.key != nullptr) ++running_[task.key];
    }
    task.fn();
    if (task.key != nullptr) {
      {
        MutexLock lock(&mu_);
        auto r = running_.find(task.key);
        if (--r->second == 0) running_.erase(r);
      }
      cv_.SignalAll();  // a capped task of this key may start now
    }
  }
}

void Latch::CountDown() {
  MutexLock lock(&mu_);
  if (--count_ <= 0) cv_.SignalAll();
}

void Latch::Wait() {
  MutexLock lock(&mu_);
  while (count_ > 0) cv_.Wait(&mu_);
}

}  // namespace shardline::internal
