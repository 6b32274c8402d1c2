// Unit tests of SnapshotSlot (router/snapshot.h): concurrent readers and a writer. Run under
// ThreadSanitizer by the test command, which is where a missing happens-before edge shows.
#include "snapshot.h"

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace shardline::internal {
namespace {

struct Table {
  explicit Table(int v) : a(v), b(v * 2) {}
  const int a;
  const int b;
};

TEST(SnapshotSlot, EmptyUntilStored) {
  SnapshotSlot<Table> slot;
  EXPECT_EQ(slot.Load(), nullptr);
  slot.Store(std::make_shared<const Table>(3));
  ASSERT_NE(slot.Load(), nullptr);
  EXPECT_EQ(slot.Load()->a, 3);
}

TEST(SnapshotSlot, ReadersSeeWholeSnapshotsInOrderWhileAWriterSwaps) {
  SnapshotSlot<Table> slot;
  slot.Store(std::make_shared<const Table>(0));
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0}, backwards{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      int last = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        std::shared_ptr<const Table> s = slot.Load();
        if (s->b != s->a * 2) torn.fetch_add(1);
        if (s->a < last) backwards.fetch_add(1);
        last = s->a;
      }
    });
  }
  for (int v = 1; v <= 2000; ++v) slot.Store(std::make_shared<const Table>(v));
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(backwards.load(), 0);
  EXPECT_EQ(slot.Load()->a, 2000);
}

TEST(SnapshotSlot, ASnapshotOutlivesItsReplacement) {
  SnapshotSlot<Table> slot;
  slot.Store(std::make_shared<const Table>(1));
  std::shared_ptr<const Table> held = slot.Load();
  slot.Store(std::make_shared<const Table>(2));
  EXPECT_EQ(held->a, 1);  // work in flight keeps the map it started with
  EXPECT_EQ(slot.Load()->a, 2);
}

}  // namespace
}  // namespace shardline::internal
