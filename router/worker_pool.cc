// Fixed worker threads and a countdown latch: see worker_pool.h.
#include "worker_pool.h"

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

void WorkerPool::Submit(std::function<void()> task) {
  {
    MutexLock lock(&mu_);
    queue_.push_back(std::move(task));
  }
  cv_.Signal();
}

void WorkerPool::Run() {
  for (;;) {
    std::function<void()> task;
    {
      MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) cv_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
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
