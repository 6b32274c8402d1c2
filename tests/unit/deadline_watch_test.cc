// Unit tests of the call-deadline watcher (router/deadline_watch.h) on a socketpair: a wait
// past its deadline has its socket shut down (which wakes a poll with no timeout), one before
// it or unregistered is never touched.
#include "deadline_watch.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "gtest/gtest.h"

namespace shardline::internal {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

class SocketPair {
 public:
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0); }
  ~SocketPair() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  int mine() const { return fds_[0]; }
  int peer() const { return fds_[1]; }

 private:
  int fds_[2] = {-1, -1};
};

TEST(DeadlineWatchTest, ShutsDownOnlyTheSocketsPastTheirDeadline) {
  DeadlineWatch watch(/*start_thread=*/false);
  SocketPair late, early;
  const auto t0 = Clock::now();
  DeadlineWatch::Registration a(&watch, late.mine(), t0 + milliseconds(100));
  DeadlineWatch::Registration b(&watch, early.mine(), t0 + milliseconds(500));
  EXPECT_EQ(watch.ScanOnce(t0 + milliseconds(99)), 0);
  EXPECT_EQ(watch.ScanOnce(t0 + milliseconds(100)), 1);
  EXPECT_TRUE(a.fired());
  EXPECT_FALSE(b.fired());
  EXPECT_EQ(watch.ScanOnce(t0 + milliseconds(200)), 0);  // fires once
  // The shut-down socket reads EOF at once; the other one still carries data.
  char c = 0;
  EXPECT_EQ(::recv(late.mine(), &c, 1, MSG_DONTWAIT), 0);
  ASSERT_EQ(::send(early.peer(), "x", 1, 0), 1);
  EXPECT_EQ(::recv(early.mine(), &c, 1, 0), 1);
}

TEST(DeadlineWatchTest, AnUnlinkedRegistrationIsNeverTouched) {
  DeadlineWatch watch(/*start_thread=*/false);
  SocketPair s;
  const auto t0 = Clock::now();
  {
    DeadlineWatch::Registration r(&watch, s.mine(), t0);
  }
  EXPECT_EQ(watch.ScanOnce(t0 + milliseconds(1000)), 0);
  ASSERT_EQ(::send(s.peer(), "x", 1, 0), 1);
  char c = 0;
  EXPECT_EQ(::recv(s.mine(), &c, 1, 0), 1);
}

TEST(DeadlineWatchTest, FinishUnlinksAndSaysWhetherItFired) {
  DeadlineWatch watch(/*start_thread=*/false);
  SocketPair s;
  const auto t0 = Clock::now();
  DeadlineWatch::Registration fired(&watch, s.mine(), t0);
  DeadlineWatch::Registration kept(&watch, s.peer(), t0 + milliseconds(100));
  EXPECT_EQ(watch.ScanOnce(t0), 1);
  EXPECT_TRUE(fired.Finish());
  EXPECT_TRUE(fired.Finish());  // idempotent
  EXPECT_FALSE(kept.Finish());
  EXPECT_EQ(watch.ScanOnce(t0 + milliseconds(1000)), 0);  // finished: never touched again
}

TEST(DeadlineWatchTest, TheThreadWakesAPollWithoutATimeout) {
  DeadlineWatch watch(/*start_thread=*/true, milliseconds(5));
  SocketPair s;
  DeadlineWatch::Registration r(&watch, s.mine(), Clock::now() + milliseconds(20));
  pollfd pfd{s.mine(), POLLIN, 0};
  // Nothing is ever written: poll returns early only because the watcher shut the socket down
  // (the 10 s bound only keeps a broken watcher from hanging the test).
  ASSERT_EQ(::poll(&pfd, 1, 10'000), 1);
  EXPECT_TRUE(r.fired());
}

}  // namespace
}  // namespace shardline::internal
