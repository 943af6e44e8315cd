#pragma once
// Loop skeletons shared by the float kernels: a main loop over `simd::Native` packets unrolled by a
// constant step, then an explicit scalar tail that runs the same function on the one-lane packet
// `simd::F1`. Kernels pass generic lambdas `[](auto v) { ... }` that work for both.
//
// Aliasing: every skeleton reads element i before writing element i, so `y == x` (in place) is
// allowed; partially overlapping buffers are not.

#include <cstddef>
#include <limits>

#include "packet.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace loops {

using simd::F1;
using simd::Native;
constexpr std::size_t W = static_cast<std::size_t>(Native::size);

/// y[i] = f(x[i])
template <class F>
EIGENFORMER_ALWAYS_INLINE void map(const float* x, float* y, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const auto a = f(simd::load<Native>(x + i));
    const auto b = f(simd::load<Native>(x + i + W));
    simd::store(y + i, a);
    simd::store(y + i + W, b);
  }
  for (; i + W <= n; i += W) simd::store(y + i, f(simd::load<Native>(x + i)));
  for (; i < n; ++i) y[i] = f(F1{x[i]}).v;
}

/// y[i] = f(a[i], b[i])
template <class F>
EIGENFORMER_ALWAYS_INLINE void map2(const float* a, const float* b, float* y, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const auto r0 = f(simd::load<Native>(a + i), simd::load<Native>(b + i));
    const auto r1 = f(simd::load<Native>(a + i + W), simd::load<Native>(b + i + W));
    simd::store(y + i, r0);
    simd::store(y + i + W, r1);
  }
  for (; i + W <= n; i += W) simd::store(y + i, f(simd::load<Native>(a + i), simd::load<Native>(b + i)));
  for (; i < n; ++i) y[i] = f(F1{a[i]}, F1{b[i]}).v;
}

/// y[i] = f(a[i], b[i], c[i])
template <class F>
EIGENFORMER_ALWAYS_INLINE void map3(const float* a, const float* b, const float* c, float* y, std::size_t n, F f) {
  std::size_t i = 0;
  for (; i + W <= n; i += W)
    simd::store(y + i, f(simd::load<Native>(a + i), simd::load<Native>(b + i), simd::load<Native>(c + i)));
  for (; i < n; ++i) y[i] = f(F1{a[i]}, F1{b[i]}, F1{c[i]}).v;
}

/// sum_i f(x[i]), four independent packet accumulators.
template <class F>
EIGENFORMER_ALWAYS_INLINE float sum(const float* x, std::size_t n, F f) {
  const Native z = simd::set1<Native>(0.0f);
  Native s0 = z, s1 = z, s2 = z, s3 = z;
  std::size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    s0 = simd::add(s0, f(simd::load<Native>(x + i)));
    s1 = simd::add(s1, f(simd::load<Native>(x + i + W)));
    s2 = simd::add(s2, f(simd::load<Native>(x + i + 2 * W)));
    s3 = simd::add(s3, f(simd::load<Native>(x + i + 3 * W)));
  }
  for (; i + W <= n; i += W) s0 = simd::add(s0, f(simd::load<Native>(x + i)));
  float s = simd::hsum(simd::add(simd::add(s0, s1), simd::add(s2, s3)));
  for (; i < n; ++i) s += f(F1{x[i]}).v;
  return s;
}

/// Two streams in one loop: y[i] = f(a[i], b[i]) for i < n, and returns sum_i g(c[i]) over the same
/// n, accumulated in exactly the order of `sum` (so results are bit-identical to calling `map2` and
/// `sum` separately). Used to overlap reading the next row with writing this one.
template <class F, class G>
EIGENFORMER_ALWAYS_INLINE float map2_and_sum(const float* a, const float* b, float* y, const float* c,
                                             std::size_t n, F f, G g) {
  const Native z = simd::set1<Native>(0.0f);
  Native s0 = z, s1 = z, s2 = z, s3 = z;
  std::size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    s0 = simd::add(s0, g(simd::load<Native>(c + i)));
    s1 = simd::add(s1, g(simd::load<Native>(c + i + W)));
    s2 = simd::add(s2, g(simd::load<Native>(c + i + 2 * W)));
    s3 = simd::add(s3, g(simd::load<Native>(c + i + 3 * W)));
    for (std::size_t k = 0; k < 4 * W; k += W)
      simd::store(y + i + k, f(simd::load<Native>(a + i + k), simd::load<Native>(b + i + k)));
  }
  for (; i + W <= n; i += W) {
    s0 = simd::add(s0, g(simd::load<Native>(c + i)));
    simd::store(y + i, f(simd::load<Native>(a + i), simd::load<Native>(b + i)));
  }
  float s = simd::hsum(simd::add(simd::add(s0, s1), simd::add(s2, s3)));
  for (; i < n; ++i) {
    s += g(F1{c[i]}).v;
    y[i] = f(F1{a[i]}, F1{b[i]}).v;
  }
  return s;
}

/// y[i] = f(x[i]); returns sum_i y[i] (the exp-and-sum pass of softmax).
template <class F>
EIGENFORMER_ALWAYS_INLINE float map_sum(const float* x, float* y, std::size_t n, F f) {
  const Native z = simd::set1<Native>(0.0f);
  Native s0 = z, s1 = z;
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const auto a = f(simd::load<Native>(x + i));
    const auto b = f(simd::load<Native>(x + i + W));
    simd::store(y + i, a);
    simd::store(y + i + W, b);
    s0 = simd::add(s0, a);
    s1 = simd::add(s1, b);
  }
  for (; i + W <= n; i += W) {
    const auto a = f(simd::load<Native>(x + i));
    simd::store(y + i, a);
    s0 = simd::add(s0, a);
  }
  float s = simd::hsum(simd::add(s0, s1));
  for (; i < n; ++i) {
    y[i] = f(F1{x[i]}).v;
    s += y[i];
  }
  return s;
}

/// max_i x[i]; -inf for n == 0. NaN handling follows the packets' max (see packet headers): a NaN
/// input may or may not be returned, callers must not rely on either.
EIGENFORMER_ALWAYS_INLINE float max(const float* x, std::size_t n) {
  const Native lo = simd::set1<Native>(-std::numeric_limits<float>::infinity());
  Native m0 = lo, m1 = lo;
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    m0 = simd::max(m0, simd::load<Native>(x + i));
    m1 = simd::max(m1, simd::load<Native>(x + i + W));
  }
  for (; i + W <= n; i += W) m0 = simd::max(m0, simd::load<Native>(x + i));
  float m = simd::hmax(simd::max(m0, m1));
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace loops
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
