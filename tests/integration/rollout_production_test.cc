// Rollout tests on a production-shaped cluster (issue 15): services write under a role of their
// own (not the DBA tool's superuser), a table takes its ids from a bigserial and one from an
// identity column, and a reference table lives on every node. The fixture (ProductionShapeTest)
// adds these to RolloutTest's 2-node cluster (AddProductionTables) and makes the plan adding n3
// again. Proven here: ids continue on the new owner after the switch (and on the sources after a
// rollback), the service role works before, during and after a move, start refuses an owner it
// cannot reproduce on the target, and reference tables are created (with their rows) or
// checked on the new node.
#include <random>

#include "rollout_fixture.h"
#include "table_clone.h"

namespace shardline::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string RandomSuffix() {
  std::random_device rd;
  return fmt::format("{:08x}", rd());
}

// Follows the catalog's current map and writes it to a file with every node's connection
// string naming `role` instead of the DBA's `app`: what a service's map looks like (the map in
// the catalog holds the DBA tool's connection strings). A Router following the file then
// connects as the service. Polls every 20 ms on its own thread; the file is replaced atomically.
class ServiceMapFile {
 public:
  ServiceMapFile(std::string catalog_dsn, std::string path, std::string role)
      : catalog_dsn_(std::move(catalog_dsn)), path_(std::move(path)), role_(std::move(role)) {}
  ~ServiceMapFile() { Stop(); }

  // Writes the current map once (so a router can start on it), then follows it.
  void Start() {
    auto catalog = migrate::Catalog::Create(catalog_dsn_);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = std::move(*catalog);
    ASSERT_TRUE(WriteIfNew());
    thread_ = std::thread([this] {
      while (!stop_) {
        (void)WriteIfNew();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const std::string& path() const { return path_; }

 private:
  bool WriteIfNew() {
    auto version = catalog_->CurrentVersion();
    if (!version.ok() || *version == written_) return version.ok();
    auto m = catalog_->LoadCurrent();
    if (!m.ok()) return false;
    ShardMapConfig c = m->map->config();
    for (NodeConfig& n : c.nodes) {
      const auto at = n.dsn.find("user=app");
      if (at != std::string::npos) n.dsn.replace(at, 8, "user=" + role_);
    }
    const std::string tmp = path_ + ".tmp";
    {
      std::ofstream out(tmp);
      out << ShardMapToToml(c, PasswordMode::kKeep);
    }
    std::filesystem::rename(tmp, path_);
    written_ = *version;
    return true;
  }

  const std::string catalog_dsn_;
  const std::string path_;
  const std::string role_;
  std::unique_ptr<migrate::Catalog> catalog_;
  std::int64_t written_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// Inserts rows with DEFAULT ids into orders (bigserial) and events (identity) through a Router
// on its own thread, keys drawn from the initial users, and records the errors.
class IdInserter {
 public:
  IdInserter(std::string catalog_dsn, std::uint64_t seed)
      : catalog_dsn_(std::move(catalog_dsn)), seed_(seed) {}
  ~IdInserter() { Stop(); }
  void Start() {
    auto r = Router::Create(WriterRouterOptions(catalog_dsn_));
    ASSERT_TRUE(r.ok()) << r.status();
    router_ = std::move(*r);
    thread_ = std::thread([this] {
      std::mt19937_64 rng(seed_);
      while (!stop_) {
        const std::int64_t key = static_cast<std::int64_t>(rng() % kInitialRows) + 1;
        for (const char* sql : {"INSERT INTO orders (user_id, v) VALUES ($1, 1)",
                                "INSERT INTO events (user_id, note) VALUES ($1, 'during')"}) {
          auto done = router_->Execute(ShardKey(key), sql, {key});
          std::lock_guard<std::mutex> l(mu_);
          if (done.ok()) {
            ++inserted_;
          } else {
            errors_.push_back(std::string(done.status().message()));
          }
        }
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    router_.reset();
  }
  bool WaitForMore(std::int64_t n) {
    std::int64_t goal;
    {
      std::lock_guard<std::mutex> l(mu_);
      goal = inserted_ + n;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> l(mu_);
        if (inserted_ >= goal) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  std::vector<std::string> Errors() {
    std::lock_guard<std::mutex> l(mu_);
    return errors_;
  }

 private:
  const std::string catalog_dsn_;
  const std::uint64_t seed_;
  std::unique_ptr<Router> router_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::int64_t inserted_ = 0;
  std::vector<std::string> errors_;
};

class ProductionShapeTest : public RolloutTest {
 protected:
  void SetUp() override {
    RolloutTest::SetUp();
    if (HasFatalFailure()) return;
    service_ = "svc_" + RandomSuffix();
    ASSERT_NO_FATAL_FAILURE(CreateRole(service_, {0, 1, 2}));
    ASSERT_NO_FATAL_FAILURE(AddProductionTables());
  }

  void TearDown() override {
    RolloutTest::TearDown();
    // Roles are per server: their privileges in this test's databases go first.
    for (const std::string& role : roles_) {
      for (int i = 0; i < 3; ++i) {
        auto conn = ConnectOrDie(db_->node_dsn(i));
        const std::string q = conn->QuoteIdent(role);
        (void)conn->Exec(fmt::format("DROP OWNED BY {}", q));
        (void)conn->Exec(fmt::format("DROP ROLE IF EXISTS {}", q));
      }
    }
  }

  // A LOGIN role `role` on the servers of `nodes` (dropped in TearDown).
  void CreateRole(const std::string& role, const std::vector<int>& nodes) {
    roles_.push_back(role);
    for (int i : nodes) {
      auto conn = ConnectOrDie(db_->node_dsn(i));
      auto r = conn->Exec(fmt::format("CREATE ROLE {} LOGIN", conn->QuoteIdent(role)));
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  // On n1 and n2: orders (bigserial id), events (identity id, owned by the service role) and
  // the reference table countries; the service role gets what a service gets (DML on the
  // tables, USAGE on the sequences, SELECT on the reference table). n2's sequences stand far
  // ahead of n1's (100000), as two nodes' sequences do after years of uneven traffic. Then the
  // map gains the tables (version 2) and the plan adding n3 is made again.
  void AddProductionTables() {
    auto map = CurrentMap();
    for (int i = 0; i < 2; ++i) {
      auto conn = ConnectOrDie(db_->node_dsn(i));
      const std::string svc = conn->QuoteIdent(service_);
      const std::string owned = migrate::HashRangesPredicate(
          KeyType::kBigint, "g", map->OwnedRanges(map->NodeIndex(i == 0 ? "n1" : "n2")));
      auto s = conn->ExecScript(fmt::format(
          "CREATE TABLE orders (user_id bigint NOT NULL, id bigserial, v bigint NOT NULL, "
          "  PRIMARY KEY (user_id, id));"
          "CREATE TABLE events (user_id bigint NOT NULL, "
          "  id bigint GENERATED BY DEFAULT AS IDENTITY, note text, PRIMARY KEY (user_id, id));"
          "CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);"
          "INSERT INTO countries VALUES ('de', 'Germany'), ('fr', 'France'), ('jp', 'Japan');"
          "{sequences}"
          "INSERT INTO orders (user_id, v) SELECT g, g FROM generate_series(1, {rows}) g "
          "  WHERE {owned};"
          "INSERT INTO events (user_id, note) SELECT g, 'before' FROM generate_series(1, {rows}) "
          "  g WHERE {owned};"
          "GRANT SELECT, INSERT, UPDATE, DELETE ON users, orders TO {svc};"
          "ALTER TABLE events OWNER TO {svc};"
          "GRANT USAGE ON SEQUENCE orders_id_seq TO {svc};"
          "GRANT SELECT ON countries TO {svc};",
          fmt::arg("sequences",
                   i == 1 ? "SELECT setval('orders_id_seq', 100000), "
                            "setval(pg_get_serial_sequence('events', 'id'), 100000);"
                          : ""),
          fmt::arg("rows", kInitialRows), fmt::arg("owned", owned), fmt::arg("svc", svc)));
      ASSERT_TRUE(s.ok()) << s;
    }
    ShardMapConfig c = map->config();
    c.version += 1;
    c.tables.push_back(TableConfig{.name = "orders", .key = "user_id", .primary_key = {}});
    c.tables.push_back(TableConfig{.name = "events", .key = "user_id", .primary_key = {}});
    TableConfig countries;
    countries.name = "countries";
    countries.reference = true;
    c.tables.push_back(countries);
    auto catalog = migrate::Catalog::Create(db_->control_dsn());
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    ASSERT_TRUE((*catalog)->Publish(c, "production tables", {}).ok());
    Cli({"rebalance", "plan", "--add-node", fmt::format("n3={}", db_->node_dsn(2)), "--by",
         "ranges", "-o", plan_},
        0);
  }

  // Connection string of node `i` as the service role.
  std::string ServiceDsn(int i) {
    std::string dsn = db_->node_dsn(i);
    dsn.replace(dsn.find("user=app"), 8, "user=" + service_);
    return dsn;
  }

  // Ids of `table` held twice on node `i` (the shard key aside).
  std::int64_t DuplicateIds(int i, const std::string& table) {
    return Count(i, fmt::format("SELECT count(*) FROM (SELECT id FROM {} GROUP BY id HAVING "
                                "count(*) > 1) d",
                                table));
  }

  // Inserts `n` rows with DEFAULT ids into `table` through a router for keys that `node` owns
  // in the current map; expects every id above `above`.
  void ExpectNewIdsAbove(const std::string& table, const std::string& node, std::int64_t above,
                         int n) {
    RouterOptions o;
    o.catalog_dsn = db_->control_dsn();
    o.log_sink = [](LogLevel, std::string_view) {};
    auto router = Router::Create(o);
    ASSERT_TRUE(router.ok()) << router.status();
    auto map = CurrentMap();
    int done = 0;
    for (std::int64_t key = 1; key <= kInitialRows && done < n; ++key) {
      if (map->RangeFor(ShardKey(key).Hash()).node != node) continue;
      auto r = (*router)->Execute(
          ShardKey(key),
          fmt::format("INSERT INTO {} (user_id{}) VALUES ($1{}) RETURNING id", table,
                      table == "orders" ? ", v" : "", table == "orders" ? ", 2" : ""),
          {key});
      ASSERT_TRUE(r.ok()) << table << " key " << key << ": " << r.status();
      auto got = r->GetInt64(0, 0);
      ASSERT_TRUE(got.ok()) << got.status();
      const std::int64_t id = *got;
      EXPECT_GT(id, above) << fmt::format("node {}: {} handed out id {} while it held ids up "
                                          "to {}",
                                          node, table, id, above);
      ++done;
    }
    EXPECT_EQ(done, n);
  }

  std::string service_;
  std::vector<std::string> roles_;
};

// Issue 15 point 4: n2's sequences stand 100000 ahead of n1's. Rows inserted with DEFAULT ids
// during the move reach n3; after the switch n3 hands out ids past every id it holds, for the
// bigserial table and for the identity one: no duplicate key, no id held twice.
TEST_F(ProductionShapeTest, IdsContinueOnTheNewOwnerPastEverySourcesSequence) {
  IdInserter inserter(db_->control_dsn(), 11);
  inserter.Start();
  ASSERT_TRUE(inserter.WaitForMore(100));
  CommandResult start = Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  EXPECT_THAT(start.out, HasSubstr("warning: node n1: table orders: primary-key column id "
                                   "defaults to nextval('orders_id_seq'::regclass), a per-node "
                                   "sequence: unique per node, not across nodes; use "
                                   "Router::NextId for global ids"));
  EXPECT_THAT(start.out, HasSubstr("warning: node n2: table events: primary-key column id is an "
                                   "identity column (sequence public.events_id_seq), a per-node "
                                   "sequence"));
  ASSERT_TRUE(inserter.WaitForMore(200));  // ids allocated on the sources after start
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "writes_switched"));
  ASSERT_TRUE(inserter.WaitForMore(200));  // and on n3 after the switch
  inserter.Stop();
  EXPECT_THAT(inserter.Errors(), IsEmpty());
  for (const std::string table : {"orders", "events"}) {
    const std::int64_t held = Count(2, fmt::format("SELECT max(id) FROM {}", table));
    EXPECT_GT(held, 100000) << table << ": n3 holds n2's rows";
    ASSERT_NO_FATAL_FAILURE(ExpectNewIdsAbove(table, "n3", held, 20));
    EXPECT_EQ(DuplicateIds(2, table), 0) << table << " on n3";
  }
  Cli({"rollout", "cleanup", "--migration", "1"}, 0);
  for (const std::string table : {"orders", "events"}) {
    EXPECT_EQ(DuplicateIds(2, table), 0) << table << " on n3";
  }
}

// And back: after a rollback the sources hand out ids past those n3 issued while it owned the
// ranges (delivered to the sources by reverse replication).
TEST_F(ProductionShapeTest, RollbackContinuesTheSourcesIdsPastTheTargets) {
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "writes_switched"));
  for (const std::string table : {"orders", "events"}) {
    ASSERT_NO_FATAL_FAILURE(ExpectNewIdsAbove(table, "n3", 0, 20));
  }
  Cli({"rollout", "rollback", "--migration", "1"}, 0);
  for (const std::string table : {"orders", "events"}) {
    for (int i = 0; i < 2; ++i) {
      const std::int64_t held = Count(i, fmt::format("SELECT max(id) FROM {}", table));
      ASSERT_NO_FATAL_FAILURE(ExpectNewIdsAbove(table, fmt::format("n{}", i + 1), held, 20));
      EXPECT_EQ(DuplicateIds(i, table), 0) << table << " on n" << i + 1;
    }
  }
}

// Issue 15 point 5: a service connects as its own role, not the DBA's superuser. It writes
// through the whole rollout (start, switches, cleanup) with no error besides retried fences,
// every acknowledged write is on its owner, and afterwards it reads and writes on n3, whose
// copies have the sources' owners and grants.
TEST_F(ProductionShapeTest, ServiceRoleWritesBeforeDuringAndAfterAMove) {
  ServiceMapFile map_file(db_->control_dsn(), (dir_ / "service-map.toml").string(), service_);
  ASSERT_NO_FATAL_FAILURE(map_file.Start());
  Writer writer(db_->control_dsn(), 21, map_file.path());
  writer.Start();
  ASSERT_TRUE(writer.WaitForMoreWrites(200));
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  ASSERT_TRUE(writer.WaitForMoreWrites(200));
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "writes_switched"));
  ASSERT_TRUE(writer.WaitForMoreWrites(300));  // on n3 now, as the service
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "cleaned"));
  ASSERT_TRUE(writer.WaitForMoreWrites(200));
  writer.Stop();
  map_file.Stop();
  EXPECT_THAT(writer.Errors(), IsEmpty());
  std::printf("service role: %lld writes acknowledged, %lld fenced writes retried\n",
              static_cast<long long>(writer.acked_count()),
              static_cast<long long>(writer.fenced_retries()));
  ExpectWritesOnOwners(writer.Acked(), /*exclusive=*/true);
  // Nothing of schema shardline was granted to the service by the test: what it reads of the
  // node objects, every role may.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Count(i, fmt::format("SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a "
                                   "WHERE n.nspname = 'shardline' AND a.grantee = '{}'::regrole",
                                   service_)),
              0);
  }

  // Owners and ACLs of the copies are the sources'.
  const std::string acl_sql =
      "SELECT string_agg(c.relname || ' ' || pg_get_userbyid(c.relowner) || ' ' || "
      "coalesce(c.relacl::text, 'default'), '; ' ORDER BY c.relname) FROM pg_class c "
      "WHERE c.relname IN ('users', 'orders', 'events', 'countries', 'orders_id_seq', "
      "'events_id_seq') AND c.relnamespace = 'public'::regnamespace";
  auto acl = [&](int i) {
    auto r = ConnectOrDie(db_->node_dsn(i))->Exec(acl_sql);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->String(0, 0) : std::string();
  };
  EXPECT_EQ(acl(2), acl(0));
  EXPECT_THAT(acl(2), HasSubstr("events " + service_));

  // The service on n3 itself: reads, writes, ids from the sequences.
  auto svc = ConnectOrDie(ServiceDsn(2));
  auto map = CurrentMap();
  std::int64_t key = 1;
  while (map->RangeFor(ShardKey(key).Hash()).node != "n3") ++key;
  for (const std::string sql :
       {"SELECT count(*) FROM users", "SELECT count(*) FROM orders JOIN countries ON true",
        "UPDATE users SET v = v + 1 WHERE user_id = $1",
        "INSERT INTO orders (user_id, v) VALUES ($1, 3)",
        "INSERT INTO events (user_id, note) VALUES ($1, 'after')",
        "DELETE FROM orders WHERE user_id = $1"}) {
    auto r = sql.find("$1") == std::string::npos
                 ? svc->Exec(sql)
                 : svc->Exec(sql, {std::to_string(key)});
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status();
  }
}

// A role the copy would need (here the owner of orders) that does not exist on the target's
// server: start refuses, naming the role, the table and what to do, and changes nothing.
TEST_F(ProductionShapeTest, StartRefusesATableOwnedByARoleMissingOnTheTarget) {
  const std::string owner = "owner_" + RandomSuffix();
  ASSERT_NO_FATAL_FAILURE(CreateRole(owner, {0, 1}));
  for (int i = 0; i < 2; ++i) {
    auto conn = ConnectOrDie(db_->node_dsn(i));
    ASSERT_TRUE(
        conn->Exec(fmt::format("ALTER TABLE orders OWNER TO {}", conn->QuoteIdent(owner))).ok());
  }
  CommandResult r = Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot start; nothing was changed"));
  EXPECT_THAT(r.err, HasSubstr(fmt::format("node n3: role \"{}\" does not exist on this server, "
                                           "but on node n1 it owns table orders",
                                           owner)));
  EXPECT_THAT(r.err, HasSubstr("Create the role on node n3"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr(service_)));  // it exists there
  EXPECT_EQ(Count(-1, "SELECT count(*) FROM shardline.migrations"), 0);
  EXPECT_EQ(Count(2, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 0);
  // Once the role exists there, start goes through and the copy has that owner.
  ASSERT_NO_FATAL_FAILURE(CreateRole(owner, {2}));
  Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  EXPECT_EQ(Count(2, fmt::format("SELECT count(*) FROM pg_tables WHERE tablename = 'orders' AND "
                                 "tableowner = '{}'",
                                 owner)),
            1);
  Cli({"rollout", "abort", "--migration", "1"}, 0);
}

// Reference tables on the new node: an incompatible existing one is refused with the column;
// a missing one is created like the source's, with its rows, so joins work there.
TEST_F(ProductionShapeTest, StartCreatesReferenceTablesWithTheirRowsAndChecksExistingOnes) {
  Exec(2, "CREATE TABLE countries (code text PRIMARY KEY, name integer)");
  CommandResult r = Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 1);
  EXPECT_THAT(r.err, HasSubstr("reference table \"countries\": column \"name\" is text on "
                               "node n1 but integer on node n3"));
  EXPECT_EQ(Count(-1, "SELECT count(*) FROM shardline.migrations"), 0);
  Exec(2, "DROP TABLE countries");

  CommandResult ok = Cli({"rollout", "start", "--plan", plan_, "--waves", "100%"}, 0);
  EXPECT_THAT(ok.out, HasSubstr("created reference table countries on node n3 like node n1's, "
                                "with its rows"));
  auto rows = [&](int i) {
    auto res = ConnectOrDie(db_->node_dsn(i))
                   ->Exec("SELECT string_agg(code || '=' || name, ',' ORDER BY code) FROM "
                          "countries");
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? res->String(0, 0) : std::string();
  };
  EXPECT_EQ(rows(2), "de=Germany,fr=France,jp=Japan");
  EXPECT_EQ(rows(2), rows(0));
  ASSERT_NO_FATAL_FAILURE(RunUntil(1, "writes_switched"));
  // A join over the reference table on the new owner.
  EXPECT_GT(Count(2, "SELECT count(*) FROM users u JOIN countries c ON c.code = 'de'"), 0);
  Cli({"rollout", "cleanup", "--migration", "1"}, 0);
}

// The clone's ACLs are the source's exactly: a privilege the owner revoked from itself stays
// revoked, column privileges and a grant option are reproduced (compared as aclitem[] text).
TEST_F(ProductionShapeTest, CloneReproducesTableAndColumnPrivileges) {
  auto source = ConnectOrDie(db_->node_dsn(0));
  auto target = ConnectOrDie(db_->node_dsn(2));
  const std::string svc = source->QuoteIdent(service_);
  auto s = source->ExecScript(fmt::format(
      "CREATE TABLE accounts (user_id bigint PRIMARY KEY, secret text, v int);"
      "REVOKE DELETE ON accounts FROM app;"
      "GRANT SELECT (user_id, v), UPDATE (v) ON accounts TO {0};"
      "GRANT INSERT ON accounts TO {0} WITH GRANT OPTION;",
      svc));
  ASSERT_TRUE(s.ok()) << s;
  auto info = migrate::DescribeTable(*source, "accounts");
  ASSERT_TRUE(info.ok()) << info.status();
  TableConfig table;
  table.name = "accounts";
  table.key = "user_id";
  ASSERT_TRUE(migrate::CloneTable(*source, *target, *info, table).ok());
  const std::string acl_sql =
      "SELECT pg_get_userbyid(relowner) || ' ' || relacl::text || ' ' || (SELECT "
      "string_agg(attname || '=' || attacl::text, ' ' ORDER BY attnum) FROM pg_attribute WHERE "
      "attrelid = 'accounts'::regclass AND attacl IS NOT NULL) FROM pg_class WHERE oid = "
      "'accounts'::regclass";
  auto want = source->Exec(acl_sql);
  auto got = target->Exec(acl_sql);
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_EQ(got->String(0, 0), want->String(0, 0));
  EXPECT_THAT(got->String(0, 0), HasSubstr(fmt::format("{}=a*/app", service_)));
  EXPECT_THAT(got->String(0, 0), HasSubstr(fmt::format("v={{{}=rw/app}}", service_)));
  EXPECT_THAT(got->String(0, 0), ::testing::Not(HasSubstr("app=arwdDxt/app")));  // no DELETE
}

}  // namespace
}  // namespace shardline::testing
