// Key types, UUID text form and key hashing dispatch: see shardline/key.h.
#include "shardline/key.h"

#include <charconv>

#include <fmt/format.h>
#include "shardline/hash.h"

namespace shardline {

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kBigint:
      return "bigint";
    case KeyType::kText:
      return "text";
    case KeyType::kUuid:
      return "uuid";
    default:
      return "?";
  }
}

absl::StatusOr<KeyType> ParseKeyType(std::string_view name) {
  if (name == "bigint") return KeyType::kBigint;
  if (name == "text") return KeyType::kText;
  if (name == "uuid") return KeyType::kUuid;
  return absl::InvalidArgumentError(
      fmt::format("{}{}{}", "unknown key_type '", name, "' (expected bigint, text or uuid)"));
}

std::string HashSqlExpression(KeyType type, std::string_view quoted_column) {
  switch (type) {
    case KeyType::kText:
      return fmt::format("{}{}{}", "hashtextextended(", quoted_column, ", 0)");
    case KeyType::kUuid:
      return fmt::format("{}{}{}", "uuid_hash_extended(", quoted_column, ", 0)");
    case KeyType::kBigint:
    default:
      return fmt::format("{}{}{}", "hashint8extended(", quoted_column, ", 0)");
  }
}

absl::StatusOr<Uuid> Uuid::Parse(std::string_view text) {
  // Mirrors PostgreSQL's string_to_uuid: optional braces, hex digit pairs, a hyphen allowed
  // after every group of 4 hex digits (i.e. after every second byte).
  auto bad = [&] {
    return absl::InvalidArgumentError(fmt::format("{}{}{}", "'", text, "' is not a valid uuid"));
  };
  std::string_view s = text;
  bool braces = !s.empty() && s.front() == '{';
  if (braces) {
    if (s.size() < 2 || s.back() != '}') return bad();
    s = s.substr(1, s.size() - 2);
  }
  auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Uuid u;
  std::size_t pos = 0;
  for (int i = 0; i < 16; ++i) {
    if (pos + 2 > s.size()) return bad();
    int hi = hexval(s[pos]), lo = hexval(s[pos + 1]);
    if (hi < 0 || lo < 0) return bad();
    u.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    pos += 2;
    if (pos < s.size() && s[pos] == '-' && i % 2 == 1 && i < 15) ++pos;
  }
  if (pos != s.size()) return bad();
  return u;
}

std::string Uuid::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xf];
  }
  return out;
}

std::int64_t ShardKey::Hash() const {
  switch (type_) {
    case KeyType::kText:
      return HashText(text_);
    case KeyType::kUuid:
      return HashUuid(uuid_);
    case KeyType::kBigint:
    default:
      return HashInt8(int_);
  }
}

std::string ShardKey::ToString() const {
  switch (type_) {
    case KeyType::kText:
      return fmt::format("{}{}{}", "'", text_, "'");
    case KeyType::kUuid:
      return uuid_.ToString();
    case KeyType::kBigint:
    default:
      return fmt::format("{}", int_);
  }
}

absl::StatusOr<std::int64_t> HashKeyText(KeyType type, std::string_view text) {
  switch (type) {
    case KeyType::kText:
      return HashText(text);
    case KeyType::kUuid: {
      auto u = Uuid::Parse(text);
      if (!u.ok()) return u.status();
      return HashUuid(*u);
    }
    case KeyType::kBigint:
    default: {
      std::int64_t v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
        return absl::InvalidArgumentError(
            fmt::format("{}{}{}", "key '", text, "' is not a valid bigint (the map's key_type)"));
      }
      return HashInt8(v);
    }
  }
}

}  // namespace shardline
