#pragma once
// eigenformer::Error and the always-on checks used at layer and file boundaries.
//
// Every message names where the problem was found (a layer, an op, a file), the parameter and the
// sizes involved, e.g.
//   eigenformer: Linear 'model.layers.0.mlp.up_proj': input x has shape [7, 512], expected [*, 1024]

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace eigenformer {

/// What class of problem an Error reports; tests and callers can branch on it without parsing text.
enum class ErrorKind {
  invalid_argument,  ///< a bad value of a runtime argument (empty input, thread count 0, ...)
  shape_mismatch,    ///< a tensor has the wrong shape
  config,            ///< a layer configuration is inconsistent or out of range
  missing_weight,    ///< a checkpoint lacks a tensor a layer needs
  dtype_mismatch,    ///< a checkpoint tensor has a dtype the layer cannot read
  format,            ///< a file is malformed (truncated, inconsistent header, hostile offsets, ...)
  io,                ///< the operating system refused (open, read, mmap, write)
  capacity,          ///< a cache, pool or workspace is full
};

inline const char* to_string(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::shape_mismatch: return "shape mismatch";
    case ErrorKind::config: return "bad config";
    case ErrorKind::missing_weight: return "missing weight";
    case ErrorKind::dtype_mismatch: return "dtype mismatch";
    case ErrorKind::format: return "malformed file";
    case ErrorKind::io: return "i/o error";
    case ErrorKind::capacity: return "capacity exceeded";
  }
  return "error";
}

/// The one exception type the library throws.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string where, const std::string& detail)
      : std::runtime_error("eigenformer: " + where + ": " + detail),
        kind_(kind),
        where_(std::move(where)),
        detail_(detail) {}

  ErrorKind kind() const noexcept { return kind_; }
  /// The layer, op or file the problem was found in.
  const std::string& where() const noexcept { return where_; }
  /// The message without the location prefix.
  const std::string& detail() const noexcept { return detail_; }

 private:
  ErrorKind kind_;
  std::string where_;
  std::string detail_;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

/// "[a, b, c]" for a shape given as sizes.
template <class Int>
std::string shape_str(const std::vector<Int>& dims) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << ']';
  return os.str();
}
inline std::string shape_str(std::initializer_list<std::int64_t> dims) {
  return shape_str(std::vector<std::int64_t>(dims));
}

/// Throw an Error whose detail is the concatenation of `args` (streamed with operator<<).
template <class... Args>
[[noreturn]] void fail(ErrorKind kind, std::string_view where, const Args&... args) {
  throw Error(kind, std::string(where), detail::concat(args...));
}

/// Throw unless `ok`. The message arguments are only formatted on failure.
template <class... Args>
inline void check(bool ok, ErrorKind kind, std::string_view where, const Args&... args) {
  if (!ok) fail(kind, where, args...);
}

/// Throw a shape_mismatch unless a [rows, cols] tensor has the expected sizes; an expected size
/// of -1 matches anything (printed as '*').
inline void check_shape(std::string_view where, std::string_view param, std::int64_t rows,
                        std::int64_t cols, std::int64_t want_rows, std::int64_t want_cols) {
  if ((want_rows < 0 || rows == want_rows) && (want_cols < 0 || cols == want_cols)) return;
  auto dim = [](std::int64_t d) { return d < 0 ? std::string("*") : std::to_string(d); };
  fail(ErrorKind::shape_mismatch, where, param, " has shape [", rows, ", ", cols, "], expected [",
       dim(want_rows), ", ", dim(want_cols), "]");
}

/// Layer names in messages: "Linear 'model.layers.0.mlp.up_proj'" or "Linear" when unnamed.
inline std::string layer_where(std::string_view layer, std::string_view name) {
  if (name.empty()) return std::string(layer);
  std::string s(layer);
  s += " '";
  s += name;
  s += '\'';
  return s;
}

}  // namespace eigenformer
