#pragma once
// Scalar reference twin of the recurrent retention step (kernels/retention.hpp): plain loops in the
// caller's precision (float, or double for test references).

#include <cstddef>

#include "../../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

/// One token of one retention head (RetNet's recurrent form, torchscale's running-scale update):
///   S[r, :] = a * S[r, :] + (b * k[r]) * v[:]     for r < dk
///   out[:]  = sum_r q[r] * S[r, :]
/// q, k: [dk]; v, out: [dv]; S: [dk, dv] row-major with row stride ld (>= dv), updated in place.
template <class T>
void retention_step(const T* q, const T* k, const T* v, T* S, std::size_t ld, T* out, std::size_t dk,
                    std::size_t dv, T a, T b) {
  for (std::size_t c = 0; c < dv; ++c) out[c] = T(0);
  for (std::size_t r = 0; r < dk; ++r) {
    T* s = S + r * ld;
    const T bk = b * k[r];
    for (std::size_t c = 0; c < dv; ++c) {
      const T decayed = a * s[c];
      const T added = bk * v[c];
      s[c] = decayed + added;
      const T contrib = q[r] * s[c];
      out[c] = out[c] + contrib;
    }
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
