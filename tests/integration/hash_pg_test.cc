// Proves the hash port (router/hash.cc) bit-exact against a live PostgreSQL node: for each key
// type, edge cases plus 100,000 random keys (bigints across the whole range and near the 32-bit
// fold, texts of random length 0..2000 in random UTF-8, random uuids) are hashed by us and by
// the server (hashint8extended / hashtextextended / uuid_hash_extended with seed 0), and every
// pair must be equal. Keys travel in batches as ONE array parameter per query, e.g.
// `SELECT hashint8extended(k, 0) FROM unnest($1::bigint[]) WITH ORDINALITY ...`, so the whole
// comparison takes a few round trips. The random seed is printed; set SHARDLINE_TEST_SEED to
// rerun a failure with the same keys.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cluster.h"
#include "shardline/hash.h"
#include "shardline/key.h"

namespace shardline::testing {
namespace {

constexpr int kRandomKeysPerType = 100000;
constexpr std::size_t kMaxBatchKeys = 10000;                 // keys per query
constexpr std::size_t kMaxBatchBytes = std::size_t{4} << 20;  // array literal size per query
constexpr int kMaxReportedMismatches = 10;

// The random seed: $SHARDLINE_TEST_SEED when set, else a fresh one. Printed once per binary.
std::uint64_t TestSeed() {
  static const std::uint64_t seed = [] {
    std::uint64_t s = 0;
    if (const char* env = std::getenv("SHARDLINE_TEST_SEED"); env != nullptr && *env != '\0') {
      s = std::strtoull(env, nullptr, 0);
    } else {
      std::random_device rd;
      s = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }
    std::cout << "hash_pg_test: random seed " << s << " (rerun with SHARDLINE_TEST_SEED=" << s
              << ")" << std::endl;
    return s;
  }();
  return seed;
}

// A connection to node 1 with the client encoding pinned to UTF8, so our bytes reach
// hashtextextended unchanged (the devcluster's databases are UTF8 with the C locale).
std::unique_ptr<pg::Conn> ConnectToNode() {
  auto conn = ConnectOrDie(Cluster().node_dsns.at(0));
  auto set = conn->Exec("SET client_encoding = 'UTF8'");
  if (!set.ok()) throw std::runtime_error(std::string(set.status().message()));
  return conn;
}

// Text keys print with non-printable and non-ASCII bytes as \xNN, cut after 80 bytes.
std::string Printable(std::string_view s) {
  std::string out = fmt::format("({} bytes) '", s.size());
  for (std::size_t i = 0; i < s.size() && i < 80; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  out += s.size() > 80 ? "'..." : "'";
  return out;
}

std::string KeyText(std::int64_t k) { return std::to_string(k); }
std::string KeyText(const std::string& k) { return Printable(k); }
std::string KeyText(const Uuid& k) { return k.ToString(); }

// Appends one array element: numbers and uuids as they are; texts double-quoted with `\` and
// `"` backslash-escaped (so that NULL, braces, commas and spaces stay plain text).
void AppendElement(std::string& out, std::int64_t k) { out += std::to_string(k); }
void AppendElement(std::string& out, const Uuid& k) { out += k.ToString(); }
void AppendElement(std::string& out, const std::string& k) {
  out += '"';
  for (char c : k) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

std::int64_t OurHash(std::int64_t k) { return HashInt8(k); }
std::int64_t OurHash(const std::string& k) { return HashText(k); }
std::int64_t OurHash(const Uuid& k) { return HashUuid(k); }

std::size_t KeyBytes(std::int64_t) { return 20; }
std::size_t KeyBytes(const Uuid&) { return 36; }
std::size_t KeyBytes(const std::string& k) { return k.size() + 2; }

// Hashes every key on the server with `sql_hash` (e.g. "hashint8extended(k, 0)") over
// unnest($1::<sql_type>[]) and compares with our port; fails the test naming up to
// kMaxReportedMismatches keys. Returns the number of keys compared.
template <typename Key>
std::size_t CompareWithServer(pg::Conn& conn, const std::vector<Key>& keys,
                              std::string_view sql_type, std::string_view sql_hash) {
  const std::string sql = fmt::format(
      "SELECT {} FROM unnest($1::{}[]) WITH ORDINALITY AS t(k, n) ORDER BY n", sql_hash,
      sql_type);
  std::size_t compared = 0;
  int mismatches = 0;
  std::size_t begin = 0;
  std::string literal;
  while (begin < keys.size()) {
    // One batch: as many keys as fit in kMaxBatchKeys and kMaxBatchBytes (at least one).
    std::size_t end = begin;
    std::size_t bytes = 0;
    literal.clear();
    literal += '{';
    while (end < keys.size() && end - begin < kMaxBatchKeys &&
           (end == begin || bytes + KeyBytes(keys[end]) <= kMaxBatchBytes)) {
      if (end != begin) literal += ',';
      AppendElement(literal, keys[end]);
      bytes += KeyBytes(keys[end]);
      ++end;
    }
    literal += '}';

    auto result = conn.Exec(sql, {literal});
    if (!result.ok()) {
      ADD_FAILURE() << sql << " with keys " << begin << ".." << end - 1 << ": "
                    << result.status();
      return compared;
    }
    if (static_cast<std::size_t>(result->rows()) != end - begin) {
      ADD_FAILURE() << sql << ": " << result->rows() << " rows for " << end - begin << " keys";
      return compared;
    }
    for (std::size_t i = begin; i < end; ++i) {
      auto theirs = result->Int64(static_cast<int>(i - begin), 0);
      if (!theirs.ok()) {
        ADD_FAILURE() << "key " << KeyText(keys[i]) << ": " << theirs.status();
        continue;
      }
      const std::int64_t ours = OurHash(keys[i]);
      if (ours != *theirs && ++mismatches <= kMaxReportedMismatches) {
        ADD_FAILURE() << sql_hash << " for key #" << i << " " << KeyText(keys[i])
                      << ": server " << *theirs << ", ours " << ours;
      }
      ++compared;
    }
    begin = end;
  }
  EXPECT_EQ(mismatches, 0) << "keys whose hash differs from the server's (first "
                           << kMaxReportedMismatches << " listed above)";
  return compared;
}

// Runs the comparison and prints how many keys were compared and how fast.
template <typename Key>
void CompareAndReport(const std::vector<Key>& keys, std::string_view sql_type,
                      std::string_view sql_hash) {
  SCOPED_TRACE(fmt::format("SHARDLINE_TEST_SEED={}", TestSeed()));
  auto conn = ConnectToNode();
  const auto start = std::chrono::steady_clock::now();
  const std::size_t compared = CompareWithServer(*conn, keys, sql_type, sql_hash);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(compared, keys.size());
  std::cout << fmt::format("{}: {} keys compared with the server in {:.2f} s", sql_hash, compared,
                           seconds)
            << std::endl;
}

// ---- bigint ---------------------------------------------------------------------------------

std::vector<std::int64_t> BigintKeys(std::mt19937_64& rng) {
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t k2p32 = std::int64_t{1} << 32;
  constexpr std::int64_t k2p31 = std::int64_t{1} << 31;
  std::vector<std::int64_t> keys = {
      0,         1,          -1,         2,         -2,           kMin,      kMin + 1,
      kMax,      kMax - 1,   k2p32,      -k2p32,    k2p32 - 1,    -k2p32 - 1, k2p32 + 1,
      -k2p32 + 1, k2p31 - 1, -k2p31,     k2p31,     -k2p31 - 1,   42,        -42};
  const std::size_t total = keys.size() + kRandomKeysPerType;
  std::uniform_int_distribution<int> kind(0, 3);
  std::uniform_int_distribution<int> shift(0, 63);
  std::uniform_int_distribution<std::int64_t> small(-100000, 100000);
  while (keys.size() < total) {
    switch (kind(rng)) {
      case 0:  // anywhere in the 64-bit range
        keys.push_back(static_cast<std::int64_t>(rng()));
        break;
      case 1: {  // every magnitude, either sign (negated in unsigned arithmetic: no overflow)
        std::uint64_t v = rng() >> shift(rng);
        if (rng() & 1) v = ~v + 1;
        keys.push_back(static_cast<std::int64_t>(v));
        break;
      }
      case 2:  // small ids, the common case
        keys.push_back(small(rng));
        break;
      default:  // near a multiple of 2^32, where the fold's two halves interact
        keys.push_back(small(rng) * k2p32 + small(rng));
        break;
    }
  }
  return keys;
}

TEST(HashPg, BigintHashesMatchServerForEdgeCasesAndRandomKeys) {
  std::mt19937_64 rng(TestSeed());
  CompareAndReport(BigintKeys(rng), "bigint", "hashint8extended(k, 0)");
}

// ---- text -----------------------------------------------------------------------------------

// Appends one random code point as UTF-8: a 1-, 2-, 3- or 4-byte sequence with equal odds, never
// NUL (text cannot hold it) nor a surrogate (not valid UTF-8, the server would refuse it).
void AppendRandomCodePoint(std::mt19937_64& rng, std::string& out) {
  std::uint32_t cp = 0;
  switch (rng() % 4) {
    case 0:
      cp = 1 + static_cast<std::uint32_t>(rng() % 0x7f);
      break;
    case 1:
      cp = 0x80 + static_cast<std::uint32_t>(rng() % (0x800 - 0x80));
      break;
    case 2:
      do {
        cp = 0x800 + static_cast<std::uint32_t>(rng() % (0x10000 - 0x800));
      } while (cp >= 0xd800 && cp <= 0xdfff);
      break;
    default:
      cp = 0x10000 + static_cast<std::uint32_t>(rng() % (0x110000 - 0x10000));
      break;
  }
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::vector<std::string> TextKeys(std::mt19937_64& rng) {
  std::vector<std::string> keys = {
      "", "a", "abc", "alice@example.com", "héllo", "日本語", "Zürich 🚴",
      // what the array literal must carry through unchanged
      "NULL", "null", " ", " padded ", "\"", "\\", "a\"b\\c", "{}", "{a,b}", ",", "'", "\t\n\r",
      std::string(1024, 'x'), std::string(1025, 'y'), std::string(4096, 'z')};
  // Every length 0..40 (every lookup3 tail after 0..3 full blocks) in ASCII and in UTF-8.
  for (int n = 0; n <= 40; ++n) {
    std::string ascii, utf8;
    for (int i = 0; i < n; ++i) ascii += static_cast<char>('a' + i % 26);
    while (utf8.size() < static_cast<std::size_t>(n)) AppendRandomCodePoint(rng, utf8);
    keys.push_back(ascii);
    keys.push_back(utf8);
  }
  const std::size_t total = keys.size() + kRandomKeysPerType;
  std::uniform_int_distribution<int> length(0, 2000);
  std::uniform_int_distribution<int> printable(0x20, 0x7e);
  while (keys.size() < total) {
    // Half ASCII (byte length = length), half random UTF-8 (length in code points).
    const int n = length(rng);
    std::string k;
    if (rng() & 1) {
      for (int i = 0; i < n; ++i) k += static_cast<char>(printable(rng));
    } else {
      for (int i = 0; i < n; ++i) AppendRandomCodePoint(rng, k);
    }
    keys.push_back(std::move(k));
  }
  return keys;
}

TEST(HashPg, TextHashesMatchServerForEdgeCasesAndRandomUtf8) {
  std::mt19937_64 rng(TestSeed());
  CompareAndReport(TextKeys(rng), "text", "hashtextextended(k, 0)");
}

// ---- uuid -----------------------------------------------------------------------------------

std::vector<Uuid> UuidKeys(std::mt19937_64& rng) {
  std::vector<Uuid> keys;
  for (std::string_view text :
       {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000001",
        "80000000-0000-0000-0000-000000000000"}) {
    auto u = Uuid::Parse(text);
    if (!u.ok()) throw std::runtime_error(std::string(u.status().message()));
    keys.push_back(*u);
  }
  const std::size_t total = keys.size() + kRandomKeysPerType;
  while (keys.size() < total) {
    Uuid u;
    for (auto& b : u.bytes) b = static_cast<std::uint8_t>(rng());
    keys.push_back(u);
  }
  return keys;
}

TEST(HashPg, UuidHashesMatchServerForEdgeCasesAndRandomUuids) {
  std::mt19937_64 rng(TestSeed());
  CompareAndReport(UuidKeys(rng), "uuid", "uuid_hash_extended(k, 0)");
}

}  // namespace
}  // namespace shardline::testing
