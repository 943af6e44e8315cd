#pragma once
// The one SIMD dispatch point: `simd::Native` is the widest packet this translation unit was
// compiled for (see config.hpp). Generic kernels are templates over a packet type P and run on
// `Native` for the main loop and on the one-lane `F1` for the scalar tail.

#include "packet_scalar.hpp"
#include "x86/packet_avx2.hpp"
#include "arm/packet_neon.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace simd {

#if defined(EIGENFORMER_ISA_AVX2)
using Native = F8;
#elif defined(EIGENFORMER_ISA_NEON)
using Native = F4;
#else
using Native = F1;
#endif

template <class P>
EIGENFORMER_ALWAYS_INLINE P load(const float* p) {
  return load(static_cast<P*>(nullptr), p);
}
template <class P>
EIGENFORMER_ALWAYS_INLINE P set1(float s) {
  return set1(static_cast<P*>(nullptr), s);
}

}  // namespace simd
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
