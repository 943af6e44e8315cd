// Elementwise kernels (exp, activations, GLU, add, scale) against their scalar twins in double.
#include <eigenformer/kernels/elementwise.hpp>

#include "test_util.hpp"

namespace ek = eigenformer::kernels;
using eigenformer::Activation;

namespace {

using eftest::kInf;
using eftest::kNaN;

// Inputs that cover every regime of exp: deep underflow, subnormal results, normal, overflow.
std::vector<float> exp_inputs(std::size_t n, std::mt19937& g) {
  auto v = eftest::uniform(n, -110.0f, 90.0f, g);
  const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 88.72f, 88.7228f, 88.73f, -87.33f, -87.34f,
                           -103.97f, -104.0f, -150.0f, 1e-8f, -1e-8f, 0.5f * 0.6931472f};
  for (std::size_t i = 0; i < n && i < sizeof(special) / sizeof(float); ++i) v[i] = special[i];
  return v;
}

TEST(KernelExp, MatchesRefAcrossTailsWithin2Ulp) {
  auto g = eftest::rng(1);
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = exp_inputs(n, g);
    std::vector<float> y(n);
    ek::exp(x.data(), y.data(), n);
    auto xd = eftest::to_double(x);
    std::vector<double> yd(n);
    ek::ref::exp(xd.data(), yd.data(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_LE(eftest::ulp_error(y[i], yd[i]), 2.0) << "n=" << n << " x=" << x[i];
  }
}

TEST(KernelExp, SpecialValues) {
  std::vector<float> x = {-kInf, kInf, kNaN, 100.0f, -200.0f, 0.0f, -kInf, kInf, kNaN};
  std::vector<float> y(x.size());
  ek::exp(x.data(), y.data(), x.size());
  for (std::size_t k : {0u, 6u}) EXPECT_EQ(y[k], 0.0f);
  for (std::size_t k : {1u, 7u}) EXPECT_EQ(y[k], kInf);
  for (std::size_t k : {2u, 8u}) EXPECT_TRUE(std::isnan(y[k]));
  EXPECT_EQ(y[3], kInf);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(y[5], 1.0f);
}

TEST(KernelExp, InPlace) {
  auto g = eftest::rng(2);
  auto x = eftest::uniform(37, -5, 5, g);
  auto y = x;
  ek::exp(x.data(), x.data(), x.size());
  ek::exp(y.data(), y.data(), 0);  // n = 0 touches nothing
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_LE(eftest::ulp_error(x[i], std::exp(double(y[i]))), 2.0);
}

struct ActCase {
  Activation act;
  double c;  // relative tolerance in float epsilons, per unit of (1 + |exponent argument|)
};

// The magnitude of the argument of the exp inside each activation. Rounding that argument to float
// costs about |arg| * eps of relative error in the result, an error the float twin of the formula
// has too (the problem's conditioning), so the tolerance scales with it:
//   |y - ref| <= c * eps * (1 + |arg|) * |ref| + 1e-37.
// Measured (tools: 2M random inputs in [-40, 40]): silu 1.2, gelu_tanh 1.4, gelu_erf 3.4 (the erfc
// fit adds ~1 eps); relu2 is one rounding (0.5 eps); identity and relu are exact.
double exp_arg(Activation a, double x) {
  switch (a) {
    case Activation::silu: return std::fabs(x);
    case Activation::gelu_tanh: return std::fabs(2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x));
    case Activation::gelu_erf: return 0.5 * x * x;
    default: return 0.0;
  }
}
class KernelActivation : public ::testing::TestWithParam<ActCase> {};

TEST_P(KernelActivation, MatchesRefAcrossTails) {
  const ActCase c = GetParam();
  auto g = eftest::rng(10 + static_cast<unsigned>(c.act));
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = eftest::normal(n, 4.0f, g);
    if (n > 4) {
      x[0] = 0.0f;
      x[1] = -30.0f;
      x[2] = 30.0f;
      x[3] = 1e-30f;
    }
    std::vector<float> y(n);
    ek::activation(x.data(), y.data(), n, c.act);
    auto xd = eftest::to_double(x);
    std::vector<double> yd(n);
    ek::ref::activation(xd.data(), yd.data(), n, c.act);
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(y[i], yd[i], 1e-37 + c.c * 1.1920929e-7 * (1 + exp_arg(c.act, x[i])) * std::fabs(yd[i]))
          << to_string(c.act) << " n=" << n << " x=" << x[i];
  }
}

TEST_P(KernelActivation, NaNPropagates) {
  const ActCase c = GetParam();
  std::vector<float> x(19, 0.5f);
  x[3] = kNaN;
  x[17] = kNaN;
  std::vector<float> y(x.size());
  ek::activation(x.data(), y.data(), x.size(), c.act);
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_TRUE(std::isnan(y[17]));
  EXPECT_FALSE(std::isnan(y[4]));
}

TEST_P(KernelActivation, GluIsActTimesUp) {
  const ActCase c = GetParam();
  auto g = eftest::rng(30 + static_cast<unsigned>(c.act));
  for (std::size_t n : eftest::tail_sizes()) {
    auto gate = eftest::normal(n, 3.0f, g);
    auto up = eftest::normal(n, 1.0f, g);
    std::vector<float> y(n), a(n);
    ek::glu(gate.data(), up.data(), y.data(), n, c.act);
    ek::activation(gate.data(), a.data(), n, c.act);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] * up[i]) << "n=" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(All, KernelActivation,
                         ::testing::Values(ActCase{Activation::identity, 0}, ActCase{Activation::relu, 0},
                                           ActCase{Activation::relu2, 0.5}, ActCase{Activation::silu, 2},
                                           ActCase{Activation::gelu_tanh, 2}, ActCase{Activation::gelu_erf, 4}),
                         [](const auto& info) { return std::string(to_string(info.param.act)); });

TEST(KernelElementwise, AddAndScaleExact) {
  auto g = eftest::rng(40);
  for (std::size_t n : eftest::tail_sizes()) {
    auto a = eftest::normal(n, 1.0f, g);
    auto b = eftest::normal(n, 1.0f, g);
    std::vector<float> y(n), z(n);
    ek::add(a.data(), b.data(), y.data(), n);
    ek::scale(a.data(), 0.37f, z.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(y[i], a[i] + b[i]);
      ASSERT_EQ(z[i], a[i] * 0.37f);
    }
  }
}

TEST(KernelElementwise, DoubleOverloadsAreTheTwins) {
  std::vector<double> x = {-3.0, -0.5, 0.0, 0.25, 2.0};
  std::vector<double> y(x.size()), r(x.size());
  ek::activation(x.data(), y.data(), x.size(), Activation::gelu_erf);
  ek::ref::activation(x.data(), r.data(), x.size(), Activation::gelu_erf);
  EXPECT_EQ(y, r);
  EXPECT_DOUBLE_EQ(y[4], 0.5 * 2.0 * (1.0 + std::erf(2.0 / std::sqrt(2.0))));
}

TEST(Activation, ParseHuggingFaceNames) {
  using eigenformer::parse_activation;
  EXPECT_EQ(parse_activation("silu"), Activation::silu);
  EXPECT_EQ(parse_activation("swish"), Activation::silu);
  EXPECT_EQ(parse_activation("gelu"), Activation::gelu_erf);
  EXPECT_EQ(parse_activation("gelu_new"), Activation::gelu_tanh);
  EXPECT_EQ(parse_activation("gelu_pytorch_tanh"), Activation::gelu_tanh);
  EXPECT_EQ(parse_activation("relu2"), Activation::relu2);
  try {
    parse_activation("mish", "MLP 'mlp'");
    FAIL() << "no throw";
  } catch (const eigenformer::Error& e) {
    EXPECT_EQ(e.kind(), eigenformer::ErrorKind::config);
    EXPECT_NE(std::string(e.what()).find("MLP 'mlp'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("mish"), std::string::npos);
  }
}

}  // namespace

namespace {
// simd::tanh (used by attention soft-capping) against std::tanh in double: <= 4 eps relative.
TEST(KernelTanh, MatchesStdTanh) {
  auto g = eftest::rng(50);
  for (std::size_t n : eftest::tail_sizes()) {
    auto x = eftest::normal(n, 2.0f, g);
    if (n > 6) {
      x[0] = 0.0f;
      x[1] = 0.29999f;
      x[2] = 0.3f;
      x[3] = -1e-20f;
      x[4] = 40.0f;
      x[5] = -1e30f;
    }
    std::vector<float> y(n);
    ek::loops::map(x.data(), y.data(), n, [](auto v) { return eigenformer::simd::tanh(v); });
    for (std::size_t i = 0; i < n; ++i) {
      const double want = std::tanh(double(x[i]));
      ASSERT_NEAR(y[i], want, 4 * 1.1920929e-7 * std::fabs(want) + 1e-45) << "x=" << x[i];
    }
  }
  float nan = NAN, out;
  ek::loops::map(&nan, &out, 1, [](auto v) { return eigenformer::simd::tanh(v); });
  EXPECT_TRUE(std::isnan(out));
}
}  // namespace
