// Tests of migrate/table_clone.h against real PostgreSQL: CloneTable reproduces a source table's
// definition on an empty target database (compared from the catalogs of both sides, and by
// inserts that must obey it), and CheckShardable / CheckClonable refuse, with the reason, what
// cannot be sharded or reproduced. Each test has its own databases on two devcluster nodes.
#include "table_clone.h"

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cluster.h"
#include "status_matchers.h"
#include "table_info.h"

namespace shardline::migrate {
namespace {

using ::shardline::testing::ConnectOrDie;
using ::shardline::testing::ScratchDatabases;
using ::shardline::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class TableCloneTest : public ::testing::Test {
 protected:
  TableCloneTest()
      : db_(2), source_(ConnectOrDie(db_.node_dsn(0))), target_(ConnectOrDie(db_.node_dsn(1))) {}

  static void Run(pg::Conn& conn, const std::string& sql) {
    auto s = conn.ExecScript(sql);
    ASSERT_TRUE(s.ok()) << s << "\n" << sql;
  }

  // The rows of `sql` (one parameter: the quoted table name) as "a|b|c" lines.
  static std::vector<std::string> Rows(pg::Conn& conn, const std::string& sql,
                                       const std::string& table) {
    auto r = conn.Exec(sql, {conn.QuoteQualified(table)});
    if (!r.ok()) throw std::runtime_error(std::string(r.status().message()));
    std::vector<std::string> out;
    for (int i = 0; i < r->rows(); ++i) {
      std::string line;
      for (int c = 0; c < r->cols(); ++c) {
        if (c) line += "|";
        line += r->IsNull(i, c) ? "<null>" : r->String(i, c);
      }
      out.push_back(line);
    }
    return out;
  }

  TableInfo Describe(pg::Conn& conn, const std::string& table) {
    auto info = DescribeTable(conn, table);
    if (!info.ok()) throw std::runtime_error(std::string(info.status().message()));
    return *std::move(info);
  }

  static TableConfig Table(const std::string& name, const std::string& key) {
    TableConfig t;
    t.name = name;
    t.key = key;
    return t;
  }

  std::vector<std::string> Clonable(const std::string& table, const std::string& key,
                                    KeyType key_type = KeyType::kBigint) {
    std::vector<std::string> problems;
    CheckClonable(Describe(*source_, table), Table(table, key), key_type, "a", problems);
    return problems;
  }

  ScratchDatabases db_;
  std::unique_ptr<pg::Conn> source_;
  std::unique_ptr<pg::Conn> target_;
};

constexpr const char* kColumnsSql =
    "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
    "a.attidentity, a.attgenerated, coalesce(pg_get_expr(d.adbin, d.adrelid), ''), "
    "a.attcollation::regcollation::text "
    "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
constexpr const char* kConstraintsSql =
    "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = to_regclass($1) ORDER BY conname";
constexpr const char* kIndexesSql =
    "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisreplident FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass($1) ORDER BY 1";
constexpr const char* kTableSql =
    "SELECT relkind, relpersistence, relreplident FROM pg_class WHERE oid = to_regclass($1)";
// The sequences of the identity and the serial column: name, type and options, ownership.
constexpr const char* kSequencesSql =
    "SELECT a.attname, pg_get_serial_sequence($1, a.attname), format_type(q.seqtypid, NULL), "
    "q.seqstart, q.seqincrement, q.seqmin, q.seqmax, q.seqcache, q.seqcycle "
    "FROM pg_attribute a JOIN pg_sequence q "
    "ON q.seqrelid = pg_get_serial_sequence($1, a.attname)::regclass "
    "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
    "AND pg_get_serial_sequence($1, a.attname) IS NOT NULL ORDER BY a.attnum";

constexpr const char* kOrdersDdl = R"sql(
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Orders" (
  "OrderId" bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 5),
  user_id bigint NOT NULL,
  seq_no bigserial,
  qty integer NOT NULL DEFAULT 1,
  price numeric(10,2) NOT NULL,
  "Total" numeric GENERATED ALWAYS AS (qty * price) STORED,
  email text COLLATE "C",
  during int4range,
  CONSTRAINT "Orders_pkey" PRIMARY KEY (user_id, "OrderId"),
  CONSTRAINT "Qty positive" CHECK (qty > 0),
  CONSTRAINT orders_email_key UNIQUE (email),
  CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)
);
CREATE INDEX "Orders by price" ON "Shop"."Orders" (price) WHERE qty > 1;
ALTER TABLE "Shop"."Orders" REPLICA IDENTITY FULL;
INSERT INTO "Shop"."Orders" (user_id, qty, price, email)
  VALUES (1, 1, 10, 'a@x'), (2, 2, 20, 'b@x'), (3, 3, 30, 'c@x');
)sql";

TEST_F(TableCloneTest, CloneReproducesColumnsConstraintsIndexesAndReplicaIdentity) {
  Run(*source_, kOrdersDdl);
  const std::string name = "Shop.Orders";
  const TableInfo info = Describe(*source_, name);
  std::vector<std::string> problems;
  CheckClonable(info, Table(name, "user_id"), KeyType::kBigint, "a", problems);
  EXPECT_THAT(problems, IsEmpty());

  auto cloned = CloneTable(*source_, *target_, info, Table(name, "user_id"));
  ASSERT_TRUE(cloned.ok()) << cloned;

  const auto columns = Rows(*source_, kColumnsSql, name);
  EXPECT_EQ(Rows(*target_, kColumnsSql, name), columns);
  ASSERT_EQ(columns.size(), 8u);
  EXPECT_EQ(columns[0], "1|OrderId|bigint|t|a|||-") << "identity ALWAYS";
  EXPECT_THAT(columns[2], HasSubstr("seq_no|bigint|t|||nextval('\"Shop\".\"Orders_seq_no_seq\"'"));
  EXPECT_EQ(columns[5], "6|Total|numeric|f||s|((qty)::numeric * price)|-");
  EXPECT_EQ(columns[6], "7|email|text|f||||\"C\"");

  const auto constraints = Rows(*source_, kConstraintsSql, name);
  EXPECT_EQ(Rows(*target_, kConstraintsSql, name), constraints);
  EXPECT_THAT(constraints,
              ElementsAre("Orders_pkey|p|PRIMARY KEY (user_id, \"OrderId\")",
                          "Qty positive|c|CHECK ((qty > 0))",
                          "no_overlap|x|EXCLUDE USING gist (during WITH &&)",
                          "orders_email_key|u|UNIQUE (email)"));

  const auto indexes = Rows(*source_, kIndexesSql, name);
  EXPECT_EQ(Rows(*target_, kIndexesSql, name), indexes);
  EXPECT_EQ(indexes.size(), 4u);
  EXPECT_THAT(indexes, ::testing::Contains(HasSubstr("Orders by price|CREATE INDEX \"Orders by "
                                                     "price\" ON \"Shop\".\"Orders\"")));

  EXPECT_THAT(Rows(*target_, kTableSql, name), ElementsAre("r|p|f"));

  const auto sequences = Rows(*source_, kSequencesSql, name);
  EXPECT_EQ(Rows(*target_, kSequencesSql, name), sequences);
  EXPECT_THAT(sequences,
              ElementsAre(HasSubstr("OrderId|\"Shop\".\"Orders_OrderId_seq\"|bigint|100|5|"),
                          HasSubstr("seq_no|\"Shop\".\"Orders_seq_no_seq\"|bigint|1|1|")));
}

TEST_F(TableCloneTest, ClonedTableObeysTheDefinitionAndContinuesTheSequences) {
  Run(*source_, kOrdersDdl);
  const std::string name = "Shop.Orders";
  auto cloned = CloneTable(*source_, *target_, Describe(*source_, name), Table(name, "user_id"));
  ASSERT_TRUE(cloned.ok()) << cloned;

  // Identity and serial go on after the source's last values (110 and 3); the generated column
  // is computed; the default applies.
  auto r = target_->Exec(
      "INSERT INTO \"Shop\".\"Orders\" (user_id, price, email) VALUES (4, 2.50, 'd@x') "
      "RETURNING \"OrderId\", seq_no, qty, \"Total\"");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->String(0, 0), "115");
  EXPECT_EQ(r->String(0, 1), "4");
  EXPECT_EQ(r->String(0, 2), "1");
  EXPECT_EQ(r->String(0, 3), "2.50");

  EXPECT_THAT(target_->Exec("INSERT INTO \"Shop\".\"Orders\" (user_id, qty, price) "
                            "VALUES (5, 0, 1)").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Qty positive")));
  EXPECT_THAT(target_->Exec("INSERT INTO \"Shop\".\"Orders\" (user_id, price, email) "
                            "VALUES (5, 1, 'd@x')").status(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("orders_email_key")));
  auto overlap = target_->Exec(
      "INSERT INTO \"Shop\".\"Orders\" (user_id, price, during) VALUES "
      "(6, 1, '[1,10)'), (7, 1, '[5,20)')");
  EXPECT_THAT(overlap.status().message(), HasSubstr("no_overlap"));
  auto always = target_->Exec(
      "INSERT INTO \"Shop\".\"Orders\" (\"OrderId\", user_id, price) VALUES (1, 8, 1)");
  EXPECT_THAT(always.status().message(), HasSubstr("OrderId"));
  auto generated = target_->Exec(
      "INSERT INTO \"Shop\".\"Orders\" (user_id, price, \"Total\") VALUES (9, 1, 1)");
  EXPECT_THAT(generated.status().message(), HasSubstr("Total"));
}

TEST_F(TableCloneTest, CloneReproducesReplicaIdentityUsingIndexAndSerialInPublic) {
  Run(*source_, R"sql(
CREATE TABLE events (id serial, user_id bigint NOT NULL, kind varchar(20) DEFAULT 'x',
                     PRIMARY KEY (user_id, id));
CREATE UNIQUE INDEX events_ident ON events (user_id, id);
ALTER TABLE events REPLICA IDENTITY USING INDEX events_ident;
INSERT INTO events (user_id) SELECT g FROM generate_series(1, 7) g;
)sql");
  ASSERT_TRUE(CloneTable(*source_, *target_, Describe(*source_, "events"),
                         Table("events", "user_id")).ok());
  EXPECT_EQ(Rows(*target_, kColumnsSql, "events"), Rows(*source_, kColumnsSql, "events"));
  const auto indexes = Rows(*target_, kIndexesSql, "events");
  EXPECT_EQ(indexes, Rows(*source_, kIndexesSql, "events"));
  EXPECT_THAT(indexes, ::testing::Contains(HasSubstr("events_ident|CREATE UNIQUE INDEX "
                                                     "events_ident ON public.events USING btree "
                                                     "(user_id, id)|t")));
  EXPECT_THAT(Rows(*target_, kTableSql, "events"), ElementsAre("r|p|i"));
  auto r = target_->Exec("INSERT INTO events (user_id) VALUES (1) RETURNING id");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->String(0, 0), "8");
}

TEST_F(TableCloneTest, CloneOfAnExistingTargetTableChangesNothing) {
  Run(*source_, "CREATE TABLE t (id bigserial PRIMARY KEY); INSERT INTO t DEFAULT VALUES;");
  Run(*target_, "CREATE TABLE t (id bigint PRIMARY KEY)");
  EXPECT_THAT(CloneTable(*source_, *target_, Describe(*source_, "t"), Table("t", "id")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("table t already exists")));
  // Nothing was created, not even the sequence that comes before the table.
  auto r = target_->Exec("SELECT to_regclass('t_id_seq') IS NULL");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Text(0, 0), "t");
}

TEST_F(TableCloneTest, PartitionedTablesAndPartitionsAreRefusedWithTheReason) {
  Run(*source_, R"sql(
CREATE TABLE p (id bigint PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
)sql");
  EXPECT_THAT(Clonable("p", "id"), ElementsAre(AllOf(HasSubstr("node a: table p is partitioned"),
                                                     HasSubstr("plain tables only"))));
  EXPECT_THAT(Clonable("p1", "id"),
              ElementsAre(HasSubstr("node a: table p1 is a partition of a partitioned table")));
}

TEST_F(TableCloneTest, InheritanceAndUnloggedTablesAreRefused) {
  Run(*source_, R"sql(
CREATE TABLE base (id bigint PRIMARY KEY);
CREATE TABLE derived (extra int) INHERITS (base);
CREATE UNLOGGED TABLE scratch (id bigint PRIMARY KEY);
)sql");
  EXPECT_THAT(Clonable("base", "id"), ElementsAre(HasSubstr("table base has child tables")));
  EXPECT_THAT(Clonable("derived", "id"),
              ElementsAre(HasSubstr("table derived inherits from another table")));
  EXPECT_THAT(Clonable("scratch", "id"),
              ElementsAre(AllOf(HasSubstr("table scratch is UNLOGGED"), HasSubstr("SET LOGGED"))));
}

TEST_F(TableCloneTest, KeyTypesTheRowFilterHashCannotTakeAreRefused) {
  Run(*source_, R"sql(
CREATE TABLE n (id numeric PRIMARY KEY);
CREATE TABLE i (id integer PRIMARY KEY);
CREATE TABLE s (id smallint PRIMARY KEY);
CREATE TABLE c (id character(8) PRIMARY KEY);
CREATE TABLE v (id varchar(20) PRIMARY KEY);
CREATE TABLE u (id uuid PRIMARY KEY);
)sql");
  EXPECT_THAT(Clonable("n", "id"),
              ElementsAre(AllOf(HasSubstr("node a: table n: shard key column \"id\" is numeric"),
                                HasSubstr("key type is bigint"),
                                HasSubstr("hashint8extended"))));
  EXPECT_THAT(Clonable("i", "id"), IsEmpty());
  EXPECT_THAT(Clonable("s", "id"), IsEmpty());
  EXPECT_THAT(Clonable("u", "id"), ElementsAre(HasSubstr("is uuid, but the map's key type is "
                                                         "bigint")));
  EXPECT_THAT(Clonable("c", "id", KeyType::kText),
              ElementsAre(HasSubstr("\"id\" is character(8), but the map's key type is text")));
  EXPECT_THAT(Clonable("v", "id", KeyType::kText), IsEmpty());
  EXPECT_THAT(Clonable("u", "id", KeyType::kUuid), IsEmpty());
  Run(*source_, R"sql(
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE ci_keys (id text COLLATE ci PRIMARY KEY);
)sql");
  EXPECT_THAT(Clonable("ci_keys", "id", KeyType::kText),
              ElementsAre(HasSubstr("\"id\" has the nondeterministic collation public.ci")));
  EXPECT_THAT(Clonable("v", "nope", KeyType::kText),
              ElementsAre(HasSubstr("table v has no shard key column \"nope\"")));
}

TEST_F(TableCloneTest, ForeignKeysAndTriggersAreRefusedNotLeftOut) {
  Run(*source_, R"sql(
CREATE TABLE parent (id bigint PRIMARY KEY);
CREATE TABLE child (id bigint PRIMARY KEY, parent_id bigint REFERENCES parent);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TABLE audited (id bigint PRIMARY KEY);
CREATE TRIGGER audited_touch BEFORE INSERT ON audited FOR EACH ROW EXECUTE FUNCTION touch();
)sql");
  EXPECT_THAT(Clonable("child", "id"),
              ElementsAre(AllOf(HasSubstr("node a: table child: foreign key "
                                          "\"child_parent_id_fkey\""),
                                HasSubstr("Drop the constraint, or create the table on the "
                                          "target yourself"))));
  // Sharding the table is fine: only cloning it is refused.
  std::vector<std::string> shardable;
  CheckShardable(Describe(*source_, "child"), Table("child", "id"), KeyType::kBigint, "a",
                 shardable);
  EXPECT_THAT(shardable, IsEmpty());
  EXPECT_THAT(Clonable("audited", "id"),
              ElementsAre(HasSubstr("table audited: trigger \"audited_touch\" is not reproduced")));

  EXPECT_THAT(CloneTable(*source_, *target_, Describe(*source_, "child"), Table("child", "id")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("foreign key \"child_parent_id_fkey\"")));
  auto r = target_->Exec("SELECT to_regclass('child') IS NULL");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Text(0, 0), "t");
}

}  // namespace
}  // namespace shardline::migrate
