// Bit-exact ports of PostgreSQL 15's extended hash functions (hashint8extended,
// hashtextextended, uuid_hash_extended) and the two primitives under them,
// hash_bytes_extended and hash_bytes_uint32_extended (src/common/hashfn.c). They are Bob
// Jenkins' lookup3 (2006) with PostgreSQL's own initial state and tail layout, returning the
// final (b, c) pair as one 64-bit value. The code is written from the algorithm, not copied;
// each step says which part of PostgreSQL it reproduces. Everything here is pure arithmetic on
// the caller's bytes: no allocation, no locks, no state, so it is safe from any thread.
#include "shardline/hash.h"

#include <bit>
#include <cstdint>
#include <cstring>

namespace shardline {
namespace {

// PostgreSQL reads the key as native-order 32-bit words (its aligned path does `*(uint32*)`;
// its unaligned path assembles the same words byte by byte, per endianness), so the hash of
// a text or uuid depends on the server's byte order. Every server we target (x86_64, arm64)
// is little-endian; a big-endian client would need the mirrored tail layout below and would
// then agree only with big-endian servers. Refuse to build rather than silently disagree.
static_assert(std::endian::native == std::endian::little,
              "shardline's PostgreSQL hash port supports little-endian hosts only");

// lookup3's initial state: the golden ratio constant plus the key length, plus PostgreSQL's
// arbitrary extra constant 3923095 (Jenkins' original adds a caller-supplied initval here).
constexpr std::uint32_t kInitialState = 0x9e3779b9u + 3923095u;

// Reads 4 bytes at `p` as a native (little-endian) word. memcpy is the portable unaligned
// read: compilers turn it into a single load, and it avoids the aliasing and alignment UB of
// casting the pointer. PostgreSQL's aligned and unaligned paths yield this same value.
inline std::uint32_t Load32(const std::uint8_t* p) {
  std::uint32_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// lookup3 mix(): reversibly mixes three 32-bit words after each full 12-byte block. The
// rotation amounts (4, 6, 8, 16, 19, 4) are part of the definition.
inline void Mix(std::uint32_t& a, std::uint32_t& b, std::uint32_t& c) {
  a -= c; a ^= std::rotl(c, 4);  c += b;
  b -= a; b ^= std::rotl(a, 6);  a += c;
  c -= b; c ^= std::rotl(b, 8);  b += a;
  a -= c; a ^= std::rotl(c, 16); c += b;
  b -= a; b ^= std::rotl(a, 19); a += c;
  c -= b; c ^= std::rotl(b, 4);  b += a;
}

// lookup3 final(): the last, non-reversible avalanche of (a, b, c) into c (and b, which the
// extended variant also reports).
inline void Final(std::uint32_t& a, std::uint32_t& b, std::uint32_t& c) {
  c ^= b; c -= std::rotl(b, 14);
  a ^= c; a -= std::rotl(c, 11);
  b ^= a; b -= std::rotl(a, 25);
  c ^= b; c -= std::rotl(b, 16);
  a ^= c; a -= std::rotl(c, 4);
  b ^= a; b -= std::rotl(a, 14);
  c ^= b; c -= std::rotl(b, 24);
}

// A non-zero seed is hashed as if it were a leading 12-byte block: high half into a, low half
// into b, four zero bytes into c, then one mix. Seed 0 (ours) skips this entirely, which is
// why hash_*_extended(k, 0) keeps hash_*(k) as its low 32 bits.
inline void ApplySeed(std::uint64_t seed, std::uint32_t& a, std::uint32_t& b, std::uint32_t& c) {
  if (seed == 0) return;
  a += static_cast<std::uint32_t>(seed >> 32);
  b += static_cast<std::uint32_t>(seed);
  Mix(a, b, c);
}

// The extended functions report b in the high half and c in the low half.
inline std::uint64_t Combine(std::uint32_t b, std::uint32_t c) {
  return (static_cast<std::uint64_t>(b) << 32) | c;
}

// hash_bytes_uint32_extended(k, seed): the same value as hash_bytes_extended over the 4
// bytes of k in native order, with the 12-byte loop and tail switch folded away (a 4-byte key
// is just `a += k`).
std::uint64_t HashUint32Extended(std::uint32_t k, std::uint64_t seed) {
  std::uint32_t a, b, c;
  a = b = c = kInitialState + static_cast<std::uint32_t>(sizeof(k));
  ApplySeed(seed, a, b, c);
  a += k;
  Final(a, b, c);
  return Combine(b, c);
}

}  // namespace

std::int64_t HashBytesExtended(const std::uint8_t* k, std::size_t len, std::uint64_t seed) {
  // PostgreSQL passes the length as an int and keeps it in a uint32; its keys are at most
  // 1 GB (varlena limit), so the truncation below never changes a value it can produce.
  std::uint32_t a, b, c;
  a = b = c = kInitialState + static_cast<std::uint32_t>(len);
  ApplySeed(seed, a, b, c);

  // Every full 12-byte block goes in as three little-endian words, then one mix.
  while (len >= 12) {
    a += Load32(k);
    b += Load32(k + 4);
    c += Load32(k + 8);
    Mix(a, b, c);
    k += 12;
    len -= 12;
  }

  // The last 0..11 bytes, little-endian within each word, except that c's lowest byte is
  // left free (Jenkins reserved it for the length; PostgreSQL keeps the gap but puts the
  // length in the initial state instead): bytes 8, 9, 10 land in c's bits 8..31. Each case
  // falls through to add the lower-numbered bytes.
  switch (len) {
    case 11:
      c += static_cast<std::uint32_t>(k[10]) << 24;
      [[fallthrough]];
    case 10:
      c += static_cast<std::uint32_t>(k[9]) << 16;
      [[fallthrough]];
    case 9:
      c += static_cast<std::uint32_t>(k[8]) << 8;
      [[fallthrough]];
    case 8:
      b += static_cast<std::uint32_t>(k[7]) << 24;
      [[fallthrough]];
    case 7:
      b += static_cast<std::uint32_t>(k[6]) << 16;
      [[fallthrough]];
    case 6:
      b += static_cast<std::uint32_t>(k[5]) << 8;
      [[fallthrough]];
    case 5:
      b += k[4];
      [[fallthrough]];
    case 4:
      a += static_cast<std::uint32_t>(k[3]) << 24;
      [[fallthrough]];
    case 3:
      a += static_cast<std::uint32_t>(k[2]) << 16;
      [[fallthrough]];
    case 2:
      a += static_cast<std::uint32_t>(k[1]) << 8;
      [[fallthrough]];
    case 1:
      a += k[0];
      break;
    default:  // 0: nothing left; final() still runs, as in PostgreSQL.
      break;
  }

  Final(a, b, c);
  // PostgreSQL returns uint64 and SQL shows it as bigint: the same bits, read as signed.
  return static_cast<std::int64_t>(Combine(b, c));
}

std::int64_t HashInt8(std::int64_t k) {
  // hashint8extended first folds the bigint to 32 bits so that equal int2/int4/int8 values
  // hash alike (cross-type hash joins): XOR the high half into the low half, complemented
  // for negative values so that e.g. -1 (all ones) folds to the same word as int4 -1.
  // Consequence: 1 and 4294967296 hash alike, and so do -2 and -4294967297.
  const auto u = static_cast<std::uint64_t>(k);
  auto lohalf = static_cast<std::uint32_t>(u);
  const auto hihalf = static_cast<std::uint32_t>(u >> 32);
  lohalf ^= (k >= 0) ? hihalf : ~hihalf;
  return static_cast<std::int64_t>(HashUint32Extended(lohalf, 0));
}

std::int64_t HashText(std::string_view t) {
  // hashtextextended under a deterministic collation (every libc collation and the default
  // one; nondeterministic ICU collations hash a sort key instead and are not supported):
  // hash_any_extended over the text's bytes, no terminator, no length header.
  return HashBytesExtended(reinterpret_cast<const std::uint8_t*>(t.data()), t.size(), 0);
}

std::int64_t HashUuid(const Uuid& u) {
  // uuid_hash_extended: hash_any_extended over the 16 bytes in storage (network) order.
  return HashBytesExtended(u.bytes.data(), u.bytes.size(), 0);
}

}  // namespace shardline
