// Unit tests of the per-node connection pool (router/conn_pool.h) with a fake clock and a fake
// connector (connections with a null PGconn): reuse, max size under 64 threads, FIFO order of
// waiters, checkout deadline, discard of broken / old / unhealthy connections, backoff,
// the circuit breaker (fail fast without connecting, one background probe, healing), Maintain
// and Shutdown. Waiting threads are synchronised with the pool's test hooks, never with sleeps.
#include "conn_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shardline/errors.h"
#include "event.h"
#include "status_matchers.h"

namespace shardline::internal {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;

using ::shardline::testing::StatusIs;

constexpr milliseconds kHookTimeout{30000};  // bound of AwaitWaitersForTest (never reached)

// A clock that moves only when told. Thread-safe.
class FakeClock {
 public:
  TimePoint Now() const { return TimePoint(SteadyClock::duration(ns_.load())); }
  void Advance(SteadyClock::duration d) { ns_.fetch_add(d.count()); }
  ClockFn Fn() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<SteadyClock::rep> ns_{std::chrono::duration_cast<SteadyClock::duration>(hours(1)).count()};
};

// A one-shot event: Wait() returns once Notify() was called. Thread-safe.
using ::shardline::testing::Event;

// Hands out fake connections (null PGconn) or scripted failures. Thread-safe.
class FakeConnector {
 public:
  explicit FakeConnector(std::string node) : node_(std::move(node)) {}

  ConnectorFn Fn() {
    return [this](milliseconds timeout) { return Connect(timeout); };
  }
  // Every following attempt fails with `status` (OkStatus: succeed again).
  void FailWith(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = std::move(status);
  }
  // The next attempt signals `entered` and blocks until `release` is notified.
  void BlockNext(Event* entered, Event* release) {
    std::lock_guard<std::mutex> lock(mu_);
    entered_ = entered;
    release_ = release;
  }
  int calls() const { return calls_.load(); }
  milliseconds last_timeout() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_timeout_;
  }

 private:
  absl::StatusOr<std::unique_ptr<pg::Conn>> Connect(milliseconds timeout) {
    calls_.fetch_add(1);
    Event* entered = nullptr;
    Event* release = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_timeout_ = timeout;
      std::swap(entered, entered_);
      std::swap(release, release_);
    }
    if (entered != nullptr) entered->Notify();
    if (release != nullptr) release->Wait();
    std::lock_guard<std::mutex> lock(mu_);
    if (!fail_.ok()) return fail_;
    return std::make_unique<pg::Conn>(pg::ConnPtr(), node_);
  }

  const std::string node_;
  std::atomic<int> calls_{0};
  mutable std::mutex mu_;
  absl::Status fail_;
  Event* entered_ = nullptr;
  Event* release_ = nullptr;
  milliseconds last_timeout_{0};
};

const absl::Status kRefused =
    absl::UnavailableError("node b: could not connect to host=127.0.0.1 port=1: Connection refused");

class ConnPoolTest : public ::testing::Test {
 protected:
  ConnPoolTest() {
    config_.node = "b";
    config_.min_size = 0;
    config_.max_size = 4;
    config_.jitter_seed = 42;
  }

  std::shared_ptr<ConnPool> MakePool(HealthCheckFn health_check = {}) {
    if (!health_check) {
      health_check = [this](pg::Conn&) {
        health_checks_.fetch_add(1);
        return healthy_.load();
      };
    }
    return ConnPool::Create(config_, connector_.Fn(), clock_.Fn(), std::move(health_check));
  }

  TimePoint In(SteadyClock::duration d) const { return clock_.Now() + d; }

  PoolConfig config_;
  FakeClock clock_;
  FakeConnector connector_{"b"};
  std::atomic<int> health_checks_{0};
  std::atomic<bool> healthy_{true};
};

TEST_F(ConnPoolTest, ReturnedConnectionIsReused) {
  auto pool = MakePool();
  pg::Conn* first = nullptr;
  {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok()) << lease.status();
    first = &lease->conn();
    EXPECT_EQ(pool->Stats().in_use, 1);
  }
  EXPECT_EQ(pool->Stats().idle, 1);
  absl::StatusOr<Lease> again = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(&again->conn(), first);
  EXPECT_EQ(connector_.calls(), 1);
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.checkouts, 2);
  EXPECT_EQ(stats.in_use, 1);
  EXPECT_EQ(stats.idle, 0);
  EXPECT_EQ(stats.discarded, 0);
}

TEST_F(ConnPoolTest, LeaseReleaseIsIdempotentAndMoveKeepsOneOwner) {
  auto pool = MakePool();
  absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(lease.ok()) << lease.status();
  Lease moved = std::move(*lease);
  EXPECT_FALSE(*lease);
  EXPECT_TRUE(moved);
  moved.Release();
  moved.Release();
  EXPECT_FALSE(moved);
  EXPECT_EQ(pool->Stats().idle, 1);
  EXPECT_EQ(pool->Stats().in_use, 0);
  // Move-assigning over a live lease returns the overwritten one first.
  absl::StatusOr<Lease> a = pool->Acquire(In(seconds(1)));
  absl::StatusOr<Lease> b = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(a.ok() && b.ok());
  *a = std::move(*b);
  EXPECT_EQ(pool->Stats().in_use, 1);
  EXPECT_EQ(pool->Stats().idle, 1);
}

TEST_F(ConnPoolTest, ConnectTimeoutIsBoundedByTheCheckoutDeadline) {
  config_.options.connect_timeout = milliseconds(2000);
  auto pool = MakePool();
  absl::StatusOr<Lease> a = pool->Acquire(In(milliseconds(300)));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(connector_.last_timeout(), milliseconds(300));
  absl::StatusOr<Lease> b = pool->Acquire(In(seconds(10)));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(connector_.last_timeout(), milliseconds(2000));
}

TEST_F(ConnPoolTest, NeverExceedsMaxSizeWith64ThreadsOnAPoolOf4) {
  constexpr int kThreads = 64;
  constexpr int kRounds = 200;
  auto pool = MakePool();
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
  std::atomic<int> failures{0};
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        // The fake clock never moves: the deadline cannot pass, so every thread must be served.
        absl::StatusOr<Lease> lease = pool->Acquire(In(hours(1)));
        if (!lease.ok()) {
          failures.fetch_add(1);
          continue;
        }
        const int now_holding = holders.fetch_add(1) + 1;
        int seen = max_holders.load();
        while (now_holding > seen && !max_holders.compare_exchange_weak(seen, now_holding)) {
        }
        std::this_thread::yield();
        holders.fetch_sub(1);
      }
      finished.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(finished.load(), kThreads);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(max_holders.load(), 4);
  EXPECT_LE(connector_.calls(), 4);
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.checkouts, kThreads * kRounds);
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_EQ(stats.waiters, 0);
  EXPECT_EQ(stats.connecting, 0);
  EXPECT_LE(stats.idle, 4);
  EXPECT_EQ(stats.checkout_timeouts, 0);
}

TEST_F(ConnPoolTest, WaitersAreServedInArrivalOrder) {
  constexpr int kWaiters = 8;
  config_.max_size = 1;
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(held.ok()) << held.status();

  std::mutex order_mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<Lease> lease = pool->Acquire(In(hours(1)));
      ASSERT_TRUE(lease.ok()) << lease.status();
      std::lock_guard<std::mutex> lock(order_mu);
      order.push_back(i);
      // The lease goes back (to the next waiter) when this scope ends, after recording.
    });
    // Thread i is queued before thread i+1 starts: arrival order is i.
    ASSERT_TRUE(pool->AwaitWaitersForTest(i + 1, kHookTimeout));
  }
  EXPECT_EQ(pool->Stats().waiters, kWaiters);
  held->Release();
  for (auto& t : threads) t.join();
  std::vector<int> expected;
  for (int i = 0; i < kWaiters; ++i) expected.push_back(i);
  EXPECT_EQ(order, expected);
  EXPECT_EQ(connector_.calls(), 1);
}

TEST_F(ConnPoolTest, ReturnedConnectionGoesToTheWaiterNotToANewcomer) {
  config_.max_size = 1;
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(held.ok());
  Event got;
  Event done;
  std::thread waiter([&] {
    absl::StatusOr<Lease> lease = pool->Acquire(In(hours(1)));
    ASSERT_TRUE(lease.ok()) << lease.status();
    got.Notify();
    done.Wait();
  });
  ASSERT_TRUE(pool->AwaitWaitersForTest(1, kHookTimeout));
  held->Release();
  // Whether or not the waiter has woken yet, the connection is already its own.
  absl::StatusOr<Lease> newcomer = pool->Acquire(clock_.Now());
  EXPECT_THAT(newcomer.status(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                          HasSubstr("node b: no free connection")));
  got.Wait();
  done.Notify();
  waiter.join();
}

TEST_F(ConnPoolTest, CheckoutDeadlineExceededNamesNodePoolSizeAndWait) {
  config_.max_size = 2;
  auto pool = MakePool();
  absl::StatusOr<Lease> a = pool->Acquire(In(seconds(1)));
  absl::StatusOr<Lease> b = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(a.ok() && b.ok());

  // A deadline already reached fails without waiting.
  absl::StatusOr<Lease> now = pool->Acquire(clock_.Now());
  EXPECT_THAT(now.status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("node b: no free connection within 0 ms (pool size 2: 2 in use, "
                                 "0 idle, 0 connecting; 0 waiting)")));
  EXPECT_EQ(NodeOf(now.status()), "b");

  // A waiter times out when the (fake) clock passes its deadline.
  absl::Status waited;
  std::thread t([&] { waited = pool->Acquire(In(milliseconds(250))).status(); });
  ASSERT_TRUE(pool->AwaitWaitersForTest(1, kHookTimeout));
  clock_.Advance(milliseconds(250));
  pool->WakeWaitersForTest();
  t.join();
  EXPECT_THAT(waited, StatusIs(absl::StatusCode::kDeadlineExceeded,
                               HasSubstr("node b: no free connection within 250 ms (pool size 2: "
                                         "2 in use, 0 idle, 0 connecting; 0 waiting)")));
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.checkout_timeouts, 2);
  EXPECT_EQ(stats.waiters, 0);
  EXPECT_DOUBLE_EQ(stats.checkout_wait_seconds_total, 0.25);
}

TEST_F(ConnPoolTest, BrokenConnectionIsDiscardedOnReturn) {
  auto pool = MakePool();
  {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok());
    lease->MarkBroken();
  }
  PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.idle, 0);
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_EQ(stats.discarded, 1);
  absl::StatusOr<Lease> fresh = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->pooled().broken);
  EXPECT_EQ(connector_.calls(), 2);
}

TEST_F(ConnPoolTest, DiscardedConnectionFreesTheSlotForAWaiter) {
  config_.max_size = 1;
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(held.ok());
  absl::Status waited = absl::UnknownError("not run");
  std::thread t([&] { waited = pool->Acquire(In(hours(1))).status(); });
  ASSERT_TRUE(pool->AwaitWaitersForTest(1, kHookTimeout));
  held->MarkBroken();
  held->Release();
  t.join();
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_EQ(connector_.calls(), 2);
}

TEST_F(ConnPoolTest, ConnectionOlderThanMaxLifetimeIsClosed) {
  config_.options.max_lifetime = minutes(30);
  auto pool = MakePool();
  // On return.
  {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok());
    clock_.Advance(minutes(31));
  }
  EXPECT_EQ(pool->Stats().idle, 0);
  EXPECT_EQ(pool->Stats().discarded, 1);
  // On checkout of an idle one.
  {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok());
  }
  EXPECT_EQ(pool->Stats().idle, 1);
  clock_.Advance(minutes(31));
  absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->pooled().created_at, clock_.Now());
  EXPECT_EQ(connector_.calls(), 3);
  EXPECT_EQ(pool->Stats().discarded, 2);
  lease->Release();
  // By Maintain, while idle.
  clock_.Advance(minutes(31));
  pool->Maintain();
  EXPECT_EQ(pool->Stats().idle, 0);
  EXPECT_EQ(pool->Stats().discarded, 3);
}

TEST_F(ConnPoolTest, IdleConnectionIsHealthCheckedOnlyAfterHealthCheckAfterIdle) {
  config_.options.health_check_after_idle = seconds(30);
  auto pool = MakePool();
  pg::Conn* first = nullptr;
  {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok());
    first = &lease->conn();
  }
  clock_.Advance(seconds(29));
  {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(&lease->conn(), first);
    EXPECT_EQ(health_checks_.load(), 0);
  }
  clock_.Advance(seconds(30));
  absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(&lease->conn(), first);
  EXPECT_EQ(health_checks_.load(), 1);
  EXPECT_EQ(connector_.calls(), 1);
}

TEST_F(ConnPoolTest, HealthCheckFailureDiscardsAndReconnects) {
  config_.options.health_check_after_idle = seconds(30);
  auto pool = MakePool();
  { ASSERT_TRUE(pool->Acquire(In(seconds(1))).ok()); }
  clock_.Advance(seconds(31));
  healthy_ = false;
  absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(health_checks_.load(), 1);
  EXPECT_EQ(connector_.calls(), 2);
  EXPECT_EQ(pool->Stats().discarded, 1);
  EXPECT_EQ(lease->pooled().created_at, clock_.Now());
}

TEST_F(ConnPoolTest, ZeroHealthCheckAfterIdleChecksEveryCheckout) {
  config_.options.health_check_after_idle = milliseconds(0);
  auto pool = MakePool();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool->Acquire(In(seconds(1))).ok());
  }
  EXPECT_EQ(health_checks_.load(), 2);  // the first one was freshly connected
  EXPECT_EQ(connector_.calls(), 1);
}

TEST_F(ConnPoolTest, DefaultHealthCheckRejectsAFakeConnection) {
  pg::Conn fake(pg::ConnPtr(), "b");
  EXPECT_FALSE(DefaultHealthCheck(fake, milliseconds(10)));
}

TEST_F(ConnPoolTest, ConnectFailureIsReturnedWithNodeAndCounted) {
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
  EXPECT_THAT(lease.status(), StatusIs(absl::StatusCode::kUnavailable,
                                       HasSubstr("node b: could not connect")));
  EXPECT_EQ(NodeOf(lease.status()), "b");
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.connect_failures, 1);
  EXPECT_EQ(stats.connecting, 0);
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_EQ(stats.breaker, BreakerState::kClosed);
}

// absl::Status copies share one reference-counted rep, whose count ThreadSanitizer cannot see
// in Debian's (uninstrumented) abseil: a connect error kept by the pool and handed to callers on
// several threads was reported as a race. Each caller must get its own copy, payloads included.
// Shared reps show as equal message() addresses.
TEST_F(ConnPoolTest, EachCallerGetsItsOwnCopyOfAConnectError) {
  config_.options.breaker_failures = 100;
  config_.options.backoff_initial = milliseconds(1);
  config_.options.backoff_max = milliseconds(1);
  absl::Status refused = kRefused;
  SetNode(refused, "b");  // already attached: the pool has no reason to touch it
  SetSqlState(refused, "08001");
  connector_.FailWith(refused);
  auto pool = MakePool();
  absl::StatusOr<Lease> first = pool->Acquire(In(seconds(1)));
  clock_.Advance(seconds(1));  // past the backoff
  absl::StatusOr<Lease> second = pool->Acquire(In(seconds(1)));
  ASSERT_EQ(connector_.calls(), 2);
  for (const absl::StatusOr<Lease>* got : {&first, &second}) {
    EXPECT_THAT(got->status(), StatusIs(absl::StatusCode::kUnavailable,
                                        HasSubstr("node b: could not connect")));
    EXPECT_EQ(NodeOf(got->status()), "b");
    EXPECT_EQ(SqlStateOf(got->status()), "08001");
    EXPECT_NE(got->status().message().data(), refused.message().data());
  }
  EXPECT_NE(first.status().message().data(), second.status().message().data());
}

TEST_F(ConnPoolTest, ConnectTimeoutCutShortByTheCallersDeadlineDoesNotOpenTheBreaker) {
  config_.options.breaker_failures = 1;
  config_.options.connect_timeout = milliseconds(2000);
  config_.options.checkout_timeout = milliseconds(1000);
  const absl::Status timed_out =
      absl::DeadlineExceededError("node b: connect to host=127.0.0.1 timed out after 100 ms");
  connector_.FailWith(timed_out);
  auto pool = MakePool();
  // 100 ms left of the caller's deadline: no evidence against the node.
  EXPECT_THAT(pool->Acquire(In(milliseconds(100))).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timed out")));
  EXPECT_EQ(connector_.last_timeout(), milliseconds(100));
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kClosed);
  EXPECT_EQ(pool->Stats().connect_failures, 1);
  // A full checkout_timeout is a fair chance: that timeout counts.
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timed out")));
  EXPECT_EQ(connector_.last_timeout(), milliseconds(1000));
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kOpen);
  // A refused connection counts whatever the time left (a new pool: this one is open, and
  // only its background probe would connect now).
  connector_.FailWith(kRefused);
  auto fresh = MakePool();
  EXPECT_THAT(fresh->Acquire(In(milliseconds(10))).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not connect")));
  EXPECT_EQ(fresh->Stats().breaker, BreakerState::kOpen);
}

TEST_F(ConnPoolTest, CallersNeverProbeMaintainProbesWithTheFullConnectTimeout) {
  config_.options.breaker_failures = 1;
  config_.options.breaker_open_for = milliseconds(1000);
  config_.options.connect_timeout = seconds(2);
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  ASSERT_FALSE(pool->Acquire(In(seconds(1))).ok());
  clock_.Advance(seconds(1));
  ASSERT_EQ(pool->Stats().breaker, BreakerState::kHalfOpen);
  // The node is back, but a caller with a short deadline is not the probe: it fails at once.
  connector_.FailWith(absl::OkStatus());
  EXPECT_THAT(pool->Acquire(In(milliseconds(50))).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("node b: circuit breaker half-open after 1 consecutive "
                                 "connection failures; waiting for the background probe "
                                 "connection")));
  EXPECT_EQ(connector_.calls(), 1);
  // The background probe (min_size is 0: it probes anyway) gets the full connect_timeout.
  pool->Maintain();
  EXPECT_EQ(connector_.calls(), 2);
  EXPECT_EQ(connector_.last_timeout(), seconds(2));
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kClosed);
  EXPECT_EQ(pool->Stats().idle, 1);
  EXPECT_TRUE(pool->Acquire(In(milliseconds(50))).ok());
  EXPECT_EQ(connector_.calls(), 2);  // the probe's connection
}

TEST_F(ConnPoolTest, WaitsOutTheBackoffBeforeReconnecting) {
  config_.options.backoff_initial = seconds(10);
  config_.options.backoff_max = seconds(10);
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  ASSERT_FALSE(pool->Acquire(In(seconds(1))).ok());
  connector_.FailWith(absl::OkStatus());
  // Within the backoff (jitter with seed 42 is above 0): no attempt, the deadline passes.
  absl::StatusOr<Lease> early = pool->Acquire(clock_.Now());
  EXPECT_THAT(early.status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("node b: no free connection within 0 ms"),
                             HasSubstr("reconnecting after a failed connect: node b: could not "
                                       "connect"))));
  EXPECT_EQ(connector_.calls(), 1);
  // After the longest possible backoff, the next checkout reconnects.
  clock_.Advance(seconds(10));
  absl::StatusOr<Lease> later = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(connector_.calls(), 2);
}

TEST_F(ConnPoolTest, WaiterReconnectsWhenTheBackoffEnds) {
  config_.options.backoff_initial = seconds(10);
  config_.options.backoff_max = seconds(10);
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  ASSERT_FALSE(pool->Acquire(In(seconds(1))).ok());
  connector_.FailWith(absl::OkStatus());
  absl::Status waited = absl::UnknownError("not run");
  std::thread t([&] { waited = pool->Acquire(In(hours(1))).status(); });
  ASSERT_TRUE(pool->AwaitWaitersForTest(1, kHookTimeout));
  EXPECT_EQ(connector_.calls(), 1);
  clock_.Advance(seconds(10));
  pool->WakeWaitersForTest();
  t.join();
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_EQ(connector_.calls(), 2);
}

// Fails `n` checkouts, advancing the clock past each backoff (at most 2^k * 50 ms).
void FailCheckouts(ConnPool& pool, FakeClock& clock, int n) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<Lease> lease = pool.Acquire(clock.Now() + seconds(1));
    ASSERT_THAT(lease.status(), StatusIs(absl::StatusCode::kUnavailable,
                                         HasSubstr("could not connect"))) << "attempt " << i;
    clock.Advance(seconds(5));
  }
}

TEST_F(ConnPoolTest, BreakerOpensAfterConsecutiveFailuresAndFailsFastWithoutConnecting) {
  config_.options.breaker_failures = 3;
  config_.options.breaker_open_for = milliseconds(1000);
  std::vector<std::string> logs;
  config_.log = [&logs](LogLevel, std::string_view line) { logs.emplace_back(line); };
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  // The third failure opens the breaker (at the clock of that attempt).
  FailCheckouts(*pool, clock_, 2);
  ASSERT_FALSE(pool->Acquire(In(seconds(1))).ok());
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kOpen);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_THAT(logs[0], HasSubstr("node b: circuit breaker open after 3 consecutive connection "
                                 "failures; next attempt in "));

  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    EXPECT_THAT(lease.status(),
                StatusIs(absl::StatusCode::kUnavailable,
                         AllOf(HasSubstr("node b: circuit breaker open after 3 consecutive "
                                         "connection failures; next attempt in "),
                               HasSubstr(" ms (last error: node b: could not connect"))));
    EXPECT_EQ(NodeOf(lease.status()), "b");
  }
  EXPECT_EQ(connector_.calls(), 3);
  // Time passes but not the cool-down (at least 750 ms with jitter): still no attempt.
  clock_.Advance(milliseconds(700));
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("circuit breaker open")));
  EXPECT_EQ(connector_.calls(), 3);
}

TEST_F(ConnPoolTest, CallsTimingOutTripTheBreakerLikeRefusedConnections) {
  // A hung node: connections exist, but calls on them time out (issue 10).
  config_.options.breaker_failures = 3;
  std::vector<std::string> logs;
  config_.log = [&logs](LogLevel, std::string_view line) { logs.emplace_back(line); };
  auto pool = MakePool();
  std::vector<Lease> leases;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Lease> lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok()) << lease.status();
    leases.push_back(std::move(*lease));
  }
  for (Lease& l : leases) l.MarkTimedOut();
  leases[0].Release();
  leases[1].Release();
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kClosed);
  leases[2].Release();
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kOpen);
  EXPECT_EQ(pool->Stats().call_timeouts, 3);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_THAT(logs[0], HasSubstr("node b: circuit breaker open after 3 consecutive failures "
                                 "(calls timed out waiting for the node)"));
  const int calls = connector_.calls();
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("circuit breaker open")));
  EXPECT_EQ(connector_.calls(), calls);  // failed fast, no connection attempt
}

TEST_F(ConnPoolTest, AnAnsweredCallResetsTheTimeoutCount) {
  config_.options.breaker_failures = 2;
  auto pool = MakePool();
  for (int round = 0; round < 3; ++round) {
    absl::StatusOr<Lease> slow = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(slow.ok());
    slow->MarkTimedOut();
    slow->Release();
    absl::StatusOr<Lease> fine = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(fine.ok());
    fine->MarkAnswered();
    fine->Release();
  }
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kClosed);
}

TEST_F(ConnPoolTest, PastMaxWaitersACallFailsAtOnceWithUnavailable) {
  config_.max_size = 1;
  config_.options.max_waiters = 2;
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(held.ok());
  std::vector<std::thread> waiters;
  std::vector<absl::Status> got(2);
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&, i] { got[i] = pool->Acquire(In(seconds(1))).status(); });
  }
  ASSERT_TRUE(pool->AwaitWaitersForTest(2, kHookTimeout));
  absl::StatusOr<Lease> third = pool->Acquire(In(seconds(1)));
  EXPECT_THAT(third.status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("node b: 2 callers already wait for a connection (max_waiters)")));
  EXPECT_EQ(NodeOf(third.status()), "b");
  EXPECT_EQ(pool->Stats().waiters_refused, 1);
  clock_.Advance(seconds(1));
  pool->WakeWaitersForTest();
  for (auto& t : waiters) t.join();
  for (const auto& s : got) EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
}

TEST_F(ConnPoolTest, BreakerMessageCountsDownToTheNextAttempt) {
  config_.options.breaker_failures = 1;
  config_.options.breaker_open_for = milliseconds(1000);
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  ASSERT_FALSE(pool->Acquire(In(seconds(1))).ok());
  const PoolStats opened = pool->Stats();
  ASSERT_EQ(opened.breaker, BreakerState::kOpen);
  // Find the cool-down from the message, then check it shrinks as the clock moves.
  const std::string msg(pool->Acquire(In(seconds(1))).status().message());
  const std::string marker = "next attempt in ";
  const std::size_t at = msg.find(marker);
  ASSERT_NE(at, std::string::npos) << msg;
  const int ms = std::stoi(msg.substr(at + marker.size()));
  EXPECT_GE(ms, 750);
  EXPECT_LE(ms, 1000);
  clock_.Advance(milliseconds(100));
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status().message(),
              HasSubstr(marker + std::to_string(ms - 100) + " ms"));
}

TEST_F(ConnPoolTest, HalfOpenBreakerAdmitsOneBackgroundProbeAndClosesOnSuccess) {
  config_.options.breaker_failures = 3;
  config_.options.breaker_open_for = milliseconds(1000);
  std::vector<std::string> logs;
  std::mutex logs_mu;
  config_.log = [&](LogLevel, std::string_view line) {
    std::lock_guard<std::mutex> lock(logs_mu);
    logs.emplace_back(line);
  };
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  FailCheckouts(*pool, clock_, 3);  // also moves the clock past the cool-down
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kHalfOpen);

  // The node is back. The probe blocks in connect; meanwhile callers fail fast and a second
  // Maintain does not probe again.
  connector_.FailWith(absl::OkStatus());
  Event entered, release;
  connector_.BlockNext(&entered, &release);
  std::thread t([&] { pool->Maintain(); });
  entered.Wait();
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("node b: circuit breaker half-open after 3 consecutive "
                                 "connection failures; a background probe connection is in "
                                 "progress")));
  pool->Maintain();
  EXPECT_EQ(connector_.calls(), 4);
  release.Notify();
  t.join();
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kClosed);
  {
    std::lock_guard<std::mutex> lock(logs_mu);
    ASSERT_EQ(logs.size(), 2u);
    EXPECT_EQ(logs[1], "node b: connected again; circuit breaker closed");
  }
  // Closed again: checkouts take the probe's connection, then connect normally.
  absl::StatusOr<Lease> a = pool->Acquire(In(seconds(1)));
  absl::StatusOr<Lease> b = pool->Acquire(In(seconds(1)));
  EXPECT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(connector_.calls(), 5);
}

TEST_F(ConnPoolTest, FailedProbeReopensTheBreaker) {
  config_.options.breaker_failures = 3;
  config_.options.breaker_open_for = milliseconds(1000);
  connector_.FailWith(kRefused);
  auto pool = MakePool();
  FailCheckouts(*pool, clock_, 3);
  ASSERT_EQ(pool->Stats().breaker, BreakerState::kHalfOpen);
  pool->Maintain();
  EXPECT_EQ(connector_.calls(), 4);
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kOpen);
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("circuit breaker open after 4 consecutive connection failures")));
  pool->Maintain();  // open: no attempt
  EXPECT_EQ(connector_.calls(), 4);
}

TEST_F(ConnPoolTest, OpeningBreakerFailsQueuedWaitersAtOnce) {
  config_.max_size = 2;
  config_.options.breaker_failures = 1;
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(held.ok());

  // A second checkout connects (blocked), a third one waits: the pool is full.
  connector_.FailWith(kRefused);
  Event entered, release;
  connector_.BlockNext(&entered, &release);
  absl::Status connecting = absl::UnknownError("not run");
  std::thread c([&] { connecting = pool->Acquire(In(hours(1))).status(); });
  entered.Wait();
  absl::Status waiting = absl::UnknownError("not run");
  std::thread w([&] { waiting = pool->Acquire(In(hours(1))).status(); });
  ASSERT_TRUE(pool->AwaitWaitersForTest(1, kHookTimeout));
  release.Notify();  // the connect fails and opens the breaker
  c.join();
  w.join();
  EXPECT_THAT(connecting, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not connect")));
  EXPECT_THAT(waiting, StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr("node b: circuit breaker open after 1 consecutive")));
  EXPECT_EQ(connector_.calls(), 2);
  // The lease still out is closed when it comes back: nothing is kept while open.
  held->Release();
  EXPECT_EQ(pool->Stats().idle, 0);
  EXPECT_EQ(pool->Stats().discarded, 1);
}

TEST_F(ConnPoolTest, MaintainOpensMinSizeAndProbesAnOpenBreaker) {
  config_.min_size = 2;
  config_.options.breaker_failures = 1;
  config_.options.breaker_open_for = milliseconds(1000);
  auto pool = MakePool();
  pool->Maintain();
  EXPECT_EQ(pool->Stats().idle, 2);
  EXPECT_EQ(connector_.calls(), 2);
  pool->Maintain();
  EXPECT_EQ(connector_.calls(), 2);

  // The node dies: connections come back broken, Maintain's attempt opens the breaker.
  {
    absl::StatusOr<Lease> a = pool->Acquire(In(seconds(1)));
    absl::StatusOr<Lease> b = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(a.ok() && b.ok());
    a->MarkBroken();
    b->MarkBroken();
  }
  connector_.FailWith(kRefused);
  pool->Maintain();
  EXPECT_EQ(connector_.calls(), 3);
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kOpen);
  pool->Maintain();  // open: no attempt at all
  EXPECT_EQ(connector_.calls(), 3);

  // The node is back: after the cool-down Maintain's probe closes the breaker and refills.
  connector_.FailWith(absl::OkStatus());
  clock_.Advance(seconds(1));
  pool->Maintain();
  EXPECT_EQ(pool->Stats().breaker, BreakerState::kClosed);
  EXPECT_EQ(pool->Stats().idle, 2);
  EXPECT_EQ(connector_.calls(), 5);
}

TEST_F(ConnPoolTest, ShutdownClosesIdleRefusesCheckoutsAndClosesReturnedLeases) {
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  { ASSERT_TRUE(pool->Acquire(In(seconds(1))).ok()); }  // leaves one idle
  ASSERT_TRUE(held.ok());
  ASSERT_EQ(pool->Stats().idle, 1);
  pool->Shutdown();
  EXPECT_EQ(pool->Stats().idle, 0);
  EXPECT_THAT(pool->Acquire(In(seconds(1))).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("node b: connection pool is shut down")));
  held->Release();
  const PoolStats stats = pool->Stats();
  EXPECT_EQ(stats.idle, 0);
  EXPECT_EQ(stats.in_use, 0);
  EXPECT_EQ(stats.discarded, 2);
  EXPECT_EQ(connector_.calls(), 2);
}

TEST_F(ConnPoolTest, ShutdownWakesAWaiterWithUnavailable) {
  config_.max_size = 1;
  auto pool = MakePool();
  absl::StatusOr<Lease> held = pool->Acquire(In(seconds(1)));
  ASSERT_TRUE(held.ok());
  absl::Status waited = absl::UnknownError("not run");
  std::thread t([&] { waited = pool->Acquire(In(hours(1))).status(); });
  ASSERT_TRUE(pool->AwaitWaitersForTest(1, kHookTimeout));
  pool->Shutdown();
  t.join();
  EXPECT_THAT(waited, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("node b: connection pool is shut down")));
  held->Release();  // closed, not kept
  EXPECT_EQ(pool->Stats().idle, 0);
  EXPECT_EQ(pool->Stats().discarded, 1);
}

TEST_F(ConnPoolTest, LeaseKeepsThePoolAlive) {
  absl::StatusOr<Lease> lease;
  std::weak_ptr<ConnPool> weak;
  {
    auto pool = MakePool();
    weak = pool;
    lease = pool->Acquire(In(seconds(1)));
    ASSERT_TRUE(lease.ok());
  }
  EXPECT_FALSE(weak.expired());
  lease->Release();
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace shardline::internal
