// The control catalog, write side: see catalog.h. Reads are router/catalog_reader.h's.
#include "catalog.h"
#include "status_text.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include <fmt/format.h>

#include "catalog_reader.h"
#include "catalog_sql.h"  // generated from schemas/catalog.sql (kCatalogSql)
#include "shardline/dsn.h"
#include "shardline/errors.h"

namespace shardline::migrate {
namespace {

// Serialises concurrent Init() calls (pg_advisory_xact_lock): CREATE ... IF NOT EXISTS is not
// safe against a concurrent CREATE of the same object. "shlncat1" in ASCII.
constexpr std::int64_t kInitLockKey = 0x73686c6e63617431;

// absl::Status::message() is Debian abseil's own string_view, which fmt cannot format.
std::optional<std::string> OptionalText(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

}  // namespace

std::string CurrentOsUser() {
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') return user;
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "";
}

Catalog::Catalog(std::unique_ptr<pg::Conn> conn, std::string where)
    : conn_(std::move(conn)), where_(std::move(where)) {}

Catalog::~Catalog() = default;

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Create(
    const std::string& dsn, std::chrono::milliseconds connect_timeout) {
  absl::StatusOr<std::unique_ptr<pg::Conn>> conn =
      pg::Conn::Connect(dsn, "catalog", connect_timeout);
  if (!conn.ok()) return conn.status();
  return std::unique_ptr<Catalog>(new Catalog(*std::move(conn), DsnWithoutPassword(dsn)));
}

absl::Status Catalog::Fail(absl::Status status) {
  if (internal::IsCatalogMissing(status)) {
    return absl::FailedPreconditionError(fmt::format(
        "catalog {} is not initialised (no schema shardline); run `shardline catalog init` first",
        where_));
  }
  return status;
}

absl::Status Catalog::Rollback() {
  // Best effort: on a broken connection there is nothing to roll back.
  return conn_->Exec("ROLLBACK").status();
}

absl::StatusOr<bool> Catalog::Init(const Actor& who) {
  if (auto s = conn_->Exec("BEGIN"); !s.ok()) return s.status();
  auto fail = [&](absl::Status status) -> absl::Status {
    (void)Rollback();
    return status;
  };
  // "relation ... already exists, skipping" notices are expected on every run after the first.
  if (auto s = conn_->Exec("SET LOCAL client_min_messages = warning"); !s.ok()) {
    return fail(s.status());
  }
  if (auto s = conn_->Exec("SELECT pg_advisory_xact_lock($1::bigint)",
                           {std::to_string(kInitLockKey)});
      !s.ok()) {
    return fail(s.status());
  }
  absl::StatusOr<pg::Result> existing =
      conn_->Exec("SELECT to_regclass('shardline.schema_version') IS NOT NULL");
  if (!existing.ok()) return fail(existing.status());
  const bool existed = existing->Text(0, 0) == "t";
  if (existed) {
    absl::StatusOr<pg::Result> v =
        conn_->Exec("SELECT coalesce(max(version), 0) FROM shardline.schema_version");
    if (!v.ok()) return fail(v.status());
    const std::int64_t version = v->Int64Or0(0, 0);
    if (version > kCatalogSchemaVersion) {
      return fail(absl::FailedPreconditionError(fmt::format(
          "catalog {} has schema version {}, newer than this shardline's ({}); use a newer "
          "shardline",
          where_, version, kCatalogSchemaVersion)));
    }
  }
  if (absl::Status s = conn_->ExecScript(kCatalogSql); !s.ok()) {
    return fail(absl::Status(
        s.code(), fmt::format("catalog {}: applying the catalog schema: {}", where_, Msg(s))));
  }
  if (!existed) {
    if (auto s = conn_->Exec(
            "INSERT INTO shardline.audit_log (os_user, action, comment) "
            "VALUES ($1, 'init', $2)",
            {OptionalText(who.os_user),
             fmt::format("catalog schema version {}", kCatalogSchemaVersion)});
        !s.ok()) {
      return fail(s.status());
    }
  }
  if (auto s = conn_->Exec("COMMIT"); !s.ok()) return fail(s.status());
  return !existed;
}

absl::StatusOr<std::int64_t> Catalog::CurrentVersion() {
  absl::StatusOr<std::int64_t> v = internal::ReadCurrentMapVersion(*conn_);
  if (!v.ok()) return Fail(v.status());
  return v;
}

absl::StatusOr<ParsedShardMap> Catalog::Load(std::int64_t version) {
  absl::StatusOr<ParsedShardMap> m = internal::LoadParsedMapVersion(*conn_, version);
  if (!m.ok()) return Fail(m.status());
  return m;
}

absl::StatusOr<ParsedShardMap> Catalog::LoadCurrent() {
  absl::StatusOr<ParsedShardMap> m = internal::LoadParsedCurrentMap(*conn_);
  if (!m.ok()) return Fail(m.status());
  return m;
}

absl::StatusOr<std::int64_t> Catalog::BeginAndLockPointer() {
  if (auto s = conn_->Exec("BEGIN"); !s.ok()) return s.status();
  // The row lock serialises publishers: a second one waits here until the first commits and
  // then reads the version the first one set (READ COMMITTED re-reads the locked row).
  absl::StatusOr<pg::Result> res = conn_->Exec(
      "SELECT coalesce(version, 0) FROM shardline.current_map WHERE singleton FOR UPDATE");
  if (!res.ok()) {
    (void)Rollback();
    return Fail(res.status());
  }
  if (res->rows() != 1) {
    (void)Rollback();
    return absl::FailedPreconditionError(fmt::format(
        "catalog {}: shardline.current_map has no row; run `shardline catalog init`", where_));
  }
  return res->Int64Or0(0, 0);
}

absl::Status Catalog::InsertLocked(const ShardMapConfig& config, std::int64_t current,
                                   const std::string& action, std::int64_t reverted_from,
                                   const std::string& comment, const Actor& who) {
  const std::int64_t version = config.version;
  const std::string v = std::to_string(version);
  if (version <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("this map has version {}; versions are positive integers", version));
  }
  if (current != 0 && version != current + 1) {
    std::string hint;
    if (version <= current) {
      hint = fmt::format(" (version {} is already published; give the new map version {})",
                         version, current + 1);
    }
    return absl::FailedPreconditionError(
        fmt::format("catalog is at version {}; this map has version {}; expected {}{}", current,
                    version, current + 1, hint));
  }
  // What routers will read must be exactly what was validated.
  const std::string content = ShardMapToToml(config, PasswordMode::kKeep);
  absl::StatusOr<ParsedShardMap> back =
      ParseShardMapToml(content, fmt::format("catalog version {}", version));
  if (!back.ok() || back->map->config() != config) {
    return absl::InternalError(fmt::format(
        "map version {} does not read back to the same map after printing{}{}; not published",
        version, back.ok() ? "" : ": ", back.ok() ? std::string_view() : Msg(back.status())));
  }

  auto ins = conn_->Exec(
      "INSERT INTO shardline.map_versions "
      "(version, content, key_type, os_user, comment, reverted_from) "
      "VALUES ($1::bigint, $2, $3, $4, $5, $6::bigint)",
      {v, content, std::string(KeyTypeName(config.key_type)), OptionalText(who.os_user),
       OptionalText(comment),
       reverted_from > 0 ? std::optional<std::string>(std::to_string(reverted_from))
                         : std::nullopt});
  if (!ins.ok()) {
    if (ins.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::FailedPreconditionError(fmt::format(
          "catalog already has version {} (published concurrently by another client)", version));
    }
    return ins.status();
  }
  if (auto s = conn_->Exec(
          "UPDATE shardline.current_map SET version = $1::bigint, updated_at = now() "
          "WHERE singleton",
          {v});
      !s.ok()) {
    return s.status();
  }
  if (auto s = conn_->Exec(
          "INSERT INTO shardline.audit_log (os_user, action, version, comment) "
          "VALUES ($1, $2, $3::bigint, $4)",
          {OptionalText(who.os_user), action, v, OptionalText(comment)});
      !s.ok()) {
    return s.status();
  }
  // Delivered to listeners only when (and if) the transaction commits.
  if (auto s = conn_->Exec("SELECT pg_notify($1, $2)", {internal::kCatalogMapChannel, v});
      !s.ok()) {
    return s.status();
  }
  return absl::OkStatus();
}

absl::Status Catalog::Publish(const ShardMapConfig& config, const std::string& comment,
                              const Actor& who) {
  absl::StatusOr<std::shared_ptr<const ShardMap>> map = ShardMap::Create(config);
  if (!map.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("map version {} is invalid, not published: {}", config.version,
                    Msg(map.status())));
  }
  absl::StatusOr<std::int64_t> current = BeginAndLockPointer();
  if (!current.ok()) return current.status();
  absl::Status s = InsertLocked((*map)->config(), *current, "publish", 0, comment, who);
  if (s.ok()) s = conn_->Exec("COMMIT").status();
  if (!s.ok()) (void)Rollback();
  return s;
}

absl::StatusOr<std::int64_t> Catalog::Revert(std::int64_t to_version, const std::string& comment,
                                             const Actor& who) {
  absl::StatusOr<std::int64_t> current = BeginAndLockPointer();
  if (!current.ok()) return current.status();
  auto fail = [&](absl::Status status) -> absl::Status {
    (void)Rollback();
    return status;
  };
  if (*current == 0) {
    return fail(absl::FailedPreconditionError(
        fmt::format("catalog {} has no published map to revert", where_)));
  }
  if (to_version == *current) {
    return fail(absl::FailedPreconditionError(
        fmt::format("version {} is already the current version; nothing to revert", to_version)));
  }
  absl::StatusOr<ParsedShardMap> old = internal::LoadParsedMapVersion(*conn_, to_version);
  if (!old.ok()) return fail(Fail(old.status()));
  ShardMapConfig config = old->map->config();
  config.version = *current + 1;
  absl::Status s = InsertLocked(config, *current, "revert", to_version, comment, who);
  if (s.ok()) s = conn_->Exec("COMMIT").status();
  if (!s.ok()) return fail(s);
  return config.version;
}

absl::StatusOr<std::vector<HistoryEntry>> Catalog::History() {
  absl::StatusOr<pg::Result> res = conn_->Exec(
      "SELECT (extract(epoch FROM a.at) * 1000000)::bigint, a.action, coalesce(a.version, 0), "
      "       coalesce(v.reverted_from, 0), a.db_user, coalesce(a.os_user, ''), "
      "       coalesce(a.comment, '') "
      "FROM shardline.audit_log a "
      "LEFT JOIN shardline.map_versions v ON v.version = a.version "
      "ORDER BY a.id");
  if (!res.ok()) return Fail(res.status());
  std::vector<HistoryEntry> out;
  out.reserve(static_cast<std::size_t>(res->rows()));
  for (int r = 0; r < res->rows(); ++r) {
    HistoryEntry e;
    e.at = absl::FromUnixMicros(res->Int64Or0(r, 0));
    e.action = res->String(r, 1);
    e.version = res->Int64Or0(r, 2);
    e.reverted_from = res->Int64Or0(r, 3);
    e.db_user = res->String(r, 4);
    e.os_user = res->String(r, 5);
    e.comment = res->String(r, 6);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace shardline::migrate
