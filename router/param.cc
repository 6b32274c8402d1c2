// Param (include/shardline/param.h): numbers, booleans and uuids formatted into the inline
// buffer without allocating; copies and moves re-point the view into the new object's own
// storage when it pointed into the source's.
#include "shardline/param.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <utility>

namespace shardline {

Param::Param(Kind kind, std::int64_t v) : kind_(kind) {
  auto [end, ec] = std::to_chars(inline_, inline_ + sizeof(inline_), v);
  (void)ec;  // 20 characters at most: always fits
  view_ = std::string_view(inline_, end - inline_);
}

Param::Param(bool v) : kind_(Kind::kBool) { SetInline(v ? "t" : "f"); }

Param::Param(double v) : kind_(Kind::kDouble) {
  // The spellings float8in accepts for the non-finite values.
  if (std::isnan(v)) {
    SetInline("NaN");
  } else if (std::isinf(v)) {
    SetInline(v > 0 ? "Infinity" : "-Infinity");
  } else {
    // Shortest text that reads back as the same double (at most 24 characters).
    auto [end, ec] = std::to_chars(inline_, inline_ + sizeof(inline_), v);
    (void)ec;
    view_ = std::string_view(inline_, end - inline_);
  }
}

Param::Param(std::string&& text) : kind_(Kind::kText), owned_(std::move(text)) {
  view_ = owned_;
}

Param::Param(const Uuid& uuid) : kind_(Kind::kText) {
  static constexpr char kHex[] = "0123456789abcdef";
  char* p = inline_;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = kHex[uuid.bytes[i] >> 4];
    *p++ = kHex[uuid.bytes[i] & 0xf];
  }
  view_ = std::string_view(inline_, p - inline_);  // 36 characters
}

void Param::SetInline(std::string_view s) {
  std::memcpy(inline_, s.data(), s.size());
  view_ = std::string_view(inline_, s.size());
}

// Called after kind_, inline_ and owned_ were copied or moved from `other` (whose view_ and
// buffers must still be as they were before the move: see the move operations).
void Param::Rebind(const Param& other) {
  // The view always starts at the beginning of the buffer it points into, so equality of the
  // start pointers is enough (and well-defined, unlike ordering unrelated pointers).
  if (other.view_.data() == other.inline_) {
    view_ = std::string_view(inline_, other.view_.size());
  } else if (other.view_.data() == other.owned_.data()) {
    view_ = owned_;
  } else {
    view_ = other.view_;  // borrowed caller memory (or empty)
  }
}

Param::Param(const Param& other)
    : kind_(other.kind_), owned_(other.owned_) {
  std::memcpy(inline_, other.inline_, sizeof(inline_));
  Rebind(other);
}

Param& Param::operator=(const Param& other) {
  if (this == &other) return *this;
  kind_ = other.kind_;
  std::memcpy(inline_, other.inline_, sizeof(inline_));
  owned_ = other.owned_;
  Rebind(other);
  return *this;
}

Param::Param(Param&& other) noexcept { *this = std::move(other); }

Param& Param::operator=(Param&& other) noexcept {
  if (this == &other) return *this;
  kind_ = other.kind_;
  std::memcpy(inline_, other.inline_, sizeof(inline_));
  const bool was_owned = other.view_.data() == other.owned_.data();
  if (was_owned) {
    owned_ = std::move(other.owned_);
    view_ = owned_;
    other.kind_ = Kind::kNull;
    other.view_ = {};
    other.owned_.clear();
  } else {
    owned_.clear();
    Rebind(other);
  }
  return *this;
}

}  // namespace shardline
