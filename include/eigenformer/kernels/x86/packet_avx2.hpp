#pragma once
// AVX2 + FMA packet of 8 floats. Only compiled when the translation unit targets AVX2 and FMA.

#include "../../config.hpp"

#if defined(EIGENFORMER_ISA_AVX2)
#include <immintrin.h>

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace simd {

struct F8 {
  static constexpr int size = 8;
  __m256 v;
};
struct M8 {
  __m256 v;
};

EIGENFORMER_ALWAYS_INLINE F8 load(F8*, const float* p) { return F8{_mm256_loadu_ps(p)}; }
EIGENFORMER_ALWAYS_INLINE void store(float* p, F8 a) { _mm256_storeu_ps(p, a.v); }
EIGENFORMER_ALWAYS_INLINE F8 set1(F8*, float s) { return F8{_mm256_set1_ps(s)}; }
EIGENFORMER_ALWAYS_INLINE F8 add(F8 a, F8 b) { return F8{_mm256_add_ps(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F8 sub(F8 a, F8 b) { return F8{_mm256_sub_ps(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F8 mul(F8 a, F8 b) { return F8{_mm256_mul_ps(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F8 div(F8 a, F8 b) { return F8{_mm256_div_ps(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F8 fmadd(F8 a, F8 b, F8 c) { return F8{_mm256_fmadd_ps(a.v, b.v, c.v)}; }
/// Keep a value in a register: the compiler may not re-load it from memory at each use (GCC does
/// so in the attention decode kernels when register pressure is high, doubling their loads).
EIGENFORMER_ALWAYS_INLINE void keep_in_register(F8& x) { asm("" : "+x"(x.v)); }
EIGENFORMER_ALWAYS_INLINE F8 fnmadd(F8 a, F8 b, F8 c) { return F8{_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
// If either operand is NaN, the second operand is returned (x86 semantics).
EIGENFORMER_ALWAYS_INLINE F8 max(F8 a, F8 b) { return F8{_mm256_max_ps(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F8 min(F8 a, F8 b) { return F8{_mm256_min_ps(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F8 round_nearest(F8 a) {
  return F8{_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
/// 2^n for integral n in [-126, 127].
EIGENFORMER_ALWAYS_INLINE F8 pow2i(F8 n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
  return F8{_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
}
EIGENFORMER_ALWAYS_INLINE M8 lt(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
EIGENFORMER_ALWAYS_INLINE M8 gt(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
EIGENFORMER_ALWAYS_INLINE M8 is_nan(F8 a) { return M8{_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
EIGENFORMER_ALWAYS_INLINE F8 select(M8 m, F8 a, F8 b) { return F8{_mm256_blendv_ps(b.v, a.v, m.v)}; }
EIGENFORMER_ALWAYS_INLINE float hsum(F8 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
EIGENFORMER_ALWAYS_INLINE float hmax(F8 a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace simd
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
#endif
