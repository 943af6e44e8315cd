#pragma once
// Softmax kernels over one row of float logits: the three-pass row softmax, log-sum-exp, and the
// online (streaming) block update that flash attention is built on. Each has a scalar twin in
// kernels::ref; double overloads forward to the twins.
//
// Conventions (same in the twins):
//   - a fully masked row (every entry -inf, or n == 0) gives 0, not NaN; its logsumexp is -inf;
//   - a NaN anywhere in a row makes the whole row NaN (as PyTorch);
//   - +inf entries give NaN (exp(inf - inf)), as PyTorch;
//   - very large finite logits (1e20) are fine: everything is computed relative to the row max.
// Accuracy vs the double twin: <= 8 ulp relative per output for rows up to 1M entries (the sum is
// accumulated in float over 16 lanes, the exp has <= 2 ulp).

#include <cmath>
#include <cstddef>
#include <limits>

#include "loops.hpp"
#include "ref/softmax.hpp"
#include "vmath.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

namespace detail {
/// The row max was -inf: the row is fully masked (zeros) unless it holds a NaN that the max did not
/// report (then all NaN). Returns false in the NaN case.
inline bool has_nan(const float* x, std::size_t n) {
  bool r = false;
  for (std::size_t i = 0; i < n; ++i) r |= x[i] != x[i];
  return r;
}
inline bool masked_row(const float* x, float* y, std::size_t n) {
  const bool nan = has_nan(x, n);
  const float fill = nan ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
  for (std::size_t i = 0; i < n; ++i) y[i] = fill;
  return !nan;
}
}  // namespace detail

/// y = softmax(x) over n entries; y may equal x.
inline void softmax(const float* x, float* y, std::size_t n) {
  const float m = loops::max(x, n);
  if (m == -std::numeric_limits<float>::infinity()) {
    detail::masked_row(x, y, n);
    return;
  }
  const float s = loops::map_sum(x, y, n, [m](auto v) {
    return simd::exp(simd::sub(v, simd::set1<decltype(v)>(m)));
  });
  const float inv = 1.0f / s;
  loops::map(y, y, n, [inv](auto v) { return simd::mul(v, simd::set1<decltype(v)>(inv)); });
}

/// log(sum_i exp(x_i)); -inf for an empty or fully masked row; NaN if the row holds a NaN.
inline float logsumexp(const float* x, std::size_t n) {
  const float m = loops::max(x, n);
  if (m == -std::numeric_limits<float>::infinity())
    return detail::has_nan(x, n) ? std::numeric_limits<float>::quiet_NaN() : m;
  const float s = loops::sum(x, n, [m](auto v) {
    return simd::exp(simd::sub(v, simd::set1<decltype(v)>(m)));
  });
  return m + std::log(s);
}

/// One step of the online softmax (Milakov & Gimelshein 2018; FlashAttention).
/// s: [n] logits of one row for a new block of keys, overwritten with exp(s - m_new).
/// m, l: running max and denominator over the blocks seen before (start at -inf and 0); updated
/// to include this block. Returns exp(m_old - m_new): the factor by which anything accumulated with
/// the old max (an output row, a partial sum) must be rescaled. While every logit seen is -inf the
/// block is zeroed and the factor is 1. A NaN logit makes the block and l NaN.
inline float softmax_online_block(float* s, std::size_t n, float& m, float& l) {
  const float bm = loops::max(s, n);
  const float m_new = bm > m ? bm : m;
  if (m_new == -std::numeric_limits<float>::infinity()) {
    if (!detail::masked_row(s, s, n)) l = std::numeric_limits<float>::quiet_NaN();
    return 1.0f;
  }
  const float alpha = simd::exp(simd::F1{m - m_new}).v;
  const float sum = loops::map_sum(s, s, n, [m_new](auto v) {
    return simd::exp(simd::sub(v, simd::set1<decltype(v)>(m_new)));
  });
  l = l * alpha + sum;
  m = m_new;
  return alpha;
}

inline void softmax(const double* x, double* y, std::size_t n) { ref::softmax(x, y, n); }
inline double logsumexp(const double* x, std::size_t n) { return ref::logsumexp(x, n); }
inline double softmax_online_block(double* s, std::size_t n, double& m, double& l) {
  return ref::softmax_online_block(s, n, m, l);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
