// Unit tests of the worker pool (router/worker_pool.h): keyed tasks beyond their cap wait in
// the queue while later tasks of other keys pass them, and start when a task of theirs ends.
#include "worker_pool.h"

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "event.h"

namespace shardline::internal {
namespace {

using ::shardline::testing::Event;

TEST(WorkerPoolTest, TasksOfAKeyAtItsCapLetOtherKeysPass) {
  WorkerPool pool(3);
  int hung_key = 1;  // keys are addresses
  int other_key = 2;
  Event first_started, release_first, second_started, other_ran;
  std::mutex order_mu;
  std::vector<std::string> order;
  auto note = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(order_mu);
    order.push_back(what);
  };
  Latch done(3);
  // Cap 1: the second task of the hung key must wait for the first even with workers free.
  pool.Submit(&hung_key, 1, [&] {
    first_started.Notify();
    release_first.Wait();
    note("hung 1 ends");
    done.CountDown();
  });
  first_started.Wait();
  pool.Submit(&hung_key, 1, [&] {
    note("hung 2 starts");
    second_started.Notify();
    done.CountDown();
  });
  pool.Submit(&other_key, 1, [&] {
    note("other runs");
    other_ran.Notify();
    done.CountDown();
  });
  other_ran.Wait();  // passed the queued second task of the hung key
  EXPECT_FALSE(second_started.notified());
  release_first.Notify();
  second_started.Wait();
  done.Wait();
  std::lock_guard<std::mutex> lock(order_mu);
  EXPECT_EQ(order, (std::vector<std::string>{"other runs", "hung 1 ends", "hung 2 starts"}));
}

TEST(WorkerPoolTest, DestructorRunsQueuedCappedTasks) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(2);
    const int key = 0;
    for (int i = 0; i < 20; ++i) pool.Submit(&key, 1, [&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 20);
}

}  // namespace
}  // namespace shardline::internal
