// Shard map differences by hash coverage: see map_diff.h.
#include "map_diff.h"

#include <algorithm>

namespace shardline::migrate {
namespace {

void Append(std::vector<HashStretchChange>& out, std::int64_t lo, std::int64_t hi,
            const std::string& from, const std::string& to) {
  if (!out.empty() && out.back().hi != kMaxHash && out.back().hi + 1 == lo &&
      out.back().from == from && out.back().to == to) {
    out.back().hi = hi;
    return;
  }
  out.push_back({lo, hi, from, to});
}

std::vector<std::string> NodeFieldChanges(const NodeConfig& a, const NodeConfig& b) {
  std::vector<std::string> what;
  if (a.dsn != b.dsn) what.push_back("dsn");
  if (a.admin_dsn != b.admin_dsn) what.push_back("admin_dsn");
  if (a.pooler != b.pooler) what.push_back("pooler");
  if (a.pool_min != b.pool_min) what.push_back("pool_min");
  if (a.pool_max != b.pool_max) what.push_back("pool_max");
  if (a.replicas != b.replicas) what.push_back("replicas");
  return what;
}

std::vector<std::string> TableFieldChanges(const TableConfig& a, const TableConfig& b) {
  std::vector<std::string> what;
  if (a.key != b.key) what.push_back("key");
  if (a.primary_key != b.primary_key) what.push_back("primary_key");
  if (a.reference != b.reference) what.push_back("reference");
  return what;
}

// Added / removed / changed elements by name; `find` looks a name up in the other map.
template <typename T, typename FindFn, typename FieldsFn>
void DiffNamed(const std::vector<T>& a, const std::vector<T>& b, FindFn find_in, FieldsFn fields,
               std::vector<std::string>& added, std::vector<std::string>& removed,
               std::vector<ElementChange>& changed) {
  for (const T& x : a) {
    const T* y = find_in(b, x.name);
    if (y == nullptr) {
      removed.push_back(x.name);
    } else if (std::vector<std::string> what = fields(x, *y); !what.empty()) {
      changed.push_back({x.name, std::move(what)});
    }
  }
  for (const T& y : b) {
    if (find_in(a, y.name) == nullptr) added.push_back(y.name);
  }
}

template <typename T>
const T* FindByName(const std::vector<T>& v, const std::string& name) {
  auto it = std::find_if(v.begin(), v.end(), [&](const T& x) { return x.name == name; });
  return it == v.end() ? nullptr : &*it;
}

}  // namespace

bool MapDiff::Empty() const {
  return !key_type_changed && owner_changes.empty() && read_changes.empty() &&
         nodes_added.empty() && nodes_removed.empty() && nodes_changed.empty() &&
         tables_added.empty() && tables_removed.empty() && tables_changed.empty();
}

double HashShare(std::int64_t lo, std::int64_t hi) {
  if (hi < lo) return 0.0;
  // long double holds every int64 exactly (64-bit mantissa on x86), so hi - lo + 1 is exact.
  const long double width = static_cast<long double>(hi) - static_cast<long double>(lo) + 1.0L;
  return static_cast<double>(width / 18446744073709551616.0L);
}

double HashShare(const std::vector<HashStretchChange>& changes) {
  long double total = 0;
  for (const HashStretchChange& c : changes) total += HashShare(c.lo, c.hi);
  return static_cast<double>(total);
}

MapDiff DiffMaps(const ShardMap& a, const ShardMap& b) {
  MapDiff d;
  d.version_a = a.version();
  d.version_b = b.version();
  d.key_type_a = a.key_type();
  d.key_type_b = b.key_type();
  d.key_type_changed = a.key_type() != b.key_type();

  // One sweep over the union of both maps' boundaries: each step is the largest stretch
  // starting at `lo` inside one range of each map.
  const std::vector<RangeConfig>& ra = a.ranges();
  const std::vector<RangeConfig>& rb = b.ranges();
  std::size_t i = 0;
  std::size_t j = 0;
  std::int64_t lo = kMinHash;
  while (i < ra.size() && j < rb.size()) {
    const std::int64_t hi = std::min(ra[i].hi, rb[j].hi);
    const std::string& owner_a = a.nodes()[a.OwnerNodeIndex(i)].name;
    const std::string& owner_b = b.nodes()[b.OwnerNodeIndex(j)].name;
    if (owner_a != owner_b) Append(d.owner_changes, lo, hi, owner_a, owner_b);
    const std::string& reader_a = a.nodes()[a.ReadNodeIndex(i)].name;
    const std::string& reader_b = b.nodes()[b.ReadNodeIndex(j)].name;
    // Where neither side has switched reads, the read node is the owner: already listed.
    const bool switched = reader_a != owner_a || reader_b != owner_b;
    if (reader_a != reader_b && switched) Append(d.read_changes, lo, hi, reader_a, reader_b);
    if (hi == kMaxHash) break;
    lo = hi + 1;
    if (ra[i].hi == hi) ++i;
    if (rb[j].hi == hi) ++j;
  }

  DiffNamed(a.nodes(), b.nodes(), FindByName<NodeConfig>, NodeFieldChanges, d.nodes_added,
            d.nodes_removed, d.nodes_changed);
  DiffNamed(a.tables(), b.tables(), FindByName<TableConfig>, TableFieldChanges, d.tables_added,
            d.tables_removed, d.tables_changed);
  return d;
}

}  // namespace shardline::migrate
