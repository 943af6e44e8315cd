#pragma once
// Normalization kernels over one row: RMSNorm and LayerNorm (group/head norms are these applied to
// column groups, see ops/norm.hpp). Scalar twins in kernels::ref; double overloads forward to them.
//
// Both are two passes over the row (a reduction, then the scaled write); LayerNorm's variance is the
// two-pass centered sum, not E[x^2] - E[x]^2, so it stays accurate for rows with a large mean.
// Accuracy vs the double twin: <= 4 ulp relative + 1e-6 * eps-scaled absolute for rows up to 64K.

#include <cmath>
#include <cstddef>

#include "loops.hpp"
#include "ref/norm.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

/// y = x / sqrt(mean(x^2) + eps) * w  (Hugging Face LlamaRMSNorm); w may be null; y may equal x.
inline void rms_norm(const float* x, const float* w, float* y, std::size_t n, float eps) {
  if (n == 0) return;
  const float ss = loops::sum(x, n, [](auto v) { return simd::mul(v, v); });
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  if (w) {
    loops::map2(x, w, y, n, [r](auto v, auto g) { return simd::mul(simd::mul(v, simd::set1<decltype(v)>(r)), g); });
  } else {
    loops::map(x, y, n, [r](auto v) { return simd::mul(v, simd::set1<decltype(v)>(r)); });
  }
}

/// y = (x - mean) / sqrt(var + eps) * w + b (torch.nn.LayerNorm, biased variance); w and b may be
/// null; y may equal x.
inline void layer_norm(const float* x, const float* w, const float* b, float* y, std::size_t n, float eps) {
  if (n == 0) return;
  const float mean = loops::sum(x, n, [](auto v) { return v; }) / static_cast<float>(n);
  const float var = loops::sum(x, n, [mean](auto v) {
                      const auto d = simd::sub(v, simd::set1<decltype(v)>(mean));
                      return simd::mul(d, d);
                    }) / static_cast<float>(n);
  const float rstd = 1.0f / std::sqrt(var + eps);
  auto centered = [mean, rstd](auto v) {
    return simd::mul(simd::sub(v, simd::set1<decltype(v)>(mean)), simd::set1<decltype(v)>(rstd));
  };
  if (w && b) {
    loops::map3(x, w, b, y, n, [centered](auto v, auto g, auto c) { return simd::fmadd(centered(v), g, c); });
  } else if (w) {
    loops::map2(x, w, y, n, [centered](auto v, auto g) { return simd::mul(centered(v), g); });
  } else if (b) {
    loops::map2(x, b, y, n, [centered](auto v, auto c) { return simd::add(centered(v), c); });
  } else {
    loops::map(x, y, n, centered);
  }
}

/// RMSNorm of `rows` rows (row strides ldx, ldy; w may be null; y may equal x with ldy == ldx).
/// The sum of squares of row r + 1 is accumulated in the loop that writes row r, so the read stream
/// of the next row overlaps the writes of this one (a memory-bound op keeps DRAM busy). Bit-identical
/// to calling rms_norm row by row.
inline void rms_norm_rows(const float* x, std::size_t ldx, const float* w, float* y, std::size_t ldy,
                          std::size_t rows, std::size_t n, float eps) {
  if (n == 0 || rows == 0) return;
  auto square = [](auto v) { return simd::mul(v, v); };
  float ss = loops::sum(x, n, square);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    const float s = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
    if (r + 1 == rows) {
      if (w) loops::map2(xr, w, yr, n, [s](auto v, auto g) { return simd::mul(simd::mul(v, simd::set1<decltype(v)>(s)), g); });
      else loops::map(xr, yr, n, [s](auto v) { return simd::mul(v, simd::set1<decltype(v)>(s)); });
    } else if (w) {
      ss = loops::map2_and_sum(xr, w, yr, xr + ldx, n,
                               [s](auto v, auto g) { return simd::mul(simd::mul(v, simd::set1<decltype(v)>(s)), g); },
                               square);
    } else {
      ss = loops::map2_and_sum(xr, xr, yr, xr + ldx, n,
                               [s](auto v, auto) { return simd::mul(v, simd::set1<decltype(v)>(s)); }, square);
    }
  }
}

inline void rms_norm(const double* x, const double* w, double* y, std::size_t n, double eps) {
  ref::rms_norm(x, w, y, n, eps);
}
inline void rms_norm_rows(const double* x, std::size_t ldx, const double* w, double* y, std::size_t ldy,
                          std::size_t rows, std::size_t n, double eps) {
  for (std::size_t r = 0; r < rows; ++r) ref::rms_norm(x + r * ldx, w, y + r * ldy, n, eps);
}
inline void layer_norm(const double* x, const double* w, const double* b, double* y, std::size_t n, double eps) {
  ref::layer_norm(x, w, b, y, n, eps);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
