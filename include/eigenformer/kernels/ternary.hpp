#pragma once
// Ternary x int8 kernels for BitNet b1.58 (formats and scalar twins: kernels/ref/ternary.hpp).
//
//   ternary_gemv(w, rows, blocks, x, x_sum, dsum, y)                    y[r] = sum_k w[r][k] x[k]
//   ternary_gemm(w, rows, blocks, x, ldx, x_sum, dsum, tokens, y, ldy)  y[t][r] = sum_k w[r][k] x[t][k]
//   quantize_absmax_i8(x, n, n_pad, q, &sum) -> scale               per-token int8 activations
//   rescale(acc, n, x_scale, w_scale, multiply, bias, y)            int32 -> float output row
//
// w: `rows` rows of `blocks` blocks (BlockTQ2 or BlockTQ1), row-major. x: int8 rows of at least
// blocks * Block::kWeights values, the entries past the true column count zero (the quantizer
// writes them); x_sum[t] = sum of row t's int8 values; dsum[r] = sum of row r's digits w + 1 over
// its blocks, padding included (ref::digit_sums; the AVX2 TQ1 GEMV needs it, the other kernels
// ignore it). y: int32 accumulators, exact: they equal the
// twins' bit for bit on every ISA (tests/test_ternary_kernels.cpp). The inner loops hold no floating
// point at all (maddubs / vmlal on bytes); the float work is the per-token quantization and the
// per-output rescale around them.
//
// Dispatch is at compile time (config.hpp): AVX2 (x86/ternary_avx2.hpp), NEON (arm/ternary_neon.hpp),
// else the portable code below, which EIGENFORMER_FORCE_SCALAR selects everywhere. `portable::` is
// compiled on every ISA so the tests can check it in every build.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../config.hpp"
#include "arm/ternary_neon.hpp"
#include "ref/ternary.hpp"
#include "x86/ternary_avx2.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

namespace portable {

// Decoders to signed weights; TQ1 by the carry of 3 * (b * 3^i mod 256) / 256 (the SIMD kernels'
// arithmetic, not the twin's division).
EIGENFORMER_ALWAYS_INLINE void decode(const BlockTQ2& b, std::int8_t* w) {
  for (std::size_t j = 0; j < 32; ++j) {
    const unsigned v = b.qs[j];
    w[j] = static_cast<std::int8_t>(static_cast<int>(v & 3) - 1);
    w[32 + j] = static_cast<std::int8_t>(static_cast<int>((v >> 2) & 3) - 1);
    w[64 + j] = static_cast<std::int8_t>(static_cast<int>((v >> 4) & 3) - 1);
    w[96 + j] = static_cast<std::int8_t>(static_cast<int>(v >> 6) - 1);
  }
}

EIGENFORMER_ALWAYS_INLINE void decode(const BlockTQ1& b, std::int8_t* w) {
  for (std::size_t j = 0; j < 32; ++j) {
    unsigned q = b.qs[j];
    for (int i = 0; i < 5; ++i) {
      w[32 * i + j] = static_cast<std::int8_t>(static_cast<int>((q * 3) >> 8) - 1);
      q = (q * 3) & 255u;
    }
  }
}

template <std::size_t N>
EIGENFORMER_ALWAYS_INLINE std::int32_t dot(const std::int8_t* w, const std::int8_t* x) {
  std::int32_t s = 0;
  for (std::size_t k = 0; k < N; ++k) s += static_cast<std::int32_t>(w[k]) * static_cast<std::int32_t>(x[k]);
  return s;
}

template <class Block>
inline void ternary_gemv(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::int32_t /*x_sum*/, const std::int32_t* /*dsum*/, std::int32_t* y) {
  constexpr std::size_t N = Block::kWeights;
  std::int8_t wt[N];
  for (std::size_t r = 0; r < rows; ++r) {
    std::int32_t s = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
      decode(w[r * blocks + b], wt);
      s += dot<N>(wt, x + b * N);
    }
    y[r] = s;
  }
}

/// Each block is decoded once for up to kTokens tokens.
template <class Block>
inline void ternary_gemm(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::size_t ldx, const std::int32_t* /*x_sum*/, const std::int32_t* /*dsum*/,
                         std::size_t tokens, std::int32_t* y, std::size_t ldy) {
  constexpr std::size_t N = Block::kWeights, kTokens = 8;
  std::int8_t wt[N];
  for (std::size_t t0 = 0; t0 < tokens; t0 += kTokens) {
    const std::size_t nt = tokens - t0 < kTokens ? tokens - t0 : kTokens;
    for (std::size_t r = 0; r < rows; ++r) {
      std::int32_t s[kTokens] = {};
      for (std::size_t b = 0; b < blocks; ++b) {
        decode(w[r * blocks + b], wt);
        for (std::size_t t = 0; t < nt; ++t) s[t] += dot<N>(wt, x + (t0 + t) * ldx + b * N);
      }
      for (std::size_t t = 0; t < nt; ++t) y[(t0 + t) * ldy + r] = s[t];
    }
  }
}

inline float quantize_absmax_i8(const float* x, std::size_t n, std::size_t n_pad, std::int8_t* q, std::int32_t* sum) {
  return ref::quantize_absmax_i8(x, n, n_pad, q, sum);
}

inline void rescale(const std::int32_t* acc, std::size_t n, float x_scale, float w_scale, bool multiply,
                    const float* bias, float* y) {
  ref::rescale(acc, n, x_scale, w_scale, multiply, bias, y);
}

}  // namespace portable

#if defined(EIGENFORMER_ISA_AVX2)
namespace ternary_isa = avx2;
#elif defined(EIGENFORMER_ISA_NEON)
namespace ternary_isa = neon;
#else
namespace ternary_isa = portable;
#endif

/// y[r] = sum_k w[r][k] x[k] for r < rows (one token). dsum: ref::digit_sums of the rows.
template <class Block>
inline void ternary_gemv(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::int32_t x_sum, const std::int32_t* dsum, std::int32_t* y) {
  ternary_isa::ternary_gemv(w, rows, blocks, x, x_sum, dsum, y);
}

/// y[t * ldy + r] = sum_k w[r][k] x[t * ldx + k] for r < rows, t < tokens.
template <class Block>
inline void ternary_gemm(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x,
                         std::size_t ldx, const std::int32_t* x_sum, const std::int32_t* dsum,
                         std::size_t tokens, std::int32_t* y, std::size_t ldy) {
  if (tokens == 1) {
    ternary_isa::ternary_gemv(w, rows, blocks, x, x_sum[0], dsum, y);
    return;
  }
  ternary_isa::ternary_gemm(w, rows, blocks, x, ldx, x_sum, dsum, tokens, y, ldy);
}

/// Per-token absmax int8 quantization of x[0, n) into q[0, n_pad) (zero padded); returns the scale
/// 127 / max(max|x|, 1e-5) (NaN for a row with NaN or inf) and sets *sum. Bit-identical to the twin.
inline float quantize_absmax_i8(const float* x, std::size_t n, std::size_t n_pad, std::int8_t* q, std::int32_t* sum) {
  return ternary_isa::quantize_absmax_i8(x, n, n_pad, q, sum);
}

/// One output row from its int32 accumulators (see ref::rescale for the two scale conventions).
inline void rescale(const std::int32_t* acc, std::size_t n, float x_scale, float w_scale, bool multiply,
                    const float* bias, float* y) {
  ternary_isa::rescale(acc, n, x_scale, w_scale, multiply, bias, y);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
