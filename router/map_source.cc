// Map sources (file, catalog): see map_source.h.
#include "map_source.h"

#include <libpq-fe.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include "catalog_reader.h"
#include "shardline/dsn.h"
#include "shardline/map_toml.h"

namespace shardline::internal {
namespace {

// absl::Status::message() is Debian abseil's own string_view, which fmt cannot format.
std::string_view Msg(const absl::Status& s) {
  auto m = s.message();
  return std::string_view(m.data(), m.size());
}

void Emit(const LogSink& log, LogLevel level, std::string_view message) {
  if (log) log(level, message);
}

// ---------------------------------------------------------------------------------------------
// File

class FileMapSource final : public MapSource {
 public:
  FileMapSource(std::string path, LogSink log) : path_(std::move(path)), log_(std::move(log)) {}

  absl::StatusOr<std::shared_ptr<const ShardMap>> Load() override {
    absl::StatusOr<std::string> text = Read();
    if (!text.ok()) return text.status();
    {
      MutexLock lock(&mu_);
      last_hash_ = std::hash<std::string>()(*text);
    }
    return Parse(*text);
  }

  absl::StatusOr<std::shared_ptr<const ShardMap>> Check(std::int64_t) override {
    absl::StatusOr<std::string> text = Read();
    // A missing or unreadable file is a change like any other: reported once per message.
    const std::size_t h = text.ok() ? std::hash<std::string>()(*text)
                                    : std::hash<std::string>()(std::string(Msg(text.status())));
    {
      MutexLock lock(&mu_);
      if (h == last_hash_) return std::shared_ptr<const ShardMap>();
      last_hash_ = h;
    }
    if (!text.ok()) return text.status();
    return Parse(*text);
  }

  std::string Describe() const override { return fmt::format("map file {}", path_); }

 private:
  absl::StatusOr<std::string> Read() const {
    std::ifstream in(path_, std::ios::binary);
    if (!in) {
      const int err = errno;
      std::string why = std::strerror(err);
      if (err == ENOENT) return absl::NotFoundError(fmt::format("map file {}: {}", path_, why));
      if (err == EACCES) {
        return absl::PermissionDeniedError(fmt::format("map file {}: {}", path_, why));
      }
      return absl::UnavailableError(fmt::format("map file {}: {}", path_, why));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return absl::UnavailableError(fmt::format("map file {}: read failed", path_));
    return std::move(ss).str();
  }

  absl::StatusOr<std::shared_ptr<const ShardMap>> Parse(const std::string& text) const {
    absl::StatusOr<ParsedShardMap> parsed = ParseShardMapToml(text, path_);
    if (!parsed.ok()) return parsed.status();
    for (const std::string& w : parsed->warnings) Emit(log_, LogLevel::kWarning, w);
    return parsed->map;
  }

  const std::string path_;
  const LogSink log_;
  Mutex mu_;
  std::size_t last_hash_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---------------------------------------------------------------------------------------------
// Catalog

class CatalogMapSource final : public MapSource {
 public:
  CatalogMapSource(std::string dsn, const PoolOptions& pool, LogSink log)
      : dsn_(std::move(dsn)),
        pool_(pool),
        log_(std::move(log)),
        backoff_(pool.backoff_initial),
        rng_(std::random_device{}()) {}

  absl::StatusOr<std::shared_ptr<const ShardMap>> Load() override {
    MutexLock lock(&load_mu_);
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (load_conn_ == nullptr || !load_conn_->IsOk()) {
        auto conn = pg::Conn::Connect(dsn_, "catalog", pool_.connect_timeout);
        if (!conn.ok()) return conn.status();
        // A black-holed catalog must not hang map following (nor ~Router): every catalog
        // statement is bounded like a connect.
        (*conn)->set_query_timeout(pool_.connect_timeout);
        load_conn_ = std::move(*conn);
      }
      absl::StatusOr<std::shared_ptr<const ShardMap>> map = LoadCurrentMap(*load_conn_);
      if (map.ok() || load_conn_->IsOk()) return map;
      load_conn_.reset();  // the connection died (catalog restarted): reconnect once
    }
    return absl::UnavailableError(
        fmt::format("catalog {}: connection lost while loading the map", Describe()));
  }

  absl::StatusOr<std::shared_ptr<const ShardMap>> Check(std::int64_t current_version) override {
    if (!EnsureListening()) return std::shared_ptr<const ShardMap>();
    PGconn* raw = listen_->raw();
    if (!PQconsumeInput(raw)) {
      Lost(pg::StatusFromConn(raw, "catalog", "LISTEN connection"));
      return std::shared_ptr<const ShardMap>();
    }
    while (PGnotify* n = PQnotifies(raw)) PQfreemem(n);  // the version is read below anyway
    absl::StatusOr<std::int64_t> version = ReadCurrentMapVersion(*listen_);
    if (!version.ok()) {
      if (!listen_->IsOk()) {
        Lost(version.status());
        return std::shared_ptr<const ShardMap>();
      }
      return version.status();
    }
    if (*version <= current_version || *version == last_failed_version_) {
      return std::shared_ptr<const ShardMap>();
    }
    absl::StatusOr<std::shared_ptr<const ShardMap>> map = LoadMapVersion(*listen_, *version);
    if (!map.ok()) {
      if (!listen_->IsOk()) {
        Lost(map.status());
        return std::shared_ptr<const ShardMap>();
      }
      last_failed_version_ = *version;
    }
    return map;
  }

  int WaitFd() const override { return listen_ && listen_->IsOk() ? PQsocket(listen_->raw()) : -1; }

  std::chrono::steady_clock::time_point NextCheckBy(
      std::chrono::steady_clock::time_point poll_deadline) const override {
    if (listen_ && listen_->IsOk()) return poll_deadline;
    return std::min(poll_deadline, next_connect_);  // not listening: reconnect when due
  }

  std::string Describe() const override { return DsnWithoutPassword(dsn_); }
  bool Live() const override { return true; }

 private:
  // Connects and LISTENs when not connected and the backoff allows. True when listening.
  bool EnsureListening() {
    if (listen_ && listen_->IsOk()) return true;
    listen_.reset();
    const auto now = std::chrono::steady_clock::now();
    if (now < next_connect_) return false;
    auto conn = pg::Conn::Connect(dsn_, "catalog", pool_.connect_timeout);
    absl::Status status = conn.status();
    if (conn.ok()) {
      (*conn)->set_query_timeout(pool_.connect_timeout);  // see Load()
      status = (*conn)->Exec(fmt::format("LISTEN {}", kCatalogMapChannel)).status();
    }
    if (!status.ok()) {
      Lost(status);
      return false;
    }
    listen_ = std::move(*conn);
    if (down_) {
      Emit(log_, LogLevel::kInfo,
           fmt::format("catalog {}: following the map again", Describe()));
    }
    down_ = false;
    backoff_ = pool_.backoff_initial;
    return true;
  }

  // Drops the LISTEN connection and schedules a reconnect with exponential backoff and full
  // jitter; logs the first failure of an outage.
  void Lost(const absl::Status& why) {
    listen_.reset();
    if (!down_) {
      Emit(log_, LogLevel::kWarning,
           fmt::format("catalog {}: cannot follow the map ({}); polling with backoff",
                       Describe(), Msg(why)));
    }
    down_ = true;
    std::uniform_int_distribution<std::int64_t> jitter(0, backoff_.count());
    next_connect_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(jitter(rng_));
    backoff_ = std::min(pool_.backoff_max, backoff_ * 2);
  }

  const std::string dsn_;
  const PoolOptions pool_;
  const LogSink log_;

  // Maintenance thread only.
  std::unique_ptr<pg::Conn> listen_;
  bool down_ = false;
  std::chrono::milliseconds backoff_;
  std::chrono::steady_clock::time_point next_connect_{};
  std::int64_t last_failed_version_ = 0;
  std::mt19937_64 rng_;

  Mutex load_mu_;
  std::unique_ptr<pg::Conn> load_conn_ ABSL_GUARDED_BY(load_mu_);
};

}  // namespace

std::unique_ptr<MapSource> MakeFileMapSource(std::string path, LogSink log) {
  return std::make_unique<FileMapSource>(std::move(path), std::move(log));
}

std::unique_ptr<MapSource> MakeCatalogMapSource(std::string dsn, const PoolOptions& pool,
                                                LogSink log) {
  return std::make_unique<CatalogMapSource>(std::move(dsn), pool, std::move(log));
}

}  // namespace shardline::internal
