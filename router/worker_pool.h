// A fixed pool of worker threads running queued tasks: the router's fan-out runs one task per
// node on it (instead of a thread or std::async per node per call), and pool maintenance runs
// on it so that a slow connect to one node does not delay the others.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "mutex.h"

namespace shardline::internal {

// Thread-safe. Tasks run in FIFO order on `threads` threads, except that a task submitted with
// a key waits in the queue (letting later tasks pass) while `cap` tasks of the same key run:
// the fan-out keys its parts by node, so that the parts of one hung node cannot take every
// worker while the other nodes' parts queue behind them. The destructor runs the tasks still
// queued, then joins the threads (so a task may rely on what it captured by reference only if
// its submitter waits for it, as the fan-out does).
//
//   WorkerPool pool(4);
//   Latch done(2);
//   pool.Submit([&] { ...; done.CountDown(); });
class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`. Never blocks (the queue is unbounded: callers bound what they submit).
  void Submit(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `task` under `key` (non-null): it starts only while fewer than `cap` (>= 1) tasks
  // of that key run.
  void Submit(const void* key, int cap, std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  struct Task {
    const void* key = nullptr;  // null: no cap
    int cap = 0;
    std::function<void()> fn;
  };
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // The first queued task allowed to start, or queue_.end().
  std::deque<Task>::iterator NextRunnableLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;
  CondVar cv_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const void*, int> running_ ABSL_GUARDED_BY(mu_);  // keyed tasks running
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // written only by the constructor
};

// A one-shot countdown: Wait() returns once CountDown() was called `count` times.
// Thread-safe.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void CountDown() ABSL_LOCKS_EXCLUDED(mu_);
  void Wait() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Mutex mu_;
  CondVar cv_;
  int count_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shardline::internal
