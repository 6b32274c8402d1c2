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
  // One: an idle worker waits only when no queued task may start, so only this new one can;
  // if it is capped, the woken worker waits again, and the worker that ends a task of its key
  // takes it up next (Run), with no signal needed.
  cv_.Signal();
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
      bool stopping = false;
      {
        MutexLock lock(&mu_);
        auto r = running_.find(task.key);
        if (--r->second == 0) running_.erase(r);
        stopping = stopping_;
      }
      // This worker takes up the task of its key that may start now (the loop above). Only when
      // stopping must the others hear of it: they wait behind capped tasks for the queue to
      // drain, and nothing else would wake them once it has.
      if (stopping) cv_.SignalAll();
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
