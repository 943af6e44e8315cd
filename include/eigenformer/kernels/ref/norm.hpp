#pragma once
// Scalar reference twins of the normalization kernels.

#include <cmath>
#include <cstddef>

#include "../../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

/// y = x / sqrt(mean(x^2) + eps) * w   (w may be null: no affine weight)
template <class T>
void rms_norm(const T* x, const T* w, T* y, std::size_t n, T eps) {
  if (n == 0) return;
  T ss = 0;
  for (std::size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const T r = T(1) / std::sqrt(ss / T(n) + eps);
  for (std::size_t i = 0; i < n; ++i) y[i] = w ? x[i] * r * w[i] : x[i] * r;
}

/// y = (x - mean) / sqrt(var + eps) * w + b   (biased variance; w, b may be null)
template <class T>
void layer_norm(const T* x, const T* w, const T* b, T* y, std::size_t n, T eps) {
  if (n == 0) return;
  T s = 0;
  for (std::size_t i = 0; i < n; ++i) s += x[i];
  const T mean = s / T(n);
  T v = 0;
  for (std::size_t i = 0; i < n; ++i) v += (x[i] - mean) * (x[i] - mean);
  const T rstd = T(1) / std::sqrt(v / T(n) + eps);
  for (std::size_t i = 0; i < n; ++i) {
    T t = (x[i] - mean) * rstd;
    if (w) t *= w[i];
    if (b) t += b[i];
    y[i] = t;
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
