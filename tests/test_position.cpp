// Positional encodings: the RoPE rotation kernels against their scalar twins, RotaryEmbedding (all
// rope types, both layouts, partial rotary) against double precision, an independent plain formula
// and golden fixtures from Hugging Face transformers; ALiBi slopes against Bloom; xPos against
// torchscale. Fixtures: tests/data/golden/position (tools/make_golden_position.py).
#include <eigenformer/io/safetensors.hpp>
#include <eigenformer/kernels/rope.hpp>
#include <eigenformer/position/alibi.hpp>
#include <eigenformer/position/rope.hpp>
#include <eigenformer/position/xpos.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "test_util.hpp"

#ifndef EIGENFORMER_TEST_DATA_DIR
#define EIGENFORMER_TEST_DATA_DIR "tests/data"
#endif

namespace ef = eigenformer;
namespace ek = eigenformer::kernels;
using ef::Error;
using ef::ErrorKind;
using ef::Index;
using ef::RopeConfig;
using ef::RopeLayout;
using ef::RopeType;
using ef::RotaryEmbedding;
template <class T>
using Mat = ef::Matrix<T>;

namespace {

constexpr double kEps24 = 5.9604644775390625e-08;  // 2^-24: unit roundoff of float
constexpr double kPi = 3.14159265358979323846;

/// Runs f; success iff it throws eigenformer::Error of `kind` whose what() contains every string of `subs`.
template <class F>
::testing::AssertionResult ThrowsError(F&& f, ErrorKind kind, std::vector<std::string_view> subs) {
  try {
    f();
  } catch (const Error& e) {
    if (e.kind() != kind)
      return ::testing::AssertionFailure()
             << "kind is '" << to_string(e.kind()) << "', expected '" << to_string(kind) << "': " << e.what();
    for (std::string_view sub : subs)
      if (std::string_view(e.what()).find(sub) == std::string_view::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << sub << "\": " << e.what();
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-eigenformer exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}
#define EXPECT_EF_ERROR(stmt, kind, ...) EXPECT_TRUE(ThrowsError([&] { (void)(stmt); }, kind, {__VA_ARGS__}))

/// ulp of a float value (of the float nearest to v; the smallest subnormal near 0).
double ulp_of(double v) {
  const float f = std::fabs(static_cast<float>(v));
  if (f < std::numeric_limits<float>::min()) return std::numeric_limits<float>::denorm_min();
  if (std::isinf(f)) return INFINITY;
  return static_cast<double>(std::nextafter(f, INFINITY)) - static_cast<double>(f);
}

/// The two dims (first, second) of the pair that dim j of a head's rotated part belongs to, and the
/// pair index k (the index into cos/sin).
struct PairIdx {
  std::size_t first, second, k;
};
PairIdx pair_of(std::size_t j, std::size_t half, RopeLayout layout) {
  if (layout == RopeLayout::half) {
    const std::size_t k = j < half ? j : j - half;
    return {k, k + half, k};
  }
  const std::size_t k = j / 2;
  return {2 * k, 2 * k + 1, k};
}

// -------------------------------------------------------------------------------------------------
// Kernels
// -------------------------------------------------------------------------------------------------

// Every output is a' = fma(-b, s, a c) or b' = fma(a, s, b c): two roundings, so against the exact
// rotation of the float inputs |a' - exact| <= 2^-24 (|a c| + |a c - b s|) <= 2^-23 (|a c| + |b s|)
// (|b c| + |a s| for b'). The scalar twin in float (three roundings) obeys the same bound. Stated in
// the kernel header. `second`: the bound of b'.
double terms(double a, double b, double c, double s, bool second) {
  return second ? std::fabs(b * c) + std::fabs(a * s) : std::fabs(a * c) + std::fabs(b * s);
}
double rot_bound(double a, double b, double c, double s, bool second) {
  return 2 * kEps24 * terms(a, b, c, s, second);
}

void random_cos_sin(std::size_t half, std::mt19937& g, std::vector<float>& c, std::vector<float>& s,
                    float scale) {
  std::uniform_real_distribution<double> ang(-40.0, 40.0);
  c.resize(half);
  s.resize(half);
  for (std::size_t k = 0; k < half; ++k) {
    const double a = ang(g);
    c[k] = static_cast<float>(std::cos(a)) * scale;
    s[k] = static_cast<float>(std::sin(a)) * scale;
  }
}

TEST(KernelRope, MatchesTwinsAcrossTails) {
  auto g = eftest::rng(101);
  for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved}) {
    for (std::size_t rd = 2; rd <= 130; rd += 2) {
      const std::size_t half = rd / 2, guard = 5;
      auto x = eftest::normal(rd + guard, 3.0f, g);
      std::vector<float> c, s;
      random_cos_sin(half, g, c, s, rd % 4 == 0 ? 1.0f : 1.3f);  // 1.3: an attention scaling
      std::vector<float> y = x, yf = x;
      std::vector<double> yd(x.begin(), x.end()), cd(c.begin(), c.end()), sd(s.begin(), s.end());
      if (layout == RopeLayout::half) {
        ek::rope_half(y.data(), c.data(), s.data(), half);
        ek::ref::rope_half(yf.data(), c.data(), s.data(), half);
        ek::ref::rope_half(yd.data(), cd.data(), sd.data(), half);
      } else {
        ek::rope_interleaved(y.data(), c.data(), s.data(), half);
        ek::ref::rope_interleaved(yf.data(), c.data(), s.data(), half);
        ek::ref::rope_interleaved(yd.data(), cd.data(), sd.data(), half);
      }
      for (std::size_t j = 0; j < rd; ++j) {
        const PairIdx p = pair_of(j, half, layout);
        const double bound = rot_bound(x[p.first], x[p.second], c[p.k], s[p.k], j == p.second) + 1e-45;
        ASSERT_LE(std::fabs(y[j] - yd[j]), bound) << to_string(layout) << " rotary_dim=" << rd << " j=" << j;
        ASSERT_LE(std::fabs(yf[j] - yd[j]), bound) << "float twin, rotary_dim=" << rd << " j=" << j;
        // The SIMD kernel and the float twin differ by at most the sum of their two bounds.
        ASSERT_LE(std::fabs(static_cast<double>(y[j]) - yf[j]), 2 * bound) << "rotary_dim=" << rd;
      }
      for (std::size_t j = rd; j < rd + guard; ++j) ASSERT_EQ(y[j], x[j]) << "wrote past the rotary part";
    }
  }
}

TEST(KernelRope, LayoutsRoundIdentically) {
  // Rotating a row with the interleaved layout equals rotating the de-interleaved row with the
  // half layout, bit for bit (same products, same FMA), on every ISA and tail.
  auto g = eftest::rng(102);
  for (std::size_t half = 1; half <= 65; ++half) {
    auto x = eftest::normal(2 * half, 1.0f, g);
    std::vector<float> c, s;
    random_cos_sin(half, g, c, s, 1.0f);
    std::vector<float> inter = x, halfl(2 * half);
    for (std::size_t k = 0; k < half; ++k) {
      halfl[k] = x[2 * k];
      halfl[k + half] = x[2 * k + 1];
    }
    ek::rope_interleaved(inter.data(), c.data(), s.data(), half);
    ek::rope_half(halfl.data(), c.data(), s.data(), half);
    for (std::size_t k = 0; k < half; ++k) {
      ASSERT_EQ(inter[2 * k], halfl[k]) << "half=" << half;
      ASSERT_EQ(inter[2 * k + 1], halfl[k + half]) << "half=" << half;
    }
  }
}

TEST(KernelRope, SpecialValuesAndDoubleOverloads) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved}) {
    const std::size_t half = 19;
    std::vector<float> x(2 * half, 0.5f), c(half, 0.6f), s(half, 0.8f);
    x[3] = nan;
    if (layout == RopeLayout::half)
      ek::rope_half(x.data(), c.data(), s.data(), half);
    else
      ek::rope_interleaved(x.data(), c.data(), s.data(), half);
    for (std::size_t j = 0; j < 2 * half; ++j) {
      const PairIdx p = pair_of(j, half, layout);
      const bool touched = p.first == 3 || p.second == 3;
      EXPECT_EQ(std::isnan(x[j]), touched) << "j=" << j;
      if (!touched) {
        EXPECT_FLOAT_EQ(x[j], j == p.first ? 0.5f * 0.6f - 0.5f * 0.8f : 0.5f * 0.6f + 0.5f * 0.8f);
      }
    }
  }
  std::vector<double> xd = {1, 2, 3, 4, 5, 6}, cd = {0.1, 0.2, 0.3}, sd = {0.9, 0.8, 0.7};
  auto r1 = xd, r2 = xd;
  ek::rope_half(r1.data(), cd.data(), sd.data(), 3);
  ek::ref::rope_half(r2.data(), cd.data(), sd.data(), 3);
  EXPECT_EQ(r1, r2);
  EXPECT_DOUBLE_EQ(r1[0], 1 * 0.1 - 4 * 0.9);
  r1 = xd;
  r2 = xd;
  ek::rope_interleaved(r1.data(), cd.data(), sd.data(), 3);
  ek::ref::rope_interleaved(r2.data(), cd.data(), sd.data(), 3);
  EXPECT_EQ(r1, r2);
  EXPECT_DOUBLE_EQ(r1[1], 2 * 0.1 + 1 * 0.9);
}

// -------------------------------------------------------------------------------------------------
// RotaryEmbedding: an independent plain formula in double
// -------------------------------------------------------------------------------------------------

/// inv_freq for a forward call of length seq_len, written straight from the papers / HF docstrings.
std::vector<double> plain_inv_freq(const RopeConfig& cfg, Index seq_len, double* att) {
  const auto& s = cfg.scaling;
  const Index d = cfg.rotary_dim ? cfg.rotary_dim : cfg.head_dim;
  double theta = cfg.theta;
  if (s.type == RopeType::dynamic && seq_len > cfg.max_position_embeddings) {
    const double ratio = s.factor * double(seq_len) / double(cfg.max_position_embeddings) - (s.factor - 1);
    theta *= std::pow(ratio, double(d) / double(d - 2));
  }
  std::vector<double> f(static_cast<std::size_t>(d / 2));
  for (Index k = 0; k < d / 2; ++k) f[k] = std::pow(theta, -2.0 * double(k) / double(d));
  *att = 1.0;
  switch (s.type) {
    case RopeType::none:
    case RopeType::dynamic:
      break;
    case RopeType::linear:
      for (auto& v : f) v /= s.factor;
      break;
    case RopeType::yarn: {
      const double orig = double(s.original_max_position_embeddings ? s.original_max_position_embeddings
                                                                    : cfg.max_position_embeddings);
      auto dim_of = [&](double rotations) {
        return d * std::log(orig / (2 * kPi * rotations)) / (2 * std::log(cfg.theta));
      };
      double lo = dim_of(s.beta_fast), hi = dim_of(s.beta_slow);
      if (s.truncate) lo = std::floor(lo), hi = std::ceil(hi);
      lo = std::max(lo, 0.0);
      hi = std::min(hi, double(d - 1));
      if (lo == hi) hi += 0.001;
      for (Index k = 0; k < d / 2; ++k) {
        const double ramp = std::clamp((double(k) - lo) / (hi - lo), 0.0, 1.0);  // 1: interpolate fully
        f[k] = f[k] * (1 - ramp) + f[k] / s.factor * ramp;
      }
      auto m = [&](double ms) { return s.factor <= 1 ? 1.0 : 0.1 * ms * std::log(s.factor) + 1.0; };
      *att = s.attention_factor ? *s.attention_factor
                                : (s.mscale && s.mscale_all_dim ? m(s.mscale) / m(s.mscale_all_dim) : m(1.0));
      break;
    }
    case RopeType::llama3: {
      const double old = double(s.original_max_position_embeddings);
      for (auto& v : f) {
        const double wavelen = 2 * kPi / v;
        if (wavelen < old / s.high_freq_factor) continue;
        if (wavelen > old / s.low_freq_factor) {
          v /= s.factor;
          continue;
        }
        const double smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        v = (1 - smooth) * v / s.factor + smooth * v;
      }
      break;
    }
  }
  return f;
}

/// The rotation of one head's first rotary_dim dims, by index arithmetic.
void plain_rotate(double* head, const std::vector<double>& f, double pos, double att, RopeLayout layout) {
  const std::size_t half = f.size();
  for (std::size_t k = 0; k < half; ++k) {
    const std::size_t i = layout == RopeLayout::half ? k : 2 * k;
    const std::size_t j = layout == RopeLayout::half ? k + half : 2 * k + 1;
    const double c = std::cos(pos * f[k]) * att, s = std::sin(pos * f[k]) * att;
    const double a = head[i], b = head[j];
    head[i] = a * c - b * s;
    head[j] = b * c + a * s;
  }
}

RopeConfig make_cfg(Index head_dim, Index rotary_dim, RopeLayout layout, RopeType type) {
  RopeConfig c;
  c.head_dim = head_dim;
  c.rotary_dim = rotary_dim;
  c.layout = layout;
  c.max_position_embeddings = 512;
  c.scaling.type = type;
  switch (type) {
    case RopeType::none:
      break;
    case RopeType::linear:
      c.scaling.factor = 4.0;
      break;
    case RopeType::dynamic:
      c.scaling.factor = 2.5;
      break;
    case RopeType::yarn:
      c.scaling.factor = 8.0;
      c.scaling.original_max_position_embeddings = 256;
      c.scaling.mscale = 0.9;
      c.scaling.mscale_all_dim = 0.6;
      break;
    case RopeType::llama3:
      c.theta = 500000.0;
      c.scaling.factor = 8.0;
      c.scaling.original_max_position_embeddings = 256;
      break;
  }
  return c;
}

const RopeType kTypes[] = {RopeType::none, RopeType::linear, RopeType::dynamic, RopeType::yarn,
                           RopeType::llama3};

TEST(RotaryEmbedding, DoubleMatchesPlainFormula) {
  auto g = eftest::rng(201);
  const std::vector<std::int64_t> pos = {0, 1, 2, 9, 100, 511, 513, 4000, 70000};
  for (RopeType type : kTypes)
    for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved})
      for (Index rd : {Index(0), Index(24), Index(32)}) {
        const RopeConfig cfg = make_cfg(32, rd, layout, type);
        const RotaryEmbedding rope(cfg);
        const Index n_heads = 3, T = static_cast<Index>(pos.size());
        Mat<double> x = eftest::random_matrix<double>(T, n_heads * 32, g), want = x;
        rope.apply<double>(x, n_heads, pos.data());
        double att = 0;
        const auto f = plain_inv_freq(cfg, pos.back() + 1, &att);
        EXPECT_NEAR(rope.attention_scaling(), att, 1e-15 * att) << to_string(type);
        for (Index t = 0; t < T; ++t)
          for (Index h = 0; h < n_heads; ++h) plain_rotate(&want(t, h * 32), f, double(pos[t]), att, layout);
        for (Index t = 0; t < T; ++t)
          for (Index j = 0; j < x.cols(); ++j)
            // Angles up to 7e4 rad: double rounding of the angle is ~1e-11 relative to pos.
            ASSERT_NEAR(x(t, j), want(t, j), 1e-14 * (1 + double(pos[t])) * 8)
                << to_string(type) << " " << to_string(layout) << " rd=" << rd << " t=" << t << " j=" << j;
      }
}

/// |float - double| bound for one output of RotaryEmbedding::apply: the float angle
/// float(p) * inv_f differs from the double one by p |inv_f - inv_d| + half an ulp of the angle;
/// cos/sin are rounded (0.5 ulp) and scaled (0.5 ulp); then the rotation bound.
double float_vs_double_bound(double a, double b, double p, double inv_f, double inv_d, double att) {
  const double angle_err = p * std::fabs(inv_f - inv_d) + 0.5 * ulp_of(p * inv_f) + 1e-300;
  const double cs_err = att * (angle_err + 2 * kEps24);
  return (std::fabs(a) + std::fabs(b)) * (cs_err + 2 * kEps24 * att * 1.01);
}

TEST(RotaryEmbedding, FloatMatchesDouble) {
  auto g = eftest::rng(202);
  const std::vector<std::int64_t> pos = {0, 1, 5, 77, 511, 512, 600, 3000, 20000};
  for (RopeType type : kTypes)
    for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved})
      for (Index rd : {Index(0), Index(16)}) {
        const RopeConfig cfg = make_cfg(48, rd, layout, type);
        const RotaryEmbedding rope(cfg);
        const Index n_heads = 2, T = static_cast<Index>(pos.size()), half = rope.rotary_dim() / 2;
        const Mat<double> x0 = eftest::random_matrix<double>(T, n_heads * 48, g);
        Mat<float> xf = x0.cast<float>();
        Mat<double> xd = xf.cast<double>();
        rope.apply<float>(xf, n_heads, pos.data());
        rope.apply<double>(xd, n_heads, pos.data());
        std::vector<float> inv_f(half);
        std::vector<double> inv_d(half);
        rope.inv_freq_for(pos.back() + 1, inv_f.data());
        rope.inv_freq_for(pos.back() + 1, inv_d.data());
        const Mat<double> in = x0.cast<float>().cast<double>();
        for (Index t = 0; t < T; ++t)
          for (Index h = 0; h < n_heads; ++h)
            for (Index j = 0; j < 48; ++j) {
              const Index col = h * 48 + j;
              if (j >= rope.rotary_dim()) {
                ASSERT_EQ(xf(t, col), static_cast<float>(x0(t, col))) << "pass-through dim changed";
                continue;
              }
              const PairIdx p = pair_of(static_cast<std::size_t>(j), static_cast<std::size_t>(half), layout);
              const double bound =
                  float_vs_double_bound(in(t, h * 48 + p.first), in(t, h * 48 + p.second), double(pos[t]),
                                        inv_f[p.k], inv_d[p.k], rope.attention_scaling());
              ASSERT_LE(std::fabs(xf(t, col) - xd(t, col)), bound)
                  << to_string(type) << " " << to_string(layout) << " t=" << t << " j=" << j;
            }
      }
}

TEST(RotaryEmbedding, FloatFrequenciesWithinOneUlpOfDouble) {
  // The float32 op sequence of HF differs from the exact frequencies by a few roundings.
  for (RopeType type : kTypes) {
    const RotaryEmbedding rope(make_cfg(128, 0, RopeLayout::half, type));
    for (Index len : {Index(100), Index(512), Index(5000)}) {
      const auto f = rope.inv_freq_for(len);
      std::vector<double> d(f.size());
      rope.inv_freq_for(len, d.data());
      for (std::size_t k = 0; k < f.size(); ++k)
        EXPECT_LE(eftest::ulp_error(f[k], d[k]), 8.0) << to_string(type) << " len=" << len << " k=" << k;
    }
  }
}

TEST(RotaryEmbedding, TableApplyAndCosSinAgree) {
  auto g = eftest::rng(203);
  for (RopeType type : kTypes) {
    const RotaryEmbedding rope(make_cfg(64, 48, RopeLayout::interleaved, type));
    const std::vector<std::int64_t> pos = {3, 0, 700, 12};
    const Index T = 4, half = 24;
    Mat<float> x = eftest::random_matrix<float>(T, 4 * 64, g), y = x;
    Mat<float> cos(T, half), sin(T, half);
    rope.cos_sin_table<float>(pos.data(), T, cos, sin);
    rope.apply<float>(x, 4, pos.data());
    ef::apply_rotary<float>(y, 4, 64, RopeLayout::interleaved, cos, sin);
    EXPECT_EQ(x, y) << to_string(type);
    std::vector<float> c(half), s(half);
    rope.cos_sin(pos[2], c.data(), s.data(), 701);
    for (Index k = 0; k < half; ++k) {
      EXPECT_EQ(c[k], cos(2, k));
      EXPECT_EQ(s[k], sin(2, k));
    }
  }
}

// torchscale / YOCO schedule: theta^-linspace(0, 1, d/2), written plainly in double.
TEST(RotaryEmbedding, LinspaceFrequenciesAndConsecutivePositions) {
  for (Index d : {2, 4, 16, 64}) {
    const RotaryEmbedding rope(RopeConfig::linspace_interleaved(d, 500000.0));
    const Index half = d / 2;
    ASSERT_EQ(rope.inv_freq().size(), static_cast<std::size_t>(half));
    // The float buffer holds torch's float32 linspace value, off by up to ~1 ulp (2^-24 relative), which
    // pow(theta, .) multiplies by ln(theta) = 13.1; then the float rounding of the result.
    const double tol_f = (std::log(500000.0) + 1.0) * std::ldexp(1.0, -23);
    for (Index k = 0; k < half; ++k) {
      const double lin = half > 1 ? static_cast<double>(k) / static_cast<double>(half - 1) : 0.0;
      const double want = std::pow(500000.0, -lin);
      EXPECT_NEAR(rope.inv_freq()[static_cast<std::size_t>(k)], want, tol_f * want) << d << " " << k;
      std::vector<double> fd(static_cast<std::size_t>(half));
      rope.inv_freq_for<double>(1, fd.data());
      EXPECT_NEAR(fd[static_cast<std::size_t>(k)], want, 1e-14 * want);  // same amplification in double
    }
  }
  // apply_from(pos0) == apply(positions pos0, pos0 + 1, ...); the q/k pair form == two calls.
  auto g = eftest::rng(209);
  const RotaryEmbedding rope(RopeConfig::linspace_interleaved(16, 10000.0));
  const Index T = 5;
  Mat<float> q = eftest::random_matrix<float>(T, 4 * 16, g), k = eftest::random_matrix<float>(T, 2 * 16, g);
  Mat<float> q1 = q, k1 = k, q2 = q, k2 = k;
  const std::vector<std::int64_t> pos = {40, 41, 42, 43, 44};
  rope.apply<float>(q1, 4, pos.data());
  rope.apply<float>(k1, 2, pos.data());
  rope.apply_from<float>(q2, 4, k2, 2, 40);
  EXPECT_EQ(q1, q2);
  EXPECT_EQ(k1, k2);
  rope.apply_from<float>(q, 4, 40);
  EXPECT_EQ(q, q1);
  Mat<float> empty(0, 64);
  rope.apply_from<float>(empty, 4, 0);
  EXPECT_EF_ERROR(rope.apply_from<float>(q, 4, -1), ErrorKind::invalid_argument, "RoPE", "pos0 = -1");
  EXPECT_EF_ERROR(rope.apply_from<float>(q, 4, k, 4, 0), ErrorKind::shape_mismatch, "RoPE", "k");
  RopeConfig bad = RopeConfig::linspace_interleaved(16, 10000.0);
  bad.scaling.type = RopeType::linear;
  bad.scaling.factor = 2.0;
  EXPECT_EF_ERROR(RotaryEmbedding{bad}, ErrorKind::config, "RoPE", "linspace", "linear");
}

TEST(RotaryEmbedding, DynamicNtkFollowsSeqLen) {
  RopeConfig cfg = make_cfg(32, 0, RopeLayout::half, RopeType::dynamic);
  const RotaryEmbedding rope(cfg);
  EXPECT_EQ(rope.inv_freq_for(1), rope.inv_freq());
  EXPECT_EQ(rope.inv_freq_for(512), rope.inv_freq());  // == max_position_embeddings: no growth
  const auto grown = rope.inv_freq_for(513);
  EXPECT_EQ(grown[0], 1.0f);
  for (std::size_t k = 1; k < grown.size(); ++k) EXPECT_LT(grown[k], rope.inv_freq()[k]);
  auto g = eftest::rng(204);
  Mat<float> x = eftest::random_matrix<float>(2, 32, g), y = x, z = x;
  const std::int64_t pos[] = {5, 900};
  rope.apply<float>(x, 1, pos);        // seq_len = 901
  rope.apply<float>(y, 1, pos, 901);   // explicit
  rope.apply<float>(z, 1, pos, 2000);  // another length: other frequencies
  EXPECT_EQ(x, y);
  EXPECT_NE(x.row(1), z.row(1));
  // A decode step (one row) uses position + 1, like cos_sin's default.
  std::vector<float> c(16), s(16);
  rope.cos_sin(900, c.data(), s.data());
  Mat<float> cs_c(1, 16), cs_s(1, 16);
  const std::int64_t p1[] = {900};
  rope.cos_sin_table<float>(p1, 1, cs_c, cs_s);
  for (int k = 0; k < 16; ++k) EXPECT_EQ(c[k], cs_c(0, k));
}

TEST(RotaryEmbedding, PartialRotaryLeavesTheRestUntouched) {
  auto g = eftest::rng(205);
  for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved}) {
    RopeConfig cfg = make_cfg(40, RopeConfig::partial_rotary_dim(40, 0.25), layout, RopeType::none);
    EXPECT_EQ(cfg.rotary_dim, 10);
    const RotaryEmbedding rope(cfg);
    Mat<float> x = eftest::random_matrix<float>(3, 5 * 40, g), x0 = x;
    const std::int64_t pos[] = {1, 2, 3};
    rope.apply<float>(x, 5, pos);
    for (Index t = 0; t < 3; ++t)
      for (Index h = 0; h < 5; ++h) {
        EXPECT_NE(x(t, h * 40), x0(t, h * 40));
        for (Index j = 10; j < 40; ++j) ASSERT_EQ(x(t, h * 40 + j), x0(t, h * 40 + j));
      }
  }
}

TEST(RotaryEmbedding, PositionZeroIsIdentityAndStridedViewsWork) {
  auto g = eftest::rng(206);
  const RotaryEmbedding rope(make_cfg(16, 0, RopeLayout::half, RopeType::linear));
  Mat<float> big = eftest::random_matrix<float>(4, 50, g), big0 = big;
  // A column block of a wider matrix: rows have a stride of 50.
  const std::int64_t pos[] = {0, 0, 0, 0};
  rope.apply<float>(big.middleCols(3, 32), 2, pos);
  EXPECT_EQ(big, big0);
  const std::int64_t pos2[] = {1, 2, 3, 4};
  rope.apply<float>(big.middleCols(3, 32), 2, pos2);
  EXPECT_EQ(big.leftCols(3), big0.leftCols(3));
  EXPECT_EQ(big.rightCols(15), big0.rightCols(15));
  EXPECT_NE(big.middleCols(3, 32), big0.middleCols(3, 32));
}

TEST(RotaryEmbedding, ConfigErrors) {
  auto bad = [](auto edit) {
    RopeConfig c = make_cfg(64, 0, RopeLayout::half, RopeType::none);
    edit(c);
    return RotaryEmbedding(c);
  };
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.rotary_dim = 7; }), ErrorKind::config, "RoPE", "rotary_dim = 7",
                  "even");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.head_dim = 63; }), ErrorKind::config, "RoPE", "rotary_dim = 63",
                  "even");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.rotary_dim = 66; }), ErrorKind::config, "RoPE", "rotary_dim = 66",
                  "head_dim = 64");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.rotary_dim = -2; }), ErrorKind::config, "rotary_dim = -2");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.head_dim = 0; }), ErrorKind::config, "head_dim = 0");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.theta = 0; }), ErrorKind::config, "RoPE", "theta");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c.theta = NAN; }), ErrorKind::config, "theta");
  for (RopeType t : {RopeType::linear, RopeType::dynamic, RopeType::yarn, RopeType::llama3}) {
    EXPECT_EF_ERROR(bad([t](RopeConfig& c) {
                      c = make_cfg(64, 0, RopeLayout::half, t);
                      c.scaling.factor = 0;
                    }),
                    ErrorKind::config, "RoPE", "factor = 0", to_string(t));
    EXPECT_EF_ERROR(bad([t](RopeConfig& c) {
                      c = make_cfg(64, 0, RopeLayout::half, t);
                      c.scaling.factor = -2;
                    }),
                    ErrorKind::config, "factor = -2");
  }
  // factor is not read without scaling.
  EXPECT_NO_THROW(bad([](RopeConfig& c) { c.scaling.factor = 0; }));
  EXPECT_EF_ERROR(bad([](RopeConfig& c) {
                    c = make_cfg(64, 0, RopeLayout::half, RopeType::llama3);
                    c.scaling.original_max_position_embeddings = 0;
                  }),
                  ErrorKind::config, "llama3", "original_max_position_embeddings");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) {
                    c = make_cfg(64, 0, RopeLayout::half, RopeType::yarn);
                    c.scaling.original_max_position_embeddings = 0;
                    c.max_position_embeddings = 0;
                  }),
                  ErrorKind::config, "yarn", "original_max_position_embeddings");
  EXPECT_NO_THROW(bad([](RopeConfig& c) {  // yarn falls back to max_position_embeddings, as HF does
    c = make_cfg(64, 0, RopeLayout::half, RopeType::yarn);
    c.scaling.original_max_position_embeddings = 0;
  }));
  EXPECT_EF_ERROR(bad([](RopeConfig& c) {
                    c = make_cfg(64, 0, RopeLayout::half, RopeType::dynamic);
                    c.max_position_embeddings = 0;
                  }),
                  ErrorKind::config, "dynamic", "max_position_embeddings");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) { c = make_cfg(2, 0, RopeLayout::half, RopeType::dynamic); }),
                  ErrorKind::config, "dynamic", "rotary_dim > 2");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) {
                    c = make_cfg(64, 0, RopeLayout::half, RopeType::llama3);
                    c.scaling.high_freq_factor = 1.0;
                  }),
                  ErrorKind::config, "high_freq_factor");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) {
                    c = make_cfg(64, 0, RopeLayout::half, RopeType::yarn);
                    c.scaling.attention_factor = -1.0;
                  }),
                  ErrorKind::config, "attention_factor");
  EXPECT_EF_ERROR(bad([](RopeConfig& c) {
                    c = make_cfg(64, 0, RopeLayout::half, RopeType::yarn);
                    c.scaling.beta_fast = 0;
                  }),
                  ErrorKind::config, "beta_fast");
}

TEST(RotaryEmbedding, ParseRopeType) {
  EXPECT_EQ(ef::parse_rope_type("default"), RopeType::none);
  EXPECT_EQ(ef::parse_rope_type("linear"), RopeType::linear);
  EXPECT_EQ(ef::parse_rope_type("dynamic"), RopeType::dynamic);
  EXPECT_EQ(ef::RopeScaling::parse("yarn"), RopeType::yarn);
  EXPECT_EQ(ef::parse_rope_type("llama3"), RopeType::llama3);
  for (RopeType t : kTypes) EXPECT_EQ(ef::parse_rope_type(to_string(t)), t);
  EXPECT_EF_ERROR(ef::parse_rope_type("ntk"), ErrorKind::config, "RoPE", "unknown rope_type 'ntk'");
  EXPECT_EF_ERROR(ef::parse_rope_type("longrope", "Phi3 'model'"), ErrorKind::config, "Phi3 'model'",
                  "longrope is not supported");
}

TEST(RotaryEmbedding, ArgumentErrors) {
  const RotaryEmbedding rope(make_cfg(16, 0, RopeLayout::half, RopeType::none));
  Mat<float> x(3, 32);
  x.setOnes();
  const std::int64_t pos[] = {0, 1, 2}, neg[] = {0, -1, 2};
  EXPECT_EF_ERROR(rope.apply<float>(x, 3, pos), ErrorKind::shape_mismatch, "RoPE", "x has shape [3, 32]",
                  "expected [*, 48]");
  EXPECT_EF_ERROR(rope.apply<float>(x, 0, pos), ErrorKind::invalid_argument, "n_heads = 0");
  EXPECT_EF_ERROR(rope.apply<float>(x, 2, neg), ErrorKind::invalid_argument, "RoPE", "positions[1] = -1");
  EXPECT_EF_ERROR(rope.apply<float>(x, 2, nullptr), ErrorKind::invalid_argument, "positions is null");
  Mat<float> empty(0, 32);
  EXPECT_NO_THROW(rope.apply<float>(empty, 2, nullptr));
  EXPECT_EQ(x, Mat<float>::Ones(3, 32)) << "a failed call must not touch x";
  std::vector<float> c(8), s(8);
  EXPECT_EF_ERROR(rope.cos_sin(-3, c.data(), s.data()), ErrorKind::invalid_argument, "position = -3");
  Mat<float> tc(3, 7), ts(3, 8);
  EXPECT_EF_ERROR(rope.cos_sin_table<float>(pos, 3, tc, ts), ErrorKind::shape_mismatch,
                  "cos has shape [3, 7]");
  Mat<float> cos(3, 9), sin(3, 9);
  EXPECT_EF_ERROR(ef::apply_rotary<float>(x, 2, 16, RopeLayout::half, cos, sin), ErrorKind::shape_mismatch,
                  "rotary_dim = 18 exceeds head_dim = 16");
}

// -------------------------------------------------------------------------------------------------
// Golden fixtures
// -------------------------------------------------------------------------------------------------

std::string golden(const std::string& name) {
  return std::string(EIGENFORMER_TEST_DATA_DIR) + "/golden/position/" + name + ".safetensors";
}

#define LOAD_OR_SKIP(var, name)                                                                    \
  if (!std::filesystem::exists(golden(name))) GTEST_SKIP() << "fixture missing: " << golden(name); \
  const ef::SafeTensors var = ef::SafeTensors::open(golden(name))

struct Meta {
  const std::map<std::string, std::string>& m;
  bool has(const std::string& k) const { return m.count(k) != 0; }
  std::string str(const std::string& k) const {
    const auto it = m.find(k);
    if (it == m.end()) throw std::runtime_error("fixture metadata lacks '" + k + "'");
    return it->second;
  }
  double num(const std::string& k) const { return std::strtod(str(k).c_str(), nullptr); }
  Index idx(const std::string& k) const {
    return static_cast<Index>(std::strtoll(str(k).c_str(), nullptr, 10));
  }
};

RopeConfig config_from(const Meta& meta) {
  RopeConfig c;
  c.head_dim = meta.idx("head_dim");
  c.rotary_dim = meta.idx("rotary_dim");
  c.theta = meta.num("theta");
  c.layout = meta.str("layout") == "interleaved" ? RopeLayout::interleaved : RopeLayout::half;
  c.max_position_embeddings = meta.idx("max_position_embeddings");
  auto& s = c.scaling;
  s.type = ef::parse_rope_type(meta.str("rope_type"));
  if (meta.has("factor")) s.factor = meta.num("factor");
  if (meta.has("original_max_position_embeddings"))
    s.original_max_position_embeddings = meta.idx("original_max_position_embeddings");
  if (meta.has("beta_fast")) s.beta_fast = meta.num("beta_fast");
  if (meta.has("beta_slow")) s.beta_slow = meta.num("beta_slow");
  if (meta.has("mscale")) s.mscale = meta.num("mscale");
  if (meta.has("mscale_all_dim")) s.mscale_all_dim = meta.num("mscale_all_dim");
  if (meta.has("attention_factor")) s.attention_factor = meta.num("attention_factor");
  if (meta.has("truncate")) s.truncate = meta.str("truncate") == "True";
  if (meta.has("low_freq_factor")) s.low_freq_factor = meta.num("low_freq_factor");
  if (meta.has("high_freq_factor")) s.high_freq_factor = meta.num("high_freq_factor");
  return c;
}

class GoldenRope : public ::testing::TestWithParam<const char*> {};

// Tolerances, per element (u = 2^-24, float32 unit roundoff):
//  * inv_freq: <= 1 ulp of HF's. The float32 op sequence is HF's; only pow differs: PyTorch's
//    vectorized float32 pow (SLEEF powf_u10) is within 1 ulp, not always correctly rounded.
//  * cos, sin: |ours - HF| <= att (4u + dtheta_k), dtheta_k = |p| |inv_ours - inv_HF| + ulp(angle)
//    when the frequencies differ (0 otherwise, the float32 angles are then identical): torch's
//    float32 cos/sin are within 1 ulp, ours 0.5 ulp, one more rounding for the attention scaling.
//  * out through apply_rotary with HF's own cos/sin: <= 4u (|a c| + |b s|) (|b c| + |a s| for the
//    second of a pair): our two roundings (fma) against PyTorch's three, each within
//    2u (|a c| + |b s|) of the exact rotation.
//  * out end to end: the above plus (|a| + |b|) times the cos/sin bound.
// An angle p * inv_freq grows with the position, so one ulp of inv_freq moves it by p ulps of
// inv_freq: at p = 131071 (the llama3 fixture) that is up to ~1e-2 of |x|, which is why the
// frequency term is kept separate and derived from the actual frequency difference.
TEST_P(GoldenRope, MatchesTransformers) {
  LOAD_OR_SKIP(st, GetParam());
  const Meta meta{st.metadata()};
  const RopeConfig cfg = config_from(meta);
  if (meta.has("partial_rotary_factor")) {
    EXPECT_EQ(RopeConfig::partial_rotary_dim(cfg.head_dim, meta.num("partial_rotary_factor")),
              cfg.rotary_dim);
  }
  const RotaryEmbedding rope(cfg);
  const Index n_heads = meta.idx("n_heads"), hd = cfg.head_dim, half = rope.rotary_dim() / 2;
  const auto pos = st.to_vector<std::int64_t>("positions");
  const Index T = static_cast<Index>(pos.size());
  const Mat<float> x = st.matrix<float>("x", T, n_heads * hd);
  const Mat<float> want = st.matrix<float>("out", T, n_heads * hd);
  const Mat<float> hf_cos = st.matrix<float>("cos", T, half), hf_sin = st.matrix<float>("sin", T, half);
  const auto hf_inv = st.to_vector<float>("inv_freq");
  ASSERT_EQ(static_cast<Index>(hf_inv.size()), half);

  const double att = meta.num("attention_scaling");
  EXPECT_NEAR(rope.attention_scaling(), att, 1e-15 * att);

  const Index seq_len = *std::max_element(pos.begin(), pos.end()) + 1;
  const auto inv = rope.inv_freq_for(seq_len);
  int differ = 0;
  for (Index k = 0; k < half; ++k) {
    EXPECT_LE(eftest::ulp_error(inv[k], hf_inv[k]), 1.0) << "inv_freq[" << k << "]";
    differ += inv[k] != hf_inv[k];
  }
  std::printf("[   info   ] %s: %d of %ld inv_freq entries differ from HF by 1 ulp\n", GetParam(), differ,
              static_cast<long>(half));

  // cos/sin tables.
  Mat<float> cos(T, half), sin(T, half);
  rope.cos_sin_table<float>(pos.data(), T, cos, sin);
  Mat<double> cs_tol(T, half);
  const float attf = static_cast<float>(att);
  for (Index t = 0; t < T; ++t)
    for (Index k = 0; k < half; ++k) {
      const double p = static_cast<double>(pos[t]);
      const double dtheta =
          inv[k] == hf_inv[k] ? 0.0 : p * std::fabs(double(inv[k]) - hf_inv[k]) + ulp_of(p * hf_inv[k]);
      cs_tol(t, k) = attf * (4 * kEps24 + dtheta);
      ASSERT_NEAR(cos(t, k), hf_cos(t, k), cs_tol(t, k)) << "cos t=" << t << " k=" << k;
      ASSERT_NEAR(sin(t, k), hf_sin(t, k), cs_tol(t, k)) << "sin t=" << t << " k=" << k;
    }

  // The rotation alone, with HF's tables; then end to end.
  double worst_cs = 0;  // in units of 2^-24 (attention scaling included)
  for (Index t = 0; t < T; ++t)
    for (Index k = 0; k < half; ++k)
      worst_cs = std::max({worst_cs, std::fabs(cos(t, k) - hf_cos(t, k)) / (attf * kEps24),
                           std::fabs(sin(t, k) - hf_sin(t, k)) / (attf * kEps24)});
  Mat<float> y = x, z = x;
  double worst_rot = 0, worst_e2e = 0;  // |error| / (u * terms), |error| / (u * (|a| + |b|))
  ef::apply_rotary<float>(y, n_heads, hd, cfg.layout, hf_cos, hf_sin);
  rope.apply<float>(z, n_heads, pos.data());
  for (Index t = 0; t < T; ++t)
    for (Index h = 0; h < n_heads; ++h)
      for (Index j = 0; j < hd; ++j) {
        const Index col = h * hd + j;
        if (j >= rope.rotary_dim()) {
          ASSERT_EQ(z(t, col), want(t, col)) << "pass-through dims";
          continue;
        }
        const PairIdx p = pair_of(static_cast<std::size_t>(j), static_cast<std::size_t>(half), cfg.layout);
        const double a = x(t, h * hd + p.first), b = x(t, h * hd + p.second);
        const double c = hf_cos(t, p.k), s = hf_sin(t, p.k);
        const double rot = 2 * rot_bound(a, b, c, s, static_cast<std::size_t>(j) == p.second) + 1e-40;
        worst_rot =
            std::max(worst_rot, std::fabs(y(t, col) - want(t, col)) /
                                    (kEps24 * terms(a, b, c, s, static_cast<std::size_t>(j) == p.second)));
        worst_e2e = std::max(worst_e2e,
                             std::fabs(z(t, col) - want(t, col)) / (kEps24 * (std::fabs(a) + std::fabs(b))));
        ASSERT_NEAR(y(t, col), want(t, col), rot) << "apply_rotary t=" << t << " col=" << col;
        ASSERT_NEAR(z(t, col), want(t, col), rot + (std::fabs(a) + std::fabs(b)) * cs_tol(t, p.k))
            << "apply t=" << t << " col=" << col;
      }
  std::printf(
      "[   info   ] %s: max |cos/sin - HF| = %.2f u, rotation with HF tables %.2f u of |ac|+|bs|, "
      "end to end %.2f u of |a|+|b| (u = 2^-24)\n",
      GetParam(), worst_cs, worst_rot, worst_e2e);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenRope,
                         ::testing::Values("rope_default", "rope_linear", "rope_dynamic_short",
                                           "rope_dynamic_long", "rope_yarn", "rope_yarn_attention_factor",
                                           "rope_yarn_mscale", "rope_llama3", "rope_neox_partial025",
                                           "rope_neox_partial05", "rope_gptj"),
                         [](const auto& info) { return std::string(info.param); });

// -------------------------------------------------------------------------------------------------
// ALiBi
// -------------------------------------------------------------------------------------------------

TEST(Alibi, SlopesFollowTheReferenceRule) {
  const auto s8 = ef::alibi_slopes(8);
  for (int h = 0; h < 8; ++h) EXPECT_EQ(s8[h], std::ldexp(1.0, -(h + 1)));  // 1/2, 1/4, ..., 1/256
  const auto s1 = ef::alibi_slopes(1);
  ASSERT_EQ(s1.size(), 1u);
  EXPECT_EQ(s1[0], 1.0 / 256);
  // 12 heads: the 8 slopes of 8, then slopes 1, 3, 5, 7 of the 16-head sequence 2^(-k/2).
  const auto s12 = ef::alibi_slopes(12);
  ASSERT_EQ(s12.size(), 12u);
  for (int h = 0; h < 8; ++h) EXPECT_EQ(s12[h], s8[h]);
  for (int j = 0; j < 4; ++j) EXPECT_DOUBLE_EQ(s12[8 + j], std::pow(2.0, -0.5 * (2 * j + 1)));
  EXPECT_EF_ERROR(ef::alibi_slopes(0), ErrorKind::config, "ALiBi", "n_heads = 0");
}

TEST(Alibi, BiasForms) {
  using ef::AlibiForm;
  EXPECT_EQ(ef::alibi_bias(0.5, 10, 4, AlibiForm::causal), -3.0);
  EXPECT_EQ(ef::alibi_bias(0.5, 10, 10, AlibiForm::causal), 0.0);
  EXPECT_EQ(ef::alibi_bias(0.25, 4, 10, AlibiForm::symmetric), -1.5);
  EXPECT_EQ(ef::alibi_bias(0.25, 10, 4, AlibiForm::symmetric), -1.5);
}

// Bloom computes slope_h = base^(h+1) in float32 with base = float(2^(-8/c)) rounded once: the
// rounding of base (<= 0.5 ulp relative) is raised to the power h + 1 <= 64, so Bloom's slope is
// within (h + 1) / 2 + 1 ulp of the exact value this library returns (power-of-two bases, n <= 8,
// are exact).
TEST(Alibi, MatchesBloom) {
  LOAD_OR_SKIP(st, "alibi_bloom");
  const std::string heads = st.metadata().at("heads");
  std::vector<int> ns;
  for (std::size_t i = 0; i < heads.size();) {
    const std::size_t j = std::min(heads.find(',', i), heads.size());
    ns.push_back(std::stoi(heads.substr(i, j - i)));
    i = j + 1;
  }
  ASSERT_GE(ns.size(), 20u);
  for (int n : ns) {
    const auto bloom = st.to_vector<float>("slopes_" + std::to_string(n));
    const auto ours = ef::alibi_slopes(n);
    ASSERT_EQ(bloom.size(), ours.size());
    int c = 1;
    while (c * 2 <= n) c *= 2;
    for (int h = 0; h < n; ++h) {
      const int power = h < c ? h + 1 : 2 * (h - c) + 1;
      EXPECT_LE(eftest::ulp_error(bloom[h], ours[h]), 0.5 * power + 1) << "n=" << n << " h=" << h;
    }
  }
  // Bloom's full bias is slope * key position (padding counts as position 0); the causal form
  // differs by a per-query constant, so softmax gives the same attention.
  const Mat<float> alibi = st.matrix<float>("alibi_12_padded", 12, 7);
  const auto slopes = ef::alibi_slopes(12);
  const std::int64_t kpos[] = {0, 0, 1, 2, 3, 4, 5};
  auto g = eftest::rng(301);
  const Mat<double> logits = eftest::random_matrix<double>(12, 7, g);
  for (int h = 0; h < 12; ++h) {
    for (int j = 0; j < 7; ++j)
      EXPECT_LE(eftest::ulp_error(alibi(h, j), slopes[h] * double(kpos[j])),
                0.5 * (h < 8 ? h + 1 : 2 * (h - 8) + 1) + 1);
    const std::int64_t q = 5;  // the last query sees every key
    double zb = 0, zc = 0;
    std::vector<double> pb(7), pc(7);
    for (int j = 0; j < 7; ++j) {
      pb[j] = std::exp(logits(h, j) + slopes[h] * double(kpos[j]));
      pc[j] = std::exp(logits(h, j) + ef::alibi_bias(slopes[h], q, kpos[j], ef::AlibiForm::causal));
      zb += pb[j];
      zc += pc[j];
    }
    for (int j = 0; j < 7; ++j) EXPECT_NEAR(pb[j] / zb, pc[j] / zc, 1e-15);
  }
}

// -------------------------------------------------------------------------------------------------
// xPos
// -------------------------------------------------------------------------------------------------

/// torchscale XPOS in plain double: row i of x at rotation position t = offset + i, scale
/// exponent (t + min_pos) / scale_base, min_pos = floor(-(length + offset) / 2).
void plain_xpos(Mat<double>& x, Index n_heads, Index hd, double scale_base, Index offset, bool down) {
  const Index length = x.rows(), n = length + offset;
  const double min_pos = std::floor(-double(n) / 2);
  for (Index i = 0; i < length; ++i) {
    const double t = double(offset + i), e = (t + min_pos) / scale_base;
    for (Index h = 0; h < n_heads; ++h)
      for (Index j = 0; j < hd / 2; ++j) {
        const double zeta0 = std::pow((2.0 * j + 0.4 * hd) / (1.4 * hd), e);
        const double zeta = down ? 1 / zeta0 : zeta0;
        const double theta = t * std::pow(10000.0, -double(j) / double(hd / 2));
        const double a = x(i, h * hd + 2 * j), b = x(i, h * hd + 2 * j + 1);
        x(i, h * hd + 2 * j) = (a * std::cos(theta) - b * std::sin(theta)) * zeta;
        x(i, h * hd + 2 * j + 1) = (b * std::cos(theta) + a * std::sin(theta)) * zeta;
      }
  }
}

TEST(XPos, DoubleMatchesPlainFormulaAndFloat) {
  auto g = eftest::rng(401);
  for (Index hd : {Index(8), Index(64)})
    for (double base : {512.0, 8.0})
      for (Index offset : {Index(0), Index(3), Index(200)})
        for (bool down : {false, true}) {
          const ef::XPos xpos(hd, base);
          const Mat<double> x0 = eftest::random_matrix<double>(5, 2 * hd, g).cast<float>().cast<double>();
          Mat<double> xd = x0, want = x0;
          Mat<float> xf = x0.cast<float>();
          xpos.apply<double>(xd, 2, offset, down);
          xpos.apply<float>(xf, 2, offset, down);
          plain_xpos(want, 2, hd, base, offset, down);
          for (Index i = 0; i < x0.rows(); ++i)
            for (Index c = 0; c < x0.cols(); ++c) {
              const Index pc = c ^ 1;  // the pair partner in the interleaved layout
              const double mag = std::fabs(x0(i, c)) + std::fabs(x0(i, pc));
              const double zeta =
                  std::fabs(want(i, c)) + std::fabs(want(i, pc)) + mag;  // loose scale of the output
              ASSERT_NEAR(xd(i, c), want(i, c), 1e-13 * zeta * (1 + double(offset + i)))
                  << "hd=" << hd << " base=" << base << " offset=" << offset;
              // Float: angle error ~ t ulp(inv) / 2 + ulp(angle) / 2, pow / cos / sin / products a few u.
              const double t = double(offset + i);
              const double tol = zeta * (16 * kEps24 + t * 2 * kEps24 + ulp_of(t));
              ASSERT_NEAR(xf(i, c), xd(i, c), tol)
                  << "float hd=" << hd << " base=" << base << " offset=" << offset;
            }
        }
}

TEST(XPos, PerPositionFormMatchesAndIsRelative) {
  auto g = eftest::rng(402);
  const Index hd = 16;
  const ef::XPos xpos(hd, 8.0);
  // apply(offset) == apply_at(positions offset.., centre of torchscale), bit for bit.
  Mat<float> a = eftest::random_matrix<float>(4, 2 * hd, g), b = a;
  xpos.apply<float>(a, 2, 6, true);
  const std::int64_t pos[] = {6, 7, 8, 9};
  xpos.apply_at<float>(b, 2, pos, ef::XPos::torchscale_centre(10), true);
  EXPECT_EQ(a, b);
  EXPECT_EQ(ef::XPos::torchscale_centre(10), 5);
  EXPECT_EQ(ef::XPos::torchscale_centre(7), 4);  // -(7) // 2 == -4 in Python
  // q . k depends on t_q - t_k only, whatever the centre (double).
  const Mat<double> q0 = eftest::random_matrix<double>(1, hd, g),
                    k0 = eftest::random_matrix<double>(1, hd, g);
  auto dot = [&](std::int64_t tq, std::int64_t tk, std::int64_t centre) {
    Mat<double> q = q0, k = k0;
    xpos.apply_at<double>(q, 1, &tq, centre, false);
    xpos.apply_at<double>(k, 1, &tk, centre, true);
    return q.row(0).dot(k.row(0));
  };
  const double ref = dot(20, 13, 0);
  for (std::int64_t centre : {-50, 7, 100})
    EXPECT_NEAR(dot(20, 13, centre), ref, 1e-12 * std::fabs(ref) + 1e-13);
  EXPECT_NEAR(dot(120, 113, 60), ref, 1e-11 * std::fabs(ref) + 1e-12);
  // cos_sin is what apply_at rotates with.
  std::vector<float> c(hd / 2), s(hd / 2);
  xpos.cos_sin(9, 5, true, c.data(), s.data());
  Mat<float> r = eftest::random_matrix<float>(1, hd, g), r2 = r;
  const std::int64_t p9 = 9;
  xpos.apply_at<float>(r, 1, &p9, 5, true);
  ek::rope_interleaved(r2.data(), c.data(), s.data(), hd / 2);
  EXPECT_EQ(r, r2);
}

TEST(XPos, Errors) {
  EXPECT_EF_ERROR(ef::XPos(7), ErrorKind::config, "xPos", "head_dim = 7");
  EXPECT_EF_ERROR(ef::XPos(8, 0.0), ErrorKind::config, "xPos", "scale_base");
  const ef::XPos xpos(8);
  Mat<float> x(2, 16);
  EXPECT_EF_ERROR(xpos.apply<float>(x, 3, 0, false), ErrorKind::shape_mismatch, "xPos", "expected [*, 24]");
  EXPECT_EF_ERROR(xpos.apply<float>(x, 2, -1, false), ErrorKind::invalid_argument, "offset = -1");
  const std::int64_t neg[] = {1, -4};
  EXPECT_EF_ERROR(xpos.apply_at<float>(x, 2, neg, 0, false), ErrorKind::invalid_argument,
                  "positions[1] = -4");
  EXPECT_EF_ERROR(xpos.apply_at<float>(x, 2, nullptr, 0, false), ErrorKind::invalid_argument, "null");
}

// torchscale in float32: zeta = pow(scale, e) (SLEEF, <= 1 ulp; ours correctly rounded), 1 / zeta
// for keys, cos and sin (<= 1 ulp; ours 0.5), the products with zeta and the rotation: within
// 8u (|a| + |b|) zeta (measured <= 2u). The rotation frequencies follow the same float32 sequence,
// but torch's pow may be 1 ulp off there too; where ours differ from the stored ones, the angle
// t * inv_freq moves by t |inv - inv_ts| + ulp(angle), added to the bound as for RoPE.
TEST(XPos, MatchesTorchscale) {
  for (const char* name : {"xpos_base512", "xpos_base8"}) {
    SCOPED_TRACE(name);
    if (!std::filesystem::exists(golden(name))) GTEST_SKIP() << "fixture missing: " << golden(name);
    const ef::SafeTensors st = ef::SafeTensors::open(golden(name));
    const Meta meta{st.metadata()};
    const Index hd = meta.idx("head_dim"), n_heads = meta.idx("n_heads");
    const double base = meta.num("scale_base");
    const ef::XPos xpos(hd, base);
    const auto scale = st.to_vector<float>("scale");
    ASSERT_EQ(scale, xpos.scale()) << "the scale buffer is plain float32 arithmetic: bit-exact";
    const auto ts_inv = st.to_vector<float>("inv_freq");
    ASSERT_EQ(ts_inv.size(), xpos.inv_freq().size());
    for (std::size_t k = 0; k < ts_inv.size(); ++k)
      EXPECT_LE(eftest::ulp_error(xpos.inv_freq()[k], ts_inv[k]), 1.0);
    std::string cases = meta.str("cases");
    for (std::size_t i = 0; i < cases.size();) {
      const std::size_t j = std::min(cases.find(',', i), cases.size());
      const std::string tag = cases.substr(i, j - i);
      i = j + 1;
      const Index offset = st.to_vector<std::int64_t>(tag + ".offset")[0];
      const bool down = st.to_vector<std::int64_t>(tag + ".downscale")[0] != 0;
      const Mat<float> x = st.matrix<float>(tag + ".x", -1, n_heads * hd);
      const Mat<float> want = st.matrix<float>(tag + ".out", x.rows(), x.cols());
      Mat<float> y = x;
      xpos.apply<float>(y, n_heads, offset, down);
      double worst = 0;                         // |error| / (u (|a| + |b|) zeta)
      Mat<double> zeta_ref = x.cast<double>();  // |zeta| per element, from the plain formula on ones
      zeta_ref.setOnes();
      for (Index r = 0; r < x.rows(); ++r)
        for (Index c = 0; c < x.cols(); c += 2)
          zeta_ref(r, c + 1) = 0;  // rotate (1, 0): gives zeta (cos, sin)
      plain_xpos(zeta_ref, n_heads, hd, base, offset, down);
      for (Index r = 0; r < x.rows(); ++r)
        for (Index c = 0; c < x.cols(); ++c) {
          const Index pc = c ^ 1, e = c & ~Index(1);
          const double zeta = std::hypot(zeta_ref(r, e), zeta_ref(r, e + 1));
          const double mag = (std::fabs(x(r, c)) + std::fabs(x(r, pc))) * zeta;
          const double t = double(offset + r);
          const Index k = (c % hd) / 2;
          const double inv = xpos.inv_freq()[static_cast<std::size_t>(k)],
                       ts = ts_inv[static_cast<std::size_t>(k)];
          const double dtheta = inv == ts ? 0.0 : t * std::fabs(inv - ts) + ulp_of(t * ts);
          ASSERT_NEAR(y(r, c), want(r, c), mag * (8 * kEps24 + dtheta)) << tag << " r=" << r << " c=" << c;
          worst = std::max(worst, std::fabs(y(r, c) - want(r, c)) / (kEps24 * mag));
        }
      std::printf("[   info   ] %s %s (offset %ld, %s): max error %.2f u of (|a|+|b|) zeta\n", name,
                  tag.c_str(), static_cast<long>(offset), down ? "downscale" : "upscale", worst);
    }
  }
}

}  // namespace
