// The shard map's TOML form (docs/map-format.md): reading TOML into a ShardMapConfig with the
// line of every element, so that syntax errors, type errors and validation errors all say
// "file:line", and printing a config back as TOML in a stable field order. toml++ exceptions
// are caught here and never leave this file.
#include "shardline/map_toml.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "shardline/dsn.h"
#include "toml_text.h"

namespace shardline {
namespace {

constexpr std::string_view kTopFields[] = {"version", "key_type", "nodes", "ranges", "tables"};
constexpr std::string_view kNodeFields[] = {"name",     "dsn",      "admin_dsn", "pooler",
                                            "pool_min", "pool_max", "replicas"};
constexpr std::string_view kRangeFields[] = {"lo", "hi", "node", "read_node", "state"};
constexpr std::string_view kTableFields[] = {"name", "key", "primary_key", "reference"};

std::string_view TypeName(toml::node_type t) { return internal::TomlTypeName(t); }

// Levenshtein distance, for "did you mean" hints on unknown fields (names are short).
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

int LineOf(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

// Reads one parsed document into a ShardMapConfig, collecting errors and warnings.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  void Error(int line, std::string message) {
    errors_.emplace_back(line, line > 0 ? fmt::format("{}:{}: {}", source_, line, message)
                                        : fmt::format("{}: {}", source_, message));
  }
  void Warn(int line, std::string message) {
    warnings_.emplace_back(line, fmt::format("{}:{}: {}", source_, line, message));
  }
  void TypeError(const toml::node& n, std::string_view path, std::string_view expected) {
    Error(LineOf(n), fmt::format("{}: expected {}, got {}", path, expected, TypeName(n.type())));
  }

  // Warns about each key of `table` that is not in `known`, with a hint for near misses.
  template <std::size_t N>
  void CheckFields(const toml::table& table, const std::string_view (&known)[N],
                   std::string_view where) {
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      bool found = false;
      std::string_view best;
      std::size_t best_distance = 3;  // hint only for distance 1 or 2
      for (std::string_view f : known) {
        if (f == k) found = true;
        const std::size_t d = EditDistance(k, f);
        if (d < best_distance) {
          best_distance = d;
          best = f;
        }
      }
      if (found) continue;
      int line = static_cast<int>(key.source().begin.line);
      if (line == 0) line = LineOf(value);
      std::string hint = best.empty() ? "" : fmt::format("; did you mean '{}'?", best);
      Warn(line, fmt::format("unknown field '{}'{} (ignored){}", k, where, hint));
    }
  }

  std::optional<std::string> String(const toml::table& t, std::string_view key,
                                    std::string_view path) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (const auto* v = n->as_string()) return v->get();
    TypeError(*n, fmt::format("{}{}", path, key), "a string");
    return std::nullopt;
  }

  // A string field that `parse` turns into a value (ParsePooler, ParseRangeState); its error
  // names the field and its line.
  template <typename T>
  std::optional<T> Parsed(const toml::table& t, std::string_view key, std::string_view path,
                          absl::StatusOr<T> (*parse)(std::string_view)) {
    std::optional<std::string> v = String(t, key, path);
    if (!v) return std::nullopt;
    absl::StatusOr<T> parsed = parse(*v);
    if (parsed.ok()) return *parsed;
    Error(LineOf(*t.get(key)),
          fmt::format("{}{}: {}", path, key, std::string(parsed.status().message())));
    return std::nullopt;
  }

  std::optional<std::int64_t> Integer(const toml::table& t, std::string_view key,
                                      std::string_view path) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (const auto* v = n->as_integer()) return v->get();
    TypeError(*n, fmt::format("{}{}", path, key), "an integer");
    return std::nullopt;
  }

  std::optional<int> Int(const toml::table& t, std::string_view key, std::string_view path) {
    std::optional<std::int64_t> v = Integer(t, key, path);
    if (!v) return std::nullopt;
    if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) {
      Error(LineOf(*t.get(key)), fmt::format("{}{}: {} is out of range", path, key, *v));
      return std::nullopt;
    }
    return static_cast<int>(*v);
  }

  std::optional<bool> Bool(const toml::table& t, std::string_view key, std::string_view path) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    if (const auto* v = n->as_boolean()) return v->get();
    TypeError(*n, fmt::format("{}{}", path, key), "a boolean (true or false)");
    return std::nullopt;
  }

  std::optional<std::vector<std::string>> Strings(const toml::table& t, std::string_view key,
                                                  std::string_view path) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::nullopt;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      TypeError(*n, fmt::format("{}{}", path, key), "an array of strings");
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (const auto* s = e.as_string()) {
        out.push_back(s->get());
      } else {
        TypeError(e, fmt::format("{}{}[{}]", path, key, i), "a string");
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return out;
  }

  // The tables of `[[name]]` (or `name = [{...}, ...]`), each with its index; absent = none.
  std::vector<const toml::table*> TableArray(const toml::table& doc, std::string_view name) {
    std::vector<const toml::table*> out;
    const toml::node* n = doc.get(name);
    if (n == nullptr) return out;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      TypeError(*n, name, fmt::format("an array of tables ([[{}]])", name));
      return out;
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (const toml::table* t = e.as_table()) {
        out.push_back(t);
      } else {
        TypeError(e, fmt::format("{}[{}]", name, i), "a table");
      }
    }
    return out;
  }

  void Missing(const toml::table& t, std::string_view path, std::string_view key,
               std::string_view what) {
    Error(LineOf(t), fmt::format("{}: missing '{}' ({})", path, key, what));
  }

  void Read(const toml::table& doc, ShardMapConfig& config, SourceLocations& loc) {
    CheckFields(doc, kTopFields, "");

    if (const toml::node* n = doc.get("version"); n == nullptr) {
      Error(0, "missing 'version' (a positive integer, raised by one on every published change)");
    } else {
      loc.version_line = LineOf(*n);
      if (auto v = Integer(doc, "version", "")) config.version = *v;
    }
    if (const toml::node* n = doc.get("key_type"); n != nullptr) {
      loc.key_type_line = LineOf(*n);
      if (auto v = String(doc, "key_type", "")) {
        absl::StatusOr<KeyType> kt = ParseKeyType(*v);
        if (kt.ok()) {
          config.key_type = *kt;
        } else {
          Error(loc.key_type_line, std::string(kt.status().message()));
        }
      }
    }

    std::vector<const toml::table*> nodes = TableArray(doc, "nodes");
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      const toml::table& t = *nodes[i];
      const std::string path = fmt::format("nodes[{}]", i);
      const std::string prefix = path + ".";
      CheckFields(t, kNodeFields, fmt::format(" in {}", path));
      NodeConfig node;
      if (auto v = String(t, "name", prefix)) {
        node.name = *v;
      } else if (!t.contains("name")) {
        Missing(t, path, "name", "the node's unique name");
      }
      if (auto v = String(t, "dsn", prefix)) {
        node.dsn = *v;
      } else if (!t.contains("dsn")) {
        Missing(t, path, "dsn", "a libpq connection string");
      }
      if (auto v = String(t, "admin_dsn", prefix)) node.admin_dsn = *v;
      if (auto v = Parsed(t, "pooler", prefix, &ParsePooler)) node.pooler = *v;
      if (auto v = Int(t, "pool_min", prefix)) node.pool_min = *v;
      if (auto v = Int(t, "pool_max", prefix)) node.pool_max = *v;
      if (auto v = Strings(t, "replicas", prefix)) node.replicas = std::move(*v);
      config.nodes.push_back(std::move(node));
      loc.node_lines.push_back(LineOf(t));
    }

    std::vector<const toml::table*> ranges = TableArray(doc, "ranges");
    for (std::size_t i = 0; i < ranges.size(); ++i) {
      const toml::table& t = *ranges[i];
      const std::string path = fmt::format("ranges[{}]", i);
      const std::string prefix = path + ".";
      CheckFields(t, kRangeFields, fmt::format(" in {}", path));
      RangeConfig range;
      if (auto v = Integer(t, "lo", prefix)) {
        range.lo = *v;
      } else if (!t.contains("lo")) {
        Missing(t, path, "lo", "the first hash value of the range, inclusive");
      }
      if (auto v = Integer(t, "hi", prefix)) {
        range.hi = *v;
      } else if (!t.contains("hi")) {
        Missing(t, path, "hi", "the last hash value of the range, inclusive");
      }
      if (auto v = String(t, "node", prefix)) {
        range.node = *v;
      } else if (!t.contains("node")) {
        Missing(t, path, "node", "the name of the node that owns the range");
      }
      if (auto v = String(t, "read_node", prefix)) range.read_node = *v;
      if (auto v = Parsed(t, "state", prefix, &ParseRangeState)) range.state = *v;
      config.ranges.push_back(std::move(range));
      loc.range_lines.push_back(LineOf(t));
    }

    std::vector<const toml::table*> tables = TableArray(doc, "tables");
    for (std::size_t i = 0; i < tables.size(); ++i) {
      const toml::table& t = *tables[i];
      const std::string path = fmt::format("tables[{}]", i);
      const std::string prefix = path + ".";
      CheckFields(t, kTableFields, fmt::format(" in {}", path));
      TableConfig table;
      if (auto v = String(t, "name", prefix)) {
        table.name = *v;
      } else if (!t.contains("name")) {
        Missing(t, path, "name", "the table's name, optionally schema-qualified");
      }
      if (auto v = String(t, "key", prefix)) table.key = *v;
      if (auto v = Strings(t, "primary_key", prefix)) table.primary_key = std::move(*v);
      if (auto v = Bool(t, "reference", prefix)) table.reference = *v;
      config.tables.push_back(std::move(table));
      loc.table_lines.push_back(LineOf(t));
    }
  }

  // The errors in file order (problems without a line first).
  absl::Status Status() {
    if (errors_.empty()) return absl::OkStatus();
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string out;
    for (std::size_t i = 0; i < errors_.size(); ++i) {
      if (i > 0) out += '\n';
      out += errors_[i].second;
    }
    return absl::InvalidArgumentError(out);
  }
  // The warnings in file order (toml++ iterates a table's keys alphabetically).
  std::vector<std::string> TakeWarnings() {
    std::stable_sort(warnings_.begin(), warnings_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::string> out;
    for (auto& w : warnings_) out.push_back(std::move(w.second));
    return out;
  }

 private:
  std::string source_;
  std::vector<std::pair<int, std::string>> errors_;    // (line, message)
  std::vector<std::pair<int, std::string>> warnings_;  // (line, message)
};

std::string Quote(std::string_view s) { return internal::TomlQuote(s); }

// The DSN for display: as written when it holds no password (libpq's rendering reorders the
// fields), DsnWithoutPassword's rendering when it does or when it does not parse.
std::string MaskedDsn(const std::string& dsn) {
  std::string masked = DsnWithoutPassword(dsn);
  if (masked == "<unparseable connection string>") return masked;
  if (masked.find("password=") != std::string::npos) return masked;
  return dsn;
}

std::string QuoteList(const std::vector<std::string>& items, bool mask_dsn) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += Quote(mask_dsn ? MaskedDsn(items[i]) : items[i]);
  }
  out += "]";
  return out;
}

}  // namespace

absl::StatusOr<ParsedShardMap> ParseShardMapToml(std::string_view text,
                                                 std::string_view source_name) {
  if (source_name.empty()) source_name = "<shard map>";
  absl::StatusOr<toml::table> parsed_doc = internal::ParseTomlText(text, source_name);
  if (!parsed_doc.ok()) return parsed_doc.status();
  const toml::table& doc = *parsed_doc;

  Reader reader(source_name);
  ShardMapConfig config;
  SourceLocations loc;
  loc.file = std::string(source_name);
  reader.Read(doc, config, loc);
  if (absl::Status s = reader.Status(); !s.ok()) return s;

  absl::StatusOr<std::shared_ptr<const ShardMap>> map = ShardMap::Create(std::move(config), &loc);
  if (!map.ok()) return map.status();
  ParsedShardMap out;
  out.map = *std::move(map);
  out.warnings = reader.TakeWarnings();
  return out;
}

absl::StatusOr<ParsedShardMap> LoadShardMapFile(const std::string& path) {
  auto fail = [&path](int err) -> absl::Status {
    const std::string msg = fmt::format("cannot read shard map file '{}': {}", path,
                                        std::generic_category().message(err));
    switch (err) {
      case ENOENT:
      case ENOTDIR:
        return absl::NotFoundError(msg);
      case EACCES:
      case EPERM:
        return absl::PermissionDeniedError(msg);
      default:
        return absl::InvalidArgumentError(msg);
    }
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(errno);
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        fmt::format("cannot read shard map file '{}': it is a directory", path));
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return ParseShardMapToml(text, path);
}

std::string ShardMapToToml(const ShardMapConfig& config, PasswordMode mode) {
  const bool mask = mode == PasswordMode::kMask;
  std::string out;
  out += fmt::format("version = {}\n", config.version);
  out += fmt::format("key_type = {}\n", Quote(KeyTypeName(config.key_type)));
  for (const NodeConfig& n : config.nodes) {
    out += "\n[[nodes]]\n";
    out += fmt::format("name = {}\n", Quote(n.name));
    out += fmt::format("dsn = {}\n", Quote(mask ? MaskedDsn(n.dsn) : n.dsn));
    if (!n.admin_dsn.empty()) {
      out += fmt::format("admin_dsn = {}\n", Quote(mask ? MaskedDsn(n.admin_dsn) : n.admin_dsn));
    }
    if (n.pooler != Pooler::kUnset) out += fmt::format("pooler = {}\n", Quote(PoolerName(n.pooler)));
    out += fmt::format("pool_min = {}\n", n.pool_min);
    out += fmt::format("pool_max = {}\n", n.pool_max);
    if (!n.replicas.empty()) out += fmt::format("replicas = {}\n", QuoteList(n.replicas, mask));
  }
  for (const RangeConfig& r : config.ranges) {
    out += "\n[[ranges]]\n";
    out += fmt::format("lo = {}\n", r.lo);
    out += fmt::format("hi = {}\n", r.hi);
    out += fmt::format("node = {}\n", Quote(r.node));
    if (!r.read_node.empty()) out += fmt::format("read_node = {}\n", Quote(r.read_node));
    if (r.state != RangeState::kStable) {
      out += fmt::format("state = {}\n", Quote(RangeStateName(r.state)));
    }
  }
  for (const TableConfig& t : config.tables) {
    out += "\n[[tables]]\n";
    out += fmt::format("name = {}\n", Quote(t.name));
    if (!t.key.empty()) out += fmt::format("key = {}\n", Quote(t.key));
    if (!t.primary_key.empty()) {
      out += fmt::format("primary_key = {}\n", QuoteList(t.primary_key, false));
    }
    if (t.reference) out += "reference = true\n";
  }
  return out;
}

}  // namespace shardline
