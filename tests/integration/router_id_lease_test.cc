// Integration tests of Router::NextId's worker-id lease (router/id_lease.h) on the devcluster:
// a router without a worker id refuses to generate ids, and a router cut off from the catalog
// stops generating once its lease runs out, so that another router may take its worker id, and
// comes back with a free one.
#include <chrono>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "catalog.h"
#include "router_test_util.h"
#include "status_matchers.h"
#include "shardline/id_gen.h"
#include "shardline/router.h"
#include "tcp_proxy.h"

namespace shardline {
namespace {

using ::shardline::testing::StatusIs;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
using testing::RouterFixture;
using testing::WaitFor;

TEST_F(RouterFixture, RouterFollowingAFileWithoutAWorkerIdRefusesToGenerateIds) {
  WriteMap(Config(1, 8));
  auto router = MakeRouter();
  ASSERT_NE(router, nullptr);
  EXPECT_THAT(router->NextId().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("follows a map file, which has no router registry to lease one "
                                 "from and RouterOptions::worker_id is not set")));
  RouterOptions given = Options();
  given.worker_id = 77;
  auto with_id = MakeRouter(given);
  ASSERT_NE(with_id, nullptr);
  absl::StatusOr<std::int64_t> a = with_id->NextId();
  absl::StatusOr<std::int64_t> b = with_id->NextId();
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
  EXPECT_EQ(DecodeId(*a).worker_id, 77);
  EXPECT_GT(*b, *a);
}

TEST_F(RouterFixture, RouterCutOffFromTheCatalogStopsIdsAtTheEndOfItsLeaseAndResumesWithAFreeId) {
  std::unique_ptr<testing::TcpProxy> proxy;
  RouterOptions opts;
  ASSERT_NO_FATAL_FAILURE(CatalogBehindProxy(&proxy, &opts));
  const std::string control = scratch_->control_dsn();
  opts.heartbeat_interval = 100ms;
  opts.worker_id_lease = 1500ms;
  opts.pool.connect_timeout = 300ms;  // also bounds every registry statement
  opts.pool.backoff_initial = 10ms;
  opts.pool.backoff_max = 100ms;
  auto a = MakeRouter(opts);
  ASSERT_NE(a, nullptr);
  absl::StatusOr<std::int64_t> first = a->NextId();
  ASSERT_TRUE(first.ok()) << first.status();
  const int w = DecodeId(*first).worker_id;
  EXPECT_EQ(CountOnDsn(control, fmt::format("SELECT lease_ms FROM shardline.routers "
                                            "WHERE worker_id = {}", w)),
            1500);

  // The catalog hangs: ids go on with the same worker id while the lease holds, then stop.
  proxy->SetStalled(true);
  absl::Status refused;
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::int64_t> id = a->NextId();
        if (id.ok()) {
          EXPECT_EQ(DecodeId(*id).worker_id, w);
          return false;
        }
        refused = id.status();
        return true;
      },
      20s));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr(fmt::format("lease of id-generator worker id {} expired",
                                                      w))));
  EXPECT_THAT(refused.message(), HasSubstr("last registry problem: heartbeat failed"));

  // Once the row has expired on the catalog too, another router may be given the same id.
  RouterOptions direct = Options();
  direct.map_file.clear();
  direct.catalog_dsn = control;
  direct.worker_id = w;
  std::unique_ptr<Router> b;
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::unique_ptr<Router>> r = Router::Create(direct);
        if (!r.ok()) {  // A's row is still within its lease on the catalog's clock
          EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists) << r.status();
          return false;
        }
        b = std::move(*r);
        return true;
      },
      20s));
  absl::StatusOr<std::int64_t> b_id = b->NextId();
  ASSERT_TRUE(b_id.ok()) << b_id.status();
  EXPECT_EQ(DecodeId(*b_id).worker_id, w);
  EXPECT_FALSE(a->NextId().ok()) << "A must not share worker id " << w << " with B";

  // Healed: A finds its row gone and its id taken, and resumes with another one.
  proxy->SetStalled(false);
  int a_worker = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::int64_t> id = a->NextId();
        if (!id.ok()) return false;
        a_worker = DecodeId(*id).worker_id;
        return true;
      },
      20s))
      << logs_.All();
  EXPECT_NE(a_worker, w);
  EXPECT_TRUE(logs_.Contains(fmt::format("worker id {} was taken by another router", w)))
      << logs_.All();
  EXPECT_EQ(CountOnDsn(control, fmt::format("SELECT count(*) FROM shardline.routers WHERE "
                                            "worker_id IN ({}, {})",
                                            w, a_worker)),
            2);
}

TEST_F(RouterFixture, CatalogWithoutLeasesSaysRunCatalogInitAndOldRoutersRowsHoldIdsSixtySeconds) {
  const std::string control = scratch_->control_dsn();
  std::unique_ptr<migrate::Catalog> catalog;
  RouterOptions opts;
  ASSERT_NO_FATAL_FAILURE(InitCatalog(&catalog, &opts));
  auto exec = [&](const std::string& sql) {
    auto r = testing::ConnectOrDie(control)->Exec(sql);
    ASSERT_TRUE(r.ok()) << sql << ": " << r.status();
  };

  // A catalog of schema 2 (before leases): the router says what to run.
  exec("ALTER TABLE shardline.routers DROP COLUMN lease_ms");
  exec("UPDATE shardline.schema_version SET version = 2");
  EXPECT_THAT(Router::Create(opts).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("its schema predates worker-id leases (no "
                                 "shardline.routers.lease_ms): run `shardline catalog init")));
  absl::StatusOr<bool> upgraded = catalog->Init();
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(CountOnDsn(control, "SELECT version FROM shardline.schema_version"), 3);

  // Rows of routers older than leases (no lease_ms) keep their ids for 60 s of silence.
  exec("INSERT INTO shardline.routers (router_id, host, pid, worker_id, last_heartbeat) "
       "VALUES ('old-live', 'h', 1, 5, now() - interval '50 seconds'), "
       "       ('old-gone', 'h', 2, 6, now() - interval '61 seconds')");
  opts.worker_id = 5;
  EXPECT_THAT(Router::Create(opts).status(),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("worker id 5 is already used by live router old-live")));
  opts.worker_id = 6;
  auto router = MakeRouter(opts);
  ASSERT_NE(router, nullptr);
  absl::StatusOr<std::int64_t> id = router->NextId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(DecodeId(*id).worker_id, 6);
  EXPECT_EQ(CountOnDsn(control, "SELECT count(*) FROM shardline.routers WHERE router_id = "
                                "'old-gone'"),
            0);
}

TEST_F(RouterFixture, LeaseShorterThanThreeHeartbeatsIsRefused) {
  RouterOptions opts = Options();
  opts.heartbeat_interval = 1s;
  opts.worker_id_lease = 2s;
  EXPECT_THAT(Router::Create(opts).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("worker_id_lease (2000 ms) must be at least 3 "
                                 "heartbeat_intervals (3000 ms)")));
}

}  // namespace
}  // namespace shardline
