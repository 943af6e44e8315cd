#pragma once
// NEON (AArch64) ternary x int8 kernels (formats: kernels/ref/ternary.hpp). Only compiled for
// AArch64 targets.
//
// Weights are decoded to signed int8 w in {-1, 0, 1} (16 per register) and multiplied with int8
// activations by vmull_s8 / vmlal_high_s8 into int16 lanes, widened into int32 by vpadalq_s16.
// The activation sum is not needed (signed weights). No floating point anywhere.
//   TQ2: w = ((byte >> 2p) & 3) - 1
//   TQ1: q = byte * 3^i mod 256 (vmulq_u8 by 3 per digit); w = (q >= 86) + (q >= 171) - 1,
//        the carry of 3q / 256, minus 1
// Overflow: an int16 lane gets 4 products per plane (2 halves x low/high), each |w x| <= 128:
// <= 16 (TQ2) or 20 (TQ1) products per block, so 8 blocks stay below 20480 before widening.

#include "../../config.hpp"

#if defined(EIGENFORMER_ISA_NEON)
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../ref/ternary.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace neon {

constexpr std::size_t kFlushBlocks = 8;

// Decoders: 2 registers (16 weights each) per plane of 32 weights, signed.
struct DecodeTQ2 {
  using Block = BlockTQ2;
  static constexpr int kPlanes = 4;
  EIGENFORMER_ALWAYS_INLINE static void decode(const Block& b, int8x16_t* w) {
    const uint8x16_t m3 = vdupq_n_u8(3);
    const int8x16_t one = vdupq_n_s8(1);
    const uint8x16_t v0 = vld1q_u8(b.qs), v1 = vld1q_u8(b.qs + 16);
    auto plane = [&](uint8x16_t u) { return vsubq_s8(vreinterpretq_s8_u8(vandq_u8(u, m3)), one); };
    w[0] = plane(v0);
    w[1] = plane(v1);
    w[2] = plane(vshrq_n_u8(v0, 2));
    w[3] = plane(vshrq_n_u8(v1, 2));
    w[4] = plane(vshrq_n_u8(v0, 4));
    w[5] = plane(vshrq_n_u8(v1, 4));
    w[6] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v0, 6)), one);
    w[7] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v1, 6)), one);
  }
};

struct DecodeTQ1 {
  using Block = BlockTQ1;
  static constexpr int kPlanes = 5;
  EIGENFORMER_ALWAYS_INLINE static void decode(const Block& b, int8x16_t* w) {
    const uint8x16_t th1 = vdupq_n_u8(86), th2 = vdupq_n_u8(171), three = vdupq_n_u8(3);
    const int8x16_t minus1 = vdupq_n_s8(-1);
    uint8x16_t q[2] = {vld1q_u8(b.qs), vld1q_u8(b.qs + 16)};
#pragma GCC unroll 5
    for (int i = 0; i < 5; ++i) {
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        // masks are 0xFF = -1 where set: w = -1 - m1 - m2 = d - 1
        const int8x16_t m1 = vreinterpretq_s8_u8(vcgeq_u8(q[h], th1));
        const int8x16_t m2 = vreinterpretq_s8_u8(vcgeq_u8(q[h], th2));
        w[2 * i + h] = vsubq_s8(vsubq_s8(minus1, m1), m2);
        if (i < 4) q[h] = vmulq_u8(q[h], three);
      }
    }
  }
};

template <class Block>
struct Decoder;
template <>
struct Decoder<BlockTQ2> : DecodeTQ2 {};
template <>
struct Decoder<BlockTQ1> : DecodeTQ1 {};

// acc += w . x over 32 weights (one plane: two registers of 16).
EIGENFORMER_ALWAYS_INLINE int16x8_t mac32(int16x8_t acc, int8x16_t w0, int8x16_t w1, const std::int8_t* x) {
  const int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
  acc = vmlal_s8(acc, vget_low_s8(w0), vget_low_s8(x0));
  acc = vmlal_high_s8(acc, w0, x0);
  acc = vmlal_s8(acc, vget_low_s8(w1), vget_low_s8(x1));
  acc = vmlal_high_s8(acc, w1, x1);
  return acc;
}

template <class Block, int R>
EIGENFORMER_ALWAYS_INLINE void gemv_rows(const Block* w, std::size_t blocks, const std::int8_t* x, std::int32_t* y) {
  using D = Decoder<Block>;
  constexpr int P = D::kPlanes;
  int32x4_t acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = vdupq_n_s32(0);
  for (std::size_t b0 = 0; b0 < blocks; b0 += kFlushBlocks) {
    const std::size_t b1 = std::min(blocks, b0 + kFlushBlocks);
    int16x8_t s[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) s[r] = vdupq_n_s16(0);
    for (std::size_t b = b0; b < b1; ++b) {
      const std::int8_t* xb = x + b * Block::kWeights;
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int8x16_t d[2 * P];
        D::decode(w[static_cast<std::size_t>(r) * blocks + b], d);
#pragma GCC unroll 5
        for (int i = 0; i < P; ++i) s[r] = mac32(s[r], d[2 * i], d[2 * i + 1], xb + 32 * i);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r] = vpadalq_s16(acc[r], s[r]);
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) y[r] = vaddvq_s32(acc[r]);
}

template <class Block>
inline void ternary_gemv(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::int32_t /*x_sum*/, const std::int32_t* /*dsum*/, std::int32_t* y) {
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4) gemv_rows<Block, 4>(w + r * blocks, blocks, x, y + r);
  for (; r < rows; ++r) gemv_rows<Block, 1>(w + r * blocks, blocks, x, y + r);
}

// One row against NT tokens: the block is decoded once (8 or 10 registers of 32) for NT tokens.
template <class Block, int NT>
EIGENFORMER_ALWAYS_INLINE void gemm_row(const Block* wr, std::size_t blocks, const std::int8_t* x, std::size_t ldx,
                                        std::int32_t* y, std::size_t ldy) {
  using D = Decoder<Block>;
  constexpr int P = D::kPlanes;
  int32x4_t acc[NT];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) acc[t] = vdupq_n_s32(0);
  for (std::size_t b = 0; b < blocks; ++b) {
    int8x16_t d[2 * P];
    D::decode(wr[b], d);
    const std::int8_t* xb = x + b * Block::kWeights;
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const std::int8_t* xt = xb + static_cast<std::size_t>(t) * ldx;
      int16x8_t s = vdupq_n_s16(0);
#pragma GCC unroll 5
      for (int i = 0; i < P; ++i) s = mac32(s, d[2 * i], d[2 * i + 1], xt + 32 * i);
      acc[t] = vpadalq_s16(acc[t], s);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) y[static_cast<std::size_t>(t) * ldy] = vaddvq_s32(acc[t]);
}

constexpr std::size_t kGemmRowChunk = 16;

template <class Block>
inline void ternary_gemm(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::size_t ldx, const std::int32_t* /*x_sum*/, const std::int32_t* /*dsum*/,
                         std::size_t tokens, std::int32_t* y, std::size_t ldy) {
  for (std::size_t r0 = 0; r0 < rows; r0 += kGemmRowChunk) {
    const std::size_t r1 = std::min(rows, r0 + kGemmRowChunk);
    std::size_t t = 0;
    for (; t + 4 <= tokens; t += 4)
      for (std::size_t r = r0; r < r1; ++r) gemm_row<Block, 4>(w + r * blocks, blocks, x + t * ldx, ldx, y + t * ldy + r, ldy);
    for (; t < tokens; ++t)
      for (std::size_t r = r0; r < r1; ++r) gemm_row<Block, 1>(w + r * blocks, blocks, x + t * ldx, ldx, y + t * ldy + r, ldy);
  }
}

inline float quantize_absmax_i8(const float* x, std::size_t n, std::size_t n_pad, std::int8_t* q, std::int32_t* sum) {
  const float32x4_t big = vdupq_n_f32(std::numeric_limits<float>::max());
  float32x4_t m0 = vdupq_n_f32(0.0f), m1 = m0;
  uint32x4_t ok = vdupq_n_u32(0xffffffffu);
  std::size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const float32x4_t a0 = vabsq_f32(vld1q_f32(x + k)), a1 = vabsq_f32(vld1q_f32(x + k + 4));
    m0 = vmaxq_f32(m0, a0);  // (NaN here is caught by `ok`)
    m1 = vmaxq_f32(m1, a1);
    ok = vandq_u32(ok, vandq_u32(vcleq_f32(a0, big), vcleq_f32(a1, big)));  // false for inf and NaN
  }
  float m = vmaxvq_f32(vmaxq_f32(m0, m1));
  bool finite = vminvq_u32(ok) != 0;
  for (; k < n; ++k) {
    const float a = std::fabs(x[k]);
    if (!(a <= std::numeric_limits<float>::max())) finite = false;
    if (a > m) m = a;
  }
  if (!finite) {
    std::memset(q, 0, n_pad);
    *sum = 0;
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float scale = ActQuant::scale(m);
  int32x4_t acc = vdupq_n_s32(0);
  k = 0;
  for (; k + 16 <= n; k += 16) {
    // vcvtnq: round to nearest, ties to even; vqmovn: saturating narrow = the clamp to [-128, 127]
    const int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k), scale));
    const int32x4_t i1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 4), scale));
    const int32x4_t i2 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 8), scale));
    const int32x4_t i3 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + k + 12), scale));
    const int16x8_t h0 = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
    const int16x8_t h1 = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
    const int8x16_t v = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
    vst1q_s8(q + k, v);
    acc = vpadalq_s16(acc, vpaddlq_s8(v));
  }
  std::int32_t s = vaddvq_s32(acc);
  for (; k < n; ++k) {
    float v = std::nearbyint(x[k] * scale);
    v = v < ActQuant::kLo ? ActQuant::kLo : (v > ActQuant::kHi ? ActQuant::kHi : v);
    q[k] = static_cast<std::int8_t>(v);
    s += q[k];
  }
  if (n_pad > n) std::memset(q + n, 0, n_pad - n);
  *sum = s;
  return scale;
}

inline void rescale(const std::int32_t* acc, std::size_t n, float x_scale, float w_scale, bool multiply,
                    const float* bias, float* y) {
  const float d = multiply ? x_scale : x_scale * w_scale;
  const float32x4_t vd = vdupq_n_f32(d), ws = vdupq_n_f32(w_scale);
  std::size_t r = 0;
  for (; r + 4 <= n; r += 4) {
    float32x4_t v = vdivq_f32(vcvtq_f32_s32(vld1q_s32(acc + r)), vd);
    if (bias) v = vaddq_f32(v, vld1q_f32(bias + r));
    if (multiply) v = vmulq_f32(v, ws);
    vst1q_f32(y + r, v);
  }
  for (; r < n; ++r) {
    float v = static_cast<float>(acc[r]) / d;
    if (bias) v += bias[r];
    y[r] = multiply ? v * w_scale : v;
  }
}

}  // namespace neon
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
#endif
