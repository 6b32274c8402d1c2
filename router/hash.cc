// PLACEHOLDER: being written (bit-exact PostgreSQL extended hashes).
#include "shardline/hash.h"
namespace shardline {
std::int64_t HashBytesExtended(const std::uint8_t*, std::size_t, std::uint64_t) { return 0; }
std::int64_t HashInt8(std::int64_t) { return 0; }
std::int64_t HashText(std::string_view) { return 0; }
std::int64_t HashUuid(const Uuid&) { return 0; }
}  // namespace shardline
