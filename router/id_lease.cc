// The worker-id lease in front of the id generator: see id_lease.h.
#include "id_lease.h"

#include <algorithm>

#include <fmt/format.h>

namespace shardline::internal {

IdLease::IdLease(std::chrono::milliseconds duration, ClockFn clock)
    : duration_(duration),
      clock_(clock ? std::move(clock) : ClockFn([] { return std::chrono::steady_clock::now(); })) {}

std::unique_ptr<IdLease> IdLease::Fixed(int worker_id, ClockFn clock) {
  std::unique_ptr<IdLease> l(new IdLease(std::chrono::milliseconds(0), std::move(clock)));
  auto gen = IdGenerator::Create(worker_id);
  if (gen.ok()) {  // the router validated worker_id; otherwise the lease refuses
    MutexLock lock(&l->mu_);
    l->current_.store(gen->get(), std::memory_order_release);
    l->generators_.emplace(worker_id, std::move(*gen));
    l->valid_until_ns_.store(kForever, std::memory_order_release);
  } else {
    MutexLock lock(&l->mu_);
    l->refusal_ = std::string(gen.status().message());
  }
  return l;
}

std::unique_ptr<IdLease> IdLease::Refusing(std::string why, ClockFn clock) {
  std::unique_ptr<IdLease> l(new IdLease(std::chrono::milliseconds(0), std::move(clock)));
  MutexLock lock(&l->mu_);
  l->refusal_ = std::move(why);
  return l;
}

std::unique_ptr<IdLease> IdLease::Leased(std::chrono::milliseconds duration, ClockFn clock) {
  return std::unique_ptr<IdLease>(
      new IdLease(std::max(duration, std::chrono::milliseconds(1)), std::move(clock)));
}

std::int64_t IdLease::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_().time_since_epoch()).count();
}

absl::StatusOr<std::int64_t> IdLease::Next() {
  const std::int64_t until = valid_until_ns_.load(std::memory_order_acquire);
  IdGenerator* gen = current_.load(std::memory_order_acquire);
  if (until == 0 || gen == nullptr) return NotHeld(until, 0);
  const std::int64_t id = gen->Next();
  if (until == kForever) return id;
  // Checked after generating: the id's millisecond is at or before this reading, so an id
  // handed out was made while the lease held.
  const std::int64_t now = NowNs();
  if (now >= until) return NotHeld(until, now);
  return id;
}

absl::Status IdLease::NotHeld(std::int64_t until_ns, std::int64_t now_ns) const {
  MutexLock lock(&mu_);
  if (!refusal_.empty()) return absl::FailedPreconditionError(refusal_);
  const IdGenerator* gen = current_.load(std::memory_order_acquire);
  std::string what;
  if (gen == nullptr) {
    what = "this router holds no id-generator worker id lease yet";
  } else if (until_ns == 0) {
    what = fmt::format("this router's lease of id-generator worker id {} was lost",
                       gen->worker_id());
  } else {
    what = fmt::format("this router's lease of id-generator worker id {} expired {} ms ago "
                       "(lease {} ms, renewed by the heartbeat to the catalog's router registry)",
                       gen->worker_id(), (now_ns - until_ns) / 1'000'000, duration_.count());
  }
  std::string msg = fmt::format(
      "NextId: {}; refusing to generate ids another router may generate too; ids resume once a "
      "heartbeat reaches the catalog again",
      what);
  if (!problem_.empty()) msg += fmt::format(" (last registry problem: {})", problem_);
  return absl::UnavailableError(msg);
}

void IdLease::Renew(int worker_id, TimePoint sent) {
  const std::chrono::milliseconds margin =
      std::min<std::chrono::milliseconds>(duration_ / 10, std::chrono::seconds(5));
  const std::int64_t until =
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          (sent + duration_ - margin).time_since_epoch())
          .count();
  MutexLock lock(&mu_);
  IdGenerator* gen = current_.load(std::memory_order_acquire);
  if (gen == nullptr || gen->worker_id() != worker_id) {
    auto it = generators_.find(worker_id);
    if (it == generators_.end()) {
      auto created = IdGenerator::Create(worker_id);
      if (!created.ok()) return;  // the registry only hands out ids in range
      it = generators_.emplace(worker_id, std::move(*created)).first;
    }
    // Not held while switching: Next() must not pair the new generator with the old lease.
    valid_until_ns_.store(0, std::memory_order_release);
    current_.store(it->second.get(), std::memory_order_release);
    valid_until_ns_.store(until, std::memory_order_release);
  } else {
    const std::int64_t old = valid_until_ns_.load(std::memory_order_acquire);
    valid_until_ns_.store(std::max(old, until), std::memory_order_release);
  }
  problem_.clear();
}

void IdLease::Lose(std::string why) {
  MutexLock lock(&mu_);
  valid_until_ns_.store(0, std::memory_order_release);
  problem_ = std::move(why);
}

void IdLease::NoteProblem(std::string problem) {
  MutexLock lock(&mu_);
  problem_ = std::move(problem);
}

int IdLease::worker_id() const {
  const IdGenerator* gen = current_.load(std::memory_order_acquire);
  return gen == nullptr ? -1 : gen->worker_id();
}

}  // namespace shardline::internal
