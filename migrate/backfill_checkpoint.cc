// Backfill checkpoint stores: see backfill_checkpoint.h.
#include "backfill_checkpoint.h"

#include <fmt/format.h>


namespace shardline::migrate {
namespace {

// The target-side state table. Created on first use (idempotent); one row per job.
constexpr const char* kTargetStateDdl = R"sql(
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS shardline;
CREATE TABLE IF NOT EXISTS shardline.backfill_state (
  source_node text        NOT NULL,
  table_name  text        NOT NULL,
  ranges      text        NOT NULL,
  last_key    bytea,
  rows_copied bigint      NOT NULL DEFAULT 0,
  batches     bigint      NOT NULL DEFAULT 0,
  done        boolean     NOT NULL DEFAULT false,
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_node, table_name, ranges)
);
COMMIT;
)sql";

std::string BigEndian32(std::uint32_t v) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(v >> 24);
  out[1] = static_cast<char>(v >> 16);
  out[2] = static_cast<char>(v >> 8);
  out[3] = static_cast<char>(v);
  return out;
}

// Reads a checkpoint row (last_key, rows, batches, done) from a binary-format result.
absl::StatusOr<BackfillCheckpoint> CheckpointFromRow(const pg::Result& r) {
  BackfillCheckpoint cp;
  if (r.rows() == 0) return cp;
  cp.found = true;
  if (!r.IsNull(0, 0)) {
    cp.last_key = std::string(PQgetvalue(r.get(), 0, 0),
                              static_cast<std::size_t>(PQgetlength(r.get(), 0, 0)));
  }
  auto int8 = [&](int col) {
    const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r.get(), 0, col));
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return static_cast<std::int64_t>(v);
  };
  cp.rows = int8(1);
  cp.batches = int8(2);
  cp.done = PQgetvalue(r.get(), 0, 3)[0] != 0;
  return cp;
}

pg::Params CheckpointParams(const std::vector<std::string>& job_fields,
                            const BackfillCheckpoint& cp) {
  pg::Params params;
  for (const std::string& f : job_fields) params.emplace_back(f);
  params.push_back(cp.last_key);
  auto int8 = [](std::int64_t v) {
    std::string out(8, '\0');
    for (int i = 7; i >= 0; --i) {
      out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
      v = static_cast<std::int64_t>(static_cast<std::uint64_t>(v) >> 8);
    }
    return out;
  };
  params.emplace_back(int8(cp.rows));
  params.emplace_back(int8(cp.batches));
  params.emplace_back(std::string(1, cp.done ? '\1' : '\0'));
  return params;
}

constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kBoolOid = 16;

class TargetStore final : public CheckpointStore {
 public:
  explicit TargetStore(pg::Conn& target) : target_(target) {}

  absl::Status Prepare() override { return target_.ExecScript(kTargetStateDdl); }

  absl::StatusOr<BackfillCheckpoint> Load(const BackfillJobKey& job) override {
    auto r = target_.ExecBinary(
        "SELECT last_key, rows_copied, batches, done FROM shardline.backfill_state "
        "WHERE source_node = $1 AND table_name = $2 AND ranges = $3",
        {job.source_node, job.table, job.ranges}, {kTextOid, kTextOid, kTextOid}, true);
    if (!r.ok()) return r.status();
    return CheckpointFromRow(*r);
  }

  absl::Status SaveInTargetTransaction(pg::Conn& target_tx, const BackfillJobKey& job,
                                       const BackfillCheckpoint& cp) override {
    auto r = target_tx.ExecBinary(
        "INSERT INTO shardline.backfill_state AS s (source_node, table_name, ranges, last_key, "
        "rows_copied, batches, done) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (source_node, table_name, ranges) DO UPDATE SET last_key = $4, "
        "rows_copied = $5, batches = $6, done = $7, updated_at = now()",
        CheckpointParams({job.source_node, job.table, job.ranges}, cp),
        {kTextOid, kTextOid, kTextOid, kByteaOid, kInt8Oid, kInt8Oid, kBoolOid}, false);
    return r.status();
  }

  absl::Status SaveCommitted(const BackfillJobKey&, const BackfillCheckpoint&) override {
    return absl::OkStatus();
  }

  absl::Status Reset(const BackfillJobKey& job) override {
    return target_
        .Exec("DELETE FROM shardline.backfill_state WHERE source_node = $1 AND table_name = $2 "
              "AND ranges = $3",
              {job.source_node, job.table, job.ranges})
        .status();
  }

  bool atomic_with_target() const override { return true; }
  std::string Describe() const override {
    return fmt::format("state table shardline.backfill_state on node {}", target_.node());
  }

 private:
  pg::Conn& target_;
};

class CatalogStore final : public CheckpointStore {
 public:
  explicit CatalogStore(std::unique_ptr<pg::Conn> catalog) : catalog_(std::move(catalog)) {}

  absl::Status Prepare() override {
    auto r = catalog_->Exec("SELECT to_regclass('shardline.backfill_checkpoints') IS NOT NULL");
    if (!r.ok()) return r.status();
    if (r->Text(0, 0) != "t") {
      return absl::FailedPreconditionError(fmt::format(
          "{}: the catalog has no table shardline.backfill_checkpoints: run `shardline catalog "
          "init --catalog DSN` to upgrade it",
          catalog_->node()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<BackfillCheckpoint> Load(const BackfillJobKey& job) override {
    auto r = catalog_->ExecBinary(
        "SELECT last_key, rows_copied, batches, done FROM shardline.backfill_checkpoints "
        "WHERE source_node = $1 AND target_node = $2 AND table_name = $3 AND ranges = $4",
        {job.source_node, job.target_node, job.table, job.ranges},
        {kTextOid, kTextOid, kTextOid, kTextOid}, true);
    if (!r.ok()) return r.status();
    return CheckpointFromRow(*r);
  }

  absl::Status SaveInTargetTransaction(pg::Conn&, const BackfillJobKey&,
                                       const BackfillCheckpoint&) override {
    return absl::OkStatus();
  }

  absl::Status SaveCommitted(const BackfillJobKey& job, const BackfillCheckpoint& cp) override {
    auto r = catalog_->ExecBinary(
        "INSERT INTO shardline.backfill_checkpoints AS s (source_node, target_node, table_name, "
        "ranges, last_key, rows_copied, batches, done) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (source_node, target_node, table_name, ranges) DO UPDATE SET last_key = $5, "
        "rows_copied = $6, batches = $7, done = $8, updated_at = now()",
        CheckpointParams({job.source_node, job.target_node, job.table, job.ranges}, cp),
        {kTextOid, kTextOid, kTextOid, kTextOid, kByteaOid, kInt8Oid, kInt8Oid, kBoolOid},
        false);
    return r.status();
  }

  absl::Status Reset(const BackfillJobKey& job) override {
    return catalog_
        ->Exec("DELETE FROM shardline.backfill_checkpoints WHERE source_node = $1 AND "
               "target_node = $2 AND table_name = $3 AND ranges = $4",
               {job.source_node, job.target_node, job.table, job.ranges})
        .status();
  }

  bool atomic_with_target() const override { return false; }
  std::string Describe() const override {
    return fmt::format("catalog table shardline.backfill_checkpoints ({})", catalog_->node());
  }

 private:
  std::unique_ptr<pg::Conn> catalog_;
};

}  // namespace

std::string EncodeKey(const std::vector<std::string>& fields) {
  std::string out;
  for (const std::string& f : fields) {
    out += BigEndian32(static_cast<std::uint32_t>(f.size()));
    out += f;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DecodeKey(const std::string& encoded,
                                                   std::size_t columns) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < encoded.size()) {
    if (encoded.size() - pos < 4) break;
    const auto* p = reinterpret_cast<const unsigned char*>(encoded.data() + pos);
    const std::size_t len = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) |
                            (std::size_t{p[2]} << 8) | std::size_t{p[3]};
    pos += 4;
    if (encoded.size() - pos < len) break;
    out.push_back(encoded.substr(pos, len));
    pos += len;
  }
  if (pos != encoded.size() || out.size() != columns) {
    return absl::InvalidArgumentError(fmt::format(
        "checkpoint key does not hold {} key columns (was the primary key changed since the "
        "checkpoint was written? rerun with --restart)",
        columns));
  }
  return out;
}

std::unique_ptr<CheckpointStore> NewTargetCheckpointStore(pg::Conn& target) {
  return std::make_unique<TargetStore>(target);
}

std::unique_ptr<CheckpointStore> NewCatalogCheckpointStore(std::unique_ptr<pg::Conn> catalog) {
  return std::make_unique<CatalogStore>(std::move(catalog));
}

}  // namespace shardline::migrate
