#pragma once
// Portable "packet" of one float: the same generic kernel code that runs on AVX2 (8 lanes) and NEON
// (4 lanes) runs on this one-lane type, for the scalar tails of every SIMD loop and for the whole
// array when EIGENFORMER_FORCE_SCALAR is set (or no supported ISA is available).

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace simd {

struct F1 {
  static constexpr int size = 1;
  float v;
};
using M1 = bool;  // lane mask

EIGENFORMER_ALWAYS_INLINE F1 load(F1*, const float* p) { return F1{*p}; }
EIGENFORMER_ALWAYS_INLINE void store(float* p, F1 a) { *p = a.v; }
EIGENFORMER_ALWAYS_INLINE F1 set1(F1*, float s) { return F1{s}; }
EIGENFORMER_ALWAYS_INLINE F1 add(F1 a, F1 b) { return F1{a.v + b.v}; }
EIGENFORMER_ALWAYS_INLINE F1 sub(F1 a, F1 b) { return F1{a.v - b.v}; }
EIGENFORMER_ALWAYS_INLINE F1 mul(F1 a, F1 b) { return F1{a.v * b.v}; }
EIGENFORMER_ALWAYS_INLINE F1 div(F1 a, F1 b) { return F1{a.v / b.v}; }
/// a * b + c, fused (one rounding) as on the SIMD paths.
EIGENFORMER_ALWAYS_INLINE F1 fmadd(F1 a, F1 b, F1 c) { return F1{std::fma(a.v, b.v, c.v)}; }
/// See the packet headers; a no-op for scalars.
EIGENFORMER_ALWAYS_INLINE void keep_in_register(F1&) {}
/// c - a * b, fused.
EIGENFORMER_ALWAYS_INLINE F1 fnmadd(F1 a, F1 b, F1 c) { return F1{std::fma(-a.v, b.v, c.v)}; }
// max/min follow the x86 convention: if either operand is NaN, the second operand is returned.
EIGENFORMER_ALWAYS_INLINE F1 max(F1 a, F1 b) { return F1{a.v > b.v ? a.v : b.v}; }
EIGENFORMER_ALWAYS_INLINE F1 min(F1 a, F1 b) { return F1{a.v < b.v ? a.v : b.v}; }
EIGENFORMER_ALWAYS_INLINE F1 round_nearest(F1 a) { return F1{std::nearbyint(a.v)}; }
/// 2^n for integral n in [-126, 127].
EIGENFORMER_ALWAYS_INLINE F1 pow2i(F1 n) {
  const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n.v) + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return F1{f};
}
EIGENFORMER_ALWAYS_INLINE M1 lt(F1 a, F1 b) { return a.v < b.v; }
EIGENFORMER_ALWAYS_INLINE M1 gt(F1 a, F1 b) { return a.v > b.v; }
EIGENFORMER_ALWAYS_INLINE M1 is_nan(F1 a) { return a.v != a.v; }
EIGENFORMER_ALWAYS_INLINE F1 select(M1 m, F1 a, F1 b) { return m ? a : b; }
EIGENFORMER_ALWAYS_INLINE float hsum(F1 a) { return a.v; }
EIGENFORMER_ALWAYS_INLINE float hmax(F1 a) { return a.v; }

}  // namespace simd
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
