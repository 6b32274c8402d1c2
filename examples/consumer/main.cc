// A service using libshardline: the README's "Library API" example. Built by tools/test against
// the installed package (find_package and pkg-config). Usage: consumer --catalog DSN | --map FILE
#include <cstdio>
#include <string>

#include <shardline/merge.h>
#include <shardline/router.h>

absl::Status Demo(shardline::RouterOptions opts, std::int64_t uid) {
  auto router = shardline::Router::Create(std::move(opts));  // map_file or catalog_dsn
  if (!router.ok()) return router.status();
  shardline::Router& r = **router;
  auto loc = r.Locate(uid);  // which node owns the user (map version, hash range)
  if (!loc.ok()) return loc.status();
  std::printf("user %lld lives on node %s\n", static_cast<long long>(uid), loc->node.c_str());
  auto user = r.Execute(uid, "SELECT name FROM users WHERE user_id = $1", {uid});
  if (!user.ok()) return user.status();
  auto id = r.NextId();  // a unique id for a new row (worker id leased or given)
  if (!id.ok()) return id.status();
  absl::Status tx = r.Transaction(uid, [&](shardline::Session& s) -> absl::Status {
    auto log = s.Execute("INSERT INTO workout_logs (user_id, id, exercise, reps, weight) "
                         "VALUES ($1, $2, $3, $4, $5)", {uid, *id, "squat", 5, 100.0});
    if (!log.ok()) return log.status();  // any error rolls the transaction back
    return s.Execute("UPDATE users SET points = points + $2 WHERE user_id = $1", {uid, 5}).status();
  });
  if (!tx.ok()) return tx;
  auto counts = r.FanOut("SELECT count(*) FROM users WHERE $owned(user_id)");  // every node
  if (!counts.ok()) return counts.status();
  auto total = shardline::SumInt64(*counts, 0);
  if (!total.ok()) return total.status();
  std::printf("%d row(s) for user %lld; %lld users in all\n", user->rows(),
              static_cast<long long>(uid), static_cast<long long>(*total));
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  const std::string flag = argc == 3 ? argv[1] : "";
  if (flag != "--catalog" && flag != "--map") {
    std::fprintf(stderr, "usage: %s --catalog DSN | --map FILE\n", argv[0]);
    return flag.empty() && argc == 2 && std::string(argv[1]) == "--help" ? 0 : 2;
  }
  shardline::RouterOptions opts;
  (flag == "--catalog" ? opts.catalog_dsn : opts.map_file) = argv[2];
  opts.register_in_catalog = false;
  opts.worker_id = 1;  // no registry to lease one from: this process's own id-generator worker id
  absl::Status s = Demo(std::move(opts), 42);
  if (!s.ok()) std::fprintf(stderr, "consumer: %s\n", std::string(s.message()).c_str());
  return s.ok() ? 0 : 1;
}
