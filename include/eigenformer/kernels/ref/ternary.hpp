#pragma once
// Ternary (BitNet b1.58) weight formats and the scalar reference twins of the ternary kernels.
//
// This file DEFINES the two packed formats: the pack/unpack functions below are the specification,
// written for clarity; the SIMD kernels of kernels/ternary.hpp must give bit-identical int32
// accumulators (tests/test_ternary_kernels.cpp).
//
// Weights are ternary w in {-1, 0, +1}, one matrix [rows, cols] (PyTorch's [out, in] layout), each
// row stored as ceil(cols / block) blocks; weights past `cols` in the last block are 0 (padding).
// The BitNet b1.58 scale is one float per tensor and lives in the layer (linear/bit_linear.hpp), so
// the blocks carry no scale and the bits per weight are exactly those of the block (plus 4 bytes per
// tensor):
//
//   BlockTQ2  128 weights in 32 bytes = 2.0 bpw. Byte j (0..31) holds weights j, 32 + j, 64 + j,
//             96 + j in bits [0,2), [2,4), [4,6), [6,8), each as q = w + 1 in {0, 1, 2}. So one
//             shift + mask of the 32 bytes gives 32 consecutive weights (one AVX2 register), ready
//             for _mm256_maddubs_epi16 against 32 consecutive int8 activations. The layout of
//             ggml's TQ2_0 (without its per-block fp16 scale) and close to bitnet.cpp's I2_S.
//   BlockTQ1  160 weights in 32 bytes = 1.6 bpw. Byte j holds the 5 weights j, 32 + j, ..., 128 + j
//             as the base-3 number v = sum_i (w[32 i + j] + 1) 3^(4 - i) (most significant digit
//             first, v in [0, 243)), stored as the fixed-point fraction b = ceil(v * 256 / 243)
//             (ggml TQ1_0's encoding): digit i is then floor(3 * ((b * 3^i) mod 256) / 256), i.e.
//             multiply by 3 and read the carry, which needs no division to decode. Rows whose
//             length is not a multiple of 160 pay for a padded last block (cols = 4096: 26 blocks,
//             1.625 bpw; cols = 11008: 1.605 bpw).
//
// Activations are per-token int8 (BitNet's absmax quantization, see quantize_absmax_i8). A kernel
// reads `blocks * weights_per_block` activations per token: the activation rows are padded to that
// length with zeros, and x_sum[t] is the sum of token t's int8 values.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "../../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

/// 128 ternary weights, 2 bits each (q = w + 1), in 4 bit planes of 32 consecutive weights.
/// 2.0 bits per weight.
struct BlockTQ2 {
  static constexpr std::size_t kWeights = 128;
  std::uint8_t qs[32];
};
static_assert(sizeof(BlockTQ2) == 32, "BlockTQ2: 128 weights in 32 bytes (2.0 bpw)");

/// 160 ternary weights, 5 per byte as a base-3 fixed-point fraction, in 5 digit planes of 32
/// consecutive weights. 1.6 bits per weight.
struct BlockTQ1 {
  static constexpr std::size_t kWeights = 160;
  std::uint8_t qs[32];
};
static_assert(sizeof(BlockTQ1) == 32, "BlockTQ1: 160 weights in 32 bytes (1.6 bpw)");

/// Blocks per row of `cols` weights.
template <class Block>
constexpr std::size_t blocks_per_row(std::size_t cols) noexcept {
  return (cols + Block::kWeights - 1) / Block::kWeights;
}

/// The constants of the absmax activation quantization (BitNet b1.58; transformers ActQuant).
struct ActQuant {
  static constexpr float kQmax = 127.0f;
  static constexpr float kMinAbsMax = 1e-5f;  // max|x| is clamped below at this value
  static constexpr float kLo = -128.0f, kHi = 127.0f;  // the clamp after rounding
  /// The scale of a row whose max |x| is m. PyTorch evaluates `127 / t` (a Python number divided by a
  /// tensor) as t.reciprocal() * 127 (Tensor.__rtruediv__), i.e. two roundings: fl(fl(1 / m) * 127),
  /// which differs from fl(127 / m) in the last bit for some m. Followed exactly here.
  static float scale(float m) noexcept {
    const float r = 1.0f / (m > kMinAbsMax ? m : kMinAbsMax);
    return r * kQmax;
  }
};

namespace ref {

// ------------------------------------------------------------------------------------------------
// Pack / unpack (the format definitions)
// ------------------------------------------------------------------------------------------------

/// Packs w[0, n) (n <= 128, values in {-1, 0, 1}; the rest of the block is padding 0) into a block.
inline void pack_block(const std::int8_t* w, std::size_t n, BlockTQ2& b) {
  for (std::size_t j = 0; j < 32; ++j) {
    unsigned byte = 0;
    for (unsigned p = 0; p < 4; ++p) {
      const std::size_t k = 32 * p + j;
      const unsigned q = static_cast<unsigned>((k < n ? w[k] : 0) + 1);
      byte |= q << (2 * p);
    }
    b.qs[j] = static_cast<std::uint8_t>(byte);
  }
}

/// The 128 weights of a block (padding included) into w[0, 128).
inline void unpack_block(const BlockTQ2& b, std::int8_t* w) {
  for (std::size_t j = 0; j < 32; ++j)
    for (unsigned p = 0; p < 4; ++p) w[32 * p + j] = static_cast<std::int8_t>(((b.qs[j] >> (2 * p)) & 3) - 1);
}

/// The base-3 byte of 5 digits t[0..5) in {0, 1, 2} (t[0] most significant).
inline std::uint8_t tq1_encode(const unsigned* t) {
  unsigned v = 0;
  for (int i = 0; i < 5; ++i) v = 3 * v + t[i];
  return static_cast<std::uint8_t>((v * 256 + 242) / 243);  // ceil(v * 256 / 243), v < 243 -> <= 255
}

/// Digit i (0 = most significant) of a base-3 byte, by definition: v = floor(b * 243 / 256) is the
/// base-3 number (exact for every byte tq1_encode produces).
inline unsigned tq1_digit(std::uint8_t b, int i) {
  unsigned v = (static_cast<unsigned>(b) * 243) >> 8;
  for (int k = 4; k > i; --k) v /= 3;
  return v % 3;
}

/// Packs w[0, n) (n <= 160) into a block; the rest is padding 0.
inline void pack_block(const std::int8_t* w, std::size_t n, BlockTQ1& b) {
  for (std::size_t j = 0; j < 32; ++j) {
    unsigned t[5];
    for (unsigned i = 0; i < 5; ++i) {
      const std::size_t k = 32 * i + j;
      t[i] = static_cast<unsigned>((k < n ? w[k] : 0) + 1);
    }
    b.qs[j] = tq1_encode(t);
  }
}

/// The 160 weights of a block (padding included) into w[0, 160).
inline void unpack_block(const BlockTQ1& b, std::int8_t* w) {
  for (std::size_t j = 0; j < 32; ++j)
    for (int i = 0; i < 5; ++i) w[32 * i + j] = static_cast<std::int8_t>(static_cast<int>(tq1_digit(b.qs[j], i)) - 1);
}

/// Packs a row of `cols` ternary weights into blocks_per_row<Block>(cols) blocks.
template <class Block>
void pack_row(const std::int8_t* w, std::size_t cols, Block* out) {
  const std::size_t nb = blocks_per_row<Block>(cols);
  for (std::size_t b = 0; b < nb; ++b) {
    const std::size_t k0 = b * Block::kWeights;
    const std::size_t n = cols - k0 < Block::kWeights ? cols - k0 : Block::kWeights;
    pack_block(w + k0, n, out[b]);
  }
}

/// Unpacks `cols` weights of a row (padding dropped).
template <class Block>
void unpack_row(const Block* in, std::size_t cols, std::int8_t* w) {
  std::int8_t tmp[Block::kWeights];
  const std::size_t nb = blocks_per_row<Block>(cols);
  for (std::size_t b = 0; b < nb; ++b) {
    unpack_block(in[b], tmp);
    const std::size_t k0 = b * Block::kWeights;
    for (std::size_t k = 0; k < Block::kWeights && k0 + k < cols; ++k) w[k0 + k] = tmp[k];
  }
}

// ------------------------------------------------------------------------------------------------
// Kernel twins
// ------------------------------------------------------------------------------------------------

/// y[t * ldy + r] = sum_k w[r][k] * x[t * ldx + k] over the `blocks` blocks of each row (padding
/// weights are 0, so padded activations never matter here). w: rows x blocks blocks, row-major.
template <class Block>
void ternary_gemm(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x, std::size_t ldx,
                  std::size_t tokens, std::int32_t* y, std::size_t ldy) {
  std::int8_t wt[Block::kWeights];
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t t = 0; t < tokens; ++t) {
      std::int64_t s = 0;  // wide: the twin cannot overflow
      for (std::size_t b = 0; b < blocks; ++b) {
        unpack_block(w[r * blocks + b], wt);
        const std::int8_t* xb = x + t * ldx + b * Block::kWeights;
        for (std::size_t k = 0; k < Block::kWeights; ++k) s += static_cast<std::int64_t>(wt[k]) * xb[k];
      }
      y[t * ldy + r] = static_cast<std::int32_t>(s);
    }
}

/// One token: y[r] = sum_k w[r][k] * x[k].
template <class Block>
void ternary_gemv(const Block* w, std::size_t rows, std::size_t blocks, const std::int8_t* x, std::int32_t* y) {
  ternary_gemm(w, rows, blocks, x, 0, 1, y, 1);
}

/// out[r] = sum of the digits d = w + 1 over all `blocks` blocks of row r (every position of a block,
/// padding included: a padding weight 0 is the digit 1). The kernels take these per-row constants
/// (kernels/ternary.hpp); TernaryMatrix computes them once when it packs.
template <class Block>
void digit_sums(const Block* w, std::size_t rows, std::size_t blocks, std::int32_t* out) {
  std::int8_t wt[Block::kWeights];
  for (std::size_t r = 0; r < rows; ++r) {
    std::int32_t s = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
      unpack_block(w[r * blocks + b], wt);
      for (std::size_t k = 0; k < Block::kWeights; ++k) s += wt[k] + 1;
    }
    out[r] = s;
  }
}

/// BitNet b1.58 per-token activation quantization (transformers integrations/bitnet.py, ActQuant and
/// BitLinear.activation_quant), in float32 as PyTorch computes it:
///   scale = (1 / max(max_k |x[k]|, 1e-5)) * 127;  q[k] = clamp(round_half_even(x[k] * scale), -128, 127)
/// q[n, n_pad) = 0. Returns the scale; *sum = sum_k q[k]. A row holding NaN or +-inf gets scale NaN,
/// q = 0 and sum 0 (so the layer's output row is NaN: NaN propagates).
inline float quantize_absmax_i8(const float* x, std::size_t n, std::size_t n_pad, std::int8_t* q, std::int32_t* sum) {
  float m = 0.0f;
  bool finite = true;
  for (std::size_t k = 0; k < n; ++k) {
    const float a = std::fabs(x[k]);
    if (!(a <= std::numeric_limits<float>::max())) finite = false;
    if (a > m) m = a;
  }
  std::int32_t s = 0;
  if (!finite) {
    for (std::size_t k = 0; k < n_pad; ++k) q[k] = 0;
    *sum = 0;
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float scale = ActQuant::scale(m);
  for (std::size_t k = 0; k < n; ++k) {
    float v = std::nearbyint(x[k] * scale);  // default rounding mode: to nearest, ties to even
    v = v < ActQuant::kLo ? ActQuant::kLo : (v > ActQuant::kHi ? ActQuant::kHi : v);
    q[k] = static_cast<std::int8_t>(v);
    s += q[k];
  }
  for (std::size_t k = n; k < n_pad; ++k) q[k] = 0;
  *sum = s;
  return scale;
}

/// The rescale after the integer product, in transformers' op order:
///   divide:   y[r] = float(acc[r]) / (x_scale * w_scale) + bias[r]    (BitLinear: post_quant_process,
///                                                                       then y += bias)
///   multiply: y[r] = (float(acc[r]) / x_scale + bias[r]) * w_scale    (AutoBitLinear offline:
///                                                                       F.linear(x, W, bias) * weight_scale,
///                                                                       so the bias is scaled too)
/// bias may be null (no bias term). No multiply-add pairs, so no FMA contraction can change a result.
inline void rescale(const std::int32_t* acc, std::size_t n, float x_scale, float w_scale, bool multiply,
                    const float* bias, float* y) {
  if (multiply) {
    for (std::size_t r = 0; r < n; ++r) {
      float v = static_cast<float>(acc[r]) / x_scale;
      if (bias) v += bias[r];
      y[r] = v * w_scale;
    }
  } else {
    const float d = x_scale * w_scale;
    for (std::size_t r = 0; r < n; ++r) {
      float v = static_cast<float>(acc[r]) / d;
      if (bias) v += bias[r];
      y[r] = v;
    }
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
