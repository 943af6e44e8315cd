#pragma once
// KAN kernels: local-support B-spline bases and the sparse spline product of KANLinear.
//
// A degree-k B-spline basis on knots g_0 < ... < g_{G+2k} (efficient-kan's grid: G intervals over the
// grid range, k extra knots each side) has only k + 1 functions that are nonzero at any x: for
// g_m <= x < g_{m+1} they are N_{m-k}, ..., N_m. These kernels represent the basis of one input by
// that window: a first index j0 and k + 1 values, so that
//     B_j(x) = vals[j - j0]  for j0 <= j <= j0 + k,  0 elsewhere.
// Windows that would reach outside the G + k existing functions (x in the k outer intervals) are
// shifted to [0, k] or [G - 1, G + k - 1] with the nonexistent entries set to 0. An input outside
// [g_0, g_{G+2k}) has all values 0 (as efficient-kan, whose order-0 bases are the indicators
// [g_j <= x < g_{j+1}]); a non-finite input has NaN values for k >= 1 (efficient-kan computes
// inf * 0 there) and 0 for k = 0.
//
// Layout of one token's basis over `in` inputs: j0 [in] (int32), vals [k + 1, in] (row r at
// vals + r * ldv), so that SIMD lanes run over inputs.
//
// Packed weight Wp [in * (G + k + 1), out], row-major: row i (G+k+1) + j is the scaled spline weight
// spline_weight[:, i, j] * spline_scaler[:, i] for j < G + k, and row i (G+k+1) + G + k is
// base_weight[:, i] (the base activation acts as one more basis function). One token's output is then
//     y = sum_i ( act(x_i) Wp[i, G+k, :] + sum_{r <= k} vals[r][i] Wp[i, j0_i + r, :] ),
// (k + 2) x in x out multiply-adds instead of (G + k + 1) x in x out (kan_spline_local); the same
// Wp is the right operand of the GEMM path (dense basis rows from kan_expand_dense).
//
//   bspline_local          any knot row (scalar; float and double), de Boor's triangular recursion
//                          on the window
//   bspline_local_uniform  uniform knots per input (g0, 1/h), SIMD over inputs (float), k <= 7
//   kan_spline_local       y[t, o0:o1] = sum over the windows (SIMD over outputs)
//   kan_expand_dense       one dense basis row [in * (G + k + 1)] from the windows
// Scalar twins: kernels/ref/kan.hpp (bspline_dense = efficient-kan's b_splines; kan_forward_dense).
// Accuracy (tests/test_kan.cpp): float windows (general or uniform form; the uniform one evaluates the
// same polynomials from (x - g0) / h instead of knot differences) within 2e-6 of a double Cox-de Boor
// on the same float knots and input; double windows within 1e-13.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "loops.hpp"
#include "packet.hpp"
#include "ref/kan.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define EIGENFORMER_KAN_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define EIGENFORMER_KAN_PREFETCH(p) ((void)(p))
#endif

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

constexpr int kKanMaxUniformOrder = 7;  // bspline_local_uniform handles spline orders up to this
constexpr int kKanMaxOrder = 16;         // every kernel here handles spline orders up to this

namespace kan_detail {

/// Writes a window computed for span m (functions m - k .. m, values N[0..k]) as j0 and k + 1 values
/// clipped to the G + k existing functions.
template <class T>
EIGENFORMER_ALWAYS_INLINE void place(int m, const T* N, int G, int k, std::int32_t* j0, T* vals, std::size_t ldv) {
  int first = m - k;
  int shift = 0;  // vals[r] = N[r + shift]
  if (first < 0) {
    shift = -first;
    first = 0;
  } else if (first > G - 1) {
    shift = -(first - (G - 1));
    first = G - 1;
  }
  *j0 = first;
  for (int r = 0; r <= k; ++r) {
    const int s = r + shift;
    vals[static_cast<std::size_t>(r) * ldv] = (s >= 0 && s <= k) ? N[s] : T(0);
  }
}

template <class T>
EIGENFORMER_ALWAYS_INLINE void place_constant(T v, int k, std::int32_t* j0, T* vals, std::size_t ldv) {
  *j0 = 0;
  for (int r = 0; r <= k; ++r) vals[static_cast<std::size_t>(r) * ldv] = v;
}

template <class T>
EIGENFORMER_ALWAYS_INLINE T nonfinite_value(int k) {
  return k >= 1 ? std::numeric_limits<T>::quiet_NaN() : T(0);
}

}  // namespace kan_detail

/// Windows of n inputs x [n] on knot rows grid [n, ldg] (row i: G + 2k + 1 increasing knots of input i);
/// k <= kKanMaxOrder.
template <class T>
inline void bspline_local(const T* x, std::size_t n, const T* grid, std::size_t ldg, int G, int k, std::int32_t* j0,
                          T* vals, std::size_t ldv) {
  const int n0 = G + 2 * k;
  T Np[kKanMaxOrder + 1];
  for (std::size_t i = 0; i < n; ++i) {
    const T xi = x[i];
    const T* g = grid + i * ldg;
    if (!std::isfinite(xi)) {
      kan_detail::place_constant(kan_detail::nonfinite_value<T>(k), k, j0 + i, vals + i, ldv);
      continue;
    }
    const int m = static_cast<int>(std::upper_bound(g, g + n0 + 1, xi) - g) - 1;
    if (m < 0 || m >= n0) {
      kan_detail::place_constant(T(0), k, j0 + i, vals + i, ldv);
      continue;
    }
    // Knots outside the row are extrapolated with the end spacing: they only enter functions that
    // do not exist (index < 0 or > G + k - 1), which place() drops.
    auto knot = [&](int j) -> T {
      if (j < 0) return g[0] + T(j) * (g[1] - g[0]);
      if (j > n0) return g[n0] + T(j - n0) * (g[n0] - g[n0 - 1]);
      return g[j];
    };
    Np[0] = T(1);
    for (int d = 1; d <= k; ++d) {
      // N_{j,d} for j = m - d + r, r = d .. 0 (in place, descending r).
      for (int r = d; r >= 0; --r) {
        const int j = m - d + r;
        T v = T(0);
        if (r >= 1) v += (xi - knot(j)) / (knot(j + d) - knot(j)) * Np[r - 1];
        if (r <= d - 1) v += (knot(j + d + 1) - xi) / (knot(j + d + 1) - knot(j + 1)) * Np[r];
        Np[r] = v;
      }
    }
    kan_detail::place(m, Np, G, k, j0 + i, vals + i, ldv);
  }
}

/// Windows of n inputs x [n] on uniform knots: input i has knots g0[i] + j h_i, j = 0 .. G + 2k,
/// given as g0 [n] and inv_h [n] = 1 / h_i. SIMD over inputs; k <= kKanMaxUniformOrder.
inline void bspline_local_uniform(const float* x, std::size_t n, const float* g0, const float* inv_h, int G, int k,
                                  std::int32_t* j0, float* vals, std::size_t ldv) {
  using simd::F1;
  using simd::Native;
  constexpr std::size_t W = static_cast<std::size_t>(Native::size);
  const float n0 = static_cast<float>(G + 2 * k);
  // One body for the packet and the one-lane tail: m = floor(u), t = u - m in [0, 1); the uniform
  // Cox-de Boor recursion N_{m-d+r,d} = ((t + d - r) N_{.,d-1}[r-1] + (r + 1 - t) N_{.,d-1}[r]) / d.
  auto body = [&](auto tag, std::size_t i, float* mspan) {
    using P = decltype(tag);
    const P u = simd::mul(simd::sub(simd::load<P>(x + i), simd::load<P>(g0 + i)), simd::load<P>(inv_h + i));
    P m = simd::round_nearest(u);
    m = simd::select(simd::gt(m, u), simd::sub(m, simd::set1<P>(1.0f)), m);
    const P t = simd::sub(u, m);
    const P one = simd::set1<P>(1.0f);
    P b[kKanMaxUniformOrder + 1];
    b[0] = one;
    for (int d = 1; d <= k; ++d) {
      const P inv_d = simd::set1<P>(1.0f / static_cast<float>(d));
      b[d] = simd::mul(simd::mul(t, b[d - 1]), inv_d);
      for (int r = d - 1; r >= 1; --r) {
        const P a = simd::add(t, simd::set1<P>(static_cast<float>(d - r)));
        const P c = simd::sub(simd::set1<P>(static_cast<float>(r + 1)), t);
        b[r] = simd::mul(simd::fmadd(a, b[r - 1], simd::mul(c, b[r])), inv_d);
      }
      b[0] = simd::mul(simd::mul(simd::sub(one, t), b[0]), inv_d);
    }
    for (int r = 0; r <= k; ++r) simd::store(vals + static_cast<std::size_t>(r) * ldv + i, b[r]);
    simd::store(mspan, m);
  };
  // Scalar fix-up of one lane: span out of range, non-finite input, windows at the edges.
  float N[kKanMaxUniformOrder + 1];
  auto fix = [&](std::size_t i, float mf) {
    if (!std::isfinite(x[i])) {
      kan_detail::place_constant(kan_detail::nonfinite_value<float>(k), k, j0 + i, vals + i, ldv);
    } else if (!(mf >= 0.0f && mf < n0)) {
      kan_detail::place_constant(0.0f, k, j0 + i, vals + i, ldv);
    } else {
      const int m = static_cast<int>(mf);
      if (m >= k && m <= G + k - 1) {
        j0[i] = m - k;  // interior: the window is already in place
      } else {
        for (int r = 0; r <= k; ++r) N[r] = vals[static_cast<std::size_t>(r) * ldv + i];
        kan_detail::place(m, N, G, k, j0 + i, vals + i, ldv);
      }
    }
  };
  alignas(64) float mspan[W];
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    body(Native{}, i, mspan);
    for (std::size_t l = 0; l < W; ++l) fix(i + l, mspan[l]);
  }
  for (; i < n; ++i) {
    body(F1{}, i, mspan);
    fix(i, mspan[0]);
  }
}

/// y[t, o0:o1] = sum_i ( base[t, i] Wp[i S + G + k, o] + sum_r vals_t[r][i] Wp[i S + j0[t, i] + r, o] ),
/// S = G + k + 1, for t < tokens. Per token t: j0 + t * in, vals + t * ldvt (rows of ldv), base + t * in.
/// y rows at y + t * ldy. Inputs outer, tokens inner, so a weight row shared by the tokens' windows
/// is read once from memory.
template <class T>
inline void kan_spline_local(std::size_t tokens, std::size_t in, int G, int k, const std::int32_t* j0, const T* vals,
                             std::size_t ldv, std::size_t ldvt, const T* base, const T* Wp, std::size_t out,
                             std::size_t o0, std::size_t o1, T* y, std::size_t ldy) {
  const std::size_t S = static_cast<std::size_t>(G) + static_cast<std::size_t>(k) + 1;
  const std::size_t len = o1 - o0;
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t o = 0; o < len; ++o) y[t * ldy + o0 + o] = T(0);
  const T* rows[kKanMaxOrder + 2];
  const T* next[kKanMaxOrder + 2];
  T coef[kKanMaxOrder + 2];
  const int nr = k + 2;
  // The k + 2 weight rows (window and base) of input i for token t, and their coefficients.
  auto window_rows = [&](std::size_t i, std::size_t t, const T* wi, const T** rw, T* cf) {
    const int j = j0[t * in + i];
    const T* v = vals + t * ldvt + i;
    for (int r = 0; r <= k; ++r) {
      rw[r] = wi + (static_cast<std::size_t>(j) + static_cast<std::size_t>(r)) * out;
      cf[r] = v[static_cast<std::size_t>(r) * ldv];
    }
    rw[k + 1] = wi + static_cast<std::size_t>(G + k) * out;
    cf[k + 1] = base[t * in + i];
  };
  for (std::size_t i = 0; i < in; ++i) {
    const T* wi = Wp + i * S * out + o0;
    for (std::size_t t = 0; t < tokens; ++t) {
      window_rows(i, t, wi, rows, coef);
      // The rows of the next (input, token) pair, prefetched while this one streams: every weight row
      // is its own 4 KiB stretch (at out = 1024), where the hardware prefetcher would restart.
      const bool more = t + 1 < tokens || i + 1 < in;
      if (more) {
        const std::size_t ni = t + 1 < tokens ? i : i + 1, nt = t + 1 < tokens ? t + 1 : 0;
        T ncoef[kKanMaxOrder + 2];
        window_rows(ni, nt, Wp + ni * S * out + o0, next, ncoef);
      }
      T* yt = y + t * ldy + o0;
      if constexpr (std::is_same_v<T, float>) {
        using simd::Native;
        constexpr std::size_t W = static_cast<std::size_t>(Native::size);
        Native c[kKanMaxOrder + 2];
        for (int r = 0; r < nr; ++r) c[r] = simd::set1<Native>(coef[r]);
        std::size_t o = 0;
        for (; o + 2 * W <= len; o += 2 * W) {
          if (more)
            for (int r = 0; r < nr; ++r) EIGENFORMER_KAN_PREFETCH(next[r] + o);
          Native a0 = simd::load<Native>(yt + o), a1 = simd::load<Native>(yt + o + W);
          for (int r = 0; r < nr; ++r) {
            a0 = simd::fmadd(c[r], simd::load<Native>(rows[r] + o), a0);
            a1 = simd::fmadd(c[r], simd::load<Native>(rows[r] + o + W), a1);
          }
          simd::store(yt + o, a0);
          simd::store(yt + o + W, a1);
        }
        for (; o < len; ++o) {
          float a = yt[o];
          for (int r = 0; r < nr; ++r) a = std::fma(coef[r], rows[r][o], a);
          yt[o] = a;
        }
      } else {
        for (std::size_t o = 0; o < len; ++o) {
          T a = yt[o];
          for (int r = 0; r < nr; ++r) a += coef[r] * rows[r][o];
          yt[o] = a;
        }
      }
    }
  }
}

/// One dense basis row phi [in * (G + k + 1)] from one token's windows and base activations.
template <class T>
inline void kan_expand_dense(std::size_t in, int G, int k, const std::int32_t* j0, const T* vals, std::size_t ldv,
                             const T* base, T* phi) {
  const std::size_t S = static_cast<std::size_t>(G) + static_cast<std::size_t>(k) + 1;
  std::fill(phi, phi + in * S, T(0));
  for (std::size_t i = 0; i < in; ++i) {
    T* p = phi + i * S;
    for (int r = 0; r <= k; ++r) p[j0[i] + r] = vals[static_cast<std::size_t>(r) * ldv + i];
    p[G + k] = base[i];
  }
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
