// Unit tests of the PostgreSQL hash port (router/hash.cc) and the key text forms it is fed
// from (router/key.cc): known-answer vectors taken from a real PostgreSQL 15.20 server (x86_64,
// UTF8 database, C.UTF-8 locale, deterministic default collation), the documented 32-bit fold
// of bigints, every tail length of lookup3, unaligned input, seeds, the uuid text forms
// PostgreSQL accepts and rejects, HashKeyText errors, and that hashing allocates nothing.
// tests/integration/hash_pg_test.cc compares the port with a live server on random keys.
#include "shardline/hash.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "shardline/key.h"
#include "alloc_counter.h"
#include "status_matchers.h"

namespace shardline {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

using ::shardline::testing::StatusIs;

constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

Uuid ParseOrDie(std::string_view text) {
  auto u = Uuid::Parse(text);
  EXPECT_TRUE(u.ok()) << u.status();
  return u.ok() ? *u : Uuid{};
}

struct Int8Vector {
  std::int64_t key;
  std::int64_t hash;
};

// SELECT k, hashint8extended(k, 0) FROM unnest(ARRAY[0, 1, -1, 2, -2, 4294967296,
//   -4294967297, 4294967295, -4294967296, 2147483647, -2147483648, 9223372036854775807,
//   -9223372036854775808, 42, 1234567890123, -987654321987, 7418529630147258369,
//   -3141592653589793238]::bigint[]) k;
constexpr Int8Vector kInt8Vectors[] = {
    {0, 4154612158245552303},
    {1, -3670598878359251130},
    {-1, -1888257769727981238},
    {2, 3647684041653542134},
    {-2, 495194309054116481},
    {4294967296, -3670598878359251130},
    {-4294967297, 495194309054116481},
    {4294967295, -1888257769727981238},
    {-4294967296, 4154612158245552303},
    {2147483647, -9109110466470504941},
    {-2147483648, 1977219185673256887},
    {kInt64Max, 1977219185673256887},
    {kInt64Min, -9109110466470504941},
    {42, 8010225493015854792},
    {1234567890123, -6236938892533063859},
    {-987654321987, -1001891328148279735},
    {7418529630147258369, -1270879162060501648},
    {-3141592653589793238, 6727738321169733201},
};

TEST(HashInt8, MatchesPostgresKnownAnswers) {
  for (const auto& v : kInt8Vectors) {
    EXPECT_EQ(HashInt8(v.key), v.hash) << "hashint8extended(" << v.key << ", 0)";
    EXPECT_EQ(ShardKey(v.key).Hash(), v.hash) << v.key;
  }
}

TEST(HashInt8, FoldsHighHalfIntoLowHalfLikePostgres) {
  // The fold PostgreSQL applies for cross-type hash joins: documented in hash.h.
  EXPECT_EQ(HashInt8(1), HashInt8(4294967296));
  EXPECT_EQ(HashInt8(-2), HashInt8(-4294967297));
  EXPECT_EQ(HashInt8(0), HashInt8(-4294967296));
  EXPECT_EQ(HashInt8(kInt64Max), HashInt8(-2147483648));
  EXPECT_NE(HashInt8(1), HashInt8(2));
}

TEST(HashInt8, FastPathEqualsHashingTheFoldedWordAsFourBytes) {
  // hash_bytes_uint32_extended(w) is documented to equal hash_bytes_extended over the 4 bytes
  // of w; HashInt8 uses the former. For 0 <= k < 2^32 the folded word is k itself.
  for (std::uint32_t w : {0u, 1u, 42u, 0x7fffffffu, 0x80000000u, 0xdeadbeefu, 0xffffffffu}) {
    const std::uint8_t le[4] = {static_cast<std::uint8_t>(w), static_cast<std::uint8_t>(w >> 8),
                                static_cast<std::uint8_t>(w >> 16),
                                static_cast<std::uint8_t>(w >> 24)};
    EXPECT_EQ(HashInt8(std::int64_t{w}), HashBytesExtended(le, 4, 0)) << w;
  }
}

TEST(HashInt8, AcceptsEveryIntegralShardKeyType) {
  EXPECT_EQ(ShardKey(std::int32_t{-1}).Hash(), HashInt8(-1));
  EXPECT_EQ(ShardKey(std::uint8_t{42}).Hash(), HashInt8(42));
  EXPECT_EQ(ShardKey(42u).Hash(), HashInt8(42));
}

// A fixed phrase long enough that its prefixes cover lengths 0..30: every one of lookup3's
// 12 tail cases (0..11 bytes left) after zero, one and two full 12-byte blocks.
constexpr std::string_view kPhrase = "The quick brown fox jumps over the lazy dog";

// SELECT n, hashtextextended(left('The quick brown fox jumps over the lazy dog', n), 0)
//   FROM generate_series(0, 30) n;
constexpr std::int64_t kPrefixHashes[] = {
    -6939563903564495251, -1338225982912146468, 5593687159563776749,  -7897229297791927534,
    1214481609633084541,  -985326184270896746,  3470145380339167397,  -2752675330521770124,
    -1544529330263215465, -3165377590426475634, 6613948839295992241,  2869438648668390509,
    -9210305663925663560, -3863872140344080773, -2703303883130605159, 130785500723762325,
    -7818762430148052278, 3451059601990827723,  1859349653040336744,  6377859067987231983,
    1395817125874287870,  4382656982158088131,  -8173415927686238050, -6349138520123274615,
    8360766130984247540,  -6568008242738964476, -8510399028364357311, -5983171337440081292,
    4650743464175597606,  4922972945882926808,  -2952746244513659538,
};

TEST(HashText, MatchesPostgresForEveryTailLength) {
  for (std::size_t n = 0; n < std::size(kPrefixHashes); ++n) {
    EXPECT_EQ(HashText(kPhrase.substr(0, n)), kPrefixHashes[n]) << "length " << n;
  }
}

TEST(HashText, MatchesPostgresForUnalignedInput) {
  // PostgreSQL has separate aligned and unaligned read paths that must agree; ours reads with
  // memcpy. Hash every prefix again from each misalignment of a copy.
  alignas(16) std::array<char, 64> buf{};
  for (std::size_t offset = 0; offset < 8; ++offset) {
    std::memcpy(buf.data() + offset, kPhrase.data(), kPhrase.size());
    for (std::size_t n = 0; n < std::size(kPrefixHashes); ++n) {
      EXPECT_EQ(HashText(std::string_view(buf.data() + offset, n)), kPrefixHashes[n])
          << "offset " << offset << " length " << n;
    }
  }
}

struct TextVector {
  std::string_view text;
  std::size_t bytes;  // guards against a non-UTF-8 execution character set
  std::int64_t hash;
};

// SELECT t, octet_length(t), hashtextextended(t, 0) FROM unnest(ARRAY['', 'a', 'abc',
//   'héllo', '日本語', 'Zürich 🚴', 'alice@example.com']) t;   (database encoding UTF8)
constexpr TextVector kTextVectors[] = {
    {"", 0, -6939563903564495251},
    {"a", 1, 3591986179850072241},
    {"abc", 3, -6747756470228489321},
    {"h\xc3\xa9llo", 6, 2465157995015290115},                               // héllo
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, 2870829529307104068},       // 日本語
    {"Z\xc3\xbcrich \xf0\x9f\x9a\xb4", 12, -5622463742427061508},          // Zürich 🚴
    {"alice@example.com", 17, -4418616537726101056},
};

TEST(HashText, MatchesPostgresKnownAnswers) {
  for (const auto& v : kTextVectors) {
    ASSERT_EQ(v.text.size(), v.bytes) << v.text;
    EXPECT_EQ(HashText(v.text), v.hash) << "hashtextextended('" << v.text << "', 0)";
    EXPECT_EQ(ShardKey(v.text).Hash(), v.hash) << v.text;
  }
  EXPECT_EQ(HashText("héllo"), HashText("h\xc3\xa9llo"));  // the source is UTF-8
}

std::string Repeat(std::string_view s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out;
}

TEST(HashText, MatchesPostgresForTextsOverOneKibibyte) {
  // SELECT octet_length(repeat('shardline', 200)), hashtextextended(repeat('shardline', 200), 0);
  const std::string long1 = Repeat("shardline", 200);
  ASSERT_EQ(long1.size(), 1800u);
  EXPECT_EQ(HashText(long1), 3210051950992722492);
  // SELECT hashtextextended(repeat('0123456789abcdef', 64) || 'xyz', 0);   -- 1027 bytes
  const std::string long2 = Repeat("0123456789abcdef", 64) + "xyz";
  ASSERT_EQ(long2.size(), 1027u);
  EXPECT_EQ(HashText(long2), 147896168863275703);
}

TEST(HashText, EmbeddedNulBytesAreHashed) {
  // text cannot hold NUL in PostgreSQL, but the port hashes exactly the bytes it is given.
  EXPECT_NE(HashText(std::string_view("a\0b", 3)), HashText("ab"));
}

struct UuidVector {
  std::string_view text;
  std::int64_t hash;
};

// SELECT u, uuid_hash_extended(u, 0) FROM unnest(ARRAY['00000000-0000-0000-0000-000000000000',
//   'ffffffff-ffff-ffff-ffff-ffffffffffff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
//   '123e4567-e89b-12d3-a456-426614174000', '6ba7b810-9dad-11d1-80b4-00c04fd430c8']::uuid[]) u;
constexpr UuidVector kUuidVectors[] = {
    {"00000000-0000-0000-0000-000000000000", -6859010066814654381},
    {"ffffffff-ffff-ffff-ffff-ffffffffffff", 293445543803463785},
    {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 7543054272012930821},
    {"123e4567-e89b-12d3-a456-426614174000", -1647950126005018481},
    {"6ba7b810-9dad-11d1-80b4-00c04fd430c8", -7660212938568749411},
};

TEST(HashUuid, MatchesPostgresKnownAnswers) {
  for (const auto& v : kUuidVectors) {
    const Uuid u = ParseOrDie(v.text);
    EXPECT_EQ(HashUuid(u), v.hash) << "uuid_hash_extended('" << v.text << "', 0)";
    EXPECT_EQ(ShardKey(u).Hash(), v.hash) << v.text;
    EXPECT_EQ(u.ToString(), v.text);
  }
}

TEST(HashBytesExtended, LowHalfIsPostgresThirtyTwoBitHash) {
  // With seed 0 the extended hashes keep the classic 32-bit hash as their low half:
  // SELECT hashtext('abc'), hashint8(1), uuid_hash('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
  EXPECT_EQ(static_cast<std::int32_t>(HashText("abc")), -785388649);
  EXPECT_EQ(static_cast<std::int32_t>(HashInt8(1)), -1905060026);
  EXPECT_EQ(static_cast<std::int32_t>(HashUuid(ParseOrDie("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))),
            1154666245);
}

TEST(HashBytesExtended, NonZeroSeedMatchesPostgres) {
  // SELECT hashtextextended('abc', 42), hashtextextended('abc', -1);
  const auto* abc = reinterpret_cast<const std::uint8_t*>("abc");
  EXPECT_EQ(HashBytesExtended(abc, 3, 42), 4423357919252764502);
  EXPECT_EQ(HashBytesExtended(abc, 3, ~std::uint64_t{0}), 1911237551546830967);
  EXPECT_EQ(HashBytesExtended(abc, 3, 0), HashText("abc"));
}

TEST(HashBytesExtended, EmptyInputNeedsNoPointer) {
  EXPECT_EQ(HashBytesExtended(nullptr, 0, 0), -6939563903564495251);  // hashtextextended('', 0)
}

TEST(Hash, HashingAllocatesNothing) {
#ifdef SHARDLINE_SANITIZED
  GTEST_SKIP() << "allocations are not counted under a sanitizer (see alloc_counter.h)";
#endif
  const std::string long_text = Repeat("shardline", 200);
  const Uuid u = ParseOrDie("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  const ShardKey keys[] = {ShardKey(kInt64Min), ShardKey(std::string_view(long_text)),
                           ShardKey(u)};
  volatile std::int64_t sink = 0;  // volatile: the calls cannot be optimised away
  const long before = ::shardline::testing::AllocationCount();
  for (int i = 0; i < 1000; ++i) {
    sink = sink ^ HashInt8(i) ^ HashText(long_text) ^ HashUuid(u);
    for (const auto& k : keys) sink = sink ^ k.Hash();
  }
  const long after = ::shardline::testing::AllocationCount();
  EXPECT_EQ(after - before, 0);
}

TEST(UuidParse, AcceptsEveryFormPostgresAccepts) {
  // Each of these is accepted by PostgreSQL 15 ('...'::uuid) as a0eebc99-9c0b-4ef8-bb6d-...
  const Uuid want = ParseOrDie("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  for (std::string_view text : {
           "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
           "a0eebc999c0b4ef8bb6d6bb9bd380a11",
           "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
           "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
           "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
       }) {
    auto u = Uuid::Parse(text);
    ASSERT_TRUE(u.ok()) << text << ": " << u.status();
    EXPECT_EQ(*u, want) << text;
  }
}

TEST(UuidParse, RejectsWhatPostgresRejectsNamingTheText) {
  // Each of these makes PostgreSQL 15 raise "invalid input syntax for type uuid".
  for (std::string_view text : {
           "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",  // trailing hyphen
           "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  // unclosed brace
           "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",  // unopened brace
           "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",    // 31 digits
           "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",  // 33 digits
           "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",   // not hex
           "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  // hyphen inside a group of four
           "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  // leading hyphen
           "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",  // double hyphen
           " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",  // whitespace
           "",
           "{}",
           "{",
       }) {
    EXPECT_THAT(Uuid::Parse(text).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(std::string(text)), HasSubstr("not a valid uuid"))))
        << "[" << text << "]";
  }
}

TEST(HashKeyText, HashesEachKeyTypeLikeTheServer) {
  auto big = HashKeyText(KeyType::kBigint, "-9223372036854775808");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(*big, -9109110466470504941);
  auto text = HashKeyText(KeyType::kText, "abc");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, -6747756470228489321);
  auto uuid = HashKeyText(KeyType::kUuid, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}");
  ASSERT_TRUE(uuid.ok()) << uuid.status();
  EXPECT_EQ(*uuid, 7543054272012930821);
}

TEST(HashKeyText, BadBigintNamesTheKeyAndType) {
  for (std::string_view text : {"12x", "", "9223372036854775808", "0x10", "1.5"}) {
    EXPECT_THAT(HashKeyText(KeyType::kBigint, text).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("key '" + std::string(text) + "'"),
                               HasSubstr("not a valid bigint"))))
        << "[" << text << "]";
  }
}

TEST(HashKeyText, BadUuidNamesTheKey) {
  EXPECT_THAT(HashKeyText(KeyType::kUuid, "not-a-uuid").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'not-a-uuid'"), HasSubstr("not a valid uuid"))));
}

}  // namespace
}  // namespace shardline
