#pragma once
// A small strict JSON value parser for configuration values that reference implementations store as
// JSON text (Hugging Face `rope_scaling`, and integers, numbers, booleans and null in the string
// metadata of a conformance case). RFC 8259: objects (duplicate keys rejected), arrays, strings with
// all escapes (lone surrogates rejected), numbers, true/false/null; nesting limited to 32 levels.
//
//   JsonValue v = parse_json(R"({"rope_type": "llama3", "factor": 8.0})", "rope_scaling");
//   v.find("factor")->number   // 8.0
//
// Errors throw eigenformer::Error (ErrorKind::config) naming `where` and the byte position.

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace eigenformer {
namespace conformance {

struct JsonValue {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  double number = 0.0;
  std::string text;  ///< string value; for numbers the literal text
  std::vector<JsonValue> items;                             ///< array elements
  std::vector<std::pair<std::string, JsonValue>> members;  ///< object members in file order

  bool is_null() const noexcept { return kind == Kind::null; }
  /// A number written without fraction or exponent (e.g. `32`).
  bool is_integer_literal() const noexcept {
    return kind == Kind::number && text.find_first_of(".eE") == std::string::npos;
  }
  /// The member `key` of an object, or nullptr.
  const JsonValue* find(std::string_view key) const {
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }
};

inline const char* json_kind_name(JsonValue::Kind k) noexcept {
  switch (k) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return "a boolean";
    case JsonValue::Kind::number: return "a number";
    case JsonValue::Kind::string: return "a string";
    case JsonValue::Kind::array: return "an array";
    case JsonValue::Kind::object: return "an object";
  }
  return "?";
}

namespace detail {

class JsonParser {
 public:
  JsonParser(std::string_view s, std::string_view where) : s_(s), where_(where) {}

  JsonValue document() {
    JsonValue v = value(0);
    ws();
    if (i_ != s_.size()) error("unexpected text after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 32;

  template <class... A>
  [[noreturn]] void error(const A&... a) const {
    fail(ErrorKind::config, where_, "invalid JSON at byte ", i_, ": ", a...);
  }
  void ws() noexcept {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool at(char c) const noexcept { return i_ < s_.size() && s_[i_] == c; }
  bool digit() const noexcept { return i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9'; }

  JsonValue value(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than ", kMaxDepth, " levels");
    ws();
    if (i_ >= s_.size()) error("expected a value, found the end of the text");
    JsonValue v;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = JsonValue::Kind::object;
      ++i_;
      ws();
      if (at('}')) {
        ++i_;
        return v;
      }
      for (;;) {
        ws();
        if (!at('"')) error("expected a string key");
        std::string key = string();
        for (const auto& m : v.members)
          if (m.first == key) error("duplicate key \"", key, "\"");
        ws();
        if (!at(':')) error("expected ':' after key \"", key, "\"");
        ++i_;
        JsonValue member = value(depth + 1);
        v.members.emplace_back(std::move(key), std::move(member));
        ws();
        if (at(',')) {
          ++i_;
          continue;
        }
        if (at('}')) {
          ++i_;
          return v;
        }
        error("expected ',' or '}' in an object");
      }
    }
    if (c == '[') {
      v.kind = JsonValue::Kind::array;
      ++i_;
      ws();
      if (at(']')) {
        ++i_;
        return v;
      }
      for (;;) {
        v.items.push_back(value(depth + 1));
        ws();
        if (at(',')) {
          ++i_;
          continue;
        }
        if (at(']')) {
          ++i_;
          return v;
        }
        error("expected ',' or ']' in an array");
      }
    }
    if (c == '"') {
      v.kind = JsonValue::Kind::string;
      v.text = string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Kind::number;
      const std::size_t start = i_;
      if (at('-')) ++i_;
      if (!digit()) error("invalid number");
      if (at('0')) {
        ++i_;
      } else {
        while (digit()) ++i_;
      }
      if (at('.')) {
        ++i_;
        if (!digit()) error("invalid number: no digits after '.'");
        while (digit()) ++i_;
      }
      if (at('e') || at('E')) {
        ++i_;
        if (at('+') || at('-')) ++i_;
        if (!digit()) error("invalid number: no digits in the exponent");
        while (digit()) ++i_;
      }
      v.text = std::string(s_.substr(start, i_ - start));
      errno = 0;
      v.number = std::strtod(v.text.c_str(), nullptr);
      if (!std::isfinite(v.number)) error("number ", v.text, " is out of range");
      return v;
    }
    for (const char* word : {"true", "false", "null"}) {
      const std::string_view w(word);
      if (s_.substr(i_, w.size()) == w) {
        i_ += w.size();
        if (w == "null") {
          v.kind = JsonValue::Kind::null;
        } else {
          v.kind = JsonValue::Kind::boolean;
          v.boolean = w == "true";
        }
        return v;
      }
    }
    error("expected a value");
  }

  std::uint32_t hex4() {
    if (s_.size() - i_ < 4) error("truncated \\u escape");
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      std::uint32_t d = 0;
      if (c >= '0' && c <= '9') d = static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<std::uint32_t>(c - 'A' + 10);
      else error("invalid \\u escape");
      v = v * 16 + d;
    }
    return v;
  }

  static void utf8(std::string& out, std::uint32_t cp) {
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

  std::string string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) error("unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) error("unescaped control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        ++i_;
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) error("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) error("lone low surrogate");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!(at('\\') && i_ + 1 < s_.size() && s_[i_ + 1] == 'u')) error("lone high surrogate");
            i_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) error("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          utf8(out, cp);
          break;
        }
        default: error("invalid escape sequence");
      }
    }
  }

  std::string_view s_;
  std::string_view where_;
  std::size_t i_ = 0;
};

}  // namespace detail

/// Parses one JSON value (surrounding whitespace allowed). Throws ErrorKind::config naming `where`.
inline JsonValue parse_json(std::string_view text, std::string_view where) {
  return detail::JsonParser(text, where).document();
}

}  // namespace conformance
}  // namespace eigenformer
