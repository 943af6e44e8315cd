#pragma once
// Rotary position embedding (RoPE) kernels: rotate the pairs of one head row, in place, by angles
// given as cos/sin arrays (Su et al. 2021, "RoFormer", arXiv:2104.09864, eq. 34):
//   a' = a cos - b sin,   b' = b cos + a sin.
// Two pairings of the head's first 2*half dims:
//   rope_half         pair i = (x[i], x[i + half])   GPT-NeoX / Llama `rotate_half`
//   rope_interleaved  pair i = (x[2i], x[2i + 1])   GPT-J / RoFormer `rotate_every_two`
// Scalar twins in kernels::ref (kernels/ref/rope.hpp); the double overloads here forward to them.
//
// Each output is one multiply and one FMA: a' = fma(-b, sin, a * cos), b' = fma(a, sin, b * cos).
// Both layouts round identically, so rotating a permuted row with the other layout gives the same
// bits. Accuracy against the exact rotation of the float inputs (tests/test_position.cpp):
//   |a' - exact| <= 2^-23 (|a cos| + |b sin|),  |b' - exact| <= 2^-23 (|b cos| + |a sin|)
// (two roundings); PyTorch's `x * cos + rotate_half(x) * sin` (three roundings) obeys the same
// bound, so the two differ by at most twice that (measured: 2^-23 against HF's golden outputs).
// NaN and inf propagate as in the formula.
//
// The interleaved layout needs the cos/sin of pair i in lanes 2i and 2i+1 and a swap of adjacent
// lanes; those two steps are the per-ISA helpers below (AVX2: unpack + permute, NEON: zip + rev64).
// The rest is written once over the packet type.

#include <cstddef>

#include "loops.hpp"
#include "ref/rope.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace rope_detail {

using simd::F1;
using simd::Native;
constexpr std::size_t W = static_cast<std::size_t>(Native::size);

/// One packet of pairs in the half layout: a = x1[0, P::size), b = x2[0, P::size).
template <class P>
EIGENFORMER_ALWAYS_INLINE void rotate_half(float* x1, float* x2, const float* c, const float* s) {
  const P a = simd::load<P>(x1), b = simd::load<P>(x2);
  const P cv = simd::load<P>(c), sv = simd::load<P>(s);
  simd::store(x1, simd::fnmadd(b, sv, simd::mul(a, cv)));
  simd::store(x2, simd::fmadd(a, sv, simd::mul(b, cv)));
}

/// One pair (x[0], x[1]) of the interleaved layout, on the one-lane packet.
EIGENFORMER_ALWAYS_INLINE void rotate_pair(float* x, float c, float s) {
  const F1 a{x[0]}, b{x[1]}, cv{c}, sv{s};
  x[0] = simd::fnmadd(b, sv, simd::mul(a, cv)).v;
  x[1] = simd::fmadd(a, sv, simd::mul(b, cv)).v;
}

#if defined(EIGENFORMER_ISA_AVX2)
constexpr bool kHasPairOps = true;
/// [p0, p0, p1, p1, p2, p2, p3, p3]
EIGENFORMER_ALWAYS_INLINE simd::F8 load_dup_pairs(const float* p) {
  const __m128 v = _mm_loadu_ps(p);
  return simd::F8{_mm256_set_m128(_mm_unpackhi_ps(v, v), _mm_unpacklo_ps(v, v))};
}
/// [-a0, a1, -a2, a3, ...]
EIGENFORMER_ALWAYS_INLINE simd::F8 negate_even(simd::F8 a) {
  return simd::F8{_mm256_xor_ps(a.v, _mm256_setr_ps(-0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f))};
}
/// [a1, a0, a3, a2, ...]
EIGENFORMER_ALWAYS_INLINE simd::F8 swap_pairs(simd::F8 a) {
  return simd::F8{_mm256_permute_ps(a.v, _MM_SHUFFLE(2, 3, 0, 1))};
}
#elif defined(EIGENFORMER_ISA_NEON)
constexpr bool kHasPairOps = true;
EIGENFORMER_ALWAYS_INLINE simd::F4 load_dup_pairs(const float* p) {
  const float32x2_t v = vld1_f32(p);
  const float32x2x2_t z = vzip_f32(v, v);
  return simd::F4{vcombine_f32(z.val[0], z.val[1])};
}
EIGENFORMER_ALWAYS_INLINE simd::F4 negate_even(simd::F4 a) {
  const uint32x4_t sign = {0x80000000u, 0u, 0x80000000u, 0u};
  return simd::F4{vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(a.v), sign))};
}
EIGENFORMER_ALWAYS_INLINE simd::F4 swap_pairs(simd::F4 a) { return simd::F4{vrev64q_f32(a.v)}; }
#else
constexpr bool kHasPairOps = false;  // one-lane packets: every pair goes through rotate_pair
#endif

#if defined(EIGENFORMER_ISA_AVX2) || defined(EIGENFORMER_ISA_NEON)
/// Native::size / 2 pairs of the interleaved layout: x[0, W), c and s [0, W/2).
/// Even lanes: fma(b, -s, a c); odd lanes: fma(a, s, b c) -- the same roundings as rotate_half.
EIGENFORMER_ALWAYS_INLINE void rotate_interleaved(float* x, const float* c, const float* s) {
  const Native v = simd::load<Native>(x);
  const Native cv = load_dup_pairs(c);
  const Native sv = negate_even(load_dup_pairs(s));
  simd::store(x, simd::fmadd(swap_pairs(v), sv, simd::mul(v, cv)));
}
#endif

}  // namespace rope_detail

/// Half layout: rotates pairs (x[i], x[i + half]) for i < half, in place.
/// x: [2 * half] (the rotary part of one head), cos, sin: [half].
inline void rope_half(float* x, const float* cos, const float* sin, std::size_t half) {
  using namespace rope_detail;
  float* x2 = x + half;
  std::size_t i = 0;
  for (; i + 2 * W <= half; i += 2 * W) {
    rotate_half<Native>(x + i, x2 + i, cos + i, sin + i);
    rotate_half<Native>(x + i + W, x2 + i + W, cos + i + W, sin + i + W);
  }
  for (; i + W <= half; i += W) rotate_half<Native>(x + i, x2 + i, cos + i, sin + i);
  for (; i < half; ++i) rotate_half<F1>(x + i, x2 + i, cos + i, sin + i);
}

/// Interleaved layout: rotates pairs (x[2i], x[2i + 1]) for i < half, in place.
/// x: [2 * half], cos, sin: [half].
inline void rope_interleaved(float* x, const float* cos, const float* sin, std::size_t half) {
  using namespace rope_detail;
  std::size_t i = 0;  // pair index
#if defined(EIGENFORMER_ISA_AVX2) || defined(EIGENFORMER_ISA_NEON)
  static_assert(kHasPairOps, "pair helpers missing for this ISA");
  constexpr std::size_t PW = W / 2;  // pairs per packet
  for (; i + 2 * PW <= half; i += 2 * PW) {
    rotate_interleaved(x + 2 * i, cos + i, sin + i);
    rotate_interleaved(x + 2 * i + W, cos + i + PW, sin + i + PW);
  }
  for (; i + PW <= half; i += PW) rotate_interleaved(x + 2 * i, cos + i, sin + i);
#endif
  for (; i < half; ++i) rotate_pair(x + 2 * i, cos[i], sin[i]);
}

// Double precision: the reference twins.
inline void rope_half(double* x, const double* cos, const double* sin, std::size_t half) {
  ref::rope_half(x, cos, sin, half);
}
inline void rope_interleaved(double* x, const double* cos, const double* sin, std::size_t half) {
  ref::rope_interleaved(x, cos, sin, half);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
