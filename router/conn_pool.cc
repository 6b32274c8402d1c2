// Per-node connection pool and its leases. See conn_pool.h.
//
// How it works. All state lives in State under mu_; no I/O ever happens under mu_ (connects,
// health checks and PQfinish of discarded connections run after Unlock, with the slot counted
// in `connecting` or `in_use` so that max_size holds). Waiters queue FIFO, each on its own
// condition variable: a returned connection is handed straight to the longest waiter (it
// cannot be stolen by a newcomer, and only that one thread wakes: no thundering herd), and a
// freed slot wakes only the head of the queue. Connect failures feed the circuit breaker and a
// full-jitter backoff (backoff.h) before the next attempt; while the breaker is open, Acquire
// fails at once and nothing is kept for the node (idle connections dropped, returned ones
// closed), so that a black-holed node cannot hang the next user of a stale connection.
#include "conn_pool.h"
#include "status_text.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <fmt/format.h>

#include "absl/strings/cord.h"
#include "backoff.h"
#include "shardline/errors.h"

namespace shardline::internal {

namespace {

using std::chrono::milliseconds;

// Longest single condition-variable wait; waiters re-check their deadline after it, which
// also keeps huge deadlines (TimePoint::max()) from overflowing the wait arithmetic.
constexpr milliseconds kMaxWaitSlice{60 * 1000};
// A connect timeout shorter than this never counts against the node (see Acquire).
constexpr milliseconds kMinFairConnect{250};

std::int64_t MillisCeil(SteadyClock::duration d) {
  if (d <= SteadyClock::duration::zero()) return 0;
  return std::chrono::ceil<milliseconds>(d).count();
}

// A returned connection is reusable only when nothing of its last user can leak to the next:
// no transaction open or aborted, no result left unread, the link up. A null PGconn is a fake
// connection in unit tests: nothing to leak.
bool CleanForReuse(const pg::Conn& conn) {
  PGconn* raw = conn.raw();
  if (raw == nullptr) return true;
  return PQstatus(raw) == CONNECTION_OK && PQtransactionStatus(raw) == PQTRANS_IDLE;
}

// absl::Status::message() is abseil's own string_view here (Debian's abseil), which fmt
// cannot format: copy it.
absl::Status WithNode(absl::Status status, const std::string& node) {
  SetNode(status, node);
  return status;
}

// A deep copy of `status` that shares nothing with it: code, message and payloads rebuilt
// from their text. Why: absl::Status copies share one reference-counted rep, and Debian's
// abseil is not built with ThreadSanitizer, so the reference count is invisible to TSan; a
// connect error kept in the pool (last_connect_error) and also handed to callers on other
// threads made TSan report the rep's final free as a race with an earlier read of its message.
// A connect error is rare (an error path), so the copy costs nothing that matters.
absl::Status FreshCopy(const absl::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(status.code(), std::string(status.message()));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, absl::Cord(std::string(payload)));
  });
  return out;
}

}  // namespace

bool DefaultHealthCheck(pg::Conn& conn, milliseconds timeout) {
  PGconn* raw = conn.raw();
  if (raw == nullptr) return false;
  if (PQstatus(raw) != CONNECTION_OK || PQtransactionStatus(raw) != PQTRANS_IDLE) return false;
  if (PQconsumeInput(raw) == 0) return false;  // EOF or socket error already pending
  if (PQsendQuery(raw, "") == 0) return false;
  const auto deadline = SteadyClock::now() + timeout;
  while (PQisBusy(raw) != 0) {
    const std::int64_t left = MillisCeil(deadline - SteadyClock::now());
    if (left <= 0) return false;  // the query stays in flight: the caller discards the connection
    pollfd pfd{};
    pfd.fd = PQsocket(raw);
    pfd.events = POLLIN;
    const int rc = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left, 1 << 30)));
    if (rc < 0 && errno != EINTR) return false;
    if (rc > 0 && PQconsumeInput(raw) == 0) return false;
  }
  bool ok = true;
  while (PGresult* r = PQgetResult(raw)) {
    pg::ResultPtr res(r);
    if (PQresultStatus(r) != PGRES_EMPTY_QUERY) ok = false;
  }
  return ok && PQstatus(raw) == CONNECTION_OK && PQtransactionStatus(raw) == PQTRANS_IDLE;
}

// ---------------------------------------------------------------------------------------------
// Lease

Lease::Lease(std::shared_ptr<ConnPool> pool, std::unique_ptr<PooledConnection> pc)
    : pool_(std::move(pool)), pc_(std::move(pc)) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = std::move(other.pool_);
    pc_ = std::move(other.pc_);
    deadline_ = other.deadline_;
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (pc_ != nullptr && pool_ != nullptr) pool_->Return(std::move(pc_));
  pc_.reset();
  pool_.reset();
}

// ---------------------------------------------------------------------------------------------
// ConnPool

// One caller blocked in Acquire. Lives on that caller's stack; other threads touch it only
// under mu_ (and signal it under mu_, so it cannot be destroyed mid-signal).
struct ConnPool::Waiter {
  CondVar cv;
  std::unique_ptr<PooledConnection> handed;  // given directly by Return / a connect
  bool queued = false;
};

struct ConnPool::State {
  State(const PoolConfig& config, std::uint64_t seed)
      : breaker(config.options.breaker_failures, config.options.breaker_open_for,
                std::max(config.options.breaker_open_for, config.options.backoff_max),
                seed ^ 0x5bd1e995ULL),
        rng(seed) {}

  std::vector<std::unique_ptr<PooledConnection>> idle;  // back = most recently used (LIFO)
  std::deque<Waiter*> waiters;                          // front = longest waiting (FIFO)
  int in_use = 0;      // leased, or being health-checked by an Acquire
  int connecting = 0;  // connection attempts in flight
  bool shutdown = false;
  CircuitBreaker breaker;
  JitterRng rng;
  TimePoint next_connect_at{};  // backoff: no new attempt before this (while closed)
  absl::Status last_connect_error;
  CondVar waiters_changed;  // AwaitWaitersForTest

  std::int64_t checkouts = 0;
  std::int64_t checkout_timeouts = 0;
  std::int64_t connect_failures = 0;
  std::int64_t discarded = 0;
  std::int64_t call_timeouts = 0;
  std::int64_t waiters_refused = 0;
  double checkout_wait_seconds_total = 0;
};

std::shared_ptr<ConnPool> ConnPool::Create(PoolConfig config, ConnectorFn connector,
                                           ClockFn clock, HealthCheckFn health_check) {
  if (!clock) clock = [] { return SteadyClock::now(); };
  if (!health_check) {
    health_check = [timeout = config.options.connect_timeout](pg::Conn& conn) {
      return DefaultHealthCheck(conn, timeout);
    };
  }
  config.max_size = std::max(config.max_size, 1);
  config.min_size = std::clamp(config.min_size, 0, config.max_size);
  if (config.jitter_seed == 0) config.jitter_seed = RandomSeed();
  return std::shared_ptr<ConnPool>(new ConnPool(std::move(config), std::move(connector),
                                                std::move(clock), std::move(health_check)));
}

ConnPool::ConnPool(PoolConfig config, ConnectorFn connector, ClockFn clock,
                   HealthCheckFn health_check)
    : config_(std::move(config)),
      connector_(std::move(connector)),
      clock_(std::move(clock)),
      health_check_(std::move(health_check)),
      state_(std::make_unique<State>(config_, config_.jitter_seed)) {}

ConnPool::~ConnPool() = default;

int ConnPool::TotalLocked() const {
  return state_->in_use + state_->connecting + static_cast<int>(state_->idle.size());
}

void ConnPool::KickFrontLocked() {
  if (!state_->waiters.empty()) state_->waiters.front()->cv.Signal();
}

void ConnPool::DequeueLocked(Waiter* w) {
  if (!w->queued) return;
  auto& q = state_->waiters;
  const bool was_front = q.front() == w;
  q.erase(std::find(q.begin(), q.end(), w));
  w->queued = false;
  if (was_front) KickFrontLocked();
}

void ConnPool::PutBackLocked(std::unique_ptr<PooledConnection> pc) {
  State& s = *state_;
  if (!s.waiters.empty()) {
    Waiter* w = s.waiters.front();
    s.waiters.pop_front();
    w->queued = false;
    w->handed = std::move(pc);
    ++s.in_use;
    w->cv.Signal();
    return;
  }
  s.idle.push_back(std::move(pc));
}

std::unique_ptr<PooledConnection> ConnPool::OnConnectedLocked(std::unique_ptr<pg::Conn> conn,
                                                              TimePoint now,
                                                              std::string* log_line) {
  State& s = *state_;
  --s.connecting;
  if (s.breaker.RecordSuccess()) {
    *log_line = fmt::format("node {}: connected again; circuit breaker closed", config_.node);
  }
  s.next_connect_at = TimePoint{};
  s.last_connect_error = absl::OkStatus();
  auto pc = std::make_unique<PooledConnection>();
  pc->conn = std::move(conn);
  pc->transaction_pooler = config_.transaction_pooler;
  pc->local_statement_timeout = config_.local_statement_timeout;
  pc->created_at = now;
  pc->last_used = now;
  return pc;
}

void ConnPool::OnConnectFailedLocked(const absl::Status& status, bool counts, TimePoint now,
                                     Trash* trash, std::string* log_line) {
  State& s = *state_;
  --s.connecting;
  ++s.connect_failures;
  s.last_connect_error = FreshCopy(status);
  if (!counts) {
    KickFrontLocked();
    return;
  }
  const bool opened = s.breaker.RecordFailure(now);
  const int failures = s.breaker.consecutive_failures();
  s.next_connect_at = now + FullJitterBackoff(failures, config_.options.backoff_initial,
                                              config_.options.backoff_max, s.rng);
  if (opened) {
    // The node is considered down: keep nothing of it, and fail every waiter now.
    for (auto& pc : s.idle) trash->push_back(std::move(pc));
    s.discarded += static_cast<std::int64_t>(s.idle.size());
    s.idle.clear();
    for (Waiter* w : s.waiters) w->cv.Signal();
    *log_line = fmt::format(
        "node {}: circuit breaker open after {} consecutive connection failures; next attempt "
        "in {} ms; last error: {}",
        config_.node, failures, MillisCeil(s.breaker.retry_at() - now), Msg(status));
  } else {
    KickFrontLocked();  // the slot is free again (the head waits for the backoff)
  }
}

absl::Status ConnPool::BreakerErrorLocked(BreakerState state, TimePoint now) const {
  const State& s = *state_;
  std::string what;
  if (state == BreakerState::kOpen) {
    what = fmt::format("circuit breaker open after {} consecutive connection failures; next "
                       "attempt in {} ms",
                       s.breaker.consecutive_failures(), MillisCeil(s.breaker.retry_at() - now));
  } else {
    what = fmt::format("circuit breaker half-open after {} consecutive connection failures; {}",
                       s.breaker.consecutive_failures(),
                       s.connecting > 0 ? "a background probe connection is in progress"
                                        : "waiting for the background probe connection");
  }
  std::string msg = fmt::format("node {}: {}", config_.node, what);
  if (!s.last_connect_error.ok()) {
    msg += fmt::format(" (last error: {})", Msg(s.last_connect_error));
  }
  return WithNode(absl::UnavailableError(msg), config_.node);
}

absl::Status ConnPool::DeadlineErrorLocked(TimePoint start, TimePoint now) const {
  const State& s = *state_;
  std::string msg = fmt::format(
      "node {}: no free connection within {} ms (pool size {}: {} in use, {} idle, {} "
      "connecting; {} waiting)",
      config_.node, MillisCeil(now - start), config_.max_size, s.in_use, s.idle.size(),
      s.connecting, s.waiters.size());
  if (!s.last_connect_error.ok() && now < s.next_connect_at) {
    msg += fmt::format("; reconnecting after a failed connect: {}", Msg(s.last_connect_error));
  }
  return WithNode(absl::DeadlineExceededError(msg), config_.node);
}

void ConnPool::Log(LogLevel level, const std::string& line) const {
  if (!line.empty() && config_.log) config_.log(level, line);
}

absl::StatusOr<Lease> ConnPool::Acquire(TimePoint deadline) {
  const TimePoint start = clock_();
  Waiter w;
  Trash trash;          // closed outside the lock
  std::string log_line;  // logged outside the lock
  bool reenter_front = false;  // our own I/O failed after we had our turn: keep our place
  std::unique_ptr<PooledConnection> got;
  absl::Status error;

  mu_.Lock();
  State& s = *state_;
  for (;;) {
    if (!trash.empty() || !log_line.empty()) {
      mu_.Unlock();
      trash.clear();
      Log(LogLevel::kWarning, log_line);
      log_line.clear();
      mu_.Lock();
      continue;
    }
    if (w.handed != nullptr) {  // counted in in_use by PutBackLocked
      got = std::move(w.handed);
      break;
    }
    if (s.shutdown) {
      DequeueLocked(&w);
      error = WithNode(absl::UnavailableError(fmt::format(
                           "node {}: connection pool is shut down", config_.node)),
                       config_.node);
      break;
    }
    TimePoint now = clock_();
    const BreakerState breaker = s.breaker.state(now);
    const bool my_turn = w.queued ? s.waiters.front() == &w : (s.waiters.empty() || reenter_front);

    if (breaker != BreakerState::kClosed) {
      // Callers never probe: the probe is Maintain's, in the background, with the full
      // connect_timeout. A caller's probe would get only what is left of its deadline, fail
      // on a slow but live node and re-open the breaker for longer; and the caller would wait
      // on the node the breaker exists to keep it away from.
      DequeueLocked(&w);
      error = BreakerErrorLocked(breaker, now);
      break;
    } else if (my_turn && !s.idle.empty()) {
      std::unique_ptr<PooledConnection> pc = std::move(s.idle.back());
      s.idle.pop_back();
      DequeueLocked(&w);
      if (now - pc->created_at >= config_.options.max_lifetime) {
        ++s.discarded;
        trash.push_back(std::move(pc));
        reenter_front = true;
        continue;
      }
      if (now - pc->last_used < config_.options.health_check_after_idle) {
        ++s.in_use;
        got = std::move(pc);
        break;
      }
      // Idle for long: check it outside the lock, counted as in use meanwhile.
      ++s.in_use;
      mu_.Unlock();
      const bool healthy = health_check_(*pc->conn);
      mu_.Lock();
      if (healthy) {
        pc->last_used = clock_();
        got = std::move(pc);
        break;
      }
      --s.in_use;
      ++s.discarded;
      trash.push_back(std::move(pc));
      reenter_front = true;
      continue;
    } else if (!my_turn || TotalLocked() >= config_.max_size || now < s.next_connect_at ||
               now >= deadline) {
      // Wait: for a returned connection, a free slot, the end of the backoff, or the deadline.
      if (now >= deadline) {
        DequeueLocked(&w);
        ++s.checkout_timeouts;
        error = DeadlineErrorLocked(start, now);
        break;
      }
      const int max_waiters = config_.options.max_waiters;
      if (!w.queued && !reenter_front && max_waiters > 0 &&
          static_cast<int>(s.waiters.size()) >= max_waiters) {
        ++s.waiters_refused;
        error = WithNode(
            absl::UnavailableError(fmt::format(
                "node {}: {} callers already wait for a connection (max_waiters); not queueing "
                "(pool size {}: {} in use, {} connecting)",
                config_.node, s.waiters.size(), config_.max_size, s.in_use, s.connecting)),
            config_.node);
        break;
      }
      if (!w.queued) {
        if (reenter_front) {
          s.waiters.push_front(&w);
        } else {
          s.waiters.push_back(&w);
        }
        w.queued = true;
        reenter_front = false;
        s.waiters_changed.SignalAll();
      }
      TimePoint wake_at = deadline;
      if (s.waiters.front() == &w && TotalLocked() < config_.max_size) {
        wake_at = std::min(wake_at, s.next_connect_at);
      }
      const auto slice = std::min<SteadyClock::duration>(wake_at - now, kMaxWaitSlice);
      w.cv.WaitFor(&mu_, slice);
      continue;
    }

    // Connect: our turn, a free slot, the breaker and the backoff allow it.
    DequeueLocked(&w);
    ++s.connecting;
    KickFrontLocked();  // another slot may be free for the next waiter too
    const milliseconds timeout = std::max(
        milliseconds(1),
        std::min(config_.options.connect_timeout,
                 std::chrono::duration_cast<milliseconds>(deadline - now)));
    mu_.Unlock();
    absl::StatusOr<std::unique_ptr<pg::Conn>> conn = connector_(timeout);
    if (conn.ok() && *conn == nullptr) {
      conn = absl::UnavailableError(
          fmt::format("node {}: the connector returned no connection", config_.node));
    }
    mu_.Lock();
    now = clock_();
    if (conn.ok()) {
      got = OnConnectedLocked(std::move(*conn), now, &log_line);
      ++s.in_use;
      break;
    }
    // A connect timeout is evidence against the node only if the attempt had a fair time:
    // at least min(connect_timeout, checkout_timeout), what a fresh caller gets. A waiter that
    // got a slot near the end of its deadline and timed out says nothing about the node (under
    // overload, counting it would open the breaker of a healthy node); a refused connection
    // always counts.
    // With per-call deadlines (issue 10) a caller's whole budget may be shorter than both:
    // a connect that used (nearly) all of a budget of at least kMinFairConnect is evidence
    // too, or a hung node (connects accepted, never answered) would never trip the breaker
    // for callers whose deadline is at most the connect timeout.
    const milliseconds budget =
        std::chrono::duration_cast<milliseconds>(std::max(deadline - start,
                                                          SteadyClock::duration::zero()));
    const milliseconds fair_after =
        std::min({config_.options.connect_timeout, config_.options.checkout_timeout,
                  std::max(budget, kMinFairConnect)});
    const bool fair = timeout.count() * 10 >= fair_after.count() * 9;
    const bool counts = fair || conn.status().code() != absl::StatusCode::kDeadlineExceeded;
    OnConnectFailedLocked(conn.status(), counts, now, &trash, &log_line);
    error = FreshCopy(conn.status());  // this caller's own, nothing shared (see FreshCopy)
    if (!NodeOf(error)) SetNode(error, config_.node);
    break;
  }
  const TimePoint end = clock_();
  s.checkout_wait_seconds_total += std::chrono::duration<double>(end - start).count();
  if (got != nullptr) ++s.checkouts;
  if (s.shutdown && got != nullptr) {
    // Shut down while we connected or checked: nothing new leaves a shut-down pool.
    --s.in_use;
    ++s.discarded;
    trash.push_back(std::move(got));
    error = WithNode(absl::UnavailableError(
                         fmt::format("node {}: connection pool is shut down", config_.node)),
                     config_.node);
  }
  mu_.Unlock();
  trash.clear();
  Log(error.ok() ? LogLevel::kInfo : LogLevel::kWarning, log_line);
  if (got == nullptr) return error;
  return Lease(shared_from_this(), std::move(got));
}

void ConnPool::Return(std::unique_ptr<PooledConnection> pc) {
  const TimePoint now = clock_();
  // Decided before taking the lock: PQstatus/PQtransactionStatus only read local state.
  const bool reusable = !pc->broken && pc->conn != nullptr &&
                        now - pc->created_at < config_.options.max_lifetime &&
                        CleanForReuse(*pc->conn);
  if (!reusable && pc->conn != nullptr && pc->conn->raw() != nullptr) {
    // PQfinish sends a Terminate message: never let it block on a black-holed peer.
    PQsetnonblocking(pc->conn->raw(), 1);
  }
  const bool timed_out = pc->timed_out;
  const bool answered = pc->answered && !timed_out;
  pc->last_used = now;
  pc->answered = false;
  Trash trash;
  std::string log_line;
  LogLevel level = LogLevel::kInfo;
  {
    MutexLock lock(&mu_);
    State& s = *state_;
    --s.in_use;
    if (timed_out) {
      // A call's deadline passed waiting for the node: evidence against the node like a
      // refused connection (a hung node must trip its breaker, issue 10).
      ++s.call_timeouts;
      if (s.breaker.state(now) == BreakerState::kClosed && s.breaker.RecordFailure(now)) {
        for (auto& idle : s.idle) trash.push_back(std::move(idle));
        s.discarded += static_cast<std::int64_t>(s.idle.size());
        s.idle.clear();
        for (Waiter* w : s.waiters) w->cv.Signal();
        level = LogLevel::kWarning;
        log_line = fmt::format(
            "node {}: circuit breaker open after {} consecutive failures (calls timed out "
            "waiting for the node); next attempt in {} ms",
            config_.node, s.breaker.consecutive_failures(),
            MillisCeil(s.breaker.retry_at() - now));
      }
    } else if (answered && s.breaker.consecutive_failures() > 0 &&
               s.breaker.state(now) == BreakerState::kClosed) {
      s.breaker.RecordSuccess();  // the node answers: earlier timeouts were not a hang
    }
    if (reusable && !s.shutdown && s.breaker.state(now) == BreakerState::kClosed) {
      PutBackLocked(std::move(pc));
    } else {
      ++s.discarded;
      trash.push_back(std::move(pc));
      KickFrontLocked();  // a slot is free
    }
  }
  // `trash` (PQfinish) is closed here, outside the lock.
  trash.clear();
  Log(level, log_line);
}

void ConnPool::Maintain() {
  Trash trash;
  std::string log_line;
  LogLevel level = LogLevel::kInfo;
  mu_.Lock();
  State& s = *state_;
  TimePoint now = clock_();
  for (auto it = s.idle.begin(); it != s.idle.end();) {
    if (now - (*it)->created_at >= config_.options.max_lifetime) {
      trash.push_back(std::move(*it));
      it = s.idle.erase(it);
      ++s.discarded;
    } else {
      ++it;
    }
  }
  // Below min_size, or not closed: a breaker that is not closed is probed here whatever
  // min_size is (callers never probe), so a node heals even when nothing keeps it warm.
  while (!s.shutdown &&
         (TotalLocked() < config_.min_size || s.breaker.state(now) != BreakerState::kClosed)) {
    now = clock_();
    if (s.breaker.state(now) == BreakerState::kClosed) {
      if (now < s.next_connect_at) break;
    } else if (!s.breaker.AllowAttempt(now)) {
      break;  // open: no attempt at all; half-open: this becomes the probe
    }
    ++s.connecting;
    mu_.Unlock();
    trash.clear();
    absl::StatusOr<std::unique_ptr<pg::Conn>> conn = connector_(config_.options.connect_timeout);
    if (conn.ok() && *conn == nullptr) {
      conn = absl::UnavailableError(
          fmt::format("node {}: the connector returned no connection", config_.node));
    }
    mu_.Lock();
    now = clock_();
    if (!conn.ok()) {
      OnConnectFailedLocked(conn.status(), /*counts=*/true, now, &trash, &log_line);
      level = LogLevel::kWarning;
      break;
    }
    std::unique_ptr<PooledConnection> pc = OnConnectedLocked(std::move(*conn), now, &log_line);
    if (s.shutdown) {
      trash.push_back(std::move(pc));
      break;
    }
    PutBackLocked(std::move(pc));
  }
  mu_.Unlock();
  trash.clear();
  Log(level, log_line);
}

void ConnPool::Shutdown() {
  Trash trash;
  {
    MutexLock lock(&mu_);
    State& s = *state_;
    s.shutdown = true;
    s.discarded += static_cast<std::int64_t>(s.idle.size());
    trash.swap(s.idle);
    for (Waiter* w : s.waiters) w->cv.Signal();
  }
}

PoolStats ConnPool::Stats() const {
  const TimePoint now = clock_();
  MutexLock lock(&mu_);
  const State& s = *state_;
  PoolStats out;
  out.in_use = s.in_use;
  out.idle = static_cast<int>(s.idle.size());
  out.waiters = static_cast<int>(s.waiters.size());
  out.connecting = s.connecting;
  out.checkouts = s.checkouts;
  out.checkout_timeouts = s.checkout_timeouts;
  out.connect_failures = s.connect_failures;
  out.discarded = s.discarded;
  out.call_timeouts = s.call_timeouts;
  out.waiters_refused = s.waiters_refused;
  out.checkout_wait_seconds_total = s.checkout_wait_seconds_total;
  out.breaker = s.breaker.state(now);
  return out;
}

bool ConnPool::AwaitWaitersForTest(int n, milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  MutexLock lock(&mu_);
  while (static_cast<int>(state_->waiters.size()) < n) {
    if (state_->waiters_changed.WaitUntil(&mu_, deadline) &&
        static_cast<int>(state_->waiters.size()) < n) {
      return false;
    }
  }
  return true;
}

void ConnPool::WakeWaitersForTest() {
  MutexLock lock(&mu_);
  for (Waiter* w : state_->waiters) w->cv.Signal();
}

}  // namespace shardline::internal
