#pragma once
// Scalar reference twins of the KAN kernels (kernels/kan.hpp), written as the textbook / reference
// formulas in the caller's precision (float, or double for test references).
//
//   bspline_dense: the full Cox-de Boor recursion over all G + k basis functions of one input, exactly
//                  as efficient-kan's KANLinear.b_splines (src/efficient_kan/kan.py): order-0 bases
//                  are the indicators [g_j <= x < g_{j+1}], so an input outside [g_0, g_{G+2k}) has
//                  every basis 0, and a non-finite input gives NaN for k >= 1 (inf * 0).
//   kan_forward_dense: y[o] = sum_i silu(x_i) Wp[i, G+k, o] + sum_{i,j} B_j(x_i) Wp[i, j, o] for one
//                  token, over the packed weight Wp [in, G+k+1, out] (see kernels/kan.hpp).

#include <cmath>
#include <cstddef>

#include "../../config.hpp"
#include "elementwise.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

/// B [G + k] for one input x on its knot row g [G + 2k + 1] (efficient-kan's b_splines). `tmp` holds
/// G + 2k values of scratch.
template <class T>
void bspline_dense(T x, const T* g, int G, int k, T* B, T* tmp) {
  const int n0 = G + 2 * k;  // order-0 bases
  for (int j = 0; j < n0; ++j) tmp[j] = (x >= g[j] && x < g[j + 1]) ? T(1) : T(0);
  for (int d = 1; d <= k; ++d) {
    const int nd = n0 - d;
    for (int j = 0; j < nd; ++j) {
      const T left = (x - g[j]) / (g[j + d] - g[j]);
      const T right = (g[j + d + 1] - x) / (g[j + d + 1] - g[j + 1]);
      tmp[j] = left * tmp[j] + right * tmp[j + 1];
    }
  }
  for (int j = 0; j < G + k; ++j) B[j] = tmp[j];
}

/// dB/dx [G + k] for one input (the derivative of the degree-k basis: k (N_{j,k-1} / (g_{j+k} - g_j) -
/// N_{j+1,k-1} / (g_{j+k+1} - g_{j+1})); zero for k = 0). `tmp` holds G + 2k values.
template <class T>
void bspline_dense_derivative(T x, const T* g, int G, int k, T* dB, T* tmp) {
  if (k == 0) {
    for (int j = 0; j < G; ++j) dB[j] = T(0);
    return;
  }
  const int n0 = G + 2 * k;
  for (int j = 0; j < n0; ++j) tmp[j] = (x >= g[j] && x < g[j + 1]) ? T(1) : T(0);
  for (int d = 1; d < k; ++d) {
    const int nd = n0 - d;
    for (int j = 0; j < nd; ++j) {
      const T left = (x - g[j]) / (g[j + d] - g[j]);
      const T right = (g[j + d + 1] - x) / (g[j + d + 1] - g[j + 1]);
      tmp[j] = left * tmp[j] + right * tmp[j + 1];
    }
  }
  // tmp[0, G + k + 1) now holds the degree k-1 bases.
  for (int j = 0; j < G + k; ++j)
    dB[j] = T(k) * (tmp[j] / (g[j + k] - g[j]) - tmp[j + 1] / (g[j + k + 1] - g[j + 1]));
}

/// One token: y [out] = sum_i silu(x_i) Wp[i, G+k, :] + sum_{i, j} B_j(x_i) Wp[i, j, :].
/// x [in]; grid [in, ldg] (knot rows of G + 2k + 1); Wp [in * (G + k + 1), out] row-major; `tmp`
/// holds 2 (G + 2k) + 1 values.
template <class T>
void kan_forward_dense(const T* x, std::size_t in, const T* grid, std::size_t ldg, int G, int k, const T* Wp,
                       std::size_t out, T* y, T* tmp) {
  const std::size_t S = static_cast<std::size_t>(G) + static_cast<std::size_t>(k) + 1;
  for (std::size_t o = 0; o < out; ++o) y[o] = T(0);
  T* B = tmp + (G + 2 * k);
  for (std::size_t i = 0; i < in; ++i) {
    bspline_dense(x[i], grid + i * ldg, G, k, B, tmp);
    B[G + k] = activate(x[i], Activation::silu);
    for (std::size_t j = 0; j < S; ++j) {
      const T b = B[j];
      const T* w = Wp + (i * S + j) * out;
      for (std::size_t o = 0; o < out; ++o) y[o] += b * w[o];
    }
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
