#pragma once
// The recurrent retention step (RetNet, Sun et al. 2023, arXiv:2307.08621, eq. 6; torchscale's
// running-scale form): one token of one head updates the head's [dk, dv] state and reads it,
//   S[r, :] = a * S[r, :] + (b * k[r]) * v[:],    out[:] = sum_r q[r] * S[r, :].
// The state is streamed once: columns are taken in blocks of four packets whose output accumulators
// stay in registers while the rows go by; each state element is one multiply and two FMAs.
// Scalar twin: kernels::ref::retention_step (kernels/ref/retention.hpp); the double overload forwards to it.

#include <cstddef>

#include "loops.hpp"
#include "ref/retention.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace retention_detail {

/// Columns [c0, c0 + N * P::size) of the step, N packets of type P.
template <class P, int N>
EIGENFORMER_ALWAYS_INLINE void step_columns(const float* q, const float* k, const float* v, float* S,
                                            std::size_t ld, float* out, std::size_t dk, std::size_t c0,
                                            float a, float b) {
  constexpr std::size_t w = static_cast<std::size_t>(P::size);
  P acc[N], vv[N];
  for (int j = 0; j < N; ++j) {
    acc[j] = simd::set1<P>(0.0f);
    vv[j] = simd::load<P>(v + c0 + static_cast<std::size_t>(j) * w);
  }
  const P av = simd::set1<P>(a);
  for (std::size_t r = 0; r < dk; ++r) {
    float* s = S + r * ld + c0;
    const P bk = simd::set1<P>(b * k[r]);
    const P qr = simd::set1<P>(q[r]);
    for (int j = 0; j < N; ++j) {
      float* p = s + static_cast<std::size_t>(j) * w;
      const P nv = simd::fmadd(bk, vv[j], simd::mul(av, simd::load<P>(p)));
      simd::store(p, nv);
      acc[j] = simd::fmadd(qr, nv, acc[j]);
    }
  }
  for (int j = 0; j < N; ++j) simd::store(out + c0 + static_cast<std::size_t>(j) * w, acc[j]);
}

}  // namespace retention_detail

/// One token of one retention head; see the file comment. q, k: [dk]; v, out: [dv]; S: [dk, dv]
/// row-major with row stride ld >= dv, updated in place. out must not overlap S, q, k or v.
inline void retention_step(const float* q, const float* k, const float* v, float* S, std::size_t ld, float* out,
                           std::size_t dk, std::size_t dv, float a, float b) {
  using retention_detail::step_columns;
  using simd::F1;
  using simd::Native;
  constexpr std::size_t W = static_cast<std::size_t>(Native::size);
  std::size_t c = 0;
  for (; c + 4 * W <= dv; c += 4 * W) step_columns<Native, 4>(q, k, v, S, ld, out, dk, c, a, b);
  for (; c + W <= dv; c += W) step_columns<Native, 1>(q, k, v, S, ld, out, dk, c, a, b);
  for (; c < dv; ++c) step_columns<F1, 1>(q, k, v, S, ld, out, dk, c, a, b);
}

inline void retention_step(const double* q, const double* k, const double* v, double* S, std::size_t ld,
                           double* out, std::size_t dk, std::size_t dv, double a, double b) {
  ref::retention_step(q, k, v, S, ld, out, dk, dv, a, b);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
