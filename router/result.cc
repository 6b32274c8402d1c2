// Result and Row (include/shardline/result.h): typed getters over the text form of a PGresult,
// with errors that name the node, column and row.
#include "shardline/result.h"

#include <charconv>
#include <system_error>

#include <fmt/format.h>

#include "result_impl.h"

namespace shardline {

namespace internal {

ResultImpl::ResultImpl(pg::ResultPtr r, std::string n)
    : res(std::move(r)),
      node(std::move(n)),
      rows(res ? PQntuples(res.get()) : 0),
      columns(res ? PQnfields(res.get()) : 0) {
  column_names.reserve(columns);
  for (int c = 0; c < columns; ++c) {
    const char* name = PQfname(res.get(), c);
    column_names.emplace_back(name != nullptr ? name : "");
  }
}

int ResultImpl::ColumnIndex(std::string_view name) const {
  for (int c = 0; c < columns; ++c) {
    if (column_names[c] == name) return c;
  }
  return -1;
}

}  // namespace internal

namespace {

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

// "node n1: " or "" when the result has no node.
std::string NodePrefix(const std::string& node) {
  return node.empty() ? std::string() : fmt::format("node {}: ", node);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result::Result() = default;
Result::Result(std::shared_ptr<const internal::ResultImpl> impl) : impl_(std::move(impl)) {}

int Result::rows() const { return impl_ ? impl_->rows : 0; }
int Result::columns() const { return impl_ ? impl_->columns : 0; }

std::string_view Result::column_name(int col) const {
  if (!impl_ || col < 0 || col >= impl_->columns) return {};
  return impl_->column_names[col];
}

int Result::column_index(std::string_view name) const {
  return impl_ ? impl_->ColumnIndex(name) : -1;
}

std::int64_t Result::affected_rows() const {
  if (!impl_ || !impl_->res) return 0;
  std::string_view text = PQcmdTuples(impl_->res.get());
  std::int64_t n = 0;
  std::from_chars(text.data(), text.data() + text.size(), n);
  return n;
}

const std::string& Result::node() const { return impl_ ? impl_->node : EmptyString(); }

bool Result::IsNull(int row, int col) const {
  if (!impl_ || row < 0 || row >= impl_->rows || col < 0 || col >= impl_->columns) return true;
  return PQgetisnull(impl_->res.get(), row, col) != 0;
}

namespace {

// The checks shared by every getter: index bounds, then (unless allow_null) NULL. On success
// stores the value's text in *text (empty for NULL).
absl::Status Fetch(const internal::ResultImpl* impl, int row, int col, bool allow_null,
                   std::string_view* text) {
  const int rows = impl ? impl->rows : 0;
  const int columns = impl ? impl->columns : 0;
  const std::string& node = impl ? impl->node : EmptyString();
  if (col < 0 || col >= columns) {
    return absl::OutOfRangeError(fmt::format("{}column {} is out of range (the result has {})",
                                             NodePrefix(node), col, columns));
  }
  if (row < 0 || row >= rows) {
    return absl::OutOfRangeError(fmt::format("{}row {} is out of range (the result has {})",
                                             NodePrefix(node), row, rows));
  }
  const PGresult* res = impl->res.get();
  if (PQgetisnull(res, row, col) != 0) {
    if (allow_null) {
      *text = {};
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(fmt::format("{}column \"{}\" (row {}) is NULL",
                                                  NodePrefix(node), impl->column_names[col],
                                                  row));
  }
  *text = std::string_view(PQgetvalue(res, row, col),
                           static_cast<std::size_t>(PQgetlength(res, row, col)));
  return absl::OkStatus();
}

absl::Status NotA(const internal::ResultImpl* impl, int row, int col, std::string_view text,
                  std::string_view type) {
  constexpr std::size_t kMaxShown = 64;  // keep messages short for huge values
  std::string shown(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) shown += "...";
  return absl::InvalidArgumentError(fmt::format("{}column \"{}\" (row {}): \"{}\" is not {}",
                                                NodePrefix(impl->node), impl->column_names[col],
                                                row, shown, type));
}

}  // namespace

absl::StatusOr<std::int64_t> Result::GetInt64(int row, int col) const {
  std::string_view text;
  absl::Status s = Fetch(impl_.get(), row, col, /*allow_null=*/false, &text);
  if (!s.ok()) return s;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return NotA(impl_.get(), row, col, text, "a 64-bit integer");
  }
  return v;
}

absl::StatusOr<double> Result::GetDouble(int row, int col) const {
  std::string_view text;
  absl::Status s = Fetch(impl_.get(), row, col, /*allow_null=*/false, &text);
  if (!s.ok()) return s;
  // float8out writes Infinity, -Infinity and NaN, which from_chars accepts (case-insensitive
  // "inf"/"infinity"/"nan"); numeric's text is plain decimal.
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return NotA(impl_.get(), row, col, text, "a number");
  }
  return v;
}

absl::StatusOr<bool> Result::GetBool(int row, int col) const {
  std::string_view text;
  absl::Status s = Fetch(impl_.get(), row, col, /*allow_null=*/false, &text);
  if (!s.ok()) return s;
  if (text == "t") return true;
  if (text == "f") return false;
  return NotA(impl_.get(), row, col, text, "a boolean ('t' or 'f')");
}

absl::StatusOr<std::string_view> Result::GetString(int row, int col) const {
  std::string_view text;
  absl::Status s = Fetch(impl_.get(), row, col, /*allow_null=*/true, &text);
  if (!s.ok()) return s;
  return text;
}

absl::StatusOr<std::string> Result::GetBytes(int row, int col) const {
  std::string_view text;
  absl::Status s = Fetch(impl_.get(), row, col, /*allow_null=*/false, &text);
  if (!s.ok()) return s;
  if (PQfformat(impl_->res.get(), col) == 1) return std::string(text);  // binary: raw bytes
  // Text format, bytea_output = hex (the default since PostgreSQL 9.0): \x then 2 hex digits
  // per byte.
  if (!text.starts_with("\\x") || text.size() % 2 != 0) {
    return NotA(impl_.get(), row, col, text, "a bytea in hex format (\\x...)");
  }
  std::string out;
  out.resize((text.size() - 2) / 2);
  for (std::size_t i = 2, o = 0; i < text.size(); i += 2, ++o) {
    int hi = HexValue(text[i]);
    int lo = HexValue(text[i + 1]);
    if (hi < 0 || lo < 0) return NotA(impl_.get(), row, col, text, "a bytea in hex format (\\x...)");
    out[o] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

bool Row::IsNull(int col) const { return result_->IsNull(index_, col); }
absl::StatusOr<std::int64_t> Row::GetInt64(int col) const { return result_->GetInt64(index_, col); }
absl::StatusOr<double> Row::GetDouble(int col) const { return result_->GetDouble(index_, col); }
absl::StatusOr<bool> Row::GetBool(int col) const { return result_->GetBool(index_, col); }
absl::StatusOr<std::string_view> Row::GetString(int col) const {
  return result_->GetString(index_, col);
}
absl::StatusOr<std::string> Row::GetBytes(int col) const { return result_->GetBytes(index_, col); }

}  // namespace shardline
