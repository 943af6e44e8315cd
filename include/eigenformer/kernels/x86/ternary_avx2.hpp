#pragma once
// AVX2 ternary x int8 kernels (formats: kernels/ref/ternary.hpp). Only compiled for AVX2 targets.
//
// Both formats decode 32 consecutive weights into one register of unsigned digits d = w + 1 in
// {0, 1, 2}, and multiply them with 32 consecutive int8 activations by _mm256_maddubs_epi16
// (unsigned x signed bytes, adjacent pairs summed into int16): the kernels compute
// sum_k d_k x_k = sum_k w_k x_k + sum_k x_k and subtract the token's activation sum (known from the
// quantizer) once at the end. No floating point anywhere.
//   TQ2: d = (byte >> 2p) & 3                                  (shift + and per 32 weights)
//   TQ1: s = byte ^ 0x80 as int8 (= q - 128); d = (s > -43) + (s > 42), i.e. q >= 86 and q >= 171,
//        the carry of 3q / 256; the next digit's s is 3 s (wrapping int8 adds)
// The TQ1 GEMV skips the negation that turns the two compare masks (-1 where set) into d: it
// multiplies the masks' sum -d, as the signed operand, with x + 128 as the unsigned one (x ^ 0x80,
// made once per block for all rows): h = sum_k (x_k + 128)(-d_k) = -sum_k d_k x_k - 128 D, where
// D = sum_k d_k is the row's digit sum (a weight constant, computed when the matrix is packed).
// So sum_k w_k x_k = -h - 128 D - sum_k x_k: one instruction fewer per 32 weights (of 8).
//
// Overflow: |maddubs lane| <= 2 * 2 * 128 = 512, so an int16 lane holds 8 blocks of TQ2 (4 planes:
// <= 16384) or TQ1 (5 planes: <= 20480) before it is widened to int32 with _mm256_madd_epi16. In the
// TQ1 GEMV a lane is <= 2 * 255 * 2 = 1020 per plane, so it widens every 6 blocks (<= 30600), and
// |h| <= 510 * padded cols < 2^31 for cols <= 2^22 + 159. int32 accumulators hold
// |sum| <= 256 * cols: cols < 2^23 (BitLinear checks its sizes: at most 2^22).
//
// Shapes: GEMV processes 4 rows per step (the activations of a block are loaded once for 4 rows and
// 4 independent dependency chains keep the multiply ports busy); GEMM runs a 1 row x 8 tokens
// micro-kernel (4-5 decoded planes + 8 int32 accumulators + constants fit the 16 ymm registers) so
// a block is decoded once per 8 tokens.

#include "../../config.hpp"

#if defined(EIGENFORMER_ISA_AVX2)
#include <immintrin.h>

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
namespace avx2 {

EIGENFORMER_ALWAYS_INLINE __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

EIGENFORMER_ALWAYS_INLINE std::int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// A value the optimizer cannot see through (an empty asm). GCC 12 rewrites cmpgt(s, -43) as
// s >= -42 and expands that to min + cmpeq, one more instruction per digit plane; with opaque
// thresholds it emits the plain compare.
EIGENFORMER_ALWAYS_INLINE __m256i opaque(__m256i v) {
#if defined(__GNUC__)
  __asm__("" : "+x"(v));
#endif
  return v;
}

// Decoders: the digit planes d = w + 1 of one block, 32 weights per register. Consts are built once
// per kernel call.
struct DecodeTQ2 {
  using Block = BlockTQ2;
  static constexpr int kPlanes = 4;
  struct Consts {
    __m256i m3 = _mm256_set1_epi8(3);
  };
  EIGENFORMER_ALWAYS_INLINE static void decode(const Block& b, __m256i* d, const Consts& c) {
    const __m256i v = load32(b.qs);
    d[0] = _mm256_and_si256(v, c.m3);
    d[1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), c.m3);
    d[2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), c.m3);
    d[3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), c.m3);
  }

  // GEMV: blocks summed in int16 lanes before widening; the block's activations as the kernel reads
  // them (once per block for all rows); one row's block as int16 lanes; the dot product from the
  // lanes' total h.
  static constexpr std::size_t kGemvFlush = 8;
  EIGENFORMER_ALWAYS_INLINE static void gemv_x(const std::int8_t* xb, __m256i* xv, const Consts&) {
#pragma GCC unroll 4
    for (int i = 0; i < kPlanes; ++i) xv[i] = load32(xb + 32 * i);
  }
  EIGENFORMER_ALWAYS_INLINE static __m256i gemv_block(const Block& b, const __m256i* xv, const Consts& c) {
    __m256i d[kPlanes];
    decode(b, d, c);
    __m256i p = _mm256_maddubs_epi16(d[0], xv[0]);
#pragma GCC unroll 4
    for (int i = 1; i < kPlanes; ++i) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(d[i], xv[i]));
    return p;
  }
  static std::int32_t gemv_result(std::int32_t h, std::int32_t x_sum, std::int32_t /*dsum*/) {
    return h - x_sum;
  }
};

struct DecodeTQ1 {
  using Block = BlockTQ1;
  static constexpr int kPlanes = 5;
  struct Consts {
    __m256i th1 = opaque(_mm256_set1_epi8(-43)), th2 = opaque(_mm256_set1_epi8(42));
    __m256i k80 = _mm256_set1_epi8(static_cast<char>(0x80));
  };
  EIGENFORMER_ALWAYS_INLINE static void decode(const Block& b, __m256i* d, const Consts& c) {
    __m256i s = _mm256_xor_si256(load32(b.qs), c.k80);
#pragma GCC unroll 5
    for (int i = 0; i < 5; ++i) {
      // the masks are -1 where set: d = -(m1 + m2)
      d[i] = _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), _mm256_cmpgt_epi8(s, c.th1)),
                             _mm256_cmpgt_epi8(s, c.th2));
      if (i < 4) s = _mm256_add_epi8(s, _mm256_add_epi8(s, s));
    }
  }

  // GEMV with the activations offset to x + 128 and the masks' sum -d as multiplier (see the top).
  static constexpr std::size_t kGemvFlush = 6;
  EIGENFORMER_ALWAYS_INLINE static void gemv_x(const std::int8_t* xb, __m256i* xv, const Consts& c) {
#pragma GCC unroll 5
    for (int i = 0; i < kPlanes; ++i) xv[i] = _mm256_xor_si256(load32(xb + 32 * i), c.k80);
  }
  EIGENFORMER_ALWAYS_INLINE static __m256i gemv_block(const Block& b, const __m256i* xv, const Consts& c) {
    __m256i s = _mm256_xor_si256(load32(b.qs), c.k80);
    __m256i p = _mm256_setzero_si256();
#pragma GCC unroll 5
    for (int i = 0; i < kPlanes; ++i) {
      const __m256i neg_d = _mm256_add_epi8(_mm256_cmpgt_epi8(s, c.th1), _mm256_cmpgt_epi8(s, c.th2));
      p = _mm256_add_epi16(p, _mm256_maddubs_epi16(xv[i], neg_d));
      if (i < 4) s = _mm256_add_epi8(s, _mm256_add_epi8(s, s));
    }
    return p;
  }
  static std::int32_t gemv_result(std::int32_t h, std::int32_t x_sum, std::int32_t dsum) {
    return static_cast<std::int32_t>(-std::int64_t{h} - 128 * std::int64_t{dsum} - x_sum);
  }
};

template <class Block>
struct Decoder;
template <>
struct Decoder<BlockTQ2> : DecodeTQ2 {};
template <>
struct Decoder<BlockTQ1> : DecodeTQ1 {};

// ---------------------------------------------------------------------------------------------
// GEMV: R rows against one token.
// ---------------------------------------------------------------------------------------------

// Rows are consumed R at a time, each row a short stream (1 KiB at 4096 columns): too short for the
// hardware prefetchers to ramp up (measured: 4 GB/s from DRAM instead of 10). The matrix is
// contiguous, so the kernel prefetches linearly kPrefetchGroups groups of R rows ahead: byte offset
// pf (from base) for this group, never at or past `total` bytes.
constexpr std::size_t kPrefetchGroups = 2;

template <class Block, int R>
EIGENFORMER_ALWAYS_INLINE void gemv_rows(const Block* w, std::size_t blocks, const std::int8_t* x,
                                         std::int32_t x_sum, const std::int32_t* dsum, std::int32_t* y,
                                         const char* base, std::size_t total, std::size_t pf) {
  using D = Decoder<Block>;
  const __m256i one16 = _mm256_set1_epi16(1);
  const typename D::Consts consts;
  __m256i acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
  for (std::size_t b0 = 0; b0 < blocks; b0 += D::kGemvFlush) {
    const std::size_t b1 = std::min(blocks, b0 + D::kGemvFlush);
    __m256i s[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) s[r] = _mm256_setzero_si256();
    for (std::size_t b = b0; b < b1; ++b) {
      // this step reads R * 32 bytes of the group; prefetch as much, kPrefetchGroups groups ahead
      const std::size_t o = pf + b * (R * sizeof(Block));
#pragma GCC unroll 4
      for (std::size_t l = 0; l < (R * sizeof(Block) + 63) / 64; ++l)
        if (o + 64 * l < total) _mm_prefetch(base + o + 64 * l, _MM_HINT_T0);
      __m256i xv[D::kPlanes];
      D::gemv_x(x + b * Block::kWeights, xv, consts);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
        s[r] = _mm256_add_epi16(s[r], D::gemv_block(w[static_cast<std::size_t>(r) * blocks + b], xv, consts));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s[r], one16));
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) y[r] = D::gemv_result(hsum_epi32(acc[r]), x_sum, dsum[r]);
}

template <class Block>
inline void ternary_gemv(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::int32_t x_sum, const std::int32_t* dsum, std::int32_t* y) {
  const char* base = reinterpret_cast<const char*>(w);
  const std::size_t total = rows * blocks * sizeof(Block), row_bytes = blocks * sizeof(Block);
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4)
    gemv_rows<Block, 4>(w + r * blocks, blocks, x, x_sum, dsum + r, y + r, base, total,
                        (r + 4 * kPrefetchGroups) * row_bytes);
  for (; r < rows; ++r)
    gemv_rows<Block, 1>(w + r * blocks, blocks, x, x_sum, dsum + r, y + r, base, total,
                        (r + kPrefetchGroups) * row_bytes);
}

// ---------------------------------------------------------------------------------------------
// GEMM: one row against NT tokens per micro-kernel call.
// ---------------------------------------------------------------------------------------------

template <class Block, int NT>
EIGENFORMER_ALWAYS_INLINE void gemm_row(const Block* wr, std::size_t blocks, const std::int8_t* x, std::size_t ldx,
                                        const std::int32_t* x_sum, std::int32_t* y, std::size_t ldy) {
  using D = Decoder<Block>;
  constexpr int P = D::kPlanes;
  const __m256i one16 = _mm256_set1_epi16(1);
  const typename D::Consts consts;
  __m256i acc[NT];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_si256();
  for (std::size_t b = 0; b < blocks; ++b) {
    __m256i d[P];
    D::decode(wr[b], d, consts);
    const std::int8_t* xb = x + b * Block::kWeights;
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const std::int8_t* xt = xb + static_cast<std::size_t>(t) * ldx;
      __m256i p = _mm256_maddubs_epi16(d[0], load32(xt));
#pragma GCC unroll 5
      for (int i = 1; i < P; ++i) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(d[i], load32(xt + 32 * i)));
      acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p, one16));
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) y[static_cast<std::size_t>(t) * ldy] = hsum_epi32(acc[t]) - x_sum[t];
}

template <class Block>
EIGENFORMER_ALWAYS_INLINE void gemm_row_tail(std::size_t nt, const Block* wr, std::size_t blocks, const std::int8_t* x,
                                             std::size_t ldx, const std::int32_t* x_sum, std::int32_t* y,
                                             std::size_t ldy) {
  switch (nt) {
    case 7: gemm_row<Block, 7>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    case 6: gemm_row<Block, 6>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    case 5: gemm_row<Block, 5>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    case 4: gemm_row<Block, 4>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    case 3: gemm_row<Block, 3>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    case 2: gemm_row<Block, 2>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    case 1: gemm_row<Block, 1>(wr, blocks, x, ldx, x_sum, y, ldy); break;
    default: break;
  }
}

/// Rows are processed in chunks of kGemmRowChunk so that a chunk's weights stay in L1/L2 while every
/// group of 8 tokens streams past them.
constexpr std::size_t kGemmRowChunk = 16;

template <class Block>
inline void ternary_gemm(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::size_t ldx, const std::int32_t* x_sum, const std::int32_t* /*dsum*/,
                         std::size_t tokens, std::int32_t* y, std::size_t ldy) {
  for (std::size_t r0 = 0; r0 < rows; r0 += kGemmRowChunk) {
    const std::size_t r1 = std::min(rows, r0 + kGemmRowChunk);
    std::size_t t = 0;
    for (; t + 8 <= tokens; t += 8)
      for (std::size_t r = r0; r < r1; ++r)
        gemm_row<Block, 8>(w + r * blocks, blocks, x + t * ldx, ldx, x_sum + t, y + t * ldy + r, ldy);
    if (t < tokens)
      for (std::size_t r = r0; r < r1; ++r)
        gemm_row_tail<Block>(tokens - t, w + r * blocks, blocks, x + t * ldx, ldx, x_sum + t, y + t * ldy + r, ldy);
  }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization and rescale (bit-identical to the ref twins: same float ops, and
// _mm256_cvtps_epi32 rounds to nearest even like nearbyint in the default rounding mode).
// ---------------------------------------------------------------------------------------------

inline float quantize_absmax_i8(const float* x, std::size_t n, std::size_t n_pad, std::int8_t* q, std::int32_t* sum) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 big = _mm256_set1_ps(std::numeric_limits<float>::max());
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  std::size_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m256 a0 = _mm256_and_ps(_mm256_loadu_ps(x + k), absmask);
    const __m256 a1 = _mm256_and_ps(_mm256_loadu_ps(x + k + 8), absmask);
    m0 = _mm256_max_ps(m0, a0);
    m1 = _mm256_max_ps(m1, a1);
    // NLE_UQ: true for a > FLT_MAX (inf) and for NaN
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(a0, big, _CMP_NLE_UQ), _mm256_cmp_ps(a1, big, _CMP_NLE_UQ)));
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(_mm256_max_ps(m0, m1)), _mm256_extractf128_ps(_mm256_max_ps(m0, m1), 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  float m = _mm_cvtss_f32(h);
  bool finite = _mm256_movemask_ps(bad) == 0;
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
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i one16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  k = 0;
  for (; k + 32 <= n; k += 32) {
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), vs));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8), vs));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 16), vs));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 24), vs));
    // packs saturate: int32 -> int16 -> int8 is the clamp to [-128, 127]; the in-lane packing order
    // is undone by one cross-lane permute.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    const __m256i v = _mm256_permutevar8x32_epi32(p, perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), v);
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), one16));
  }
  std::int32_t s = hsum_epi32(acc);
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
  const __m256 xs = _mm256_set1_ps(multiply ? x_scale : x_scale * w_scale), ws = _mm256_set1_ps(w_scale);
  const float d = multiply ? x_scale : x_scale * w_scale;
  std::size_t r = 0;
  for (; r + 8 <= n; r += 8) {
    __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r))), xs);
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + r));
    if (multiply) v = _mm256_mul_ps(v, ws);
    _mm256_storeu_ps(y + r, v);
  }
  for (; r < n; ++r) {
    float v = static_cast<float>(acc[r]) / d;
    if (bias) v += bias[r];
    y[r] = multiply ? v * w_scale : v;
  }
}

}  // namespace avx2
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
#endif
