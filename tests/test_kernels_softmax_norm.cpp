// Softmax (row, log-sum-exp, online block) and norm kernels against their scalar twins in double.
#include <eigenformer/kernels/norm.hpp>
#include <eigenformer/kernels/softmax.hpp>

#include "test_util.hpp"

namespace ek = eigenformer::kernels;

namespace {

using eftest::kInf;
using eftest::kNaN;
constexpr double kEps = 1.1920929e-7;

// Softmax outputs: each is exp(x - m) (<= 2 ulp, plus the rounding of x - m, which is exact for
// |x - m| small and costs |x - m| eps otherwise) divided by a float sum of n terms accumulated over
// 16 lanes (relative error <= ~(n / 16 + 4) eps, far smaller in practice).
double softmax_tol(double want, double arg, std::size_t n) {
  return (4.0 + arg + static_cast<double>(n) / 16.0) * kEps * want + 1e-44;
}

TEST(KernelSoftmax, MatchesRefAcrossTails) {
  auto g = eftest::rng(100);
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = eftest::normal(n, 3.0f, g);
    std::vector<float> y(n);
    ek::softmax(x.data(), y.data(), n);
    auto xd = eftest::to_double(x);
    std::vector<double> yd(n);
    ek::ref::softmax(xd.data(), yd.data(), n);
    const double m = *std::max_element(xd.begin(), xd.end());
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(y[i], yd[i], softmax_tol(yd[i], m - xd[i], n)) << "n=" << n << " i=" << i;
  }
}

TEST(KernelSoftmax, LargeLogitsMaskedEntriesAndInPlace) {
  // 1e20-sized logits, -inf (masked) entries, computed in place.
  for (std::size_t n : {1u, 7u, 8u, 9u, 31u, 100u}) {
    std::vector<float> x(n, -kInf);
    x[0] = 1e20f;
    if (n > 2) x[n - 1] = 1e20f;
    if (n > 4) x[2] = -1e20f;
    std::vector<double> want(n, 0.0);
    want[0] = n > 2 ? 0.5 : 1.0;
    if (n > 2) want[n - 1] = 0.5;
    ek::softmax(x.data(), x.data(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(x[i], want[i]) << "n=" << n << " i=" << i;
  }
}

TEST(KernelSoftmax, FullyMaskedRowIsZeroNotNaN) {
  for (std::size_t n : eftest::tail_sizes()) {
    std::vector<float> x(n, -kInf), y(n, 123.0f);
    ek::softmax(x.data(), y.data(), n);
    for (float v : y) ASSERT_EQ(v, 0.0f) << "n=" << n;
    std::vector<double> xd(n, -INFINITY), yd(n, 1.0);
    ek::ref::softmax(xd.data(), yd.data(), n);
    for (double v : yd) ASSERT_EQ(v, 0.0);
    EXPECT_EQ(ek::logsumexp(x.data(), n), -kInf);
  }
  EXPECT_EQ(ek::logsumexp(static_cast<const float*>(nullptr), 0), -kInf);
}

TEST(KernelSoftmax, NaNMakesTheRowNaN) {
  for (std::size_t n : {1u, 5u, 8u, 17u, 64u}) {
    for (std::size_t pos : {std::size_t{0}, n / 2, n - 1}) {
      std::vector<float> x(n, 1.0f), y(n);
      x[pos] = kNaN;
      ek::softmax(x.data(), y.data(), n);
      for (float v : y) ASSERT_TRUE(std::isnan(v)) << "n=" << n << " pos=" << pos;
      EXPECT_TRUE(std::isnan(ek::logsumexp(x.data(), n)));
      // also when every other entry is masked
      std::vector<float> m(n, -kInf);
      m[pos] = kNaN;
      ek::softmax(m.data(), y.data(), n);
      for (float v : y) ASSERT_TRUE(std::isnan(v)) << "masked n=" << n << " pos=" << pos;
      EXPECT_TRUE(std::isnan(ek::logsumexp(m.data(), n)));
      float mx = -kInf, l = 0.0f;
      ek::softmax_online_block(m.data(), n, mx, l);
      EXPECT_TRUE(std::isnan(l));
    }
  }
}

TEST(KernelSoftmax, PlusInfGivesNaNAsPyTorch) {
  std::vector<float> x = {1.0f, kInf, 2.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  std::vector<float> y(x.size());
  ek::softmax(x.data(), y.data(), x.size());
  EXPECT_TRUE(std::isnan(y[1]));
}

TEST(KernelSoftmax, LogSumExpMatchesRef) {
  auto g = eftest::rng(101);
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = eftest::normal(n, 10.0f, g);
    auto xd = eftest::to_double(x);
    const double want = ek::ref::logsumexp(xd.data(), n);
    ASSERT_NEAR(ek::logsumexp(x.data(), n), want, (8.0 + n / 16.0) * kEps * (1.0 + std::fabs(want))) << n;
  }
}

// The online form: feed a row block by block, rescale what was accumulated, normalize at the
// end; the result equals the one-shot softmax. Also checks the running (m, l) against the twin.
TEST(KernelSoftmax, OnlineBlocksEqualOneShot) {
  auto g = eftest::rng(102);
  for (std::size_t n : {1u, 9u, 64u, 100u, 1023u}) {
    for (std::size_t block : {1u, 3u, 8u, 16u, 64u, 1000u}) {
      auto x = eftest::normal(n, 4.0f, g);
      if (n > 10) std::fill(x.begin(), x.begin() + 5, -kInf);  // a masked prefix
      std::vector<float> p = x;
      std::vector<double> pd(x.begin(), x.end());
      float m = -kInf, l = 0.0f;
      double md = -INFINITY, ld = 0.0;
      for (std::size_t b = 0; b < n; b += block) {
        const std::size_t len = std::min(block, n - b);
        const float alpha = ek::softmax_online_block(p.data() + b, len, m, l);
        ek::ref::softmax_online_block(pd.data() + b, len, md, ld);
        for (std::size_t i = 0; i < b; ++i) p[i] *= alpha;  // rescale the earlier blocks
      }
      ASSERT_EQ(m, static_cast<float>(md));
      ASSERT_NEAR(l, ld, (8.0 + n / 16.0) * kEps * ld);
      std::vector<float> want(n);
      ek::softmax(x.data(), want.data(), n);
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_NEAR(p[i] / l, want[i], 2 * softmax_tol(want[i], 40.0, n)) << "n=" << n << " block=" << block;
    }
  }
}

TEST(KernelSoftmax, OnlineBlockAllMaskedSoFar) {
  std::vector<float> s(5, -kInf);
  float m = -kInf, l = 0.0f;
  EXPECT_EQ(ek::softmax_online_block(s.data(), s.size(), m, l), 1.0f);
  EXPECT_EQ(m, -kInf);
  EXPECT_EQ(l, 0.0f);
  for (float v : s) EXPECT_EQ(v, 0.0f);
}

// Norms: a float sum of n squares over 32 lanes, a sqrt and a few products.
double norm_tol(double want, std::size_t n) { return (6.0 + n / 32.0) * kEps * std::fabs(want) + 1e-6 * kEps; }

TEST(KernelNorm, RmsNormMatchesRef) {
  auto g = eftest::rng(110);
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = eftest::normal(n, 2.0f, g);
    auto w = eftest::normal(n, 1.0f, g);
    for (bool with_w : {false, true}) {
      std::vector<float> y(n);
      ek::rms_norm(x.data(), with_w ? w.data() : nullptr, y.data(), n, 1e-6f);
      auto xd = eftest::to_double(x), wd = eftest::to_double(w);
      std::vector<double> yd(n);
      ek::ref::rms_norm(xd.data(), with_w ? wd.data() : nullptr, yd.data(), n, double(1e-6f));
      for (std::size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], yd[i], norm_tol(yd[i], n)) << "n=" << n;
    }
  }
}

TEST(KernelNorm, RmsNormRowsIsBitIdenticalToRowByRow) {
  auto g = eftest::rng(112);
  for (std::size_t n : {1u, 7u, 8u, 33u, 64u, 129u, 1024u}) {
    for (std::size_t rows : {1u, 2u, 5u}) {
      const std::size_t ld = n + 3;  // a row stride wider than the row
      auto x = eftest::normal(rows * ld, 2.0f, g);
      auto w = eftest::normal(n, 1.0f, g);
      for (bool with_w : {false, true}) {
        const float* wp = with_w ? w.data() : nullptr;
        std::vector<float> want(rows * ld, 0.0f), got(rows * ld, 0.0f);
        for (std::size_t r = 0; r < rows; ++r) ek::rms_norm(x.data() + r * ld, wp, want.data() + r * ld, n, 1e-6f);
        ek::rms_norm_rows(x.data(), ld, wp, got.data(), ld, rows, n, 1e-6f);
        ASSERT_EQ(got, want) << "n=" << n << " rows=" << rows;
        auto inplace = x;
        ek::rms_norm_rows(inplace.data(), ld, wp, inplace.data(), ld, rows, n, 1e-6f);
        for (std::size_t r = 0; r < rows; ++r)
          for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(inplace[r * ld + i], want[r * ld + i]);
      }
    }
  }
}

TEST(KernelNorm, LayerNormMatchesRefIncludingLargeMean) {
  auto g = eftest::rng(111);
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = eftest::normal(n, 2.0f, g);
    for (auto& v : x) v += 1000.0f;  // a large mean: the centered two-pass variance must cope
    auto w = eftest::normal(n, 1.0f, g);
    auto b = eftest::normal(n, 1.0f, g);
    for (int mode = 0; mode < 4; ++mode) {
      const bool hw = mode & 1, hb = mode & 2;
      std::vector<float> y(n);
      ek::layer_norm(x.data(), hw ? w.data() : nullptr, hb ? b.data() : nullptr, y.data(), n, 1e-5f);
      auto xd = eftest::to_double(x), wd = eftest::to_double(w), bd = eftest::to_double(b);
      std::vector<double> yd(n);
      ek::ref::layer_norm(xd.data(), hw ? wd.data() : nullptr, hb ? bd.data() : nullptr, yd.data(), n, double(1e-5f));
      // The mean of values near 1000 is rounded to float: an absolute error of ~1000 eps in every
      // centered value, i.e. ~1000 eps / std relative; the twin in float has the same.
      for (std::size_t i = 0; i < n; ++i) {
        const double scale = hw ? std::fabs(wd[i]) : 1.0;
        ASSERT_NEAR(y[i], yd[i], norm_tol(yd[i], n) + 2000.0 * kEps * scale) << "n=" << n << " mode=" << mode;
      }
    }
  }
}

TEST(KernelNorm, EmptyRowTouchesNothing) {
  float y = 7.0f;
  ek::rms_norm(nullptr, nullptr, &y, 0, 1e-6f);
  ek::layer_norm(nullptr, nullptr, nullptr, &y, 0, 1e-5f);
  EXPECT_EQ(y, 7.0f);
}

TEST(KernelNorm, ZeroRowGivesZeroNotNaN) {
  std::vector<float> x(13, 0.0f), y(13, 1.0f);
  ek::rms_norm(x.data(), nullptr, y.data(), x.size(), 1e-6f);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  ek::layer_norm(x.data(), nullptr, nullptr, y.data(), x.size(), 1e-5f);
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

}  // namespace
