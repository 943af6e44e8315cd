// Tests of include/eigenformer/io/safetensors.hpp: writer -> reader round trips, the committed
// malformed files of tests/data/safetensors (regenerate with tools/make_bad_safetensors.py), error
// kinds and messages, and a mutation smoke test.

#include "eigenformer/io/safetensors.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#ifndef EIGENFORMER_TEST_DATA_DIR
#define EIGENFORMER_TEST_DATA_DIR "tests/data"
#endif

using namespace eigenformer;
namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

std::string data_dir() { return std::string(EIGENFORMER_TEST_DATA_DIR) + "/safetensors"; }

/// Runs f; success iff it throws eigenformer::Error of `kind` whose what() contains `sub`.
template <class F>
::testing::AssertionResult ThrowsError(F&& f, ErrorKind kind, std::string_view sub) {
  try {
    f();
  } catch (const Error& e) {
    if (e.kind() != kind)
      return ::testing::AssertionFailure()
             << "kind is '" << to_string(e.kind()) << "', expected '" << to_string(kind)
             << "': " << e.what();
    if (std::string_view(e.what()).find(sub) == std::string_view::npos)
      return ::testing::AssertionFailure() << "message lacks \"" << sub << "\": " << e.what();
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-eigenformer exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}
#define EXPECT_EF_ERROR(stmt, kind, sub) EXPECT_TRUE(ThrowsError([&] { (void)(stmt); }, kind, sub))

Bytes read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_all(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(out.good());
}

void put_u64(Bytes& b, std::uint64_t n) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
}

/// A file from a header text and `data_bytes` zero bytes; the length prefix is the header's
/// length unless given.
Bytes raw_file(std::string_view header, std::size_t data_bytes = 0,
               std::optional<std::uint64_t> n = std::nullopt) {
  Bytes b;
  put_u64(b, n ? *n : header.size());
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0);
  return b;
}

std::uint64_t header_len(const Bytes& b) {
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(b[i]) << (8 * i);
  return n;
}

std::string header_text(const Bytes& b) {
  return std::string(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(header_len(b)));
}

/// A temporary file path, removed at scope exit.
class TempFile {
 public:
  TempFile() {
    std::random_device rd;
    path_ = (fs::temp_directory_path() /
             ("eigenformer_st_" + std::to_string(rd()) + std::to_string(rd()) + ".safetensors"))
                .string();
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

template <class T>
Bytes le_bytes(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

const Dtype kAllDtypes[] = {Dtype::BOOL, Dtype::U8,  Dtype::I8,  Dtype::I16,     Dtype::U16,
                            Dtype::F16,  Dtype::BF16, Dtype::I32, Dtype::U32,    Dtype::F32,
                            Dtype::F64,  Dtype::I64, Dtype::U64, Dtype::F8_E4M3, Dtype::F8_E5M2};

}  // namespace

// ------------------------------------------------------------------------------------------------
// Dtypes
// ------------------------------------------------------------------------------------------------

TEST(SafeTensorsDtype, SizesAndNames) {
  const std::size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};
  const char* names[] = {"BOOL", "U8",  "I8",  "I16", "U16", "F16", "BF16",   "I32",
                         "U32",  "F32", "F64", "I64", "U64", "F8_E4M3", "F8_E5M2"};
  for (std::size_t i = 0; i < std::size(kAllDtypes); ++i) {
    EXPECT_EQ(dtype_size(kAllDtypes[i]), sizes[i]) << names[i];
    EXPECT_STREQ(dtype_name(kAllDtypes[i]), names[i]);
    ASSERT_TRUE(dtype_from_name(names[i]).has_value()) << names[i];
    EXPECT_EQ(*dtype_from_name(names[i]), kAllDtypes[i]);
  }
  EXPECT_FALSE(dtype_from_name("f32").has_value());
  EXPECT_FALSE(dtype_from_name("F32 ").has_value());
  EXPECT_FALSE(dtype_from_name("").has_value());
}

// ------------------------------------------------------------------------------------------------
// Writer output format
// ------------------------------------------------------------------------------------------------

TEST(SafeTensorsWriter, MatchesRustCrateBytes) {
  // safetensors/src/tensor.rs, test_serialization: "attn.0" F32 [1, 2, 3] = 0..5.
  const Bytes expected = {
      64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,
      123, 34,  100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104,
      97,  112, 101, 34,  58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,
      95,  111, 102, 102, 115, 101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125,
      0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,
      128, 64,  0,   0,   160, 64};
  const std::vector<float> v = {0, 1, 2, 3, 4, 5};
  SafeTensorsWriter w;
  w.add("attn.0", Dtype::F32, {1, 2, 3}, v.data(), v.size() * sizeof(float));
  EXPECT_EQ(w.to_bytes(), expected);
  EXPECT_EQ(read_all(data_dir() + "/valid_rust_reference.safetensors"), expected);

  // test_empty: no tensors, with and without metadata.
  const Bytes empty = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
  EXPECT_EQ(SafeTensorsWriter().to_bytes(), empty);
  const std::string meta_header = "{\"__metadata__\":{\"framework\":\"pt\"}}     ";
  SafeTensorsWriter wm;
  wm.set_metadata("framework", "pt");
  EXPECT_EQ(wm.to_bytes(), raw_file(meta_header));
  EXPECT_EQ(header_len(wm.to_bytes()), 40u);
}

TEST(SafeTensorsWriter, HeaderPaddedToMultipleOf8) {
  for (int len = 1; len <= 24; ++len) {
    SafeTensorsWriter w;
    const std::vector<float> v = {1.f, 2.f};
    w.add(std::string(static_cast<std::size_t>(len), 'a'), Dtype::F32, {2}, v.data(), 8);
    const Bytes b = w.to_bytes();
    const std::uint64_t n = header_len(b);
    EXPECT_EQ(n % 8, 0u);
    const std::string h = header_text(b);
    EXPECT_EQ(h.find_last_not_of(' '), h.find_last_of('}'));
    EXPECT_EQ(b.size(), 8 + n + 8);
    EXPECT_NO_THROW(SafeTensors::from_bytes(b));
  }
}

TEST(SafeTensorsWriter, TensorsInInsertionOrder) {
  SafeTensorsWriter w;
  const std::vector<std::uint8_t> one = {1}, two = {2, 2};
  w.add("zz", Dtype::U8, {1}, one.data(), 1);
  w.add("aa", Dtype::U8, {2}, two.data(), 2);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  ASSERT_EQ(st.tensors().size(), 2u);
  EXPECT_EQ(st.tensors()[0].name, "zz");
  EXPECT_EQ(st.tensors()[0].begin, 0u);
  EXPECT_EQ(st.tensors()[1].name, "aa");
  EXPECT_EQ(st.tensors()[1].begin, 1u);
  EXPECT_EQ(st.tensors()[1].end, 3u);
  EXPECT_EQ(w.size(), 2u);
}

TEST(SafeTensorsWriter, Errors) {
  SafeTensorsWriter w;
  const std::vector<float> v(6, 1.f);
  w.add("w", Dtype::F32, {2, 3}, v.data(), 24);
  EXPECT_EF_ERROR(w.add("w", Dtype::F32, {2, 3}, v.data(), 24), ErrorKind::invalid_argument,
                  "duplicate tensor name 'w'");
  EXPECT_EF_ERROR(w.add("x", Dtype::F32, {2, 3}, v.data(), 20), ErrorKind::invalid_argument,
                  "tensor 'x': dtype F32 x shape [2, 3] needs 24 bytes, got 20");
  EXPECT_EF_ERROR(w.add("x", Dtype::F32, {2, 3}, nullptr, 24), ErrorKind::invalid_argument,
                  "null data pointer");
  EXPECT_EF_ERROR(w.add("x", Dtype::F32, {-2, 3}, v.data(), 24), ErrorKind::invalid_argument,
                  "negative dimension");
  EXPECT_EF_ERROR(w.add("x", Dtype::F32, {INT64_MAX, INT64_MAX}, v.data(), 24),
                  ErrorKind::invalid_argument, "overflows the byte size");
  EXPECT_EF_ERROR(w.add("__metadata__", Dtype::F32, {2, 3}, v.data(), 24),
                  ErrorKind::invalid_argument, "'__metadata__' is reserved");
  EXPECT_EF_ERROR(w.add("bad\xff", Dtype::F32, {2, 3}, v.data(), 24), ErrorKind::invalid_argument,
                  "tensor name 'bad\\xff' is not valid UTF-8");
  EXPECT_EF_ERROR(w.set_metadata("k", "\xc0\xaf"), ErrorKind::invalid_argument,
                  "not valid UTF-8");
  const Matrix<float> m = Matrix<float>::Ones(2, 2);
  EXPECT_EF_ERROR(w.add("m", m, Dtype::I32), ErrorKind::invalid_argument,
                  "cannot store an Eigen matrix as I32");
  EXPECT_EF_ERROR(w.write("/nonexistent-dir-eigenformer/x.safetensors"), ErrorKind::io,
                  "cannot open for writing");
  // Failed adds leave the writer usable and unchanged.
  EXPECT_EQ(w.size(), 1u);
  EXPECT_NO_THROW(SafeTensors::from_bytes(w.to_bytes()));
}

// ------------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------------

TEST(SafeTensorsRoundTrip, F32) {
  Matrix<float> m = Matrix<float>::Random(5, 7);
  SafeTensorsWriter w;
  w.add("m", m);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  const TensorInfo& t = st.info("m");
  EXPECT_EQ(t.dtype, Dtype::F32);
  EXPECT_EQ(t.shape, (std::vector<std::int64_t>{5, 7}));
  EXPECT_EQ(t.numel(), 35);
  EXPECT_EQ(std::memcmp(st.data(t), m.data(), 35 * sizeof(float)), 0);  // row-major bytes
  EXPECT_EQ(st.matrix<float>("m", 5, 7), m);
  EXPECT_EQ(st.matrix<double>("m", 5, 7), m.cast<double>());
  const std::vector<float> flat = st.to_vector<float>("m");
  EXPECT_TRUE(std::equal(flat.begin(), flat.end(), m.data()));
  std::vector<float> out(35);
  st.read(t, out.data(), out.size());
  EXPECT_EQ(out, flat);
}

TEST(SafeTensorsRoundTrip, F64) {
  Matrix<double> m = Matrix<double>::Random(3, 4);
  m(0, 0) = 1e300;  // beyond float range
  SafeTensorsWriter w;
  w.add("m", m, Dtype::F64);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_EQ(st.info("m").dtype, Dtype::F64);
  EXPECT_EQ(st.matrix<double>("m", 3, 4), m);
  EXPECT_EQ(st.matrix<float>("m", 3, 4), m.cast<float>());
}

TEST(SafeTensorsRoundTrip, F16) {
  Matrix<float> exact(2, 4);
  exact << 0.f, -0.5f, 1.f, 65504.f, 1.f / 1024, -2048.f, 5.9604645e-8f /* smallest subnormal */,
      3.140625f;
  Matrix<float> inexact = Matrix<float>::Random(6, 5) * 100.f;
  inexact(0, 0) = 1e6f;   // overflows to inf
  inexact(0, 1) = 1e-9f;  // underflows to 0
  Matrix<double> as_double = inexact.cast<double>();
  SafeTensorsWriter w;
  w.add("exact", exact, Dtype::F16);
  w.add("inexact", inexact, Dtype::F16);
  w.add("double", as_double, Dtype::F16);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_EQ(st.info("exact").dtype, Dtype::F16);
  EXPECT_EQ(st.info("exact").end - st.info("exact").begin, 16u);
  EXPECT_EQ(st.matrix<float>("exact", 2, 4), exact);
  const Matrix<float> got = st.matrix<float>("inexact", 6, 5);
  const Matrix<double> got_d = st.matrix<double>("double", 6, 5);
  const std::uint8_t* raw = st.data(st.info("inexact"));
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j < 5; ++j) {
      const std::uint16_t h = float_to_half(inexact(i, j));
      std::uint16_t stored;
      std::memcpy(&stored, raw + 2 * (i * 5 + j), 2);
      EXPECT_EQ(stored, h);
      EXPECT_EQ(got(i, j), half_to_float(h));
      EXPECT_EQ(got_d(i, j), static_cast<double>(half_to_float(h)));
    }
  EXPECT_TRUE(std::isinf(got(0, 0)));
  EXPECT_EQ(got(0, 1), 0.f);
}

TEST(SafeTensorsRoundTrip, BF16) {
  Matrix<float> m = Matrix<float>::Random(4, 3) * 1e20f;
  m(0, 0) = 1.00390625f;  // tie between 1.0 and 1.0078125 -> even (1.0)
  m(0, 1) = -3.f;
  SafeTensorsWriter w;
  w.add("m", m, Dtype::BF16);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_EQ(st.info("m").dtype, Dtype::BF16);
  const Matrix<float> got = st.matrix<float>("m", 4, 3);
  for (Index i = 0; i < m.size(); ++i)
    EXPECT_EQ(got.data()[i], bf16_to_float(float_to_bf16(m.data()[i])));
  EXPECT_EQ(got(0, 0), 1.f);
  EXPECT_EQ(got(0, 1), -3.f);
}

TEST(SafeTensorsRoundTrip, VectorsAndExpressions) {
  Vector<float> v = Vector<float>::LinSpaced(5, 0.f, 4.f);
  Eigen::RowVectorXf r = Eigen::RowVectorXf::LinSpaced(3, 1.f, 3.f);
  Matrix<float> m = Matrix<float>::Random(4, 6);
  Eigen::ArrayXXd a = Eigen::ArrayXXd::Random(2, 3);  // column-major array
  Eigen::Matrix<float, 2, 2> fixed;
  fixed << 1, 2, 3, 4;
  SafeTensorsWriter w;
  w.add("v", v);
  w.add("r", r);
  w.add("expr", (m * 2.f).eval().block(1, 2, 2, 3));
  w.add("lazy", m.transpose() * 1.f);
  w.add("a", a, Dtype::F64);
  w.add("fixed", fixed);
  w.add("col", m.col(2));  // a column block: one column at compile time -> 1-D
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_EQ(st.info("v").shape, (std::vector<std::int64_t>{5}));
  EXPECT_EQ(st.vector<float>("v", 5), v);
  EXPECT_EQ(st.info("r").shape, (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(st.matrix<float>("r", 1, 3), Matrix<float>(r));
  EXPECT_EQ(st.matrix<float>("expr", 2, 3), Matrix<float>((m * 2.f).block(1, 2, 2, 3)));
  EXPECT_EQ(st.matrix<float>("lazy", 6, 4), Matrix<float>(m.transpose()));
  EXPECT_EQ(st.matrix<double>("a", 2, 3), Matrix<double>(a.matrix()));
  EXPECT_EQ(st.matrix<float>("fixed", 2, 2), Matrix<float>(fixed));
  EXPECT_EQ(st.vector<float>("col", 4), Vector<float>(m.col(2)));
}

TEST(SafeTensorsRoundTrip, RawBytesOfEveryDtype) {
  SafeTensorsWriter w;
  std::vector<Bytes> payloads;
  for (Dtype d : kAllDtypes) {
    Bytes b(6 * dtype_size(d));
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 37 + 11);
    w.add(dtype_name(d), d, {3, 2}, b.data(), b.size());
    payloads.push_back(std::move(b));
  }
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  ASSERT_EQ(st.tensors().size(), std::size(kAllDtypes));
  for (std::size_t i = 0; i < std::size(kAllDtypes); ++i) {
    const TensorInfo& t = st.info(dtype_name(kAllDtypes[i]));
    EXPECT_EQ(t.dtype, kAllDtypes[i]);
    EXPECT_EQ(t.shape, (std::vector<std::int64_t>{3, 2}));
    ASSERT_EQ(t.end - t.begin, payloads[i].size());
    EXPECT_EQ(std::memcmp(st.data(t), payloads[i].data(), payloads[i].size()), 0);
  }
}

TEST(SafeTensorsRoundTrip, IntegerDtypes) {
  const std::vector<std::int8_t> i8 = {-128, -1, 0, 1, 127};
  const std::vector<std::uint8_t> u8 = {0, 1, 128, 255};
  const std::vector<std::int32_t> i32 = {INT32_MIN, -5, 0, 300, INT32_MAX};
  const std::vector<std::int64_t> i64 = {INT64_MIN, -1, 0, 1LL << 40, INT64_MAX};
  SafeTensorsWriter w;
  w.add("i8", Dtype::I8, {5}, i8.data(), 5);
  w.add("u8", Dtype::U8, {4}, u8.data(), 4);
  w.add("i32", Dtype::I32, {5}, i32.data(), 20);
  w.add("i64", Dtype::I64, {5}, i64.data(), 40);
  w.add("small", Dtype::I64, {3}, std::vector<std::int64_t>{-3, 0, 100}.data(), 24);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_EQ(st.to_vector<std::int8_t>("i8"), i8);
  EXPECT_EQ(st.to_vector<std::int64_t>("i8"), (std::vector<std::int64_t>{-128, -1, 0, 1, 127}));
  EXPECT_EQ(st.to_vector<float>("i8"), (std::vector<float>{-128, -1, 0, 1, 127}));
  EXPECT_EQ(st.to_vector<std::uint8_t>("u8"), u8);
  EXPECT_EQ(st.to_vector<std::int16_t>("u8"), (std::vector<std::int16_t>{0, 1, 128, 255}));
  EXPECT_EQ(st.to_vector<std::int32_t>("i32"), i32);
  EXPECT_EQ(st.to_vector<double>("i32"), (std::vector<double>{INT32_MIN, -5, 0, 300, INT32_MAX}));
  EXPECT_EQ(st.to_vector<std::int64_t>("i64"), i64);
  EXPECT_EQ(st.to_vector<std::int8_t>("small"), (std::vector<std::int8_t>{-3, 0, 100}));
  EXPECT_EQ(st.vector<int>("small", 3), (Vector<int>(3) << -3, 0, 100).finished());
  // Narrowing is range-checked per element.
  EXPECT_EF_ERROR(st.to_vector<std::int8_t>("i32"), ErrorKind::dtype_mismatch,
                  "tensor 'i32' (I32) element 0 = -2147483648 does not fit in int8");
  EXPECT_EF_ERROR(st.to_vector<std::uint8_t>("i8"), ErrorKind::dtype_mismatch,
                  "element 0 = -128 does not fit in uint8");
  EXPECT_EF_ERROR(st.to_vector<std::int8_t>("u8"), ErrorKind::dtype_mismatch,
                  "element 2 = 128 does not fit in int8");
  EXPECT_EF_ERROR(st.to_vector<std::int32_t>("i64"), ErrorKind::dtype_mismatch,
                  "does not fit in int32");
}

TEST(SafeTensorsRoundTrip, ScalarShape) {
  const std::int64_t x = -42;
  SafeTensorsWriter w;
  w.add("s", Dtype::I64, {}, &x, 8);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_TRUE(st.info("s").shape.empty());
  EXPECT_EQ(st.info("s").numel(), 1);
  EXPECT_EQ(st.to_vector<std::int64_t>("s"), (std::vector<std::int64_t>{-42}));
  EXPECT_NE(header_text(w.to_bytes()).find("\"shape\":[]"), std::string::npos);
}

TEST(SafeTensorsRoundTrip, MetadataAndNamesWithEscapesAndUnicode) {
  const std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"quotes", "say \"hi\" \\ back\\slash /"},
      {"controls", std::string("a\x01" "b\n\t\r\b\f\x1f\x7f") + std::string(1, '\0') + "z"},
      {"unicode", "h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89"},  // héllo 日本 🎉
      {"", ""},
      {"__metadata__", "nested name is fine as a key"},
      {std::string("key\"with\\escapes\n"), "v"},
  };
  const std::vector<std::string> names = {"a\"b\\c\n.weight", "\xe6\x97\xa5\xe6\x9c\xac.bias",
                                          "\xf0\x9f\x98\x80", "", std::string("nul\0in", 6)};
  SafeTensorsWriter w;
  for (const auto& [k, v] : meta) w.set_metadata(k, v);
  w.set_metadata("format", "pt");  // replaces, does not duplicate
  const float one = 1.f;
  for (const auto& n : names) w.add(n, Dtype::F32, {1}, &one, 4);
  const Bytes b = w.to_bytes();
  const std::string h = header_text(b);
  EXPECT_NE(h.find("\\u0001"), std::string::npos);
  EXPECT_NE(h.find("\\u0000"), std::string::npos);
  EXPECT_NE(h.find("\\\"hi\\\""), std::string::npos);
  EXPECT_EQ(h.find('\n'), std::string::npos);  // no raw control characters
  const auto st = SafeTensors::from_bytes(b);
  EXPECT_EQ(st.metadata(), meta);
  for (const auto& n : names) {
    ASSERT_TRUE(st.contains(n)) << n;
    EXPECT_EQ(st.to_vector<float>(n), std::vector<float>{1.f});
  }
}

TEST(SafeTensorsRoundTrip, ZeroSizeTensors) {
  SafeTensorsWriter w;
  w.add("z", Matrix<float>(0, 4));
  w.add("z2", Vector<double>(0), Dtype::F64);
  w.add("x", Dtype::U8, {2, 0, 3}, nullptr, 0);
  w.add("w", Matrix<float>::Ones(2, 2));
  w.add("z3", Matrix<float>(3, 0), Dtype::BF16);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  const TensorInfo& z = st.info("z");
  EXPECT_EQ(z.shape, (std::vector<std::int64_t>{0, 4}));
  EXPECT_EQ(z.begin, z.end);
  EXPECT_EQ(z.numel(), 0);
  const Matrix<float> m = st.matrix<float>("z", 0, 4);
  EXPECT_EQ(m.rows(), 0);
  EXPECT_EQ(m.cols(), 4);
  EXPECT_EQ(st.vector<double>("z2", 0).size(), 0);
  EXPECT_TRUE(st.to_vector<std::uint8_t>("x").empty());
  EXPECT_EQ(st.matrix<float>("z3", 3, 0).rows(), 3);
  EXPECT_EQ(st.matrix<float>("w", 2, 2), Matrix<float>::Ones(2, 2));
  EXPECT_EQ(st.data_size(), 16u);
  EXPECT_EF_ERROR(st.matrix<float>("z", 4, 0), ErrorKind::shape_mismatch,
                  "weight 'z' has shape [0, 4], expected [4, 0]");
}

// ------------------------------------------------------------------------------------------------
// Reader: files, modes, lookups, errors
// ------------------------------------------------------------------------------------------------

TEST(SafeTensors, MmapAndReadModes) {
  Matrix<float> m = Matrix<float>::Random(33, 17);
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  w.add("emb", m, Dtype::F16);  // 2-byte elements: later tensors are unaligned
  w.add("b", Vector<float>::Constant(3, 2.5f));
  w.add("m", m);
  TempFile tmp;
  w.write(tmp.path());
  EXPECT_EQ(read_all(tmp.path()), w.to_bytes());
  for (LoadMode mode : {LoadMode::mmap, LoadMode::read}) {
    SCOPED_TRACE(mode == LoadMode::mmap ? "mmap" : "read");
    auto st = SafeTensors::open(tmp.path(), mode);
    EXPECT_EQ(st.source(), tmp.path());
    EXPECT_EQ(st.metadata().at("format"), "pt");
    EXPECT_EQ(st.matrix<float>("m", 33, 17), m);
    EXPECT_EQ(st.vector<float>("b", 3), Vector<float>::Constant(3, 2.5f));
    // Moves keep the mapping / buffer alive and valid.
    SafeTensors moved = std::move(st);
    EXPECT_EQ(moved.matrix<float>("m", 33, 17), m);
    std::vector<SafeTensors> many;
    many.push_back(std::move(moved));
    many.push_back(SafeTensors::open(tmp.path(), mode));
    many[0] = std::move(many[1]);
    EXPECT_EQ(many[0].matrix<float>("m", 33, 17), m);
    EXPECT_EQ(many[0].info("emb").dtype, Dtype::F16);
  }
}

TEST(SafeTensors, OpenErrors) {
  EXPECT_EF_ERROR(SafeTensors::open("/nonexistent-eigenformer/x.safetensors"), ErrorKind::io,
                  "cannot open");
  EXPECT_EF_ERROR(SafeTensors::open("/nonexistent-eigenformer/x.safetensors", LoadMode::read),
                  ErrorKind::io, "cannot open");
#if EIGENFORMER_SAFETENSORS_MMAP
  EXPECT_EF_ERROR(SafeTensors::open(fs::temp_directory_path().string()), ErrorKind::io,
                  "not a regular file");
#endif
  try {
    SafeTensors::open("/nonexistent-eigenformer/x.safetensors");
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "/nonexistent-eigenformer/x.safetensors");
  }
}

TEST(SafeTensors, ShapeCheckedLoads) {
  SafeTensorsWriter w;
  w.add("q_proj.weight", Matrix<float>::Ones(4, 5));
  w.add("q_proj.bias", Vector<float>::Ones(4));
  const auto st = SafeTensors::from_bytes(w.to_bytes(), "model.safetensors");
  EXPECT_EQ(st.matrix<float>("q_proj.weight", 4, 5, "Linear 'q_proj'").rows(), 4);
  EXPECT_EQ(st.matrix<float>("q_proj.weight", -1, 5).rows(), 4);  // -1 matches any size
  EXPECT_EQ(st.matrix<float>("q_proj.weight", 4, -1).cols(), 5);
  EXPECT_EQ(st.vector<float>("q_proj.bias", -1).size(), 4);
  try {
    st.matrix<float>("q_proj.weight", 4, 6, "Linear 'q_proj'");
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape_mismatch);
    EXPECT_EQ(e.where(), "Linear 'q_proj'");
    EXPECT_STREQ(e.what(),
                 "eigenformer: Linear 'q_proj': weight 'q_proj.weight' has shape [4, 5], expected "
                 "[4, 6]");
  }
  EXPECT_EF_ERROR(st.matrix<float>("q_proj.weight", 3, -1, "L"), ErrorKind::shape_mismatch,
                  "L: weight 'q_proj.weight' has shape [4, 5], expected [3, *]");
  EXPECT_EF_ERROR(st.matrix<float>("q_proj.bias", 4, 1, "L"), ErrorKind::shape_mismatch,
                  "weight 'q_proj.bias' has shape [4], expected [4, 1]");
  EXPECT_EF_ERROR(st.vector<float>("q_proj.weight", 20, "RMSNorm 'n'"), ErrorKind::shape_mismatch,
                  "RMSNorm 'n': weight 'q_proj.weight' has shape [4, 5], expected [20]");
  EXPECT_EF_ERROR(st.vector<float>("q_proj.bias", 5), ErrorKind::shape_mismatch,
                  "model.safetensors: weight 'q_proj.bias' has shape [4], expected [5]");
}

TEST(SafeTensors, MissingTensor) {
  SafeTensorsWriter w;
  w.add("model.layers.0.q_proj.weight", Matrix<float>::Ones(2, 2));
  const auto st = SafeTensors::from_bytes(w.to_bytes(), "m.safetensors");
  EXPECT_FALSE(st.contains("nope"));
  EXPECT_EQ(st.find("nope"), nullptr);
  ASSERT_NE(st.find("model.layers.0.q_proj.weight"), nullptr);
  try {
    st.info("nope", "Linear 'q_proj'");
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::missing_weight);
    EXPECT_EQ(e.where(), "Linear 'q_proj'");
    EXPECT_NE(std::string(e.what()).find("weight 'nope' not found in m.safetensors (1 tensors)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EF_ERROR(st.matrix<float>("layers.0.q_proj.weight", 2, 2, "Linear 'q'"),
                  ErrorKind::missing_weight, "did you mean 'model.layers.0.q_proj.weight'?");
  EXPECT_EF_ERROR(st.to_vector<float>("x"), ErrorKind::missing_weight,
                  "m.safetensors: weight 'x' not found");
  EXPECT_EF_ERROR(st.vector<float>("x", 3, "Embedding"), ErrorKind::missing_weight,
                  "Embedding: weight 'x'");
}

TEST(SafeTensors, DtypeAndCountErrors) {
  SafeTensorsWriter w;
  const Bytes b6(6, 1);
  w.add("flags", Dtype::BOOL, {6}, b6.data(), 6);
  w.add("u16", Dtype::U16, {3}, b6.data(), 6);
  w.add("fp8", Dtype::F8_E4M3, {2, 3}, b6.data(), 6);
  w.add("w", Matrix<float>::Ones(2, 3));
  w.add("h", Matrix<float>::Ones(2, 3), Dtype::F16);
  const auto st = SafeTensors::from_bytes(w.to_bytes());
  EXPECT_EF_ERROR(st.to_vector<float>("flags"), ErrorKind::dtype_mismatch,
                  "tensor 'flags' has dtype BOOL, which cannot be read");
  EXPECT_EF_ERROR(st.to_vector<std::int64_t>("u16"), ErrorKind::dtype_mismatch, "dtype U16");
  EXPECT_EF_ERROR(st.matrix<float>("fp8", 2, 3, "Linear 'x'"), ErrorKind::dtype_mismatch,
                  "Linear 'x': tensor 'fp8' has dtype F8_E4M3");
  EXPECT_EF_ERROR(st.to_vector<std::int32_t>("w"), ErrorKind::dtype_mismatch,
                  "tensor 'w' has dtype F32, which cannot be read as int32");
  EXPECT_EF_ERROR(st.to_vector<std::uint8_t>("h"), ErrorKind::dtype_mismatch,
                  "dtype F16, which cannot be read as uint8");
  std::vector<float> out(5);
  EXPECT_EF_ERROR(st.read(st.info("w"), out.data(), out.size()), ErrorKind::invalid_argument,
                  "tensor 'w' has 6 elements (shape [2, 3]), but the output holds 5");
  // A TensorInfo that does not describe this file's data buffer.
  TensorInfo alien = st.info("w");
  alien.end = 1 << 20;
  EXPECT_EF_ERROR(st.data(alien), ErrorKind::invalid_argument, "lie outside the data buffer");
  alien = st.info("w");
  alien.shape = std::vector<std::int64_t>(2, 3);
  out.resize(9);
  EXPECT_EF_ERROR(st.read(alien, out.data(), out.size()), ErrorKind::invalid_argument,
                  "does not match data_offsets");
}

TEST(SafeTensors, EmptyHeaderOnly) {
  for (const Bytes& b : {raw_file("{}"), raw_file("{}      "), raw_file("{ }\t\r\n"),
                         SafeTensorsWriter().to_bytes(),
                         read_all(data_dir() + "/valid_empty.safetensors")}) {
    const auto st = SafeTensors::from_bytes(b);
    EXPECT_TRUE(st.tensors().empty());
    EXPECT_TRUE(st.metadata().empty());
    EXPECT_EQ(st.data_size(), 0u);
  }
  TempFile tmp;
  SafeTensorsWriter().write(tmp.path());
  for (LoadMode mode : {LoadMode::mmap, LoadMode::read})
    EXPECT_TRUE(SafeTensors::open(tmp.path(), mode).tensors().empty());
}

TEST(SafeTensors, AcceptedJsonVariants) {
  const std::string entry = R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})";
  const std::vector<std::string> headers = {
      "{\"w\":" + entry + "}",
      " \n{ \"w\" :\t{ \"data_offsets\" : [ 0 , 24 ] , \"shape\" : [ 2 , 3 ] , \"dtype\" : "
      "\"F32\" } }\r\n",
      "{\"__metadata__\":null,\"w\":" + entry + "}",
      "{\"__metadata__\":{},\"w\":" + entry + "}",
      "{\"w\":" + entry + ",\"__metadata__\":{\"k\":\"v\"}}",
      "{\"\\u0077\":" + entry + "}",  // escaped name
  };
  for (std::size_t i = 0; i < headers.size(); ++i) {
    std::string h = headers[i];
    if (i == 1) h = h.substr(2);  // must start with '{'
    SCOPED_TRACE(h);
    const auto st = SafeTensors::from_bytes(raw_file(h, 24));
    ASSERT_TRUE(st.contains("w"));
    EXPECT_EQ(st.info("w").shape, (std::vector<std::int64_t>{2, 3}));
  }
  // Escapes in names are decoded.
  const auto st = SafeTensors::from_bytes(raw_file(
      R"({"a\/b\\c\"d\b\f\n\r\t\u00e9\u65e5\ud83d\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
      1));
  EXPECT_EQ(st.tensors()[0].name,
            "a/b\\c\"d\b\f\n\r\t\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80");
  // Big numbers that fit.
  EXPECT_NO_THROW(SafeTensors::from_bytes(raw_file(
      R"({"w":{"dtype":"U8","shape":[0,9223372036854775807],"data_offsets":[0,0]}})")));
}

TEST(SafeTensors, JsonNestingLimit) {
  // Top-level object = level 1; k arrays under "__metadata__" reach level 1 + k.
  const auto nested = [](int k) {
    return "{\"__metadata__\":" + std::string(static_cast<std::size_t>(k), '[') +
           std::string(static_cast<std::size_t>(k), ']') + "}";
  };
  EXPECT_EF_ERROR(SafeTensors::from_bytes(raw_file(nested(63))), ErrorKind::format,
                  "'__metadata__' must be an object of strings, got an array");
  EXPECT_EF_ERROR(SafeTensors::from_bytes(raw_file(nested(64))), ErrorKind::format,
                  "nesting deeper than 64 levels");
  EXPECT_EF_ERROR(SafeTensors::from_bytes(raw_file(nested(100000))), ErrorKind::format,
                  "nesting deeper than 64 levels");
}

TEST(SafeTensors, MoreRejectedHeaders) {
  struct Case {
    std::string header;
    std::size_t data;
    const char* message;
  };
  const std::vector<Case> cases = {
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}} )" "\f", 24,
       "unexpected byte 0x0c after the top-level object"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}})", 24,
       "unexpected '}' after the top-level object"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})" "\xc2\xa0", 24,
       "unexpected byte 0xc2"},  // U+00A0 is not JSON whitespace
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0 24]}})", 24,
       "expected ',' or ']' after an array element, found '2'"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],}})", 24,
       "expected a string key, found '}'"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,+24]}})", 24,
       "expected a value, found '+'"},
      {R"({"w":{"dtype":"F32","shape":[2.,3],"data_offsets":[0,24]}})", 24,
       "invalid number: no digits after '.'"},
      {R"({"w":{"dtype":"F32","shape":[2,3e],"data_offsets":[0,24]}})", 24,
       "invalid number: no digits in the exponent"},
      {R"({"w":{"dtype":"F32","shape":[2,-],"data_offsets":[0,24]}})", 24, "invalid number"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"x":true})", 24,
       "tensor 'x': entry must be an object"},
      {R"({"w":{"dtype":null,"shape":[2,3],"data_offsets":[0,24]}})", 24,
       "'dtype' must be a string, got null"},
      {R"({"w":{"dtype":"F32","shape":[true],"data_offsets":[0,24]}})", 24,
       "shape[0] must be a non-negative integer, got a boolean"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0]}})", 24,
       "'data_offsets' must hold exactly 2 integers [begin, end], got 1"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[]}})", 24, "got 0"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24.5]}})", 24,
       "data_offsets[1] = 24.5 is not an integer"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,-0]}})", 24,
       "data_offsets[1] = -0 is negative"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,99999999999999999999999999]}})", 24,
       "data_offsets[1] = 99999999999999999999999999 is too large"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":[]})", 24,
       "'__metadata__' must be an object of strings, got an array"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"a":null}})",
       24, "'__metadata__' value of key 'a' must be a string, got null"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}, "v":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})",
       24, "tensor 'w' data_offsets [0, 24] overlap tensor 'v' data_offsets [0, 24]"},
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"z":{"dtype":"F32","shape":[0],"data_offsets":[30,30]}})",
       30, "tensor 'z' data_offsets [30, 30] leave a gap of 6 bytes after tensor 'w'"},
      {R"({"\u0001\n":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20,
       "tensor '\\x01\\x0a' data_offsets [0, 20] hold 20 bytes"},  // names escaped in messages
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_EF_ERROR(SafeTensors::from_bytes(raw_file(c.header, c.data)), ErrorKind::format,
                    c.message);
  }
  // Long names are cut in messages.
  const std::string long_name(1000, 'n');
  try {
    SafeTensors::from_bytes(raw_file("{\"" + long_name + "\":{\"dtype\":\"X\"}}"));
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_LT(std::strlen(e.what()), 300u) << e.what();
    EXPECT_NE(std::string(e.what()).find("nnn...'"), std::string::npos) << e.what();
  }
}

TEST(SafeTensors, ErrorsNameTheSource) {
  try {
    SafeTensors::from_bytes(raw_file("{}", 3));
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "<memory>");
    EXPECT_EQ(e.kind(), ErrorKind::format);
  }
  try {
    SafeTensors::from_bytes(raw_file("{}", 3), "blob 7");
    ADD_FAILURE() << "did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "blob 7");
    EXPECT_STREQ(e.what(),
                 "eigenformer: blob 7: the data buffer holds 3 bytes, but the tensors end at "
                 "offset 0: 3 trailing bytes");
  }
}

TEST(SafeTensors, HugeHeaderLengthRejectedWithoutAllocating) {
  // Under AddressSanitizer an attempt to allocate ~2^63 bytes aborts the test, so passing here
  // also shows that nothing is allocated from the length field before it is checked.
  for (const std::uint64_t n : {std::uint64_t(1) << 63, ~std::uint64_t(0), std::uint64_t(1) << 32,
                                std::uint64_t(100'000'001)}) {
    SCOPED_TRACE(n);
    const Bytes b = raw_file("{}", 0, n);
    EXPECT_EF_ERROR(SafeTensors::from_bytes(b), ErrorKind::format,
                    "header length " + std::to_string(n) + " exceeds the limit of 100000000 bytes");
    TempFile tmp;
    write_all(tmp.path(), b);
    for (LoadMode mode : {LoadMode::mmap, LoadMode::read})
      EXPECT_EF_ERROR(SafeTensors::open(tmp.path(), mode), ErrorKind::format, "exceeds the limit");
  }
  // The limit itself is allowed; it then fails only because the file is short.
  EXPECT_EF_ERROR(SafeTensors::from_bytes(raw_file("{}", 0, 100'000'000)), ErrorKind::format,
                  "header length 100000000 runs past the end of the file: 8 + 100000000 > 10 bytes");
}

// ------------------------------------------------------------------------------------------------
// Committed files
// ------------------------------------------------------------------------------------------------

namespace {
struct BadFile {
  const char* name;
  ErrorKind kind;
  const char* message;
};
// Keep in sync with tools/make_bad_safetensors.py (BadFilesMatchReadme checks the README it
// generates).
const BadFile kBadFiles[] = {
    {"empty_file.safetensors", ErrorKind::format, "too short for the 8-byte header length"},
    {"too_short.safetensors", ErrorKind::format, "file is 5 bytes, too short"},
    {"header_too_large.safetensors", ErrorKind::format, "header length 100000001 exceeds the limit"},
    {"header_length_max_u64.safetensors", ErrorKind::format, "header length 18446744073709551615 exceeds the limit"},
    {"header_past_eof.safetensors", ErrorKind::format, "header length 1000 runs past the end of the file"},
    {"header_empty.safetensors", ErrorKind::format, "header is empty"},
    {"header_not_utf8.safetensors", ErrorKind::format, "header is not valid UTF-8: byte 0xff at header byte 3"},
    {"header_overlong_utf8.safetensors", ErrorKind::format, "header is not valid UTF-8: byte 0xc0"},
    {"header_utf8_surrogate.safetensors", ErrorKind::format, "header is not valid UTF-8: byte 0xed"},
    {"header_truncated_utf8.safetensors", ErrorKind::format, "header is not valid UTF-8: byte 0xe6"},
    {"header_not_object.safetensors", ErrorKind::format, "header must start with '{', found '['"},
    {"header_leading_space.safetensors", ErrorKind::format, "header must start with '{', found byte 0x20"},
    {"json_truncated.safetensors", ErrorKind::format, "unterminated string"},
    {"json_unclosed_object.safetensors", ErrorKind::format, "found the end of the header"},
    {"json_trailing_garbage.safetensors", ErrorKind::format, "unexpected 'x' after the top-level object"},
    {"json_second_object.safetensors", ErrorKind::format, "unexpected '{' after the top-level object"},
    {"json_nul_padding.safetensors", ErrorKind::format, "unexpected byte 0x00 after the top-level object"},
    {"json_trailing_comma.safetensors", ErrorKind::format, "expected a string key, found '}'"},
    {"json_trailing_comma_array.safetensors", ErrorKind::format, "expected a value, found ']'"},
    {"json_missing_colon.safetensors", ErrorKind::format, "expected ':' after key 'w'"},
    {"json_single_quotes.safetensors", ErrorKind::format, "expected a string key, found '''"},
    {"json_bad_escape.safetensors", ErrorKind::format, "invalid escape sequence '\\x'"},
    {"json_bad_unicode_escape.safetensors", ErrorKind::format, "invalid \\u escape"},
    {"json_lone_high_surrogate.safetensors", ErrorKind::format, "lone high surrogate \\ud800"},
    {"json_lone_low_surrogate.safetensors", ErrorKind::format, "lone low surrogate \\udc00"},
    {"json_control_char.safetensors", ErrorKind::format, "unescaped control character 0x0a"},
    {"json_bad_literal.safetensors", ErrorKind::format, "invalid literal"},
    {"json_leading_zero.safetensors", ErrorKind::format, "expected ',' or ']' after an array element, found '2'"},
    {"json_too_deep.safetensors", ErrorKind::format, "nesting deeper than 64 levels"},
    {"json_duplicate_key.safetensors", ErrorKind::format, "duplicate key 'dtype'"},
    {"duplicate_tensor_name.safetensors", ErrorKind::format, "duplicate tensor name 'w'"},
    {"duplicate_tensor_name_escaped.safetensors", ErrorKind::format, "duplicate tensor name 'w'"},
    {"duplicate_metadata.safetensors", ErrorKind::format, "duplicate key '__metadata__'"},
    {"entry_not_object.safetensors", ErrorKind::format, "tensor 'w': entry must be an object"},
    {"dtype_not_string.safetensors", ErrorKind::format, "tensor 'w': 'dtype' must be a string, got a number"},
    {"dtype_unknown.safetensors", ErrorKind::format, "tensor 'w': unknown dtype 'F128'"},
    {"dtype_lowercase.safetensors", ErrorKind::format, "tensor 'w': unknown dtype 'f32'"},
    {"field_unknown.safetensors", ErrorKind::format, "tensor 'w': unknown field 'offset'"},
    {"field_missing_dtype.safetensors", ErrorKind::format, "tensor 'w': missing field 'dtype'"},
    {"field_missing_shape.safetensors", ErrorKind::format, "tensor 'w': missing field 'shape'"},
    {"field_missing_offsets.safetensors", ErrorKind::format, "tensor 'w': missing field 'data_offsets'"},
    {"shape_not_array.safetensors", ErrorKind::format, "tensor 'w': 'shape' must be an array of non-negative integers, got a string"},
    {"shape_string_element.safetensors", ErrorKind::format, "tensor 'w': shape[1] must be a non-negative integer, got a string"},
    {"shape_negative.safetensors", ErrorKind::format, "tensor 'w': shape[0] = -2 is negative"},
    {"shape_float.safetensors", ErrorKind::format, "tensor 'w': shape[0] = 2.0 is not an integer"},
    {"shape_exponent.safetensors", ErrorKind::format, "tensor 'w': shape[1] = 3e0 is not an integer"},
    {"shape_too_large.safetensors", ErrorKind::format, "tensor 'w': shape[0] = 9223372036854775808 is too large"},
    {"shape_numel_overflow.safetensors", ErrorKind::format, "tensor 'w' shape [2, 9223372036854775807]: the element count overflows"},
    {"shape_nbytes_overflow.safetensors", ErrorKind::format, "tensor 'w' dtype I32 x shape [4611686018427387904]: the byte size overflows"},
    {"offsets_not_array.safetensors", ErrorKind::format, "tensor 'w': 'data_offsets' must be an array [begin, end], got an object"},
    {"offsets_wrong_length.safetensors", ErrorKind::format, "tensor 'w': 'data_offsets' must hold exactly 2 integers [begin, end], got 3"},
    {"offsets_negative.safetensors", ErrorKind::format, "tensor 'w': data_offsets[0] = -24 is negative"},
    {"offsets_too_large.safetensors", ErrorKind::format, "tensor 'w': data_offsets[1] = 18446744073709551616 is too large"},
    {"metadata_not_object.safetensors", ErrorKind::format, "'__metadata__' must be an object of strings, got a string"},
    {"metadata_value_not_string.safetensors", ErrorKind::format, "'__metadata__' value of key 'step' must be a string, got a number"},
    {"metadata_value_nested.safetensors", ErrorKind::format, "'__metadata__' value of key 'cfg' must be a string, got an object"},
    {"offsets_not_start_at_zero.safetensors", ErrorKind::format, "tensor 'w' data_offsets [4, 28]: the first tensor must begin at offset 0"},
    {"offsets_gap.safetensors", ErrorKind::format, "tensor 'b' data_offsets [16, 28] leave a gap of 4 bytes after tensor 'a'"},
    {"offsets_overlap.safetensors", ErrorKind::format, "tensor 'b' data_offsets [8, 20] overlap tensor 'a' data_offsets [0, 12]"},
    {"offsets_same_range.safetensors", ErrorKind::format, "tensor 'b' data_offsets [0, 12] overlap tensor 'a' data_offsets [0, 12]"},
    {"offsets_end_before_begin.safetensors", ErrorKind::format, "tensor 'b' data_offsets [12, 8] end before they begin"},
    {"offsets_size_mismatch.safetensors", ErrorKind::format, "tensor 'w' data_offsets [0, 12] hold 12 bytes, but dtype F32 x shape [2, 3] needs 24"},
    {"data_trailing_bytes.safetensors", ErrorKind::format, "the data buffer holds 32 bytes, but the tensors end at offset 24: 8 trailing bytes"},
    {"data_truncated.safetensors", ErrorKind::format, "the data buffer holds 20 bytes, but the tensors end at offset 24: 4 bytes missing"},
    {"data_missing.safetensors", ErrorKind::format, "the data buffer holds 0 bytes, but the tensors end at offset 24"},
};
/// The ErrorKind enumerator's name, as the README spells it.
const char* kind_id(ErrorKind k) {
  switch (k) {
    case ErrorKind::format: return "format";
    case ErrorKind::io: return "io";
    default: return "?";
  }
}
const char* const kValidFiles[] = {"valid_empty.safetensors", "valid_basic.safetensors",
                                   "valid_rust_reference.safetensors"};
}  // namespace

TEST(SafeTensorsFiles, BadFilesGiveTheirErrors) {
  for (const BadFile& f : kBadFiles) {
    const std::string path = data_dir() + "/" + f.name;
    SCOPED_TRACE(path);
    ASSERT_TRUE(fs::exists(path));
    for (LoadMode mode : {LoadMode::mmap, LoadMode::read}) {
      EXPECT_EF_ERROR(SafeTensors::open(path, mode), f.kind, f.message);
      try {
        SafeTensors::open(path, mode);
      } catch (const Error& e) {
        EXPECT_EQ(e.where(), path);
      }
    }
    EXPECT_EF_ERROR(SafeTensors::from_bytes(read_all(path)), f.kind, f.message);
  }
}

TEST(SafeTensorsFiles, EveryFileIsCoveredAndListedInReadme) {
  std::set<std::string> expected;
  for (const BadFile& f : kBadFiles) EXPECT_TRUE(expected.insert(f.name).second) << f.name;
  for (const char* v : kValidFiles) expected.insert(v);
  std::set<std::string> present;
  for (const auto& e : fs::directory_iterator(data_dir()))
    if (e.path().extension() == ".safetensors") present.insert(e.path().filename().string());
  EXPECT_EQ(present, expected);

  std::ifstream in(data_dir() + "/README.md");
  ASSERT_TRUE(in.good());
  std::map<std::string, std::string> rows;  // file -> its README table row
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    const auto end = line.find('`', 3);
    rows[line.substr(3, end - 3)] = line;
  }
  for (const BadFile& f : kBadFiles) {
    ASSERT_TRUE(rows.count(f.name)) << f.name << " is not in README.md";
    const std::string& row = rows[f.name];
    EXPECT_NE(row.find(std::string("| ") + kind_id(f.kind) + " |"), std::string::npos) << row;
    EXPECT_NE(row.find(std::string("`") + f.message + "` |"), std::string::npos)
        << "README row disagrees with the test table: " << row;
  }
  for (const char* v : kValidFiles) EXPECT_TRUE(rows.count(v)) << v << " is not in README.md";
}

TEST(SafeTensorsFiles, ValidBasic) {
  for (LoadMode mode : {LoadMode::mmap, LoadMode::read}) {
    const auto st = SafeTensors::open(data_dir() + "/valid_basic.safetensors", mode);
    std::vector<std::string> order;
    for (const TensorInfo& t : st.tensors()) order.push_back(t.name);
    EXPECT_EQ(order, (std::vector<std::string>{"w", "empty", "scalar", "h\xc3\xa9", "z"}));
    EXPECT_EQ(st.metadata().size(), 2u);
    EXPECT_EQ(st.metadata().at("format"), "pt");
    EXPECT_EQ(st.metadata().at("note"), "tab\there \"quoted\" \xc3\xa9\xf0\x9f\x98\x80");
    EXPECT_EQ(st.matrix<float>("w", 2, 3), (Matrix<float>(2, 3) << 1, 2, 3, 4, 5, 6).finished());
    EXPECT_EQ(st.matrix<double>("empty", 0, 4).size(), 0);
    EXPECT_EQ(st.to_vector<std::int64_t>("scalar"), std::vector<std::int64_t>{-7});
    EXPECT_EQ(st.vector<float>("h\xc3\xa9", 1)(0), 1.f);
    EXPECT_EQ(st.vector<double>("z", 2), (Vector<double>(2) << 1, -2).finished());
    EXPECT_EQ(st.data_size(), 38u);
  }
}

// ------------------------------------------------------------------------------------------------
// Mutation smoke test
// ------------------------------------------------------------------------------------------------

TEST(SafeTensorsFuzz, MutationsLoadOrThrowEigenformerError) {
  std::uint64_t seed = 0x5afe7e2508ull;
  if (const char* s = std::getenv("EIGENFORMER_FUZZ_SEED")) seed = std::strtoull(s, nullptr, 0);
  int iterations = 4000;
  if (const char* s = std::getenv("EIGENFORMER_FUZZ_ITERATIONS")) iterations = std::atoi(s);
  std::cout << "[ fuzz     ] seed " << seed << " (set EIGENFORMER_FUZZ_SEED to replay), "
            << iterations << " iterations\n";
  RecordProperty("seed", std::to_string(seed));

  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "h\xc3\xa9llo \"x\"");
  w.add("a", Matrix<float>::Random(3, 4));
  w.add("b", Vector<float>::Random(5), Dtype::F16);
  w.add("c", Matrix<float>::Random(2, 2), Dtype::BF16);
  w.add("d", Dtype::I64, {2}, std::vector<std::int64_t>{1, -1}.data(), 16);
  w.add("e", Dtype::U8, {0, 3}, nullptr, 0);
  w.add("f", Dtype::BOOL, {3}, Bytes{1, 0, 1}.data(), 3);
  const Bytes base = w.to_bytes();
  const std::size_t hdr_end = 8 + header_len(base);
  ASSERT_NO_THROW(SafeTensors::from_bytes(base));

  std::mt19937_64 rng(seed);
  const auto pick = [&](std::size_t n) {
    return static_cast<std::size_t>(rng() % std::max<std::size_t>(n, 1));
  };
  const std::string interesting = "{}[]\":,\\-0123456789eE. \t\nnulltruefalse";
  int loaded = 0, rejected = 0;
  for (int it = 0; it < iterations; ++it) {
    Bytes b = base;
    const int n_mut = 1 + static_cast<int>(pick(3));
    for (int k = 0; k < n_mut && !b.empty(); ++k) {
      // Half of the mutations hit the header, where the parsing is.
      const std::size_t pos = pick(2) ? pick(std::min(b.size(), hdr_end)) : pick(b.size());
      switch (pick(7)) {
        case 0: b[pos] ^= static_cast<std::uint8_t>(1u << pick(8)); break;
        case 1: b[pos] = static_cast<std::uint8_t>(rng()); break;
        case 2: b[pos] = static_cast<std::uint8_t>(interesting[pick(interesting.size())]); break;
        case 3: b.resize(pick(b.size() + 1)); break;
        case 4: b.erase(b.begin() + static_cast<std::ptrdiff_t>(pos)); break;
        case 5:
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(pos),
                   static_cast<std::uint8_t>(interesting[pick(interesting.size())]));
          break;
        case 6:  // nudge the header length
          if (b.size() >= 8) b[pick(2)] = static_cast<std::uint8_t>(b[0] + pick(5) - 2);
          break;
      }
    }
    try {
      const auto st = SafeTensors::from_bytes(b);
      ++loaded;
      std::size_t covered = 0;
      for (const TensorInfo& t : st.tensors()) {
        covered += t.end - t.begin;
        (void)st.data(t);
        try {
          (void)st.to_vector<double>(t.name);
        } catch (const Error& e) {
          EXPECT_EQ(e.kind(), ErrorKind::dtype_mismatch) << e.what();
        }
      }
      EXPECT_EQ(covered, st.data_size()) << "iteration " << it;
    } catch (const Error& e) {
      ++rejected;
      EXPECT_EQ(e.kind(), ErrorKind::format) << "iteration " << it << ": " << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << it << " (seed " << seed
                    << "): non-eigenformer exception: " << e.what();
    }
  }
  std::cout << "[ fuzz     ] " << loaded << " mutated files loaded, " << rejected << " rejected\n";
  EXPECT_GT(rejected, iterations / 2);
}
