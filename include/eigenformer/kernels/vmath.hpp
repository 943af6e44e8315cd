#pragma once
// Elementary functions on packets, written once for every packet type (F8, F4, F1).
//
// exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for e^r
// (Cephes expf coefficients), and 2^n applied in two halves so that results in the subnormal
// range are rounded rather than flushed. Max error ~2 ulp over the whole float range.
// exp(-inf) = 0, exp(+inf) = +inf, exp(x > 88.72) = +inf, exp(NaN) = NaN.
//
// erfc: Numerical Recipes' erfcc Chebyshev fit, erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2),
// fractional error < 1.2e-7 for z >= 0 in exact arithmetic; used for GELU so that the negative tail
// keeps its relative accuracy.

#include "packet.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace simd {

template <class P>
EIGENFORMER_ALWAYS_INLINE P exp(P x) {
  const P xc = min(max(x, set1<P>(-104.0f)), set1<P>(88.8f));
  const P n = round_nearest(mul(xc, set1<P>(1.44269504088896341f)));
  P r = fnmadd(n, set1<P>(0.693359375f), xc);
  r = fnmadd(n, set1<P>(-2.12194440e-4f), r);
  P p = set1<P>(1.9875691500e-4f);
  p = fmadd(p, r, set1<P>(1.3981999507e-3f));
  p = fmadd(p, r, set1<P>(8.3334519073e-3f));
  p = fmadd(p, r, set1<P>(4.1665795894e-2f));
  p = fmadd(p, r, set1<P>(1.6666665459e-1f));
  p = fmadd(p, r, set1<P>(5.0000001201e-1f));
  p = fmadd(p, mul(r, r), add(r, set1<P>(1.0f)));
  // n is in [-150, 128]: split it so each factor 2^k is a normal float.
  const P n1 = round_nearest(mul(n, set1<P>(0.5f)));
  const P n2 = sub(n, n1);
  const P y = mul(mul(p, pow2i(n1)), pow2i(n2));
  return select(is_nan(x), x, y);
}

/// x * sigmoid(x) = x / (1 + e^-x).
template <class P>
EIGENFORMER_ALWAYS_INLINE P silu(P x) {
  const P zero = set1<P>(0.0f);
  return div(x, add(set1<P>(1.0f), exp(sub(zero, x))));
}

/// GELU, tanh approximation: 0.5 x (1 + tanh(u)) = x / (1 + e^(-2u)),
/// u = sqrt(2/pi) (x + 0.044715 x^3).
template <class P>
EIGENFORMER_ALWAYS_INLINE P gelu_tanh(P x) {
  const P x3 = mul(mul(x, x), x);
  const P u = mul(set1<P>(0.7978845608028654f), fmadd(set1<P>(0.044715f), x3, x));
  return div(x, add(set1<P>(1.0f), exp(mul(set1<P>(-2.0f), u))));
}

/// erfc(z) for z >= 0 (Numerical Recipes erfcc).
template <class P>
EIGENFORMER_ALWAYS_INLINE P erfc_nonneg(P z) {
  const P t = div(set1<P>(1.0f), fmadd(set1<P>(0.5f), z, set1<P>(1.0f)));
  P q = set1<P>(0.17087277f);
  q = fmadd(q, t, set1<P>(-0.82215223f));
  q = fmadd(q, t, set1<P>(1.48851587f));
  q = fmadd(q, t, set1<P>(-1.13520398f));
  q = fmadd(q, t, set1<P>(0.27886807f));
  q = fmadd(q, t, set1<P>(-0.18628806f));
  q = fmadd(q, t, set1<P>(0.09678418f));
  q = fmadd(q, t, set1<P>(0.37409196f));
  q = fmadd(q, t, set1<P>(1.00002368f));
  q = fmadd(q, t, set1<P>(-1.26551223f));
  return mul(t, exp(fnmadd(z, z, q)));
}

/// GELU, exact (erf) form: 0.5 x (1 + erf(x / sqrt 2)), with 1 + erf(-z) = erfc(z) on the
/// negative side and 2 - erfc(z) on the positive side.
template <class P>
EIGENFORMER_ALWAYS_INLINE P gelu_erf(P x) {
  const P zero = set1<P>(0.0f);
  const P z = mul(max(x, sub(zero, x)), set1<P>(0.70710678118654752f));  // |x| / sqrt 2
  const P c = erfc_nonneg(z);
  const P one_plus_erf = select(lt(x, zero), c, sub(set1<P>(2.0f), c));
  return mul(mul(set1<P>(0.5f), x), one_plus_erf);
}

/// tanh(x): an odd Taylor polynomial (to x^9) for |x| < 0.3, where 1 - 2 / (e^{2|x|} + 1) would
/// cancel, and that formula with the sign restored above. <= 4 eps relative.
template <class P>
EIGENFORMER_ALWAYS_INLINE P tanh(P x) {
  const P zero = set1<P>(0.0f);
  const P ax = max(x, sub(zero, x));
  const P x2 = mul(x, x);
  P p = set1<P>(62.0f / 2835.0f);
  p = fmadd(p, x2, set1<P>(-17.0f / 315.0f));
  p = fmadd(p, x2, set1<P>(2.0f / 15.0f));
  p = fmadd(p, x2, set1<P>(-1.0f / 3.0f));
  const P small = fmadd(mul(p, x2), x, x);
  const P e = exp(add(ax, ax));
  const P big = sub(set1<P>(1.0f), div(set1<P>(2.0f), add(e, set1<P>(1.0f))));
  const P signed_big = select(lt(x, zero), sub(zero, big), big);
  return select(lt(ax, set1<P>(0.3f)), small, signed_big);
}

/// ReLU^2 (Primer / BitNet): max(x, 0)^2.
template <class P>
EIGENFORMER_ALWAYS_INLINE P relu2(P x) {
  const P r = max(set1<P>(0.0f), x);  // NaN is the second operand: it propagates
  return mul(r, r);
}

}  // namespace simd
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
