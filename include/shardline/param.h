// Typed statement parameters. Values always travel to the server as parameters of the extended
// query protocol, never spliced into SQL text.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "shardline/key.h"

namespace shardline {

// Raw bytes for a bytea parameter (borrowed).
struct Bytes {
  std::string_view data;
};

// One parameter value. Numbers are formatted into an inline buffer (no allocation); text and
// bytes are BORROWED from the caller unless constructed from an rvalue std::string, so the
// viewed characters must outlive the call they are passed to (temporaries in the argument list
// of Execute() do). Thread-compatible.
//
//   router->Execute(uid, "INSERT INTO t(user_id, note, raw) VALUES ($1, $2, $3)",
//                   {uid, note, Bytes{blob}});
class Param {
 public:
  enum class Kind { kNull, kInt64, kDouble, kBool, kText, kBytes };

  static Param Null() { return Param(); }
  template <std::integral T>
  Param(T v) : Param(Kind::kInt64, static_cast<std::int64_t>(v)) {}  // NOLINT
  Param(bool v);                                                    // NOLINT
  Param(double v);                                                  // NOLINT
  Param(std::string_view text) : kind_(Kind::kText), view_(text) {}  // NOLINT
  Param(const char* text) : Param(std::string_view(text)) {}        // NOLINT
  Param(const std::string& text) : Param(std::string_view(text)) {}  // NOLINT
  Param(std::string&& text);                                         // NOLINT (owns)
  Param(Bytes bytes) : kind_(Kind::kBytes), view_(bytes.data) {}     // NOLINT
  Param(const Uuid& uuid);                                           // NOLINT (text form, inline)

  Param(const Param& other);
  Param& operator=(const Param& other);
  Param(Param&& other) noexcept;
  Param& operator=(Param&& other) noexcept;
  ~Param() = default;

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  // The wire value: text form for everything but kBytes (raw bytes, binary format).
  std::string_view value() const { return view_; }
  bool binary() const { return kind_ == Kind::kBytes; }

 private:
  Param() = default;
  Param(Kind kind, std::int64_t v);
  void SetInline(std::string_view s);
  void Rebind(const Param& other);

  Kind kind_ = Kind::kNull;
  std::string_view view_;  // points into inline_, owned_, or caller memory
  char inline_[40] = {};
  std::string owned_;
};

}  // namespace shardline
