#pragma once
// Packet loads from storage element types: float, f16 (IEEE half) and bf16, converted to float
// lanes. Kernels that read caches or weights kept in 16 bits are templates over the element type E
// and call `load_as<P>(const E*)`; `kernels::widen` converts a whole row.

#include <cstddef>

#include "../core/half.hpp"
#include "packet.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace simd {

template <class P>
EIGENFORMER_ALWAYS_INLINE P load_as_impl(P*, const float* p) {
  return load<P>(p);
}

// One lane: scalar conversion.
EIGENFORMER_ALWAYS_INLINE F1 load_as_impl(F1*, const f16* p) { return F1{half_to_float(p->bits)}; }
EIGENFORMER_ALWAYS_INLINE F1 load_as_impl(F1*, const bf16* p) { return F1{bf16_to_float(p->bits)}; }

#if defined(EIGENFORMER_ISA_AVX2)
EIGENFORMER_ALWAYS_INLINE F8 load_as_impl(F8*, const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return F8{_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
}
EIGENFORMER_ALWAYS_INLINE F8 load_as_impl(F8*, const f16* p) {
#if defined(__F16C__)
  return F8{_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
#else
  alignas(32) float t[8];
  for (int i = 0; i < 8; ++i) t[i] = half_to_float(p[i].bits);
  return F8{_mm256_load_ps(t)};
#endif
}
#endif

#if defined(EIGENFORMER_ISA_NEON)
EIGENFORMER_ALWAYS_INLINE F4 load_as_impl(F4*, const bf16* p) {
  const uint16x4_t h = vld1_u16(reinterpret_cast<const std::uint16_t*>(p));
  return F4{vreinterpretq_f32_u32(vshll_n_u16(h, 16))};
}
EIGENFORMER_ALWAYS_INLINE F4 load_as_impl(F4*, const f16* p) {
  return F4{vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p))))};
}
#endif

template <class P, class E>
EIGENFORMER_ALWAYS_INLINE P load_as(const E* p) {
  return load_as_impl(static_cast<P*>(nullptr), p);
}

}  // namespace simd

namespace kernels {

/// y[i] = x[i] as float (exact: f16 and bf16 widen without rounding), for n elements.
template <class E>
inline void widen(const E* x, float* y, std::size_t n) {
  constexpr std::size_t W = static_cast<std::size_t>(simd::Native::size);
  std::size_t i = 0;
  for (; i + W <= n; i += W) simd::store(y + i, simd::load_as<simd::Native>(x + i));
  for (; i < n; ++i) y[i] = to_float(x[i]);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
