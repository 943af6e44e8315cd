#pragma once
// JSON in conformance cases: configuration values that reference implementations store as JSON text
// (Hugging Face `rope_scaling`, and integers, numbers, booleans and null in the string metadata of a
// case), parsed by the library's strict parser (core/json.hpp) with nesting limited to 32 levels.
//
//   JsonValue v = parse_json(R"({"rope_type": "llama3", "factor": 8.0})", "rope_scaling");
//   v.find("factor")->number   // 8.0
//
// Errors throw eigenformer::Error (ErrorKind::config) naming `where` and the byte position.

#include <string_view>

#include "../core/error.hpp"
#include "../core/json.hpp"

namespace eigenformer {
namespace conformance {

using JsonValue = json::Value;

inline const char* json_kind_name(json::Kind k) noexcept { return json::kind_name(k); }

/// Parses one JSON value (surrounding whitespace allowed). Throws ErrorKind::config naming `where`.
inline JsonValue parse_json(std::string_view text, std::string_view where) {
  return json::parse(text, where, ErrorKind::config, {}, 32);
}

}  // namespace conformance
}  // namespace eigenformer
