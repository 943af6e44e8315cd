#pragma once
// Strict JSON (RFC 8259), the library's one parser: a pull Reader that validates untrusted text
// with precise messages (the safetensors header), a DOM Value built on it by parse() (configuration
// values such as Hugging Face `rope_scaling`), and the UTF-8, quoting and escaping helpers that
// readers and writers of JSON need.
//
// Accepted: objects, arrays, strings with every escape (\uXXXX incl. surrogate pairs; lone
// surrogates are rejected), numbers -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?, true, false, null,
// separated by JSON whitespace (space, tab, LF, CR). Strings must be valid UTF-8 and hold no raw
// control characters. Objects with a repeated key (after decoding escapes) are rejected by
// skip_value(), value() and parse(); containers nest at most `max_depth` deep (64 by default).
//
// Every error throws eigenformer::Error of the ErrorKind the caller chose, with the caller's
// `where`, the byte position and, when given, a context label:
//   "invalid JSON at byte 12: expected ':' after key 'a', found '}'"
//   "invalid JSON in header at byte 3: unterminated string"        (context "header")
//
//   json::Value v = json::parse(R"({"rope_type": "llama3", "factor": 8.0})", "rope_scaling",
//                               ErrorKind::config);
//   v.find("factor")->number   // 8.0
//
//   json::Reader r(text, "model.safetensors", ErrorKind::format, "header");  // pull parsing
//   r.begin_object();
//   bool first = true;
//   std::string key;
//   while (r.next_member(first, key)) { ... r.peek(), r.string(), r.number(), r.skip_value() ... }
//   r.finish();

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "error.hpp"

namespace eigenformer {
namespace json {

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);
inline constexpr int kDefaultMaxDepth = 64;

// ------------------------------------------------------------------------------------------------
// UTF-8, quoting and escaping
// ------------------------------------------------------------------------------------------------

/// "0x1f"
inline std::string hex_byte(unsigned char c) {
  static const char digits[] = "0123456789abcdef";
  std::string s = "0x";
  s += digits[c >> 4];
  s += digits[c & 15];
  return s;
}

/// The length (1 to 4) of the well-formed UTF-8 sequence that starts `s` (n >= 1 bytes), or 0 when
/// it starts none (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
inline std::size_t utf8_sequence_length(const unsigned char* s, std::size_t n) noexcept {
  const unsigned c = s[0];
  if (c < 0x80) return 1;
  std::size_t len;
  unsigned lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;       // overlong
    else if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;       // overlong
    else if (c == 0xf4) hi = 0x8f;  // > U+10FFFF
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (std::size_t k = 2; k < len; ++k)
    if ((s[k] & 0xc0u) != 0x80u) return 0;
  return len;
}

/// Offset of the first byte that starts an invalid UTF-8 sequence, or npos.
inline std::size_t utf8_invalid_at(const unsigned char* s, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence_length(s + i, n - i);
    if (len == 0) return i;
    i += len;
  }
  return npos;
}

inline bool valid_utf8(std::string_view s) noexcept {
  return utf8_invalid_at(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == npos;
}

/// A name for an error message: 'name', control characters (and, in invalid UTF-8, all non-ASCII
/// bytes) escaped as \xNN, cut after `max_len` bytes.
inline std::string quote(std::string_view s, std::size_t max_len = 120) {
  const bool utf8 = valid_utf8(s);
  std::size_t n = s.size();
  const bool cut = n > max_len;
  if (cut) {
    n = max_len;
    if (utf8)
      while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0u) == 0x80u) --n;
  }
  std::string out = "'";
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
      out += "\\x";
      out += hex_byte(c).substr(2);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (cut) out += "...";
  out += '\'';
  return out;
}

/// Appends code point `cp` (a Unicode scalar value) as UTF-8.
inline void append_utf8(std::string& out, std::uint32_t cp) {
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

/// Appends `s` as a JSON string literal (quotes included). `s` must be valid UTF-8.
inline void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex_byte(c).substr(2);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// ------------------------------------------------------------------------------------------------
// Values
// ------------------------------------------------------------------------------------------------

/// What a value is; Reader::peek() also reports `end` (no more text) and `invalid` (a character
/// that starts no value).
enum class Kind { null, boolean, number, string, array, object, end, invalid };

/// "a number", "an object", ... for messages.
inline const char* kind_name(Kind k) noexcept {
  switch (k) {
    case Kind::null: return "null";
    case Kind::boolean: return "a boolean";
    case Kind::number: return "a number";
    case Kind::string: return "a string";
    case Kind::array: return "an array";
    case Kind::object: return "an object";
    case Kind::end: return "the end of the text";
    case Kind::invalid: return "an invalid character";
  }
  return "?";
}

/// A parsed JSON value (never of kind end or invalid).
struct Value {
  using Kind = json::Kind;
  Kind kind = Kind::null;
  bool boolean = false;
  double number = 0.0;
  std::string text;                                    ///< string value; for numbers the literal text
  std::vector<Value> items;                            ///< array elements
  std::vector<std::pair<std::string, Value>> members;  ///< object members in text order

  bool is_null() const noexcept { return kind == Kind::null; }
  /// A number written without fraction or exponent (e.g. `32`).
  bool is_integer_literal() const noexcept {
    return kind == Kind::number && text.find_first_of(".eE") == std::string::npos;
  }
  /// The member `key` of an object, or nullptr.
  const Value* find(std::string_view key) const {
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }
};

// ------------------------------------------------------------------------------------------------
// Reader
// ------------------------------------------------------------------------------------------------

/// A strict pull parser over one JSON text. Errors throw Error(kind, where, ...) naming the byte
/// position within the text and, if non-empty, `context` ("invalid JSON in <context> at byte N").
/// The reader keeps views of `text`, `where` and `context`: they must outlive it.
class Reader {
 public:
  Reader(std::string_view text, std::string_view where, ErrorKind kind, std::string_view context = {},
         int max_depth = kDefaultMaxDepth)
      : s_(text), where_(where), context_(context), kind_(kind), max_depth_(max_depth) {}

  /// Throws "invalid JSON[ in <context>] at byte <pos>: <args...>".
  template <class... Args>
  [[noreturn]] void error_at(std::size_t pos, const Args&... args) const {
    if (context_.empty()) fail(kind_, where_, "invalid JSON at byte ", pos, ": ", args...);
    fail(kind_, where_, "invalid JSON in ", context_, " at byte ", pos, ": ", args...);
  }

  /// The kind of the next value (skips whitespace).
  Kind peek() {
    skip_ws();
    if (i_ >= s_.size()) return Kind::end;
    switch (s_[i_]) {
      case '{': return Kind::object;
      case '[': return Kind::array;
      case '"': return Kind::string;
      case 't':
      case 'f': return Kind::boolean;
      case 'n': return Kind::null;
      default: return s_[i_] == '-' || is_digit(s_[i_]) ? Kind::number : Kind::invalid;
    }
  }

  /// Byte position of the last key returned by next_member().
  std::size_t key_pos() const noexcept { return key_pos_; }

  void begin_object() { open('{', Kind::object); }
  void begin_array() { open('[', Kind::array); }

  /// Iterates the members of an object after begin_object(): `first` starts true; returns false
  /// (having consumed the '}') when the object ends, else reads the key and the ':'.
  bool next_member(bool& first, std::string& key) {
    skip_ws();
    if (first) {
      first = false;
      if (at('}')) return close();
    } else {
      if (at('}')) return close();
      if (!at(',')) error_at(i_, "expected ',' or '}' after an object member, found ", found());
      ++i_;
      skip_ws();
    }
    key_pos_ = i_;
    if (!at('"')) error_at(i_, "expected a string key, found ", found());
    key = string();
    skip_ws();
    if (!at(':')) error_at(i_, "expected ':' after key ", quote(key), ", found ", found());
    ++i_;
    return true;
  }

  /// Adds `key`, just returned by next_member(), to the keys `seen` so far in its object; a repeat
  /// throws "duplicate <what> 'key'" at the key's position.
  void record_key(std::set<std::string>& seen, const std::string& key, std::string_view what = "key") const {
    if (!seen.insert(key).second) error_at(key_pos_, "duplicate ", what, " ", quote(key));
  }

  /// Iterates the elements of an array after begin_array(): returns false (having consumed the
  /// ']') when the array ends; else the caller reads one value. ("[1,]" is caught by the
  /// caller's value parse, which finds ']'.)
  bool next_element(bool& first) {
    skip_ws();
    if (at(']')) return close();
    if (first) {
      first = false;
      return true;
    }
    if (!at(',')) error_at(i_, "expected ',' or ']' after an array element, found ", found());
    ++i_;
    return true;
  }

  /// A string value, escapes decoded (\uXXXX incl. surrogate pairs; lone surrogates rejected).
  std::string string() {
    skip_ws();
    if (!at('"')) error_at(i_, "expected a string, found ", found());
    started(Kind::string);
    ++i_;
    const auto* bytes = reinterpret_cast<const unsigned char*>(s_.data());
    std::string out;
    for (;;) {
      std::size_t run = i_;
      while (run < s_.size() && bytes[run] != '"' && bytes[run] != '\\' && bytes[run] >= 0x20) {
        if (bytes[run] < 0x80) {
          ++run;
          continue;
        }
        const std::size_t len = utf8_sequence_length(bytes + run, s_.size() - run);
        if (len == 0) error_at(run, "invalid UTF-8 byte ", hex_byte(bytes[run]), " in a string");
        run += len;
      }
      out.append(s_.data() + i_, run - i_);
      i_ = run;
      if (i_ >= s_.size()) error_at(i_, "unterminated string");
      const unsigned char c = bytes[i_];
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c != '\\') error_at(i_, "unescaped control character ", hex_byte(c), " in a string");
      escape(out);
    }
  }

  /// The text of a number value (grammar-checked: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?).
  std::string_view number() {
    skip_ws();
    started(Kind::number);
    const std::size_t start = i_;
    if (at('-')) ++i_;
    if (!digit_here()) error_at(start, "invalid number");
    if (at('0')) {
      ++i_;
    } else {
      while (digit_here()) ++i_;
    }
    if (at('.')) {
      ++i_;
      if (!digit_here()) error_at(start, "invalid number: no digits after '.'");
      while (digit_here()) ++i_;
    }
    if (at('e') || at('E')) {
      ++i_;
      if (at('+') || at('-')) ++i_;
      if (!digit_here()) error_at(start, "invalid number: no digits in the exponent");
      while (digit_here()) ++i_;
    }
    return s_.substr(start, i_ - start);
  }

  /// true, false or null: the boolean, or nullopt for null.
  std::optional<bool> literal() {
    skip_ws();
    started(Kind::null);
    for (const std::string_view word : {"true", "false", "null"}) {
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        if (word == "null") return std::nullopt;
        return word == "true";
      }
    }
    error_at(i_, "invalid literal (expected true, false or null)");
  }

  /// Parses and discards any value; objects are checked for duplicate keys.
  void skip_value() { read(nullptr); }

  /// Parses any value into a Value; objects are checked for duplicate keys, numbers must be
  /// finite as doubles.
  Value value() {
    Value v;
    read(&v);
    return v;
  }

  /// After the top-level value: only JSON whitespace (the padding writers add) may follow.
  void finish() {
    skip_ws();
    if (i_ != s_.size())
      error_at(i_, "unexpected ", found(), " after the top-level ",
               top_ == Kind::object ? "object" : top_ == Kind::array ? "array" : "value",
               " (only whitespace padding may follow it)");
  }

 private:
  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
  bool at(char c) const noexcept { return i_ < s_.size() && s_[i_] == c; }
  bool digit_here() const noexcept { return i_ < s_.size() && is_digit(s_[i_]); }

  void skip_ws() noexcept {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  /// Remembers the kind of the top-level value (for finish()'s message).
  void started(Kind k) noexcept {
    if (depth_ == 0) top_ = k;
  }

  std::string found() const {
    if (i_ >= s_.size()) {
      if (context_.empty()) return "the end of the text";
      return "the end of the " + std::string(context_);
    }
    const auto c = static_cast<unsigned char>(s_[i_]);
    if (c >= 0x21 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
    return "byte " + hex_byte(c);
  }

  void open(char c, Kind k) {
    skip_ws();
    if (!at(c)) error_at(i_, "expected ", kind_name(k), ", found ", found());
    started(k);
    if (++depth_ > max_depth_) error_at(i_, "nesting deeper than ", max_depth_, " levels");
    ++i_;
  }

  bool close() {
    ++i_;
    --depth_;
    return false;
  }

  void read(Value* out) {
    const Kind k = peek();
    switch (k) {
      case Kind::object: {
        begin_object();
        std::set<std::string> seen;
        bool first = true;
        std::string key;
        while (next_member(first, key)) {
          record_key(seen, key);
          if (!out) {
            skip_value();
            continue;
          }
          out->members.emplace_back(std::move(key), Value());
          read(&out->members.back().second);
        }
        break;
      }
      case Kind::array: {
        begin_array();
        bool first = true;
        while (next_element(first)) {
          if (!out) {
            skip_value();
            continue;
          }
          out->items.emplace_back();
          read(&out->items.back());
        }
        break;
      }
      case Kind::string:
        if (out) out->text = string();
        else (void)string();
        break;
      case Kind::number: {
        const std::size_t start = i_;
        const std::string_view text = number();
        if (out) {
          out->text = std::string(text);
          out->number = std::strtod(out->text.c_str(), nullptr);
          if (!std::isfinite(out->number)) error_at(start, "number ", out->text, " is out of range");
        }
        break;
      }
      case Kind::boolean:
      case Kind::null: {
        const std::optional<bool> b = literal();
        if (out) out->boolean = b.value_or(false);
        break;
      }
      case Kind::end:
      case Kind::invalid: error_at(i_, "expected a value, found ", found());
    }
    if (out) out->kind = k;
  }

  std::uint32_t hex4(std::size_t escape_pos) {
    if (s_.size() - i_ < 4) error_at(escape_pos, "truncated \\u escape");
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      std::uint32_t d;
      if (c >= '0' && c <= '9') d = static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<std::uint32_t>(c - 'A' + 10);
      else error_at(escape_pos, "invalid \\u escape (expected 4 hex digits)");
      v = v * 16 + d;
    }
    return v;
  }

  static std::string u_escape(std::uint32_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(v));
    return buf;
  }

  void escape(std::string& out) {
    const std::size_t pos = i_++;  // at the backslash
    if (i_ >= s_.size()) error_at(pos, "unterminated escape sequence");
    const char e = s_[i_++];
    switch (e) {
      case '"': out += '"'; return;
      case '\\': out += '\\'; return;
      case '/': out += '/'; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': {
        std::uint32_t cp = hex4(pos);
        if (cp >= 0xdc00 && cp <= 0xdfff) error_at(pos, "lone low surrogate ", u_escape(cp), " in a string");
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (!(at('\\') && i_ + 1 < s_.size() && s_[i_ + 1] == 'u'))
            error_at(pos, "lone high surrogate ", u_escape(cp), " in a string");
          const std::size_t pos2 = i_;
          i_ += 2;
          const std::uint32_t lo = hex4(pos2);
          if (lo < 0xdc00 || lo > 0xdfff)
            error_at(pos, "high surrogate ", u_escape(cp), " followed by ", u_escape(lo),
                     ", not a low surrogate");
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        append_utf8(out, cp);
        return;
      }
      default: error_at(pos, "invalid escape sequence ", quote(s_.substr(pos, 2)));
    }
  }

  std::string_view s_;
  std::string_view where_;
  std::string_view context_;
  ErrorKind kind_;
  int max_depth_;
  std::size_t i_ = 0;
  std::size_t key_pos_ = 0;
  int depth_ = 0;
  Kind top_ = Kind::end;
};

/// Parses one JSON text (a value with optional surrounding whitespace) into a Value. Errors throw
/// Error(kind, where, "invalid JSON[ in <context>] at byte N: ...").
inline Value parse(std::string_view text, std::string_view where, ErrorKind kind,
                   std::string_view context = {}, int max_depth = kDefaultMaxDepth) {
  Reader r(text, where, kind, context, max_depth);
  Value v = r.value();
  r.finish();
  return v;
}

}  // namespace json
}  // namespace eigenformer
