// Tests of include/eigenformer/core/json.hpp: the strict parser (DOM parse() and the pull Reader),
// every class of error with its exact message, the nesting limit, duplicate keys, \u escapes and
// surrogate pairs, the number grammar, and the UTF-8 / quoting / escaping helpers.

#include "eigenformer/core/json.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

using namespace eigenformer;
using json::Kind;
using json::Value;

namespace {

/// The detail() of the Error that parsing `text` throws (kind config, where "w"), or "no error".
std::string error_of(std::string_view text, int max_depth = json::kDefaultMaxDepth) {
  try {
    (void)json::parse(text, "w", ErrorKind::config, {}, max_depth);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::config) << e.what();
    EXPECT_EQ(e.where(), "w") << e.what();
    return e.detail();
  }
  return "no error";
}

/// A text and the exact detail() of its error ("no error" if it parses).
struct ErrorCase {
  std::string_view text;
  std::string message;
};

void expect_errors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(std::string(c.text));
    EXPECT_EQ(error_of(c.text), c.message);
  }
}

/// "invalid JSON at byte <pos>: unexpected <what> after the top-level <top> (...)"
std::string trailing(int pos, const std::string& what, const std::string& top) {
  return "invalid JSON at byte " + std::to_string(pos) + ": unexpected " + what + " after the top-level " +
         top + " (only whitespace padding may follow it)";
}

std::string utf8(std::uint32_t cp) {
  std::string s;
  json::append_utf8(s, cp);
  return s;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Valid documents
// ------------------------------------------------------------------------------------------------

TEST(Json, ScalarsAndContainers) {
  EXPECT_TRUE(json::parse("null", "w", ErrorKind::config).is_null());
  const Value t = json::parse(" true ", "w", ErrorKind::config);
  EXPECT_EQ(t.kind, Kind::boolean);
  EXPECT_TRUE(t.boolean);
  const Value f = json::parse("false", "w", ErrorKind::config);
  EXPECT_EQ(f.kind, Kind::boolean);
  EXPECT_FALSE(f.boolean);
  const Value s = json::parse("\"hi\"", "w", ErrorKind::config);
  EXPECT_EQ(s.kind, Kind::string);
  EXPECT_EQ(s.text, "hi");
  EXPECT_EQ(json::parse("[]", "w", ErrorKind::config).kind, Kind::array);
  EXPECT_EQ(json::parse("{}", "w", ErrorKind::config).kind, Kind::object);

  const Value v = json::parse(
      " \t\r\n{\"rope_type\" : \"llama3\", \"factor\":8.0,\"list\":[1, -2.5e-3, true, null, [], {}],"
      "\"nested\":{\"a\":{\"b\":[\"c\"]}}} \n",
      "w", ErrorKind::config);
  ASSERT_EQ(v.kind, Kind::object);
  ASSERT_EQ(v.members.size(), 4u);
  EXPECT_EQ(v.members[0].first, "rope_type");  // text order
  EXPECT_EQ(v.members[3].first, "nested");
  EXPECT_EQ(v.find("rope_type")->text, "llama3");
  EXPECT_EQ(v.find("factor")->number, 8.0);
  EXPECT_EQ(v.find("factor")->text, "8.0");
  EXPECT_FALSE(v.find("factor")->is_integer_literal());
  EXPECT_EQ(v.find("missing"), nullptr);
  const Value& list = *v.find("list");
  ASSERT_EQ(list.items.size(), 6u);
  EXPECT_TRUE(list.items[0].is_integer_literal());
  EXPECT_EQ(list.items[0].number, 1.0);
  EXPECT_EQ(list.items[1].number, -2.5e-3);
  EXPECT_TRUE(list.items[2].boolean);
  EXPECT_TRUE(list.items[3].is_null());
  EXPECT_EQ(list.items[4].kind, Kind::array);
  EXPECT_EQ(list.items[5].kind, Kind::object);
  EXPECT_EQ(v.find("nested")->find("a")->find("b")->items.at(0).text, "c");
}

TEST(Json, NumberGrammar) {
  for (const char* ok : {"0", "-0", "1", "-1", "10", "123456789", "0.5", "-0.5", "1.25", "1e5", "1E5",
                         "1e+5", "1e-5", "1.5e10", "-0e0", "0.0e-0", "1e308", "4.9e-324", "1e-400"}) {
    SCOPED_TRACE(ok);
    const Value v = json::parse(ok, "w", ErrorKind::config);
    EXPECT_EQ(v.kind, Kind::number);
    EXPECT_EQ(v.text, ok);
    EXPECT_EQ(v.number, std::strtod(ok, nullptr));
  }
  expect_errors({
      {"-", "invalid JSON at byte 0: invalid number"},
      {"-a", "invalid JSON at byte 0: invalid number"},
      {"[1, -x]", "invalid JSON at byte 4: invalid number"},
      {"1.", "invalid JSON at byte 0: invalid number: no digits after '.'"},
      {"1.e5", "invalid JSON at byte 0: invalid number: no digits after '.'"},
      {"1e", "invalid JSON at byte 0: invalid number: no digits in the exponent"},
      {"1e+", "invalid JSON at byte 0: invalid number: no digits in the exponent"},
      {".5", "invalid JSON at byte 0: expected a value, found '.'"},
      {"+1", "invalid JSON at byte 0: expected a value, found '+'"},
      {"01", trailing(1, "'1'", "value")},
      {"[01]", "invalid JSON at byte 2: expected ',' or ']' after an array element, found '1'"},
      {"0x10", trailing(1, "'x'", "value")},
      {"NaN", "invalid JSON at byte 0: expected a value, found 'N'"},
      {"[Infinity]", "invalid JSON at byte 1: expected a value, found 'I'"},
      // The DOM holds doubles: out of range is an error there (the Reader only checks the grammar).
      {"[1e400]", "invalid JSON at byte 1: number 1e400 is out of range"},
      {"-1e400", "invalid JSON at byte 0: number -1e400 is out of range"},
  });
  json::Reader r("[1e400]", "w", ErrorKind::format);
  EXPECT_NO_THROW(r.skip_value());
}

TEST(Json, StringsAndEscapes) {
  const Value v =
      json::parse(R"("a\/b\\c\"d\b\f\n\r\t\u00e9\u65E5\ud83d\ude00\u0000")", "w", ErrorKind::config);
  EXPECT_EQ(v.text, std::string("a/b\\c\"d\b\f\n\r\t\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\0", 22));
  // Raw UTF-8 passes through; surrogate pairs at the edges of the range.
  EXPECT_EQ(json::parse("\"h\xc3\xa9 \xf0\x9f\x98\x80\"", "w", ErrorKind::config).text,
            "h\xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_EQ(json::parse(R"("\ud800\udc00")", "w", ErrorKind::config).text, utf8(0x10000));
  EXPECT_EQ(json::parse(R"("\uDBFF\uDFFF")", "w", ErrorKind::config).text, utf8(0x10ffff));
  EXPECT_EQ(json::parse(R"("\uffff\u0080\u07ff\u0800")", "w", ErrorKind::config).text,
            utf8(0xffff) + utf8(0x80) + utf8(0x7ff) + utf8(0x800));
  // DEL and U+0080.. are not control characters for JSON.
  EXPECT_EQ(json::parse("\"\x7f\"", "w", ErrorKind::config).text, "\x7f");
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

TEST(Json, StringErrors) {
  expect_errors({
      {"\"abc", "invalid JSON at byte 4: unterminated string"},
      {"\"abc\\", "invalid JSON at byte 4: unterminated escape sequence"},
      {"\"\\u12", "invalid JSON at byte 1: truncated \\u escape"},
      {"\"\\u12G4\"", "invalid JSON at byte 1: invalid \\u escape (expected 4 hex digits)"},
      {"\"\\U0041\"", "invalid JSON at byte 1: invalid escape sequence '\\U'"},
      {"\"\\x\"", "invalid JSON at byte 1: invalid escape sequence '\\x'"},
      {"\"\\'\"", "invalid JSON at byte 1: invalid escape sequence '\\''"},
      {"\"a\nb\"", "invalid JSON at byte 2: unescaped control character 0x0a in a string"},
      {std::string_view("\"\0\"", 3), "invalid JSON at byte 1: unescaped control character 0x00 in a string"},
      {"\"\t\"", "invalid JSON at byte 1: unescaped control character 0x09 in a string"},
  });
}

TEST(Json, Surrogates) {
  expect_errors({
      {R"("\ud800")", "invalid JSON at byte 1: lone high surrogate \\ud800 in a string"},
      {R"("x\udbff\n")", "invalid JSON at byte 2: lone high surrogate \\udbff in a string"},
      {R"("\udc00")", "invalid JSON at byte 1: lone low surrogate \\udc00 in a string"},
      {R"("\udfff\ud800")", "invalid JSON at byte 1: lone low surrogate \\udfff in a string"},
      {R"("\ud800\u0041")",
       "invalid JSON at byte 1: high surrogate \\ud800 followed by \\u0041, not a low surrogate"},
      {R"("\ud800\ud800")",
       "invalid JSON at byte 1: high surrogate \\ud800 followed by \\ud800, not a low surrogate"},
      {R"("\ud800\u00")", "invalid JSON at byte 7: truncated \\u escape"},
      {R"("\ud800\uzzzz")", "invalid JSON at byte 7: invalid \\u escape (expected 4 hex digits)"},
  });
}

TEST(Json, InvalidUtf8InStrings) {
  expect_errors({
      {"\"\xff\"", "invalid JSON at byte 1: invalid UTF-8 byte 0xff in a string"},
      {"\"ab\xc0\xaf\"", "invalid JSON at byte 3: invalid UTF-8 byte 0xc0 in a string"},
      {"\"\xed\xa0\x80\"", "invalid JSON at byte 1: invalid UTF-8 byte 0xed in a string"},
      {"\"\xf4\x90\x80\x80\"", "invalid JSON at byte 1: invalid UTF-8 byte 0xf4 in a string"},
      {"\"\xe6\x97", "invalid JSON at byte 1: invalid UTF-8 byte 0xe6 in a string"},
      {"{\"k\xa9\":1}", "invalid JSON at byte 3: invalid UTF-8 byte 0xa9 in a string"},
      // Outside strings a non-ASCII byte starts no value.
      {"\xc3\xa9", "invalid JSON at byte 0: expected a value, found byte 0xc3"},
  });
}

TEST(Json, LiteralErrors) {
  expect_errors({
      {"nul", "invalid JSON at byte 0: invalid literal (expected true, false or null)"},
      {"[tru]", "invalid JSON at byte 1: invalid literal (expected true, false or null)"},
      {"False", "invalid JSON at byte 0: expected a value, found 'F'"},
      {"truex", trailing(4, "'x'", "value")},
  });
}

TEST(Json, StructureErrors) {
  const std::string end = "the end of the text";
  expect_errors({
      {"", "invalid JSON at byte 0: expected a value, found " + end},
      {" \n ", "invalid JSON at byte 3: expected a value, found " + end},
      {"'a'", "invalid JSON at byte 0: expected a value, found '''"},
      {"[1,]", "invalid JSON at byte 3: expected a value, found ']'"},
      {"[,1]", "invalid JSON at byte 1: expected a value, found ','"},
      {"[1 2]", "invalid JSON at byte 3: expected ',' or ']' after an array element, found '2'"},
      {"[1", "invalid JSON at byte 2: expected ',' or ']' after an array element, found " + end},
      {"{,}", "invalid JSON at byte 1: expected a string key, found ','"},
      {"{\"a\":1,}", "invalid JSON at byte 7: expected a string key, found '}'"},
      {"{'a':1}", "invalid JSON at byte 1: expected a string key, found '''"},
      {"{a:1}", "invalid JSON at byte 1: expected a string key, found 'a'"},
      {"{\"a\" 1}", "invalid JSON at byte 5: expected ':' after key 'a', found '1'"},
      {"{\"a\"", "invalid JSON at byte 4: expected ':' after key 'a', found " + end},
      {"{\"a\":}", "invalid JSON at byte 5: expected a value, found '}'"},
      {"{\"a\":1 \"b\":2}", "invalid JSON at byte 7: expected ',' or '}' after an object member, found '\"'"},
      {"{\"a\":1", "invalid JSON at byte 6: expected ',' or '}' after an object member, found " + end},
      {"{\"a\":1]", "invalid JSON at byte 6: expected ',' or '}' after an object member, found ']'"},
      {"{} {}", trailing(3, "'{'", "object")},
      {"[]]", trailing(2, "']'", "array")},
      {std::string_view("\"s\"\0", 4), trailing(3, "byte 0x00", "value")},
      {"{}\f", trailing(2, "byte 0x0c", "object")},
  });
}

TEST(Json, DuplicateKeys) {
  expect_errors({
      {"{\"a\":1,\"a\":2}", "invalid JSON at byte 7: duplicate key 'a'"},
      // Compared after decoding escapes.
      {"{\"w\":1,\"\\u0077\":2}", "invalid JSON at byte 7: duplicate key 'w'"},
      // At any depth, inside arrays too; the same key in sibling objects is fine.
      {"[{\"a\":{\"b\":1,\"c\":2,\"b\":3}}]", "invalid JSON at byte 19: duplicate key 'b'"},
      {"[{\"a\":1},{\"a\":1}]", "no error"},
      {"{\"a\":{\"a\":1}}", "no error"},
      // Keys in messages are quoted and escaped.
      {"{\"\\n\":1,\"\\n\":1}", "invalid JSON at byte 8: duplicate key '\\x0a'"},
  });
  // skip_value() checks them as well.
  json::Reader r("{\"x\":[{\"k\":1,\"k\":1}]}", "w", ErrorKind::format);
  try {
    r.skip_value();
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::format);
    EXPECT_EQ(e.detail(), "invalid JSON at byte 13: duplicate key 'k'");
  }
}

TEST(Json, NestingLimit) {
  const auto arrays = [](int k, const std::string& inner = "") {
    const auto n = static_cast<std::size_t>(k);
    return std::string(n, '[') + inner + std::string(n, ']');
  };
  const auto objects = [](int k) {
    std::string s;
    for (int i = 0; i < k; ++i) s += "{\"a\":";
    s += "1";
    return s + std::string(static_cast<std::size_t>(k), '}');
  };
  EXPECT_EQ(error_of(arrays(64)), "no error");
  EXPECT_EQ(error_of(arrays(64, "1")), "no error");  // scalars do not count
  EXPECT_EQ(error_of(arrays(65)), "invalid JSON at byte 64: nesting deeper than 64 levels");
  EXPECT_EQ(error_of(objects(64)), "no error");
  EXPECT_EQ(error_of(objects(65)), "invalid JSON at byte 320: nesting deeper than 64 levels");
  EXPECT_EQ(error_of("[{\"a\":[{\"b\":[]}]}]", 5), "no error");
  EXPECT_EQ(error_of("[{\"a\":[{\"b\":[[]]}]}]", 5), "invalid JSON at byte 13: nesting deeper than 5 levels");
  EXPECT_EQ(error_of(arrays(3), 2), "invalid JSON at byte 2: nesting deeper than 2 levels");
  EXPECT_EQ(error_of("1", 0), "no error");
  EXPECT_EQ(error_of("[]", 0), "invalid JSON at byte 0: nesting deeper than 0 levels");
  // Far deeper input stops at the limit (no unbounded recursion).
  EXPECT_EQ(error_of(arrays(200000)), "invalid JSON at byte 64: nesting deeper than 64 levels");
  EXPECT_EQ(error_of(std::string(200000, '[')), "invalid JSON at byte 64: nesting deeper than 64 levels");
  // The depth goes back down as containers close.
  std::string wide = "[";
  for (int i = 0; i < 100; ++i) wide += (i ? "," : "") + arrays(63);
  EXPECT_EQ(error_of(wide + "]"), "no error");
}

TEST(Json, KindWhereAndContext) {
  try {
    json::Reader r("{\"a\":", "model.safetensors", ErrorKind::format, "header");
    r.skip_value();
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::format);
    EXPECT_EQ(e.where(), "model.safetensors");
    EXPECT_STREQ(e.what(),
                 "eigenformer: model.safetensors: invalid JSON in header at byte 5: expected a value, found "
                 "the end of the header");
  }
  try {
    (void)json::parse("[1,", "cfg", ErrorKind::invalid_argument, "value", 3);
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_STREQ(e.what(),
                 "eigenformer: cfg: invalid JSON in value at byte 3: expected a value, found the end of the "
                 "value");
  }
}

// ------------------------------------------------------------------------------------------------
// Pull reader
// ------------------------------------------------------------------------------------------------

TEST(JsonReader, PullApi) {
  const std::string text =
      R"( {"name": "x", "dims": [2, 3], "ok": true, "none": null, "sub": {"deep": [[1]]}} )";
  json::Reader r(text, "w", ErrorKind::format);
  EXPECT_EQ(r.peek(), Kind::object);
  r.begin_object();
  bool first = true;
  std::string key;
  std::set<std::string> seen;
  std::vector<std::string> keys;
  while (r.next_member(first, key)) {
    r.record_key(seen, key);
    keys.push_back(key);
    if (key == "name") {
      EXPECT_EQ(r.key_pos(), 2u);
      EXPECT_EQ(r.peek(), Kind::string);
      EXPECT_EQ(r.string(), "x");
    } else if (key == "dims") {
      EXPECT_EQ(r.peek(), Kind::array);
      r.begin_array();
      bool f = true;
      std::vector<std::string> dims;
      while (r.next_element(f)) dims.emplace_back(r.number());
      EXPECT_EQ(dims, (std::vector<std::string>{"2", "3"}));
    } else if (key == "ok") {
      EXPECT_EQ(r.peek(), Kind::boolean);
      EXPECT_EQ(r.literal(), std::optional<bool>(true));
    } else if (key == "none") {
      EXPECT_EQ(r.peek(), Kind::null);
      EXPECT_EQ(r.literal(), std::nullopt);
    } else {
      r.skip_value();
    }
  }
  r.finish();
  EXPECT_EQ(keys, (std::vector<std::string>{"name", "dims", "ok", "none", "sub"}));
  EXPECT_EQ(r.peek(), Kind::end);

  json::Reader bad("@", "w", ErrorKind::format);
  EXPECT_EQ(bad.peek(), Kind::invalid);
}

TEST(JsonReader, TypedReadsAndCustomMessages) {
  const auto detail = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.detail();
    }
    return "no error";
  };
  EXPECT_EQ(detail([] { json::Reader("[]", "w", ErrorKind::format).begin_object(); }),
            "invalid JSON at byte 0: expected an object, found '['");
  EXPECT_EQ(detail([] { json::Reader(" 1", "w", ErrorKind::format).begin_array(); }),
            "invalid JSON at byte 1: expected an array, found '1'");
  EXPECT_EQ(detail([] { (void)json::Reader("1", "w", ErrorKind::format).string(); }),
            "invalid JSON at byte 0: expected a string, found '1'");
  EXPECT_EQ(detail([] { json::Reader("{}", "w", ErrorKind::format, "header").error_at(3, "custom ", 7); }),
            "invalid JSON in header at byte 3: custom 7");
  // record_key names what the key is.
  EXPECT_EQ(detail([] {
              json::Reader r("{\"t\":1, \"t\":2}", "w", ErrorKind::format);
              r.begin_object();
              std::set<std::string> seen;
              bool first = true;
              std::string key;
              while (r.next_member(first, key)) {
                r.record_key(seen, key, "tensor name");
                r.skip_value();
              }
            }),
            "invalid JSON at byte 8: duplicate tensor name 't'");
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

TEST(JsonHelpers, Utf8Validation) {
  const auto at = [](std::string_view s) {
    return json::utf8_invalid_at(reinterpret_cast<const unsigned char*>(s.data()), s.size());
  };
  EXPECT_EQ(at(""), json::npos);
  EXPECT_EQ(at("ascii \x7f"), json::npos);
  EXPECT_EQ(at("\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf"),
            json::npos);
  EXPECT_EQ(at("a\x80"), 1u);                 // lone continuation byte
  EXPECT_EQ(at("ab\xc0\xaf"), 2u);            // overlong '/'
  EXPECT_EQ(at("\xc1\xbf"), 0u);              // overlong
  EXPECT_EQ(at("\xe0\x9f\xbf"), 0u);          // overlong 3-byte
  EXPECT_EQ(at("\xf0\x8f\xbf\xbf"), 0u);      // overlong 4-byte
  EXPECT_EQ(at("x\xed\xa0\x80"), 1u);         // surrogate U+D800
  EXPECT_EQ(at("\xf4\x90\x80\x80"), 0u);      // > U+10FFFF
  EXPECT_EQ(at("\xf5\x80\x80\x80"), 0u);
  EXPECT_EQ(at("\xff"), 0u);
  EXPECT_EQ(at("ok\xe6\x97"), 2u);            // truncated
  EXPECT_EQ(at("\xe6\x41\x80"), 0u);          // bad continuation
  EXPECT_EQ(at("\xf0\x9f\x98\x41"), 0u);
  EXPECT_TRUE(json::valid_utf8("h\xc3\xa9"));
  EXPECT_FALSE(json::valid_utf8("h\xe9"));
  const unsigned char four[] = {0xf0, 0x9f, 0x98, 0x80};
  EXPECT_EQ(json::utf8_sequence_length(four, 4), 4u);
  EXPECT_EQ(json::utf8_sequence_length(four, 3), 0u);
  // Every code point encodes to valid UTF-8 of the expected length.
  for (std::uint32_t cp = 0; cp <= 0x10ffff; cp += (cp < 0x11000 ? 1 : 97)) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const std::string s = utf8(cp);
    ASSERT_TRUE(json::valid_utf8(s)) << cp;
    ASSERT_EQ(s.size(), cp < 0x80 ? 1u : cp < 0x800 ? 2u : cp < 0x10000 ? 3u : 4u) << cp;
  }
}

TEST(JsonHelpers, QuoteForMessages) {
  EXPECT_EQ(json::quote("w"), "'w'");
  EXPECT_EQ(json::quote("a\nb\x7f\x01"), "'a\\x0ab\\x7f\\x01'");
  EXPECT_EQ(json::quote("h\xc3\xa9"), "'h\xc3\xa9'");
  EXPECT_EQ(json::quote("h\xe9"), "'h\\xe9'");  // invalid UTF-8: non-ASCII bytes escaped
  EXPECT_EQ(json::quote(std::string(10, 'n'), 4), "'nnnn...'");
  EXPECT_EQ(json::quote("ab\xc3\xa9", 3), "'ab...'");  // not cut inside a character
  EXPECT_EQ(json::quote(std::string(120, 'n')), "'" + std::string(120, 'n') + "'");
  EXPECT_EQ(json::hex_byte(0x0a), "0x0a");
  EXPECT_EQ(json::hex_byte(0xff), "0xff");
  EXPECT_STREQ(json::kind_name(Kind::object), "an object");
  EXPECT_STREQ(json::kind_name(Kind::null), "null");
}

TEST(JsonHelpers, AppendStringRoundTrips) {
  std::string out;
  json::append_string(out, "a\"b\\c\b\f\n\r\t\x01\x1f/\x7f\xc3\xa9");
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f/\x7f\xc3\xa9\"");
  std::mt19937 rng(7);
  for (int it = 0; it < 2000; ++it) {
    std::string s;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      std::uint32_t cp = rng() % 4 == 0 ? rng() % 0x20 : rng() % 0x110000;
      if (cp >= 0xd800 && cp <= 0xdfff) cp = '"';
      json::append_utf8(s, cp);
    }
    std::string lit;
    json::append_string(lit, s);
    ASSERT_EQ(json::parse(lit, "w", ErrorKind::config).text, s) << lit;
    std::string obj = "{";
    json::append_string(obj, s);
    obj += ":[";
    json::append_string(obj, s);
    obj += "]}";
    const Value v = json::parse(obj, "w", ErrorKind::config);
    ASSERT_EQ(v.members.at(0).first, s);
    ASSERT_EQ(v.members.at(0).second.items.at(0).text, s);
  }
}
