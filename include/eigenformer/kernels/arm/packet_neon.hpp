#pragma once
// NEON packet of 4 floats (AArch64). Only compiled when the translation unit targets AArch64.

#include "../../config.hpp"

#if defined(EIGENFORMER_ISA_NEON)
#include <arm_neon.h>

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace simd {

struct F4 {
  static constexpr int size = 4;
  float32x4_t v;
};
struct M4 {
  uint32x4_t v;
};

EIGENFORMER_ALWAYS_INLINE F4 load(F4*, const float* p) { return F4{vld1q_f32(p)}; }
EIGENFORMER_ALWAYS_INLINE void store(float* p, F4 a) { vst1q_f32(p, a.v); }
EIGENFORMER_ALWAYS_INLINE F4 set1(F4*, float s) { return F4{vdupq_n_f32(s)}; }
EIGENFORMER_ALWAYS_INLINE F4 add(F4 a, F4 b) { return F4{vaddq_f32(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F4 sub(F4 a, F4 b) { return F4{vsubq_f32(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F4 mul(F4 a, F4 b) { return F4{vmulq_f32(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F4 div(F4 a, F4 b) { return F4{vdivq_f32(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F4 fmadd(F4 a, F4 b, F4 c) { return F4{vfmaq_f32(c.v, a.v, b.v)}; }
/// Keep a value in a register: the compiler may not re-load it from memory at each use (GCC does
/// so in the attention decode kernels when register pressure is high, doubling their loads).
EIGENFORMER_ALWAYS_INLINE void keep_in_register(F4& x) { asm("" : "+w"(x.v)); }
EIGENFORMER_ALWAYS_INLINE F4 fnmadd(F4 a, F4 b, F4 c) { return F4{vfmsq_f32(c.v, a.v, b.v)}; }
// Same NaN convention as the x86 and scalar packets: if either operand is NaN, return the second.
EIGENFORMER_ALWAYS_INLINE F4 max(F4 a, F4 b) { return F4{vbslq_f32(vcgtq_f32(a.v, b.v), a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F4 min(F4 a, F4 b) { return F4{vbslq_f32(vcltq_f32(a.v, b.v), a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE F4 round_nearest(F4 a) { return F4{vrndnq_f32(a.v)}; }
/// 2^n for integral n in [-126, 127].
EIGENFORMER_ALWAYS_INLINE F4 pow2i(F4 n) {
  const int32x4_t e = vaddq_s32(vcvtq_s32_f32(n.v), vdupq_n_s32(127));
  return F4{vreinterpretq_f32_s32(vshlq_n_s32(e, 23))};
}
EIGENFORMER_ALWAYS_INLINE M4 lt(F4 a, F4 b) { return M4{vcltq_f32(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE M4 gt(F4 a, F4 b) { return M4{vcgtq_f32(a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE M4 is_nan(F4 a) { return M4{vmvnq_u32(vceqq_f32(a.v, a.v))}; }
EIGENFORMER_ALWAYS_INLINE F4 select(M4 m, F4 a, F4 b) { return F4{vbslq_f32(m.v, a.v, b.v)}; }
EIGENFORMER_ALWAYS_INLINE float hsum(F4 a) { return vaddvq_f32(a.v); }
EIGENFORMER_ALWAYS_INLINE float hmax(F4 a) { return vmaxvq_f32(a.v); }

}  // namespace simd
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
#endif
