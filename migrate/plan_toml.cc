// The plan file (see plan_toml.h): printing a RebalancePlan as TOML, and reading it back with the
// file:line of every problem, including problems inside the embedded result map, whose messages
// from the map parser are relocated to lines of the plan file. toml++ exceptions are caught here
// and never leave this file.
#include "plan_toml.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>
#include <optional>
#include <system_error>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "shardline/map_toml.h"
#include "toml_text.h"

namespace shardline::migrate {
namespace {

constexpr std::string_view kTopFields[] = {"plan", "summary", "moves", "result_map"};
constexpr std::string_view kPlanFields[] = {"format_version",     "created_at",
                                            "mode",               "tolerance_percent",
                                            "source_map_version", "result_map_version"};
constexpr std::string_view kSummaryFields[] = {
    "total_rows",       "total_bytes",      "rows_moved", "bytes_moved",
    "ranges_moved",     "min_bytes_moved",  "min_ranges_moved",
    "splits",           "max_deviation_percent", "warnings", "nodes"};
constexpr std::string_view kNodeFields[] = {"name",       "role",      "ranges_before",
                                            "ranges_after", "rows_before", "rows_after",
                                            "bytes_before", "bytes_after"};
constexpr std::string_view kMoveFields[] = {"lo", "hi", "from", "to", "rows", "bytes"};
constexpr std::string_view kResultFields[] = {"toml"};

// Stands for the plan file in messages of the embedded map until they are relocated.
constexpr std::string_view kMapMarker = "\x1fresult_map\x1f";

int LineOf(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

std::string Quote(std::string_view s) { return internal::TomlQuote(s); }

// A TOML float that reads back as the same double (TOML needs a '.' or an exponent).
std::string Float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// Rewrites the map parser's "marker:LINE" and "(line LINE)" into lines of the plan file.
std::string Relocate(std::string_view message, std::string_view file, int offset) {
  std::string out;
  auto digits_at = [&message](std::size_t i, std::size_t& end) -> std::optional<long> {
    end = i;
    while (end < message.size() && std::isdigit(static_cast<unsigned char>(message[end]))) ++end;
    if (end == i || end - i > 9) return std::nullopt;
    return std::stol(std::string(message.substr(i, end - i)));
  };
  std::size_t i = 0;
  while (i < message.size()) {
    const std::string_view rest = message.substr(i);
    std::size_t end = 0;
    if (rest.starts_with(kMapMarker)) {
      i += kMapMarker.size();
      std::optional<long> line;
      if (i < message.size() && message[i] == ':') line = digits_at(i + 1, end);
      if (line) {
        out += fmt::format("{}:{}", file, *line + offset);
        i = end;
      } else {
        out += fmt::format("{} [result_map]", file);
      }
      continue;
    }
    if (rest.starts_with("(line ")) {
      std::optional<long> line = digits_at(i + 6, end);
      if (line && end < message.size() && message[end] == ')') {
        out += fmt::format("(line {})", *line + offset);
        i = end + 1;
        continue;
      }
    }
    out += message[i++];
  }
  return out;
}

std::string_view TypeName(toml::node_type t) { return internal::TomlTypeName(t); }

// Reads one parsed plan document, collecting errors and warnings with their lines.
class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  void Error(int line, std::string message) {
    errors_.push_back(line > 0 ? fmt::format("{}:{}: {}", source_, line, message)
                               : fmt::format("{}: {}", source_, message));
  }

  template <std::size_t N>
  void CheckFields(const toml::table& table, const std::string_view (&known)[N],
                   std::string_view where) {
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (std::find(std::begin(known), std::end(known), k) != std::end(known)) continue;
      int line = static_cast<int>(key.source().begin.line);
      if (line == 0) line = LineOf(value);
      warnings_.push_back(fmt::format("{}:{}: unknown field '{}'{} (ignored)", source_, line, k,
                                      where));
    }
  }

  const toml::table* Table(const toml::table& parent, std::string_view key, bool required) {
    const toml::node* n = parent.get(key);
    if (n == nullptr) {
      if (required) Error(0, fmt::format("missing [{}] table", key));
      return nullptr;
    }
    if (const toml::table* t = n->as_table()) return t;
    Error(LineOf(*n), fmt::format("{}: expected a table, got {}", key, TypeName(n->type())));
    return nullptr;
  }

  std::vector<const toml::table*> TableArray(const toml::table& parent, std::string_view key,
                                             std::string_view path) {
    std::vector<const toml::table*> out;
    const toml::node* n = parent.get(key);
    if (n == nullptr) return out;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      Error(LineOf(*n), fmt::format("{}: expected an array of tables ([[{}]]), got {}", path, path,
                                    TypeName(n->type())));
      return out;
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (const toml::table* t = e.as_table()) {
        out.push_back(t);
      } else {
        Error(LineOf(e), fmt::format("{}[{}]: expected a table, got {}", path, i,
                                     TypeName(e.type())));
      }
    }
    return out;
  }

  // The field's node; reports a missing required field at the table's line.
  const toml::node* Field(const toml::table& t, std::string_view key, std::string_view path,
                          bool required) {
    const toml::node* n = t.get(key);
    if (n == nullptr && required) {
      Error(LineOf(t), fmt::format("{}: missing '{}'", path, key));
    }
    return n;
  }

  void Int(const toml::table& t, std::string_view key, std::string_view path, bool required,
           std::int64_t& out) {
    const toml::node* n = Field(t, key, path, required);
    if (n == nullptr) return;
    if (const auto* v = n->as_integer()) {
      out = v->get();
    } else {
      Error(LineOf(*n), fmt::format("{}.{}: expected an integer, got {}", path, key,
                                    TypeName(n->type())));
    }
  }

  void Double(const toml::table& t, std::string_view key, std::string_view path, bool required,
              double& out) {
    const toml::node* n = Field(t, key, path, required);
    if (n == nullptr) return;
    if (const auto* v = n->as_floating_point()) {
      out = v->get();
    } else if (const auto* i = n->as_integer()) {
      out = static_cast<double>(i->get());
    } else {
      Error(LineOf(*n), fmt::format("{}.{}: expected a number, got {}", path, key,
                                    TypeName(n->type())));
    }
  }

  // Returns the string's node (for its line) or nullptr.
  const toml::node* String(const toml::table& t, std::string_view key, std::string_view path,
                           bool required, std::string& out) {
    const toml::node* n = Field(t, key, path, required);
    if (n == nullptr) return nullptr;
    if (const auto* v = n->as_string()) {
      out = v->get();
      return n;
    }
    Error(LineOf(*n),
          fmt::format("{}.{}: expected a string, got {}", path, key, TypeName(n->type())));
    return nullptr;
  }

  void Strings(const toml::table& t, std::string_view key, std::string_view path,
               std::vector<std::string>& out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      Error(LineOf(*n), fmt::format("{}.{}: expected an array of strings, got {}", path, key,
                                    TypeName(n->type())));
      return;
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const toml::node& e = *a->get(i);
      if (const auto* s = e.as_string()) {
        out.push_back(s->get());
      } else {
        Error(LineOf(e), fmt::format("{}.{}[{}]: expected a string, got {}", path, key, i,
                                     TypeName(e.type())));
      }
    }
  }

  void Read(const toml::table& doc, ParsedPlan& parsed) {
    RebalancePlan& plan = parsed.plan;
    CheckFields(doc, kTopFields, "");

    std::int64_t result_map_version = 0;
    if (const toml::table* t = Table(doc, "plan", true)) {
      CheckFields(*t, kPlanFields, " in [plan]");
      std::int64_t format = 0;
      Int(*t, "format_version", "plan", true, format);
      if (format != 0 && format != kPlanFormatVersion) {
        Error(LineOf(*t->get("format_version")),
              fmt::format("plan.format_version: unsupported plan format {} (this shardline reads "
                          "format {})", format, kPlanFormatVersion));
        return;  // the rest may mean something else
      }
      String(*t, "created_at", "plan", false, plan.created_at);
      std::string mode;
      if (const toml::node* n = String(*t, "mode", "plan", true, mode)) {
        absl::StatusOr<BalanceMode> m = ParseBalanceMode(mode);
        if (m.ok()) {
          plan.mode = *m;
        } else {
          Error(LineOf(*n), fmt::format("plan.mode: {}", std::string(m.status().message())));
        }
      }
      Double(*t, "tolerance_percent", "plan", true, plan.tolerance_percent);
      Int(*t, "source_map_version", "plan", true, plan.source_map_version);
      Int(*t, "result_map_version", "plan", false, result_map_version);
    }

    if (const toml::table* t = Table(doc, "summary", false)) {
      CheckFields(*t, kSummaryFields, " in [summary]");
      Int(*t, "total_rows", "summary", false, plan.total_rows);
      Int(*t, "total_bytes", "summary", false, plan.total_bytes);
      Int(*t, "rows_moved", "summary", false, plan.rows_moved);
      Int(*t, "bytes_moved", "summary", false, plan.bytes_moved);
      Int(*t, "ranges_moved", "summary", false, plan.ranges_moved);
      Int(*t, "min_bytes_moved", "summary", false, plan.min_bytes_moved);
      Int(*t, "min_ranges_moved", "summary", false, plan.min_ranges_moved);
      Int(*t, "splits", "summary", false, plan.splits);
      Double(*t, "max_deviation_percent", "summary", false, plan.max_deviation_percent);
      Strings(*t, "warnings", "summary", plan.warnings);
      std::vector<const toml::table*> nodes = TableArray(*t, "nodes", "summary.nodes");
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        const toml::table& n = *nodes[i];
        const std::string path = fmt::format("summary.nodes[{}]", i);
        CheckFields(n, kNodeFields, fmt::format(" in {}", path));
        NodeBalance nb;
        String(n, "name", path, true, nb.name);
        std::string role = "kept";
        if (const toml::node* r = String(n, "role", path, false, role)) {
          absl::StatusOr<NodeRole> parsed_role = ParseNodeRole(role);
          if (parsed_role.ok()) {
            nb.role = *parsed_role;
          } else {
            Error(LineOf(*r), fmt::format("{}.role: {}", path, std::string(parsed_role.status().message())));
          }
        }
        Int(n, "ranges_before", path, false, nb.ranges_before);
        Int(n, "ranges_after", path, false, nb.ranges_after);
        Int(n, "rows_before", path, false, nb.rows_before);
        Int(n, "rows_after", path, false, nb.rows_after);
        Int(n, "bytes_before", path, false, nb.bytes_before);
        Int(n, "bytes_after", path, false, nb.bytes_after);
        plan.nodes.push_back(std::move(nb));
      }
    }

    std::vector<const toml::table*> moves = TableArray(doc, "moves", "moves");
    std::vector<int> move_lines;
    for (std::size_t i = 0; i < moves.size(); ++i) {
      const toml::table& m = *moves[i];
      const std::string path = fmt::format("moves[{}]", i);
      CheckFields(m, kMoveFields, fmt::format(" in {}", path));
      RangeMove move;
      Int(m, "lo", path, true, move.lo);
      Int(m, "hi", path, true, move.hi);
      String(m, "from", path, true, move.from);
      String(m, "to", path, true, move.to);
      Int(m, "rows", path, false, move.rows);
      Int(m, "bytes", path, false, move.bytes);
      plan.moves.push_back(std::move(move));
      move_lines.push_back(LineOf(m));
    }

    const toml::table* result = Table(doc, "result_map", true);
    if (result == nullptr) return;
    CheckFields(*result, kResultFields, " in [result_map]");
    std::string map_text;
    const toml::node* text_node = String(*result, "toml", "result_map", true, map_text);
    if (text_node == nullptr) return;
    // The text starts on the line after the opening ''' (TOML trims that first newline).
    const int offset = LineOf(*text_node);
    absl::StatusOr<ParsedShardMap> map = ParseShardMapToml(map_text, kMapMarker);
    if (!map.ok()) {
      errors_.push_back(Relocate(std::string(map.status().message()), source_, offset));
      return;
    }
    for (const std::string& w : map->warnings) {
      warnings_.push_back(Relocate(w, source_, offset));
    }
    parsed.result_map = map->map;
    plan.result = map->map->config();
    const ShardMap& rm = *map->map;
    if (result_map_version != 0 && result_map_version != rm.version()) {
      Error(LineOf(*text_node),
            fmt::format("plan.result_map_version is {} but the map in [result_map] has version {}",
                        result_map_version, rm.version()));
    }
    if (plan.source_map_version >= rm.version()) {
      Error(LineOf(*text_node),
            fmt::format("the map in [result_map] has version {}, which is not above "
                        "plan.source_map_version {}", rm.version(), plan.source_map_version));
    }
    CheckMoves(plan.moves, move_lines, rm);
  }

  // Each move must name a range of the result map owned by its target.
  void CheckMoves(const std::vector<RangeMove>& moves, const std::vector<int>& lines,
                  const ShardMap& map) {
    std::map<std::int64_t, std::size_t> seen;  // lo -> index of the move
    for (std::size_t i = 0; i < moves.size(); ++i) {
      const RangeMove& m = moves[i];
      const int line = lines[i];
      const std::string who = fmt::format("moves[{}] (range {}..{})", i, m.lo, m.hi);
      for (const std::string* node : {&m.from, &m.to}) {
        if (!node->empty() && map.NodeIndex(*node) < 0) {
          Error(line, fmt::format("{}: unknown node '{}' (not in [result_map])", who, *node));
        }
      }
      if (!m.from.empty() && m.from == m.to) {
        Error(line, fmt::format("{}: from and to are both '{}'", who, m.from));
      }
      if (m.lo > m.hi) {
        Error(line, fmt::format("{}: lo is greater than hi", who));
        continue;
      }
      const RangeConfig& r = map.RangeFor(m.lo);
      if (r.lo != m.lo || r.hi != m.hi) {
        Error(line, fmt::format("{}: not a range of the map in [result_map] (hash {} is in its "
                                "range {}..{})", who, m.lo, r.lo, r.hi));
        continue;
      }
      if (r.node != m.to) {
        Error(line, fmt::format("{}: the map in [result_map] gives this range to '{}', not to '{}'",
                                who, r.node, m.to));
      }
      auto [it, inserted] = seen.emplace(m.lo, i);
      if (!inserted) {
        Error(line, fmt::format("{}: moved twice (also moves[{}])", who, it->second));
      }
    }
  }

  absl::Status Status() const {
    if (errors_.empty()) return absl::OkStatus();
    std::string out;
    for (std::size_t i = 0; i < errors_.size(); ++i) {
      if (i > 0) out += '\n';
      out += errors_[i];
    }
    return absl::InvalidArgumentError(out);
  }
  std::vector<std::string> TakeWarnings() { return std::move(warnings_); }

 private:
  std::string source_;
  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
};

absl::Status FileError(const std::string& what, const std::string& path, int err) {
  const std::string msg =
      fmt::format("cannot {} plan file '{}': {}", what, path, std::generic_category().message(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

absl::StatusOr<ParsedPlan> ParsePlanToml(std::string_view text, std::string_view source_name) {
  absl::StatusOr<toml::table> parsed_doc = internal::ParseTomlText(text, source_name);
  if (!parsed_doc.ok()) return parsed_doc.status();
  const toml::table& doc = *parsed_doc;
  Reader reader(source_name);
  ParsedPlan parsed;
  reader.Read(doc, parsed);
  if (absl::Status s = reader.Status(); !s.ok()) return s;
  parsed.warnings = reader.TakeWarnings();
  return parsed;
}

absl::StatusOr<ParsedPlan> LoadPlanFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError("read", path, errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FileError("read", path, errno);
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        fmt::format("cannot read plan file '{}': it is a directory", path));
  }
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return FileError("read", path, errno);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return ParsePlanToml(text, path);
}

std::string PlanToToml(const RebalancePlan& plan) {
  std::string out;
  out.reserve(4096 + plan.moves.size() * 110 + plan.result.ranges.size() * 70);
  auto it = std::back_inserter(out);
  out +=
      "# shardline rebalance plan. It holds the nodes' connection strings, passwords included:\n"
      "# keep it private.\n";
  fmt::format_to(it, "\n[plan]\nformat_version = {}\n", kPlanFormatVersion);
  fmt::format_to(it, "created_at = {}\n", Quote(plan.created_at));
  fmt::format_to(it, "mode = {}\n", Quote(BalanceModeName(plan.mode)));
  fmt::format_to(it, "tolerance_percent = {}\n", Float(plan.tolerance_percent));
  fmt::format_to(it, "source_map_version = {}\n", plan.source_map_version);
  fmt::format_to(it, "result_map_version = {}\n", plan.result.version);

  out += "\n[summary]\n";
  fmt::format_to(it, "total_rows = {}\ntotal_bytes = {}\n", plan.total_rows, plan.total_bytes);
  fmt::format_to(it, "rows_moved = {}\nbytes_moved = {}\nranges_moved = {}\n", plan.rows_moved,
                 plan.bytes_moved, plan.ranges_moved);
  fmt::format_to(it, "min_bytes_moved = {}\nmin_ranges_moved = {}\n", plan.min_bytes_moved,
                 plan.min_ranges_moved);
  fmt::format_to(it, "splits = {}\n", plan.splits);
  fmt::format_to(it, "max_deviation_percent = {}\n", Float(plan.max_deviation_percent));
  out += "warnings = [";
  for (std::size_t i = 0; i < plan.warnings.size(); ++i) {
    out += i > 0 ? ",\n  " : "\n  ";
    out += Quote(plan.warnings[i]);
  }
  out += plan.warnings.empty() ? "]\n" : ",\n]\n";
  for (const NodeBalance& n : plan.nodes) {
    out += "\n[[summary.nodes]]\n";
    fmt::format_to(it, "name = {}\nrole = {}\n", Quote(n.name), Quote(NodeRoleName(n.role)));
    fmt::format_to(it, "ranges_before = {}\nranges_after = {}\n", n.ranges_before, n.ranges_after);
    fmt::format_to(it, "rows_before = {}\nrows_after = {}\n", n.rows_before, n.rows_after);
    fmt::format_to(it, "bytes_before = {}\nbytes_after = {}\n", n.bytes_before, n.bytes_after);
  }

  for (const RangeMove& m : plan.moves) {
    fmt::format_to(it, "\n[[moves]]\nlo = {}\nhi = {}\nfrom = {}\nto = {}\nrows = {}\nbytes = {}\n",
                   m.lo, m.hi, Quote(m.from), Quote(m.to), m.rows, m.bytes);
  }

  out += "\n[result_map]\n# The map after every move, in the shard map file format.\n";
  const std::string map_text = ShardMapToToml(plan.result, PasswordMode::kKeep);
  if (map_text.find("'''") == std::string::npos) {
    out += "toml = '''\n";
    out += map_text;
    out += "'''\n";
  } else {
    // A literal string cannot hold ''': escape into a multi-line basic string, lines unchanged.
    out += "toml = \"\"\"\n";
    for (char c : map_text) {
      if (c == '\\' || c == '"') out += '\\';
      out += c;
    }
    out += "\"\"\"\n";
  }
  return out;
}

absl::Status WritePlanFile(const std::string& path, const RebalancePlan& plan) {
  const std::string text = PlanToToml(plan);
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);  // mode 0600
  if (fd < 0) return FileError("write", path, errno);
  auto fail = [&](int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return FileError("write", path, err);
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail(errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return FileError("write", path, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return FileError("write", path, err);
  }
  return absl::OkStatus();
}

}  // namespace shardline::migrate
