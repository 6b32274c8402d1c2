// Unit tests of Param (include/shardline/param.h): wire formatting of each type, and copies and
// moves that keep the value valid after the source changes or is destroyed.
#include "shardline/param.h"

#include <charconv>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardline {
namespace {

double ReadBack(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  EXPECT_EQ(ec, std::errc()) << s;
  EXPECT_EQ(end, s.data() + s.size()) << s;
  return v;
}

TEST(Param, FormatsIntegersOfEveryWidth) {
  EXPECT_EQ(Param(0).value(), "0");
  EXPECT_EQ(Param(-42).value(), "-42");
  EXPECT_EQ(Param(std::int64_t{9223372036854775807}).value(), "9223372036854775807");
  EXPECT_EQ(Param(std::numeric_limits<std::int64_t>::min()).value(), "-9223372036854775808");
  EXPECT_EQ(Param(std::uint16_t{65535}).value(), "65535");
  EXPECT_EQ(Param(7).kind(), Param::Kind::kInt64);
  EXPECT_FALSE(Param(7).binary());
}

TEST(Param, FormatsBoolAsTOrF) {
  EXPECT_EQ(Param(true).value(), "t");
  EXPECT_EQ(Param(false).value(), "f");
  EXPECT_EQ(Param(true).kind(), Param::Kind::kBool);
}

TEST(Param, FormatsDoublesShortestAndRoundTrippable) {
  EXPECT_EQ(Param(0.1).value(), "0.1");
  EXPECT_EQ(Param(2.5).value(), "2.5");
  EXPECT_EQ(Param(-0.0).value(), "-0");
  EXPECT_EQ(Param(1e300).value(), "1e+300");
  EXPECT_EQ(Param(std::numeric_limits<double>::infinity()).value(), "Infinity");
  EXPECT_EQ(Param(-std::numeric_limits<double>::infinity()).value(), "-Infinity");
  EXPECT_EQ(Param(std::numeric_limits<double>::quiet_NaN()).value(), "NaN");
  EXPECT_EQ(Param(1.5f).kind(), Param::Kind::kDouble);
  for (double v : {0.1 + 0.2, 1.0 / 3, std::numeric_limits<double>::max(),
                   std::numeric_limits<double>::denorm_min(), -123456.789e-200}) {
    Param p(v);
    EXPECT_EQ(ReadBack(p.value()), v) << p.value();
    EXPECT_LE(p.value().size(), 24u);
  }
}

TEST(Param, NullHasNoValue) {
  Param p = Param::Null();
  EXPECT_TRUE(p.is_null());
  EXPECT_EQ(p.kind(), Param::Kind::kNull);
  EXPECT_TRUE(p.value().empty());
  Param copy = p;
  EXPECT_TRUE(copy.is_null());
}

TEST(Param, FormatsUuidInCanonicalText) {
  auto u = Uuid::Parse("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11");
  ASSERT_TRUE(u.ok()) << u.status();
  Param p(*u);
  EXPECT_EQ(p.value(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_EQ(p.value(), u->ToString());
  EXPECT_EQ(p.kind(), Param::Kind::kText);
}

TEST(Param, BorrowsTextAndBytes) {
  std::string note = "hello";
  Param p(note);
  EXPECT_EQ(p.value().data(), note.data());  // borrowed, not copied
  const char raw[] = {'\0', '\x01', '\xff'};
  Param b(Bytes{std::string_view(raw, 3)});
  EXPECT_TRUE(b.binary());
  EXPECT_EQ(b.kind(), Param::Kind::kBytes);
  EXPECT_EQ(b.value(), std::string_view(raw, 3));
  Param lit("literal");
  EXPECT_EQ(lit.value(), "literal");
}

TEST(Param, OwnsRvalueStrings) {
  Param p(std::string("a temporary that is long enough to live on the heap ............"));
  Param small(std::string("sso"));  // short: lives inside the string object itself
  EXPECT_EQ(p.value(), "a temporary that is long enough to live on the heap ............");
  EXPECT_EQ(small.value(), "sso");
  std::string s = "moved in";
  Param q(std::move(s));
  s = "changed";  // the source string is no longer referenced
  EXPECT_EQ(q.value(), "moved in");
}

// Every kind of storage (inline number, owned short and long string, borrowed text, null).
std::vector<std::pair<Param, std::string>> Samples(const std::string& borrowed) {
  std::vector<std::pair<Param, std::string>> v;
  v.emplace_back(Param(1234567), "1234567");
  v.emplace_back(Param(0.25), "0.25");
  v.emplace_back(Param(true), "t");
  v.emplace_back(Param(std::string("short")), "short");
  v.emplace_back(Param(std::string(100, 'x')), std::string(100, 'x'));
  v.emplace_back(Param(borrowed), borrowed);
  v.emplace_back(Param(std::string()), "");
  return v;
}

TEST(Param, CopiesStayValidAfterTheSourceIsDestroyed) {
  const std::string borrowed = "caller's text";
  for (auto& [orig, want] : Samples(borrowed)) {
    auto heap = std::make_unique<Param>(orig);
    const char* source_data = heap->value().data();
    Param copy(*heap);
    Param assigned = Param(0);
    assigned = *heap;
    heap.reset();  // destroy the source
    EXPECT_EQ(copy.value(), want);
    EXPECT_EQ(assigned.value(), want);
    EXPECT_EQ(copy.kind(), orig.kind());
    // Only borrowed text may still point where the source pointed.
    if (want != borrowed) {
      EXPECT_NE(copy.value().data(), source_data) << want;
      EXPECT_NE(assigned.value().data(), source_data) << want;
    } else {
      EXPECT_EQ(copy.value().data(), borrowed.data());
    }
  }
}

TEST(Param, MovesStayValidAfterTheSourceIsDestroyed) {
  const std::string borrowed = "caller's text";
  for (auto& [orig, want] : Samples(borrowed)) {
    auto heap = std::make_unique<Param>(orig);
    Param moved(std::move(*heap));
    heap.reset();
    EXPECT_EQ(moved.value(), want);

    auto heap2 = std::make_unique<Param>(orig);
    Param assigned = Param(std::string(50, 'y'));  // had owned storage of its own
    assigned = std::move(*heap2);
    heap2.reset();
    EXPECT_EQ(assigned.value(), want);
    EXPECT_EQ(assigned.kind(), orig.kind());
  }
}

TEST(Param, SurvivesVectorReallocation) {
  std::vector<Param> v;
  for (int i = 0; i < 100; ++i) {
    if (i % 2 == 0) {
      v.emplace_back(i);
    } else {
      v.emplace_back(std::string("s") + std::to_string(i));
    }
  }
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(v[i].value(), i % 2 == 0 ? std::to_string(i) : "s" + std::to_string(i));
  }
}

TEST(Param, SelfAssignmentKeepsTheValue) {
  Param p(std::string("self"));
  Param& alias = p;
  p = alias;
  EXPECT_EQ(p.value(), "self");
  p = std::move(alias);
  EXPECT_EQ(p.value(), "self");
}

TEST(Param, InitializerListOfMixedTypesKeepsEveryValue) {
  std::string note = "note";
  std::initializer_list<Param> params = {42, note, std::string("owned"), 1.5, false,
                                         Param::Null()};
  std::vector<Param> copy(params);
  ASSERT_EQ(copy.size(), 6u);
  EXPECT_EQ(copy[0].value(), "42");
  EXPECT_EQ(copy[1].value(), "note");
  EXPECT_EQ(copy[2].value(), "owned");
  EXPECT_EQ(copy[3].value(), "1.5");
  EXPECT_EQ(copy[4].value(), "f");
  EXPECT_TRUE(copy[5].is_null());
}

}  // namespace
}  // namespace shardline
