// Shard keys: the three key types a map can have (bigint, text, uuid) and a non-owning
// `ShardKey` value that routes by PostgreSQL's own extended hash with seed 0.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace shardline {

// The one shard-key type of a map. The hash used for each type is the PostgreSQL function
// named beside it, so every server can evaluate range predicates itself.
enum class KeyType {
  kBigint,  // hashint8extended(k, 0)
  kText,    // hashtextextended(k, 0)
  kUuid,    // uuid_hash_extended(k, 0)
};

// "bigint", "text" or "uuid".
std::string_view KeyTypeName(KeyType type);
// Parses "bigint" | "text" | "uuid"; InvalidArgument naming the value otherwise.
absl::StatusOr<KeyType> ParseKeyType(std::string_view name);
// The SQL hash expression for a (quoted) column of the given key type, e.g.
// `hashint8extended("user_id", 0)`. `quoted_column` must already be a quoted identifier.
std::string HashSqlExpression(KeyType type, std::string_view quoted_column);

// A 128-bit UUID in network (RFC 4122) byte order, as PostgreSQL stores it.
struct Uuid {
  std::array<std::uint8_t, 16> bytes{};

  // Accepts the forms PostgreSQL's uuid_in accepts: 32 hex digits, optionally with hyphens
  // after any group of four, optionally in braces. InvalidArgument naming the text otherwise.
  static absl::StatusOr<Uuid> Parse(std::string_view text);
  // Canonical lower-case 8-4-4-4-12 form.
  std::string ToString() const;
  friend bool operator==(const Uuid&, const Uuid&) = default;
};

// A borrowed shard-key value: an integer, a text (not owned: the viewed characters must
// outlive the key) or a uuid. Cheap to copy; hashing allocates nothing.
// Thread-compatible.
//
//   router->Execute(ShardKey(user_id), "SELECT ...", {...});
//   router->Execute(ShardKey("alice@example.com"), ...);
class ShardKey {
 public:
  template <std::integral T>
  ShardKey(T v) : type_(KeyType::kBigint), int_(static_cast<std::int64_t>(v)) {}  // NOLINT
  ShardKey(std::string_view text) : type_(KeyType::kText), text_(text) {}        // NOLINT
  ShardKey(const char* text) : ShardKey(std::string_view(text)) {}              // NOLINT
  ShardKey(const std::string& text) : ShardKey(std::string_view(text)) {}       // NOLINT
  ShardKey(const Uuid& uuid) : type_(KeyType::kUuid), uuid_(uuid) {}             // NOLINT

  KeyType type() const { return type_; }
  std::int64_t int_value() const { return int_; }
  std::string_view text_value() const { return text_; }
  const Uuid& uuid_value() const { return uuid_; }

  // The signed 64-bit PostgreSQL extended hash (seed 0) of this key for its own type.
  std::int64_t Hash() const;
  // Human-readable form for messages (text keys are quoted).
  std::string ToString() const;

 private:
  KeyType type_;
  std::int64_t int_ = 0;
  std::string_view text_;
  Uuid uuid_;
};

// Parses command-line or configuration text as a key of `type` and returns its hash.
// InvalidArgument naming the text when it does not parse as that type (e.g. "12x" as bigint).
absl::StatusOr<std::int64_t> HashKeyText(KeyType type, std::string_view text);

}  // namespace shardline
