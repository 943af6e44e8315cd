// Tests of include/eigenformer/core/half.hpp: fp16 and bf16 conversions against independent
// references (exact values from the bit layout, round-to-nearest-even by distance comparison in
// double) and, when compiled with F16C (-mf16c / -march=native), against the hardware instructions.
//
// Set EIGENFORMER_HALF_EXHAUSTIVE=1 to check all 2^32 floats (seconds in an optimized build).

#include "eigenformer/core/half.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#if defined(__F16C__)
#include <immintrin.h>
#endif

using namespace eigenformer;

namespace {

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
bool half_is_nan(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(std::uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }
bool exhaustive() {
  const char* s = std::getenv("EIGENFORMER_HALF_EXHAUSTIVE");
  return s && *s && *s != '0';
}

/// Value of a non-negative finite fp16 magnitude from its fields (independent of half.hpp).
double half_magnitude(std::uint32_t m) {
  const int e = static_cast<int>(m >> 10);
  const int f = static_cast<int>(m & 0x3ff);
  return e == 0 ? std::ldexp(f, -24) : std::ldexp(1024 + f, e - 25);
}

/// Reference float -> fp16 (round to nearest, ties to even) by comparing distances to the two
/// neighbouring representable values. The step after 65504 is treated as 65536 (the value an
/// unbounded exponent would give), which rounds [65520, inf) to inf as IEEE 754 requires.
std::uint16_t ref_float_to_half(float f) {
  static const std::vector<double> table = [] {
    std::vector<double> t;
    for (std::uint32_t m = 0; m < 0x7c00; ++m) t.push_back(half_magnitude(m));
    t.push_back(65536.0);  // stands for inf
    return t;
  }();
  const std::uint16_t sign = (bits(f) >> 16) & 0x8000u;
  if (std::isnan(f)) return static_cast<std::uint16_t>(sign | 0x7e00u);  // compared as "a NaN"
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65536.0) return static_cast<std::uint16_t>(sign | 0x7c00u);
  const auto it = std::upper_bound(table.begin(), table.end(), a);  // first value > a
  const auto k = static_cast<std::uint32_t>(it - table.begin() - 1);  // table[k] <= a
  std::uint32_t r = k;
  if (table[k] != a) {
    const double below = a - table[k], above = table[k + 1] - a;
    r = below < above ? k : above < below ? k + 1 : (k % 2 == 0 ? k : k + 1);
  }
  return static_cast<std::uint16_t>(sign | r);
}

/// Reference float -> bf16 (round to nearest, ties to even), same method.
std::uint16_t ref_float_to_bf16(float f) {
  const std::uint32_t u = bits(f);
  const std::uint16_t sign = (u >> 16) & 0x8000u;
  if (std::isnan(f)) return static_cast<std::uint16_t>(sign | 0x7fc0u);
  const std::uint32_t mag = u & 0x7fffffffu;
  if (mag == 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7f80u);
  const std::uint32_t lo = mag >> 16, hi = lo + 1;
  const auto value = [](std::uint32_t b) {  // 0x7f80 stands for 2^128
    return b == 0x7f80u ? std::ldexp(1.0, 128) : static_cast<double>(from_bits(b << 16));
  };
  const double a = static_cast<double>(from_bits(mag));
  const double below = a - value(lo), above = value(hi) - a;
  const std::uint32_t r = below < above ? lo : above < below ? hi : (lo % 2 == 0 ? lo : hi);
  return static_cast<std::uint16_t>(sign | r);
}

/// Floats that stress rounding: for every fp16 value, the value itself, the midpoints to its
/// neighbours and the floats one ulp either side of them, both signs; plus the boundaries.
std::vector<float> half_edge_floats() {
  std::vector<float> v;
  for (std::uint32_t m = 0; m < 0x7c00; ++m) {
    const double x = half_magnitude(m);
    const double next = m + 1 < 0x7c00 ? half_magnitude(m + 1) : 65536.0;
    const float mid = static_cast<float>((x + next) / 2);  // exact in float
    for (float f : {static_cast<float>(x), mid, std::nextafter(mid, 0.f),
                    std::nextafter(mid, std::numeric_limits<float>::infinity())}) {
      v.push_back(f);
      v.push_back(-f);
    }
  }
  for (float f : {65504.f, 65519.f, 65519.996f, 65520.f, 65520.004f, 65535.f, 65536.f, 1e5f,
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::min(), std::numeric_limits<float>::denorm_min(),
                  5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 2.9802319e-8f, 8.940697e-8f,
                  6.097555e-5f, 6.1035156e-5f, 0.f}) {
    v.push_back(f);
    v.push_back(-f);
  }
  return v;
}

/// Random floats spread over all exponents, both signs.
std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (auto& f : v) f = from_bits(static_cast<std::uint32_t>(rng()));
  return v;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// fp16
// ------------------------------------------------------------------------------------------------

TEST(Half, ToFloatIsExactForAllPatterns) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<std::uint16_t>(h));
    const bool neg = (h & 0x8000u) != 0;
    const std::uint32_t m = h & 0x7fffu;
    ASSERT_EQ(std::signbit(f), neg) << std::hex << h;
    if (m == 0x7c00u) {
      ASSERT_TRUE(std::isinf(f)) << std::hex << h;
    } else if (m > 0x7c00u) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_EQ((bits(f) >> 13) & 0x3ffu, m & 0x3ffu) << "NaN payload kept, " << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), (neg ? -1 : 1) * half_magnitude(m)) << std::hex << h;
    }
  }
}

TEST(Half, AllPatternsRoundTrip) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto hh = static_cast<std::uint16_t>(h);
    const std::uint16_t back = float_to_half(half_to_float(hh));
    if (half_is_nan(hh)) {
      ASSERT_TRUE(half_is_nan(back)) << std::hex << h << " -> " << back;
      ASSERT_EQ(back & 0x8000u, hh & 0x8000u) << "NaN sign, " << std::hex << h;
    } else {
      ASSERT_EQ(back, hh) << std::hex << h;
    }
  }
}

TEST(Half, FromFloatRoundsToNearestEven) {
  // Ties between representable values go to the even mantissa.
  EXPECT_EQ(float_to_half(1.f + 1.f / 2048), 0x3c00u);      // 1 + half ulp -> 1
  EXPECT_EQ(float_to_half(1.f + 3.f / 2048), 0x3c02u);      // 1 + 1.5 ulp -> 1 + 2 ulp
  EXPECT_EQ(float_to_half(5.9604645e-8f), 0x0001u);         // smallest subnormal
  EXPECT_EQ(float_to_half(2.9802322e-8f), 0x0000u);         // half of it: tie -> 0 (even)
  EXPECT_EQ(float_to_half(2.9802326e-8f), 0x0001u);         // just above the tie
  EXPECT_EQ(float_to_half(8.940697e-8f), 0x0002u);          // 1.5 x smallest: tie -> 2 (even)
  EXPECT_EQ(float_to_half(-2.9802322e-8f), 0x8000u);        // -0
  // Overflow boundary: 65504 is the largest finite; [65520, inf) rounds to inf.
  EXPECT_EQ(float_to_half(65504.f), 0x7bffu);
  EXPECT_EQ(float_to_half(65519.996f), 0x7bffu);
  EXPECT_EQ(float_to_half(65520.f), 0x7c00u);
  EXPECT_EQ(float_to_half(-65520.f), 0xfc00u);
  EXPECT_EQ(float_to_half(std::numeric_limits<float>::max()), 0x7c00u);
  EXPECT_EQ(float_to_half(std::numeric_limits<float>::infinity()), 0x7c00u);
  EXPECT_EQ(float_to_half(-std::numeric_limits<float>::infinity()), 0xfc00u);
  EXPECT_TRUE(half_is_nan(float_to_half(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(half_is_nan(float_to_half(from_bits(0x7f800001u))));  // low-payload sNaN
  EXPECT_TRUE(half_is_nan(float_to_half(from_bits(0xff800001u))));
  EXPECT_EQ(float_to_half(from_bits(0xff800001u)) & 0x8000u, 0x8000u);
}

TEST(Half, FromFloatMatchesReference) {
  const auto check = [](float f) {
    const std::uint16_t got = float_to_half(f), want = ref_float_to_half(f);
    if (std::isnan(f)) return half_is_nan(got) && (got & 0x8000u) == (want & 0x8000u);
    return got == want;
  };
  std::size_t n = 0;
  for (float f : half_edge_floats()) {
    ASSERT_TRUE(check(f)) << f << " bits " << std::hex << bits(f);
    ++n;
  }
  for (float f : random_floats(1 << 20, 0x4a1f)) ASSERT_TRUE(check(f)) << std::hex << bits(f);
  const std::uint64_t stride = exhaustive() ? 1 : 4099;
  for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += stride) {
    const float f = from_bits(static_cast<std::uint32_t>(u));
    ASSERT_TRUE(check(f)) << std::hex << u;
  }
  EXPECT_GT(n, 200000u);
}

#if defined(__F16C__)
TEST(Half, MatchesF16CHardware) {
  // VCVTPS2PH with round-to-nearest-even, i.e. _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); called
  // through _mm_cvtps_ph because clang's _cvtss_sh macro trips -Wpedantic (compound literal).
  const auto hw_to_half = [](float f) {
    return static_cast<std::uint16_t>(
        _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
  };
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float hw = _cvtsh_ss(static_cast<unsigned short>(h));
    const float sw = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(sw)) << std::hex << h;  // hardware also quiets signaling NaNs
    } else {
      ASSERT_EQ(bits(sw), bits(hw)) << std::hex << h;
    }
  }
  for (float f : half_edge_floats()) ASSERT_EQ(float_to_half(f), hw_to_half(f)) << f;
  for (float f : random_floats(1 << 20, 0xf16c))
    ASSERT_EQ(float_to_half(f), hw_to_half(f)) << std::hex << bits(f);
  const std::uint64_t stride = exhaustive() ? 1 : 257;
  for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += stride) {
    const float f = from_bits(static_cast<std::uint32_t>(u));
    ASSERT_EQ(float_to_half(f), hw_to_half(f)) << std::hex << u;  // NaN payloads included
  }
}
#else
TEST(Half, MatchesF16CHardware) { GTEST_SKIP() << "compiled without F16C (-mf16c)"; }
#endif

// ------------------------------------------------------------------------------------------------
// bf16
// ------------------------------------------------------------------------------------------------

TEST(BF16, ToFloatIsExactAndAllPatternsRoundTrip) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bb = static_cast<std::uint16_t>(b);
    const float f = bf16_to_float(bb);
    ASSERT_EQ(bits(f), b << 16);
    const std::uint16_t back = float_to_bf16(f);
    if (bf16_is_nan(bb)) {
      ASSERT_TRUE(bf16_is_nan(back)) << std::hex << b;
      ASSERT_EQ(back & 0x8000u, bb & 0x8000u);
    } else {
      ASSERT_EQ(back, bb) << std::hex << b;
    }
  }
}

TEST(BF16, RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808000u)), 0x3f80u);  // tie, lower even
  EXPECT_EQ(float_to_bf16(from_bits(0x3f818000u)), 0x3f82u);  // tie, upper even
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808001u)), 0x3f81u);  // above the tie
  EXPECT_EQ(float_to_bf16(from_bits(0x3f807fffu)), 0x3f80u);  // below the tie
  EXPECT_EQ(float_to_bf16(from_bits(0xbf818000u)), 0xbf82u);  // negative tie
  EXPECT_EQ(float_to_bf16(from_bits(0x00008000u)), 0x0000u);  // subnormal tie -> 0
  EXPECT_EQ(float_to_bf16(from_bits(0x00018000u)), 0x0002u);  // subnormal tie -> even
  EXPECT_EQ(float_to_bf16(from_bits(0x007fffffu)), 0x0080u);  // largest subnormal -> min normal
  // Overflow: the tie between the largest finite bf16 (odd mantissa) and inf goes to inf.
  EXPECT_EQ(float_to_bf16(from_bits(0x7f7f7fffu)), 0x7f7fu);
  EXPECT_EQ(float_to_bf16(from_bits(0x7f7f8000u)), 0x7f80u);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80u);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::max()), 0xff80u);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80u);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80u);
  // NaN stays NaN, including payloads that truncation would turn into inf.
  for (std::uint32_t u : {0x7fc00000u, 0x7f800001u, 0x7f80ffffu, 0xff800001u, 0x7fffffffu}) {
    const std::uint16_t b = float_to_bf16(from_bits(u));
    EXPECT_TRUE(bf16_is_nan(b)) << std::hex << u << " -> " << b;
    EXPECT_EQ(b & 0x8000u, (u >> 16) & 0x8000u);
  }
  EXPECT_EQ(float_to_bf16(-0.f), 0x8000u);
}

TEST(BF16, FromFloatMatchesReference) {
  const auto check = [](float f) {
    const std::uint16_t got = float_to_bf16(f), want = ref_float_to_bf16(f);
    if (std::isnan(f)) return bf16_is_nan(got) && (got & 0x8000u) == (want & 0x8000u);
    return got == want;
  };
  // Every bf16 value's tie point and its float neighbours.
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const std::uint32_t mid = (b << 16) | 0x8000u;
    for (std::uint32_t u : {b << 16, mid, mid - 1, mid + 1, (b << 16) | 0xffffu})
      ASSERT_TRUE(check(from_bits(u))) << std::hex << u;
  }
  for (float f : random_floats(1 << 20, 0xbf16)) ASSERT_TRUE(check(f)) << std::hex << bits(f);
  const std::uint64_t stride = exhaustive() ? 1 : 4099;
  for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += stride)
    ASSERT_TRUE(check(from_bits(static_cast<std::uint32_t>(u)))) << std::hex << u;
}
