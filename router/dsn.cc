// DSN printing without passwords (after userver's DsnCutPassword): libpq parses the string, so
// every form it accepts (key=value, URIs, quoted values) is handled the way libpq reads it.
#include "shardline/dsn.h"

#include <libpq-fe.h>

#include <memory>

#include <fmt/format.h>

namespace shardline {
namespace {

// Quotes a key=value value when it needs it, escaping \ and ' as libpq expects.
std::string QuoteValue(std::string_view v) {
  bool plain = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '\'' || c == '\\' || c == '\t' || c == '\n') plain = false;
  }
  if (plain) return std::string(v);
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

}  // namespace

std::string DsnWithoutPassword(std::string_view dsn) {
  std::string dsn_str(dsn);
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn_str.c_str(), &err);
  if (err) PQfreemem(err);
  if (opts == nullptr) return "<unparseable connection string>";
  std::unique_ptr<PQconninfoOption, void (*)(PQconninfoOption*)> guard(opts, PQconninfoFree);
  std::string out;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view key = o->keyword;
    if (!out.empty()) out += ' ';
    if (key == "password") {
      out += fmt::format("{}=********", key);
    } else {
      out += fmt::format("{}={}", key, QuoteValue(o->val));
    }
  }
  return out;
}

}  // namespace shardline
