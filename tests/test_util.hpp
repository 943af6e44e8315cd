#pragma once
// Shared helpers for the tests: a printed, settable random seed; the sizes that cross SIMD tails;
// ulp distances.

#include <gtest/gtest.h>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace eftest {

/// The seed of this test binary: $EIGENFORMER_TEST_SEED if set, else a fixed default. Printed once.
inline std::uint32_t seed() {
  static const std::uint32_t s = [] {
    const char* e = std::getenv("EIGENFORMER_TEST_SEED");
    const std::uint32_t v = e ? static_cast<std::uint32_t>(std::strtoul(e, nullptr, 10)) : 20261128u;
    std::printf("[ seed     ] EIGENFORMER_TEST_SEED=%u\n", v);
    return v;
  }();
  return s;
}

/// True where the tests run tens of times slower than in the release build: unoptimized (the
/// sanitize preset is -O0) or under AddressSanitizer. Tests whose reference computations dominate
/// the sanitize run use smaller sizes there (slow_or(fast, slow)); they still cross the same
/// boundaries (SIMD tails, tiles, chunks, spans), and are never skipped.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EFTEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__) || defined(EFTEST_ASAN)
inline constexpr bool kSlowBuild = true;
#else
inline constexpr bool kSlowBuild = false;
#endif
template <class T>
constexpr T slow_or(T fast, T slow) {
  return kSlowBuild ? slow : fast;
}

/// Float infinity and NaN, for the tests of non-finite inputs.
inline const float kInf = std::numeric_limits<float>::infinity();
inline const float kNaN = std::numeric_limits<float>::quiet_NaN();

/// max |a - b| over two matrices of the same shape, in double.
template <class A, class B>
double max_abs_diff(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  return (a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff();
}

/// A generator seeded from the binary seed and a per-test salt, so tests are independent.
inline std::mt19937 rng(std::uint32_t salt) { return std::mt19937(seed() * 2654435761u + salt); }

/// Sizes that cross the SIMD widths and unroll steps of every ISA (8-lane AVX2, 4-lane NEON,
/// 1-lane scalar; main loops unrolled by 2 or 4 packets).
inline const std::vector<std::size_t>& tail_sizes() {
  static const std::vector<std::size_t> s = [] {
    std::vector<std::size_t> v;
    for (std::size_t n = 1; n <= 33; ++n) v.push_back(n);
    for (std::size_t n : {63, 64, 65, 127, 128, 129, 1023, 1024, 4096}) v.push_back(n);
    return v;
  }();
  return s;
}

inline std::vector<float> uniform(std::size_t n, float lo, float hi, std::mt19937& g) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline std::vector<float> normal(std::size_t n, float sigma, std::mt19937& g) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

/// A [rows, cols] row-major Eigen matrix of N(0, sigma^2) entries.
template <class T = float>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> random_matrix(Eigen::Index rows, Eigen::Index cols,
                                                                                 std::mt19937& g, double sigma = 1.0) {
  std::normal_distribution<double> d(0.0, sigma);
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(d(g));
  return m;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

/// Units in the last place of `want` (rounded to float) by which `got` differs; for |want| below the
/// smallest normal, ulps of the smallest subnormal. NaN vs NaN is 0; NaN vs number is infinite.
inline double ulp_error(float got, double want) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0.0 : INFINITY;
  const float wf = static_cast<float>(want);  // may overflow to inf: then got must be inf
  if (std::isinf(wf) || std::isinf(got)) return got == wf ? 0.0 : INFINITY;
  const double ulp = std::fabs(wf) < std::numeric_limits<float>::min()
                         ? std::numeric_limits<float>::denorm_min()
                         : std::nextafter(std::fabs(wf), INFINITY) - std::fabs(wf);
  return std::fabs(static_cast<double>(got) - want) / ulp;
}

}  // namespace eftest
