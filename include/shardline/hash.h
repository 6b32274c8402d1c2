// PostgreSQL's extended hash functions with seed 0, bit-exact, so that the client and every
// server agree on which hash range a key falls into. See router/hash.cc for the algorithm.
#pragma once

#include <cstdint>
#include <string_view>

#include "shardline/key.h"

namespace shardline {

// hashint8extended(k, 0). Note PostgreSQL folds a bigint to 32 bits first (k ^ k >> 32 with
// the sign folded), so 1 and 4294967296 hash alike: the port reproduces that.
std::int64_t HashInt8(std::int64_t k);
// hashtextextended(t, 0) for a deterministic-collation text; `t` is the raw UTF-8 bytes.
std::int64_t HashText(std::string_view t);
// uuid_hash_extended(u, 0).
std::int64_t HashUuid(const Uuid& u);
// hash_bytes_extended(bytes, len, 0): the primitive under all three (PostgreSQL's
// hash_any_extended, Bob Jenkins' lookup3 with a 64-bit result).
std::int64_t HashBytesExtended(const std::uint8_t* bytes, std::size_t len, std::uint64_t seed);

}  // namespace shardline
