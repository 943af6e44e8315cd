#pragma once
// IEEE binary16 (fp16) and bfloat16 conversions, scalar and portable. Used by the safetensors
// reader and by half-precision caches. Both directions round to nearest even; values too large
// for fp16 become +-inf in float_to_half (IEEE, as PyTorch) but saturate in from_float<f16/bf16>
// (the cache conversion, see there); NaN stays NaN (quiet).

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace eigenformer {

namespace detail {
inline std::uint32_t float_bits(float f) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(std::uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace detail

/// fp16 bits -> float (exact).
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  if (em >= 0x7c00u)  // inf / NaN
    return detail::bits_float(sign | 0x7f800000u | ((em & 0x3ffu) << 13));
  if (em >= 0x0400u)  // normal: rebias the exponent by 127 - 15
    return detail::bits_float(sign | ((em << 13) + 0x38000000u));
  // zero or subnormal: em * 2^-24, exact in float
  const float v = static_cast<float>(em) * 5.9604644775390625e-8f;
  return detail::bits_float(sign | detail::float_bits(v));
}

/// float -> fp16 bits, round to nearest even.
inline std::uint16_t float_to_half(float f) noexcept {
  std::uint32_t u = detail::float_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  if (u >= 0x47800000u) {  // >= 65536 (or inf / NaN): inf, or a quiet NaN
    if (u > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((u >> 13) & 0x3ffu));
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (u < 0x38800000u) {  // below the smallest normal fp16 (2^-14): subnormal or zero
    // Adding 0.5f aligns the fp16 subnormal step (2^-24) with the float ulp at 0.5, so the FPU
    // does the rounding.
    const float v = detail::bits_float(u) + 0.5f;
    return static_cast<std::uint16_t>(sign | (detail::float_bits(v) - 0x3f000000u));
  }
  const std::uint32_t mant_odd = (u >> 13) & 1u;
  u += 0xc8000fffu + mant_odd;  // rebias exponent (15 - 127) << 23, plus round-to-nearest-even
  return static_cast<std::uint16_t>(sign | (u >> 13));  // overflow past 65504 carries into inf
}

/// bfloat16 bits -> float (exact).
inline float bf16_to_float(std::uint16_t b) noexcept {
  return detail::bits_float(static_cast<std::uint32_t>(b) << 16);
}

/// float -> bfloat16 bits, round to nearest even (as PyTorch).
inline std::uint16_t float_to_bf16(float f) noexcept {
  std::uint32_t u = detail::float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

}  // namespace eigenformer

namespace eigenformer {

/// Storage element types for caches and weights kept in 16 bits. Plain structs (not arithmetic
/// types) so that templates can tell them apart from integers and from each other.
struct f16 {
  std::uint16_t bits;
};
struct bf16 {
  std::uint16_t bits;
};
static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2, "16-bit storage types");

inline float to_float(float x) noexcept { return x; }
inline float to_float(f16 x) noexcept { return half_to_float(x.bits); }
inline float to_float(bf16 x) noexcept { return bf16_to_float(x.bits); }

/// Conversion from float into a storage type (round to nearest even), saturating: a finite value
/// beyond the type's range is stored as its largest finite value of the same sign (f16: +-65504; bf16:
/// +-3.3895e38, so FLT_MAX does not round up to inf), instead of the inf of the IEEE conversions
/// above. inf and NaN stay inf and NaN. This is the conversion of every f16/bf16 cache (KVCache,
/// LatentCache, the layers' same-step copies of new K/V): one outlier activation then gives a
/// clipped entry instead of an inf that makes every later attention output that sees it NaN
/// (docs/numerics.md). The safetensors reader/writer use the IEEE conversions (as PyTorch).
template <class E>
E from_float(float x) noexcept;
template <>
inline float from_float<float>(float x) noexcept {
  return x;
}
template <>
inline f16 from_float<f16>(float x) noexcept {
  const std::uint16_t h = float_to_half(x);
  if ((h & 0x7fffu) == 0x7c00u && (detail::float_bits(x) & 0x7fffffffu) < 0x7f800000u)
    return f16{static_cast<std::uint16_t>((h & 0x8000u) | 0x7bffu)};  // finite overflow: +-65504
  return f16{h};
}
template <>
inline bf16 from_float<bf16>(float x) noexcept {
  const std::uint16_t b = float_to_bf16(x);
  if ((b & 0x7fffu) == 0x7f80u && (detail::float_bits(x) & 0x7fffffffu) < 0x7f800000u)
    return bf16{static_cast<std::uint16_t>((b & 0x8000u) | 0x7f7fu)};  // finite overflow: +-3.3895e38
  return bf16{b};
}

/// dst[i] = from_float<E>(src[i]) for i < n: a row of floats into a cache's storage type.
template <class E>
inline void from_float_n(const float* src, E* dst, std::ptrdiff_t n) noexcept {
  for (std::ptrdiff_t i = 0; i < n; ++i) dst[i] = from_float<E>(src[i]);
}

}  // namespace eigenformer
