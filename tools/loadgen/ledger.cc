// Writing and reading the ledger of acknowledged writes (see ledger.h).
#include "ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace shardline::loadgen {

std::uint64_t ContentHash(const std::vector<std::optional<std::string_view>>& values) {
  constexpr std::uint64_t kOffset = 14695981039346656037ull;
  constexpr std::uint64_t kPrime = 1099511628211ull;
  std::uint64_t h = kOffset;
  auto add = [&](unsigned char c) {
    h ^= c;
    h *= kPrime;
  };
  for (const auto& v : values) {
    if (!v) {
      add('N');
    } else {
      add('V');
      for (char c : *v) add(static_cast<unsigned char>(c));
    }
    add(0x1F);
  }
  return h;
}

std::string FormatLedgerLine(const LedgerEntry& e) {
  nlohmann::ordered_json j = {{"v", kLedgerVersion}, {"t", e.unix_ms},   {"op", e.op},
                              {"table", e.table},    {"user_id", e.user_id}};
  if (e.id) j["id"] = *e.id;
  j["hash"] = fmt::format("{:016x}", e.hash);
  j["acked"] = e.acked;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

absl::StatusOr<LedgerEntry> ParseLedgerLine(std::string_view line, std::string_view where) {
  if (line.ends_with('\n')) line.remove_suffix(1);
  auto error = [&](const std::string& what) {
    return absl::InvalidArgumentError(fmt::format("{}: {}", where, what));
  };
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return error("not a JSON object");
  auto need = [&](const char* key, nlohmann::json::value_t type) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end()) return error(fmt::format("missing \"{}\"", key));
    const bool ok = type == nlohmann::json::value_t::number_integer
                        ? it->is_number_integer()
                        : it->type() == type;
    if (!ok) return error(fmt::format("\"{}\" has the wrong type", key));
    return absl::OkStatus();
  };
  using V = nlohmann::json::value_t;
  for (const auto& [key, type] : {std::pair{"v", V::number_integer},
                                  std::pair{"t", V::number_integer},
                                  std::pair{"op", V::string},
                                  std::pair{"table", V::string},
                                  std::pair{"user_id", V::number_integer},
                                  std::pair{"hash", V::string},
                                  std::pair{"acked", V::boolean}}) {
    if (absl::Status s = need(key, type); !s.ok()) return s;
  }
  if (j["v"].get<int>() != kLedgerVersion) {
    return error(fmt::format("ledger version {} (this build reads version {})",
                             j["v"].get<int>(), kLedgerVersion));
  }
  LedgerEntry e;
  e.unix_ms = j["t"].get<std::int64_t>();
  e.op = j["op"].get<std::string>();
  e.table = j["table"].get<std::string>();
  e.user_id = j["user_id"].get<std::int64_t>();
  if (j.contains("id")) {
    if (!j["id"].is_number_integer()) return error("\"id\" has the wrong type");
    e.id = j["id"].get<std::int64_t>();
  }
  const std::string hash = j["hash"].get<std::string>();
  char* end = nullptr;
  errno = 0;
  e.hash = std::strtoull(hash.c_str(), &end, 16);
  if (hash.size() != 16 || end != hash.c_str() + hash.size() || errno != 0) {
    return error(fmt::format("\"hash\" '{}' is not 16 hex digits", hash));
  }
  e.acked = j["acked"].get<bool>();
  return e;
}

absl::StatusOr<std::unique_ptr<LedgerWriter>> LedgerWriter::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(
        fmt::format("cannot open ledger '{}' for appending: {}", path, std::strerror(errno)));
  }
  return std::unique_ptr<LedgerWriter>(new LedgerWriter(fd, path));
}

LedgerWriter::~LedgerWriter() { ::close(fd_); }

absl::Status LedgerWriter::Append(const LedgerEntry& entry) {
  const std::string line = FormatLedgerLine(entry);
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(
          fmt::format("cannot append to ledger '{}': {}", path_, std::strerror(errno)));
    }
    done += static_cast<std::size_t>(n);
  }
  appended_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

std::uint64_t LedgerWriter::appended() const {
  return appended_.load(std::memory_order_relaxed);
}

absl::StatusOr<std::vector<LedgerEntry>> ReadLedger(const std::string& path,
                                                    bool* truncated_tail) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) {
      return absl::NotFoundError(fmt::format("cannot read ledger '{}': no such file", path));
    }
    return absl::InternalError(
        fmt::format("cannot read ledger '{}': {}", path, std::strerror(errno)));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (truncated_tail != nullptr) *truncated_tail = false;
  std::vector<LedgerEntry> out;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    const std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      if (truncated_tail != nullptr) *truncated_tail = true;
      break;
    }
    const std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (line.empty()) continue;
    absl::StatusOr<LedgerEntry> e = ParseLedgerLine(line, fmt::format("{}:{}", path, line_no));
    if (!e.ok()) return e.status();
    out.push_back(std::move(*e));
  }
  return out;
}

}  // namespace shardline::loadgen
