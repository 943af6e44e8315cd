#pragma once
// Safetensors reader and writer.
//
// Format (spec: https://github.com/huggingface/safetensors#format,
//         https://huggingface.co/docs/safetensors/index#format):
//
//   bytes [0, 8)          u64 little-endian N, the header length
//   bytes [8, 8 + N)      UTF-8 JSON object, optionally padded with trailing spaces:
//                           { "__metadata__": { "key": "value", ... },             (optional)
//                             "<name>": { "dtype": "F32",
//                                         "shape": [2, 3],                         ([] = scalar)
//                                         "data_offsets": [begin, end] }, ... }
//   bytes [8 + N, EOF)    data buffer; tensor <name> is bytes [begin, end) of it, row-major
//                         (C order), little-endian, with no alignment guarantee.
//
// Files are untrusted input. SafeTensors validates them as the reference implementation
// (huggingface/safetensors, safetensors/src/tensor.rs: read_metadata / Metadata::validate) does,
// and a little more strictly (the header must start with '{', unknown fields are rejected, JSON is
// parsed by the library's strict parser, core/json.hpp, which rejects duplicate keys):
//   - the file holds at least the 8-byte length; N <= 100,000,000 (checked before anything is
//     allocated); 8 + N lies within the file;
//   - the header is valid UTF-8 and a single JSON object followed only by JSON whitespace;
//   - every entry has exactly the fields dtype (a known dtype string), shape (array of integers
//     >= 0) and data_offsets (array of 2 integers >= 0); "__metadata__" maps strings to strings;
//   - sorted by (begin, end), the tensors tile the data buffer exactly: the first begins at 0,
//     each begins where the previous one ends, end >= begin, end - begin equals
//     dtype size x product(shape) (computed with overflow checks), and the last end is the size
//     of the data buffer (no trailing or missing bytes).
// Every failure throws eigenformer::Error (ErrorKind::format for malformed files, ErrorKind::io
// for open/read/mmap/write failures) whose where() is the file path (or "<memory>").
//
// Reading:
//   auto st = eigenformer::SafeTensors::open("model.safetensors");          // mmap by default
//   Matrix<float> w = st.matrix<float>("q_proj.weight", 64, 32, "Linear 'q_proj'");  // [64, 32]
//   Vector<float> b = st.vector<float>("q_proj.bias", 64, "Linear 'q_proj'");        // [64]
// Writing:
//   eigenformer::SafeTensorsWriter wr;
//   wr.set_metadata("format", "pt");
//   wr.add("q_proj.weight", w);                    // [rows, cols] row-major, stored as F32
//   wr.add("q_proj.bias", b, Dtype::BF16);         // column vector -> 1-D [rows]
//   wr.write("out.safetensors");

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/half.hpp"
#include "eigenformer/core/json.hpp"
#include "eigenformer/core/tensor.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "eigenformer/io/safetensors.hpp assumes a little-endian host (safetensors data is little-endian)"
#endif

// POSIX mmap where available; elsewhere LoadMode::mmap falls back to reading the file.
#ifndef EIGENFORMER_SAFETENSORS_MMAP
#if defined(__unix__) || defined(__APPLE__)
#define EIGENFORMER_SAFETENSORS_MMAP 1
#else
#define EIGENFORMER_SAFETENSORS_MMAP 0
#endif
#endif

#if EIGENFORMER_SAFETENSORS_MMAP
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#include <fstream>
#endif

namespace eigenformer {

// ------------------------------------------------------------------------------------------------
// Dtypes
// ------------------------------------------------------------------------------------------------

/// Element types of the safetensors format (validation knows all of them; SafeTensors::read
/// converts from F32, F16, BF16, F64, I8, U8, I32 and I64).
enum class Dtype { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

/// Bytes per element.
inline std::size_t dtype_size(Dtype d) noexcept {
  switch (d) {
    case Dtype::BOOL:
    case Dtype::U8:
    case Dtype::I8:
    case Dtype::F8_E4M3:
    case Dtype::F8_E5M2: return 1;
    case Dtype::I16:
    case Dtype::U16:
    case Dtype::F16:
    case Dtype::BF16: return 2;
    case Dtype::I32:
    case Dtype::U32:
    case Dtype::F32: return 4;
    case Dtype::F64:
    case Dtype::I64:
    case Dtype::U64: return 8;
  }
  return 0;
}

/// The format's name of a dtype: "F32", "BF16", "F8_E4M3", ...
inline const char* dtype_name(Dtype d) noexcept {
  switch (d) {
    case Dtype::BOOL: return "BOOL";
    case Dtype::U8: return "U8";
    case Dtype::I8: return "I8";
    case Dtype::I16: return "I16";
    case Dtype::U16: return "U16";
    case Dtype::F16: return "F16";
    case Dtype::BF16: return "BF16";
    case Dtype::I32: return "I32";
    case Dtype::U32: return "U32";
    case Dtype::F32: return "F32";
    case Dtype::F64: return "F64";
    case Dtype::I64: return "I64";
    case Dtype::U64: return "U64";
    case Dtype::F8_E4M3: return "F8_E4M3";
    case Dtype::F8_E5M2: return "F8_E5M2";
  }
  return "?";
}

/// The dtype with the given name (exact, case-sensitive), or nullopt.
inline std::optional<Dtype> dtype_from_name(std::string_view s) noexcept {
  static constexpr Dtype all[] = {Dtype::BOOL, Dtype::U8,   Dtype::I8,      Dtype::I16,
                                  Dtype::U16,  Dtype::F16,  Dtype::BF16,    Dtype::I32,
                                  Dtype::U32,  Dtype::F32,  Dtype::F64,     Dtype::I64,
                                  Dtype::U64,  Dtype::F8_E4M3, Dtype::F8_E5M2};
  for (Dtype d : all)
    if (s == dtype_name(d)) return d;
  return std::nullopt;
}

/// One tensor of a file: where its bytes are within the data buffer (after validation,
/// end - begin == dtype_size(dtype) * numel()).
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<std::int64_t> shape;  ///< [] for a scalar
  std::size_t begin = 0, end = 0;   ///< byte range [begin, end) within the data buffer

  /// Product of the shape (1 for a scalar, 0 if any dimension is 0).
  std::int64_t numel() const noexcept {
    std::uint64_t n = 1;  // unsigned: no UB for a hand-made TensorInfo with absurd dims
    for (std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
    return static_cast<std::int64_t>(n);
  }
};

enum class LoadMode {
  mmap,  ///< map the file read-only (POSIX); falls back to `read` where mmap is unavailable
  read,  ///< read the whole file into memory
};

namespace detail {
namespace st {

inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;  // as MAX_HEADER_SIZE in tensor.rs
inline constexpr int kMaxJsonDepth = 64;  // the format needs 3 levels

using json::quote;

/// Checks the 8-byte length prefix against the file size; returns the header length N.
/// `p` holds at least min(8, file_size) bytes. Nothing is allocated from N before these checks.
inline std::uint64_t check_prefix(const std::uint8_t* p, std::uint64_t file_size,
                                  std::string_view where) {
  if (file_size < 8)
    fail(ErrorKind::format, where, "file is ", file_size,
         " bytes, too short for the 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  if (n > kMaxHeaderSize)
    fail(ErrorKind::format, where, "header length ", n, " exceeds the limit of ", kMaxHeaderSize,
         " bytes");
  if (n > file_size - 8)
    fail(ErrorKind::format, where, "header length ", n, " runs past the end of the file: 8 + ", n,
         " > ", file_size, " bytes");
  return n;
}

/// A non-negative JSON integer field of a tensor entry, at most `max`.
inline std::uint64_t read_uint(json::Reader& r, std::string_view where, std::string_view tensor,
                               const char* field, std::size_t index, std::uint64_t max) {
  const auto what = [&] {
    return detail::concat("tensor ", quote(tensor), ": ", field, "[", index, "]");
  };
  const json::Kind k = r.peek();
  if (k != json::Kind::number)
    fail(ErrorKind::format, where, what(), " must be a non-negative integer, got ",
         json::kind_name(k));
  const std::string_view text = r.number();
  const std::string shown = text.size() > 40 ? std::string(text.substr(0, 40)) + "..."
                                             : std::string(text);
  if (text[0] == '-') fail(ErrorKind::format, where, what(), " = ", shown, " is negative");
  if (text.find_first_of(".eE") != std::string_view::npos)
    fail(ErrorKind::format, where, what(), " = ", shown, " is not an integer");
  std::uint64_t v = 0;
  for (const char c : text) {
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (max - d) / 10)
      fail(ErrorKind::format, where, what(), " = ", shown, " is too large (limit ", max, ")");
    v = v * 10 + d;
  }
  return v;
}

inline void parse_tensor_entry(json::Reader& r, std::string_view where, TensorInfo& t) {
  using Kind = json::Kind;
  const Kind k = r.peek();
  if (k != Kind::object)
    fail(ErrorKind::format, where, "tensor ", quote(t.name),
         ": entry must be an object {\"dtype\", \"shape\", \"data_offsets\"}, got ",
         json::kind_name(k));
  r.begin_object();
  bool has_dtype = false, has_shape = false, has_offsets = false;
  bool first = true;
  std::string field;
  while (r.next_member(first, field)) {
    if (field == "dtype") {
      const Kind kd = r.peek();
      if (kd != Kind::string)
        fail(ErrorKind::format, where, "tensor ", quote(t.name), ": 'dtype' must be a string, got ",
             json::kind_name(kd));
      const std::string name = r.string();
      const auto d = dtype_from_name(name);
      if (!d) fail(ErrorKind::format, where, "tensor ", quote(t.name), ": unknown dtype ", quote(name));
      t.dtype = *d;
      has_dtype = true;
    } else if (field == "shape") {
      const Kind ks = r.peek();
      if (ks != Kind::array)
        fail(ErrorKind::format, where, "tensor ", quote(t.name),
             ": 'shape' must be an array of non-negative integers, got ", json::kind_name(ks));
      r.begin_array();
      bool f = true;
      while (r.next_element(f))
        t.shape.push_back(static_cast<std::int64_t>(
            read_uint(r, where, t.name, "shape", t.shape.size(),
                      static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))));
      has_shape = true;
    } else if (field == "data_offsets") {
      const Kind ko = r.peek();
      if (ko != Kind::array)
        fail(ErrorKind::format, where, "tensor ", quote(t.name),
             ": 'data_offsets' must be an array [begin, end], got ", json::kind_name(ko));
      r.begin_array();
      bool f = true;
      std::size_t count = 0;
      std::uint64_t v[2] = {0, 0};
      while (r.next_element(f)) {
        const std::uint64_t x = read_uint(r, where, t.name, "data_offsets", count,
                                          std::numeric_limits<std::size_t>::max());
        if (count < 2) v[count] = x;
        ++count;
      }
      if (count != 2)
        fail(ErrorKind::format, where, "tensor ", quote(t.name),
             ": 'data_offsets' must hold exactly 2 integers [begin, end], got ", count);
      t.begin = static_cast<std::size_t>(v[0]);
      t.end = static_cast<std::size_t>(v[1]);
      has_offsets = true;
    } else {
      fail(ErrorKind::format, where, "tensor ", quote(t.name), ": unknown field ", quote(field),
           " (expected dtype, shape, data_offsets)");
    }
  }
  const char* missing = !has_dtype ? "dtype" : !has_shape ? "shape" : !has_offsets ? "data_offsets" : nullptr;
  if (missing) fail(ErrorKind::format, where, "tensor ", quote(t.name), ": missing field '", missing, "'");
}

inline void parse_metadata(json::Reader& r, std::string_view where,
                           std::map<std::string, std::string>& metadata) {
  using Kind = json::Kind;
  const Kind k = r.peek();
  if (k == Kind::null) {  // serde reads null as "no metadata" (Option<HashMap>)
    r.literal();
    return;
  }
  if (k != Kind::object)
    fail(ErrorKind::format, where, "'__metadata__' must be an object of strings, got ",
         json::kind_name(k));
  r.begin_object();
  bool first = true;
  std::string key;
  while (r.next_member(first, key)) {
    const Kind kv = r.peek();
    if (kv != Kind::string)
      fail(ErrorKind::format, where, "'__metadata__' value of key ", quote(key),
           " must be a string, got ", json::kind_name(kv));
    metadata[key] = r.string();
  }
}

/// Parses and validates the header; fills `tensors` (sorted by data offsets) and `metadata`.
/// `data_size` is the size of the data buffer that follows the header.
inline void parse_header(std::string_view header, std::size_t data_size, std::string_view where,
                         std::vector<TensorInfo>& tensors,
                         std::map<std::string, std::string>& metadata) {
  // Pass 1: syntax, nesting depth, duplicate keys, trailing bytes. Pass 2 then reads a document
  // known to be well-formed JSON, so a syntax error is always reported as such.
  // A repeated top-level key is named as a tensor.
  {
    json::Reader r(header, where, ErrorKind::format, "header", kMaxJsonDepth);
    r.begin_object();
    std::set<std::string> names;
    bool first = true;
    std::string key;
    while (r.next_member(first, key)) {
      r.record_key(names, key, key == "__metadata__" ? "key" : "tensor name");
      r.skip_value();
    }
    r.finish();
  }
  json::Reader r(header, where, ErrorKind::format, "header", kMaxJsonDepth);
  r.begin_object();
  bool first = true;
  std::string key;
  while (r.next_member(first, key)) {
    if (key == "__metadata__") {
      parse_metadata(r, where, metadata);
      continue;
    }
    TensorInfo t;
    t.name = key;
    parse_tensor_entry(r, where, t);
    tensors.push_back(std::move(t));
  }

  // Tile the data buffer in offset order (as Metadata::validate).
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  std::size_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : tensors) {
    if (t.begin != expected) {
      if (!prev)
        fail(ErrorKind::format, where, "tensor ", quote(t.name), " data_offsets [", t.begin, ", ",
             t.end, "]: the first tensor must begin at offset 0 of the data buffer");
      if (t.begin > expected)
        fail(ErrorKind::format, where, "tensor ", quote(t.name), " data_offsets [", t.begin, ", ",
             t.end, "] leave a gap of ", t.begin - expected, " bytes after tensor ",
             quote(prev->name), ", which ends at ", expected);
      fail(ErrorKind::format, where, "tensor ", quote(t.name), " data_offsets [", t.begin, ", ",
           t.end, "] overlap tensor ", quote(prev->name), " data_offsets [", prev->begin, ", ",
           prev->end, "]");
    }
    if (t.end < t.begin)
      fail(ErrorKind::format, where, "tensor ", quote(t.name), " data_offsets [", t.begin, ", ",
           t.end, "] end before they begin");
    // Element count, multiplied in order as checked_mul in tensor.rs.
    std::int64_t numel = 1;
    for (const std::int64_t d : t.shape) {
      if (d != 0 && numel > std::numeric_limits<std::int64_t>::max() / d)
        fail(ErrorKind::format, where, "tensor ", quote(t.name), " shape ", shape_str(t.shape),
             ": the element count overflows 64 bits");
      numel *= d;
    }
    const std::size_t esize = dtype_size(t.dtype);
    if (static_cast<std::uint64_t>(numel) > std::numeric_limits<std::size_t>::max() / esize)
      fail(ErrorKind::format, where, "tensor ", quote(t.name), " dtype ", dtype_name(t.dtype),
           " x shape ", shape_str(t.shape), ": the byte size overflows");
    const std::size_t nbytes = static_cast<std::size_t>(numel) * esize;
    if (t.end - t.begin != nbytes)
      fail(ErrorKind::format, where, "tensor ", quote(t.name), " data_offsets [", t.begin, ", ",
           t.end, "] hold ", t.end - t.begin, " bytes, but dtype ", dtype_name(t.dtype),
           " x shape ", shape_str(t.shape), " needs ", nbytes);
    expected = t.end;
    prev = &t;
  }
  if (expected < data_size)
    fail(ErrorKind::format, where, "the data buffer holds ", data_size,
         " bytes, but the tensors end at offset ", expected, ": ", data_size - expected,
         " trailing bytes");
  if (expected > data_size)
    fail(ErrorKind::format, where, "the data buffer holds ", data_size,
         " bytes, but the tensors end at offset ", expected, ": ", expected - data_size,
         " bytes missing (truncated file?)");
}

template <class T>
std::string type_name() {
  if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_floating_point_v<T>) return "long double";
  else return (std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
}

/// Whether the integer `v` is representable in the integer type T.
template <class T, class S>
constexpr bool int_fits(S v) noexcept {
  using TL = std::numeric_limits<T>;
  if constexpr (std::is_signed_v<S>) {
    const std::int64_t x = v;
    if constexpr (std::is_signed_v<T>)
      return x >= static_cast<std::int64_t>(TL::min()) && x <= static_cast<std::int64_t>(TL::max());
    else
      return x >= 0 && static_cast<std::uint64_t>(x) <= static_cast<std::uint64_t>(TL::max());
  } else {
    const std::uint64_t x = v;
    return x <= static_cast<std::uint64_t>(TL::max());
  }
}

template <class Src>
Src load_le(const std::uint8_t* p) noexcept {
  Src v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

#if EIGENFORMER_SAFETENSORS_MMAP
struct FdCloser {
  int fd;
  explicit FdCloser(int f) : fd(f) {}
  FdCloser(const FdCloser&) = delete;  // a copy would close the descriptor twice
  FdCloser& operator=(const FdCloser&) = delete;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};
#endif

}  // namespace st
}  // namespace detail

// ------------------------------------------------------------------------------------------------
// Reader
// ------------------------------------------------------------------------------------------------

/// A validated safetensors file: owns its mapping (or buffer), its header and the tensor index.
class SafeTensors {
 public:
  SafeTensors(SafeTensors&& o) noexcept { swap(o); }
  SafeTensors& operator=(SafeTensors&& o) noexcept {
    if (this != &o) {
      SafeTensors tmp(std::move(o));
      swap(tmp);
    }
    return *this;
  }
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;
  ~SafeTensors() { release(); }

  /// Opens and validates a file: LoadMode::mmap maps it read-only (the mapping lives as long as
  /// this object; truncating the file meanwhile is undefined, as with any mapping), LoadMode::read
  /// reads it into memory. Throws ErrorKind::io if the file cannot be opened, read or mapped,
  /// ErrorKind::format if it is malformed.
  static SafeTensors open(const std::string& path, LoadMode mode = LoadMode::mmap) {
    SafeTensors st;
    st.source_ = path;
#if EIGENFORMER_SAFETENSORS_MMAP
    int fd;
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) fail(ErrorKind::io, path, "cannot open: ", std::strerror(errno));
    detail::st::FdCloser closer{fd};
    struct stat sb;
    if (::fstat(fd, &sb) != 0) fail(ErrorKind::io, path, "cannot stat: ", std::strerror(errno));
    if (!S_ISREG(sb.st_mode)) fail(ErrorKind::io, path, "not a regular file");
    const auto file_size = static_cast<std::uint64_t>(sb.st_size);
    if (file_size > std::numeric_limits<std::size_t>::max())
      fail(ErrorKind::io, path, "file of ", file_size, " bytes does not fit in the address space");
    const auto size = static_cast<std::size_t>(file_size);
    if (mode == LoadMode::mmap && size >= 8) {
      void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED)
        fail(ErrorKind::io, path, "mmap of ", size, " bytes failed: ", std::strerror(errno));
      st.map_ = p;
      st.map_size_ = size;
      st.parse(static_cast<const std::uint8_t*>(p), size);
      return st;
    }
    // Read the length prefix first so that a hostile header length is rejected before the
    // buffer for the whole file is allocated.
    std::uint8_t prefix[8] = {};
    const auto read_fully = [&](std::uint8_t* dst, std::size_t n, std::size_t at) {
      std::size_t got = 0;
      while (got < n) {
        const std::size_t chunk = std::min<std::size_t>(n - got, std::size_t(1) << 30);
        const ssize_t r = ::read(fd, dst + got, chunk);
        if (r < 0) {
          if (errno == EINTR) continue;
          fail(ErrorKind::io, path, "read failed at byte ", at + got, ": ", std::strerror(errno));
        }
        if (r == 0)
          fail(ErrorKind::io, path, "file shrank while reading: got ", at + got, " of ", size,
               " bytes");
        got += static_cast<std::size_t>(r);
      }
    };
    const std::size_t head = std::min<std::size_t>(size, 8);
    read_fully(prefix, head, 0);
    (void)detail::st::check_prefix(prefix, size, path);
    st.buffer_.resize(size);
    std::memcpy(st.buffer_.data(), prefix, head);
    read_fully(st.buffer_.data() + head, size - head, head);
#else
    (void)mode;
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorKind::io, path, "cannot open");
    in.seekg(0, std::ios::end);
    const std::streamoff end = in.tellg();
    if (end < 0) fail(ErrorKind::io, path, "cannot determine the file size");
    const auto size = static_cast<std::size_t>(end);
    in.seekg(0, std::ios::beg);
    std::uint8_t prefix[8] = {};
    const std::size_t head = std::min<std::size_t>(size, 8);
    if (!in.read(reinterpret_cast<char*>(prefix), static_cast<std::streamsize>(head)))
      fail(ErrorKind::io, path, "read failed");
    (void)detail::st::check_prefix(prefix, size, path);
    st.buffer_.resize(size);
    std::memcpy(st.buffer_.data(), prefix, head);
    if (!in.read(reinterpret_cast<char*>(st.buffer_.data() + head),
                 static_cast<std::streamsize>(size - head)))
      fail(ErrorKind::io, path, "read failed");
#endif
    st.parse(st.buffer_.data(), st.buffer_.size());
    return st;
  }

  /// Validates a whole file held in memory (takes ownership of the bytes).
  static SafeTensors from_bytes(std::vector<std::uint8_t> bytes, std::string source = "<memory>") {
    SafeTensors st;
    st.source_ = std::move(source);
    st.buffer_ = std::move(bytes);
    st.parse(st.buffer_.data(), st.buffer_.size());
    return st;
  }

  /// The file path, or the source name given to from_bytes.
  const std::string& source() const noexcept { return source_; }
  /// The "__metadata__" map (empty if absent).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// All tensors, in data-offset order.
  const std::vector<TensorInfo>& tensors() const noexcept { return tensors_; }
  /// Size of the data buffer in bytes (== the last tensor's end).
  std::size_t data_size() const noexcept { return data_size_; }

  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  /// The tensor, or nullptr if absent.
  const TensorInfo* find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  /// The tensor, or an ErrorKind::missing_weight error naming `where` (e.g. "Linear 'q_proj'";
  /// the file if empty) and the tensor.
  const TensorInfo& info(const std::string& name, std::string_view where = {}) const {
    if (const TensorInfo* t = find(name)) return *t;
    std::string hint;
    // A common cause: a prefix ("model.") present on one side only.
    for (const TensorInfo& t : tensors_) {
      const std::string& a = t.name.size() > name.size() ? t.name : name;
      const std::string& b = t.name.size() > name.size() ? name : t.name;
      if (!b.empty() && a.size() > b.size() && a.compare(a.size() - b.size(), b.size(), b) == 0 &&
          a[a.size() - b.size() - 1] == '.') {
        hint = "; did you mean " + json::quote(t.name) + "?";
        break;
      }
    }
    fail(ErrorKind::missing_weight, where_or_source(where), "weight ", json::quote(name),
         " not found in ", source_, " (", tensors_.size(), " tensors)", hint);
  }

  /// Raw little-endian bytes of a tensor of this file (end - begin bytes, possibly unaligned).
  const std::uint8_t* data(const TensorInfo& t) const {
    check(t.begin <= t.end && t.end <= data_size_, ErrorKind::invalid_argument, source_,
          "tensor ", json::quote(t.name), " data_offsets [", t.begin, ", ", t.end,
          "] lie outside the data buffer of ", data_size_, " bytes (TensorInfo of another file?)");
    return data_ + t.begin;
  }

  /// Converts a tensor into `out[0, count)`; count must equal numel. Source dtypes F32, F16,
  /// BF16, F64 convert to float/double T; I8, U8, I32, I64 convert to any arithmetic T (integer
  /// targets are range-checked per element). Anything else is ErrorKind::dtype_mismatch.
  template <class T>
  void read(const TensorInfo& t, T* out, std::size_t count) const {
    read_as(t, out, count, source_);
  }

  /// The tensor `name` converted to T, flattened in row-major order.
  template <class T>
  std::vector<T> to_vector(const std::string& name, std::string_view where = {}) const {
    const TensorInfo& t = info(name, where);
    std::vector<T> v(static_cast<std::size_t>(t.numel()));
    read_as(t, v.data(), v.size(), where_or_source(where));
    return v;
  }

  /// A 2-D tensor [rows, cols] (a negative expected size matches any size) as a row-major matrix.
  template <class T>
  Matrix<T> matrix(const std::string& name, Index rows, Index cols,
                   std::string_view where = {}) const {
    const TensorInfo& t = info(name, where);
    const auto ok = [](std::int64_t have, Index want) { return want < 0 || have == want; };
    if (t.shape.size() != 2 || !ok(t.shape[0], rows) || !ok(t.shape[1], cols))
      fail(ErrorKind::shape_mismatch, where_or_source(where), "weight ", json::quote(name),
           " has shape ", shape_str(t.shape), ", expected [", dim_str(rows), ", ", dim_str(cols),
           "]");
    Matrix<T> m(static_cast<Index>(t.shape[0]), static_cast<Index>(t.shape[1]));
    read_as(t, m.data(), static_cast<std::size_t>(m.size()), where_or_source(where));
    return m;
  }

  /// A 1-D tensor [n] (n < 0 matches any size) as a column vector.
  template <class T>
  Vector<T> vector(const std::string& name, Index n, std::string_view where = {}) const {
    const TensorInfo& t = info(name, where);
    if (t.shape.size() != 1 || (n >= 0 && t.shape[0] != n))
      fail(ErrorKind::shape_mismatch, where_or_source(where), "weight ", json::quote(name),
           " has shape ", shape_str(t.shape), ", expected [", dim_str(n), "]");
    Vector<T> v(static_cast<Index>(t.shape[0]));
    read_as(t, v.data(), static_cast<std::size_t>(v.size()), where_or_source(where));
    return v;
  }

  void swap(SafeTensors& o) noexcept {
    using std::swap;
    swap(source_, o.source_);
    swap(buffer_, o.buffer_);  // vector swap keeps element addresses, so data_ stays valid
    swap(map_, o.map_);
    swap(map_size_, o.map_size_);
    swap(data_, o.data_);
    swap(data_size_, o.data_size_);
    swap(metadata_, o.metadata_);
    swap(tensors_, o.tensors_);
    swap(index_, o.index_);
  }

 private:
  SafeTensors() = default;

  std::string where_or_source(std::string_view where) const {
    return where.empty() ? source_ : std::string(where);
  }
  static std::string dim_str(Index d) { return d < 0 ? std::string("*") : std::to_string(d); }

  void release() noexcept {
#if EIGENFORMER_SAFETENSORS_MMAP
    if (map_) ::munmap(map_, map_size_);
#endif
    map_ = nullptr;
    map_size_ = 0;
  }

  void parse(const std::uint8_t* file, std::size_t size) {
    const auto n = static_cast<std::size_t>(detail::st::check_prefix(file, size, source_));
    const std::uint8_t* h = file + 8;
    const std::size_t bad = json::utf8_invalid_at(h, n);
    if (bad != json::npos)
      fail(ErrorKind::format, source_, "header is not valid UTF-8: byte ",
           json::hex_byte(h[bad]), " at header byte ", bad);
    if (n == 0) fail(ErrorKind::format, source_, "header is empty; it must be a JSON object");
    if (h[0] != '{')
      fail(ErrorKind::format, source_, "header must start with '{', found ",
           h[0] >= 0x21 && h[0] < 0x7f ? std::string("'") + static_cast<char>(h[0]) + "'"
                                       : "byte " + json::hex_byte(h[0]));
    const std::size_t data_size = size - 8 - n;
    detail::st::parse_header(std::string_view(reinterpret_cast<const char*>(h), n), data_size,
                             source_, tensors_, metadata_);
    index_.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    data_ = h + n;
    data_size_ = data_size;
  }

  template <class T, class Src, class F>
  static void convert(const std::uint8_t* p, T* out, std::size_t n, F&& f) {
    for (std::size_t i = 0; i < n; ++i) out[i] = f(detail::st::load_le<Src>(p + i * sizeof(Src)));
  }

  template <class T, class Src>
  void convert_int(const TensorInfo& t, const std::uint8_t* p, T* out, std::size_t n,
                   std::string_view where) const {
    for (std::size_t i = 0; i < n; ++i) {
      const Src v = detail::st::load_le<Src>(p + i * sizeof(Src));
      if constexpr (std::is_integral_v<T>) {
        if (!detail::st::int_fits<T>(v))
          fail(ErrorKind::dtype_mismatch, where, "tensor ", json::quote(t.name), " (",
               dtype_name(t.dtype), ") element ", i, " = ", +v, " does not fit in ",
               detail::st::type_name<T>());
      }
      out[i] = static_cast<T>(v);
    }
  }

  template <class T>
  void read_as(const TensorInfo& t, T* out, std::size_t count, std::string_view where) const {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>,
                  "SafeTensors::read: T must be a floating-point or integer type");
    const std::uint8_t* p = data(t);
    const auto n = static_cast<std::size_t>(t.numel());
    check(t.numel() >= 0 && n <= (t.end - t.begin) / dtype_size(t.dtype) &&
              n * dtype_size(t.dtype) == t.end - t.begin,
          ErrorKind::invalid_argument, where, "tensor ", json::quote(t.name), ": dtype ",
          dtype_name(t.dtype), " x shape ", shape_str(t.shape), " does not match data_offsets [",
          t.begin, ", ", t.end, "] (TensorInfo of another file?)");
    check(count == n, ErrorKind::invalid_argument, where, "tensor ", json::quote(t.name),
          " has ", n, " elements (shape ", shape_str(t.shape), "), but the output holds ", count);
    constexpr bool float_out = std::is_floating_point_v<T>;
    switch (t.dtype) {
      case Dtype::F32:
        if constexpr (std::is_same_v<T, float>) {
          if (n) std::memcpy(out, p, n * sizeof(float));
          return;
        } else if constexpr (float_out) {
          convert<T, float>(p, out, n, [](float v) { return static_cast<T>(v); });
          return;
        }
        break;
      case Dtype::F64:
        if constexpr (std::is_same_v<T, double>) {
          if (n) std::memcpy(out, p, n * sizeof(double));
          return;
        } else if constexpr (float_out) {
          convert<T, double>(p, out, n, [](double v) { return static_cast<T>(v); });
          return;
        }
        break;
      case Dtype::F16:
        if constexpr (float_out) {
          convert<T, std::uint16_t>(p, out, n,
                                    [](std::uint16_t v) { return static_cast<T>(half_to_float(v)); });
          return;
        }
        break;
      case Dtype::BF16:
        if constexpr (float_out) {
          convert<T, std::uint16_t>(p, out, n,
                                    [](std::uint16_t v) { return static_cast<T>(bf16_to_float(v)); });
          return;
        }
        break;
      case Dtype::I8: convert_int<T, std::int8_t>(t, p, out, n, where); return;
      case Dtype::U8: convert_int<T, std::uint8_t>(t, p, out, n, where); return;
      case Dtype::I32: convert_int<T, std::int32_t>(t, p, out, n, where); return;
      case Dtype::I64: convert_int<T, std::int64_t>(t, p, out, n, where); return;
      default:
        fail(ErrorKind::dtype_mismatch, where, "tensor ", json::quote(t.name), " has dtype ",
             dtype_name(t.dtype), ", which cannot be read (supported: F32, F16, BF16, F64, I8, U8, "
             "I32, I64)");
    }
    fail(ErrorKind::dtype_mismatch, where, "tensor ", json::quote(t.name), " has dtype ",
         dtype_name(t.dtype), ", which cannot be read as ", detail::st::type_name<T>(),
         " (floating-point data converts only to float or double)");
  }

  std::string source_;
  std::vector<std::uint8_t> buffer_;  // LoadMode::read / from_bytes
  void* map_ = nullptr;               // LoadMode::mmap
  std::size_t map_size_ = 0;
  const std::uint8_t* data_ = nullptr;  // start of the data buffer
  std::size_t data_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;  // name -> position in tensors_
};

// ------------------------------------------------------------------------------------------------
// Writer
// ------------------------------------------------------------------------------------------------

/// Builds a safetensors file: tensors are laid out in insertion order, the header is padded with
/// spaces to a multiple of 8 bytes (as the Rust crate does), metadata keys are sorted.
class SafeTensorsWriter {
 public:
  /// Sets (or replaces) a "__metadata__" entry. Key and value must be valid UTF-8.
  void set_metadata(const std::string& key, const std::string& value) {
    check(json::valid_utf8(key) && json::valid_utf8(value),
          ErrorKind::invalid_argument, kWhere, "metadata key ", json::quote(key),
          " or its value is not valid UTF-8");
    metadata_[key] = value;
  }

  /// Adds a tensor from raw little-endian bytes: nbytes must equal dtype_size x product(shape).
  void add(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape, const void* bytes,
           std::size_t nbytes) {
    const std::size_t need = checked_nbytes(name, dtype, shape);
    check(nbytes == need, ErrorKind::invalid_argument, kWhere, "tensor ", json::quote(name),
          ": dtype ", dtype_name(dtype), " x shape ", shape_str(shape), " needs ", need,
          " bytes, got ", nbytes);
    check(bytes != nullptr || nbytes == 0, ErrorKind::invalid_argument, kWhere, "tensor ",
          json::quote(name), ": null data pointer");
    const auto* b = static_cast<const std::uint8_t*>(bytes);
    push(name, dtype, std::move(shape), nbytes ? std::vector<std::uint8_t>(b, b + nbytes)
                                               : std::vector<std::uint8_t>());
  }

  /// Adds an Eigen matrix or vector, converted to `store` (F32, F16, BF16 or F64; F16/BF16 round
  /// to nearest even from the value converted to float). A type with one column at compile time
  /// (a column vector) is stored 1-D [rows]; anything else 2-D [rows, cols], row-major.
  template <class Derived>
  void add(const std::string& name, const Eigen::DenseBase<Derived>& m, Dtype store = Dtype::F32) {
    using Scalar = typename Derived::Scalar;
    static_assert(std::is_arithmetic_v<Scalar>, "SafeTensorsWriter::add: real scalars only");
    check(store == Dtype::F32 || store == Dtype::F16 || store == Dtype::BF16 || store == Dtype::F64,
          ErrorKind::invalid_argument, kWhere, "tensor ", json::quote(name),
          ": cannot store an Eigen matrix as ", dtype_name(store), " (use F32, F16, BF16 or F64)");
    const Index rows = m.rows(), cols = m.cols();
    std::vector<std::int64_t> shape =
        Derived::ColsAtCompileTime == 1
            ? std::vector<std::int64_t>{static_cast<std::int64_t>(rows)}
            : std::vector<std::int64_t>{static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)};
    const std::size_t need = checked_nbytes(name, store, shape);
    const auto& plain = m.derived().eval();  // evaluate expressions once (no copy of a plain matrix)
    std::vector<std::uint8_t> bytes(need);
    std::uint8_t* out = bytes.data();
    for (Index i = 0; i < rows; ++i) {
      for (Index j = 0; j < cols; ++j) {
        const Scalar v = plain.coeff(i, j);
        switch (store) {
          case Dtype::F64: put(out, static_cast<double>(v)); break;
          case Dtype::F16: put(out, half_from(static_cast<float>(v))); break;
          case Dtype::BF16: put(out, bf16_from(static_cast<float>(v))); break;
          default: put(out, static_cast<float>(v)); break;
        }
      }
    }
    push(name, store, std::move(shape), std::move(bytes));
  }

  /// The number of tensors added so far.
  std::size_t size() const noexcept { return entries_.size(); }

  /// The complete file.
  std::vector<std::uint8_t> to_bytes() const {
    const std::string h = header();
    std::size_t total = 8 + h.size();
    for (const Entry& e : entries_) total += e.bytes.size();
    std::vector<std::uint8_t> out;
    out.reserve(total);
    append_prefix(out, h.size());
    out.insert(out.end(), h.begin(), h.end());
    for (const Entry& e : entries_) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
    return out;
  }

  /// Writes the file (ErrorKind::io on failure; a partially written file may remain).
  void write(const std::string& path) const {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) fail(ErrorKind::io, path, "cannot open for writing: ", std::strerror(errno));
    const std::string h = header();
    std::vector<std::uint8_t> prefix;
    append_prefix(prefix, h.size());
    bool ok = std::fwrite(prefix.data(), 1, prefix.size(), f) == prefix.size() &&
              std::fwrite(h.data(), 1, h.size(), f) == h.size();
    for (const Entry& e : entries_)
      if (ok && !e.bytes.empty())
        ok = std::fwrite(e.bytes.data(), 1, e.bytes.size(), f) == e.bytes.size();
    const int err = ok ? 0 : errno;
    const bool closed = std::fclose(f) == 0;
    if (!ok) fail(ErrorKind::io, path, "write failed: ", std::strerror(err));
    if (!closed) fail(ErrorKind::io, path, "write failed on close: ", std::strerror(errno));
  }

 private:
  static constexpr const char* kWhere = "SafeTensorsWriter";

  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
  };

  template <class V>
  static void put(std::uint8_t*& out, V v) {
    std::memcpy(out, &v, sizeof v);
    out += sizeof v;
  }
  static std::uint16_t half_from(float f) { return float_to_half(f); }
  static std::uint16_t bf16_from(float f) { return float_to_bf16(f); }

  static void append_prefix(std::vector<std::uint8_t>& out, std::size_t n) {
    for (int i = 0; i < 8; ++i)
      out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(n) >> (8 * i)));
  }

  std::size_t checked_nbytes(const std::string& name, Dtype dtype,
                             const std::vector<std::int64_t>& shape) const {
    check(json::valid_utf8(name), ErrorKind::invalid_argument, kWhere, "tensor name ",
          json::quote(name), " is not valid UTF-8");
    check(name != "__metadata__", ErrorKind::invalid_argument, kWhere,
          "'__metadata__' is reserved and cannot name a tensor");
    check(names_.count(name) == 0, ErrorKind::invalid_argument, kWhere, "duplicate tensor name ",
          json::quote(name));
    std::size_t n = dtype_size(dtype);
    for (const std::int64_t d : shape) {
      check(d >= 0, ErrorKind::invalid_argument, kWhere, "tensor ", json::quote(name),
            ": shape ", shape_str(shape), " has a negative dimension");
      check(d == 0 || n <= std::numeric_limits<std::size_t>::max() / static_cast<std::uint64_t>(d),
            ErrorKind::invalid_argument, kWhere, "tensor ", json::quote(name), ": shape ",
            shape_str(shape), " overflows the byte size");
      n *= static_cast<std::size_t>(d);
    }
    return n;
  }

  void push(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape,
            std::vector<std::uint8_t> bytes) {
    entries_.push_back(Entry{name, dtype, std::move(shape), std::move(bytes)});
    names_.insert(name);
  }

  /// The JSON header, padded with spaces to a multiple of 8 bytes.
  std::string header() const {
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      for (const auto& [k, v] : metadata_) {
        if (!first) h += ',';
        first = false;
        json::append_string(h, k);
        h += ':';
        json::append_string(h, v);
      }
      h += '}';
      first = false;
    }
    std::size_t offset = 0;
    for (const Entry& e : entries_) {
      if (!first) h += ',';
      first = false;
      json::append_string(h, e.name);
      h += ":{\"dtype\":\"";
      h += dtype_name(e.dtype);
      h += "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) {
        if (i) h += ',';
        h += std::to_string(e.shape[i]);
      }
      h += "],\"data_offsets\":[";
      h += std::to_string(offset);
      h += ',';
      offset += e.bytes.size();
      h += std::to_string(offset);
      h += "]}";
    }
    h += '}';
    h.append((8 - h.size() % 8) % 8, ' ');
    return h;
  }

  std::vector<Entry> entries_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace eigenformer
