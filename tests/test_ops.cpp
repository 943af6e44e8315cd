// Row-wise ops over Eigen views: strided views, in place, group norm, shape errors.
#include <eigenformer/ops/activation.hpp>
#include <eigenformer/ops/norm.hpp>
#include <eigenformer/ops/softmax.hpp>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

using eftest::random_matrix;

TEST(Ops, SoftmaxOnAColumnBlockLeavesTheRestAlone) {
  auto g = eftest::rng(200);
  Matrix<float> x = random_matrix(5, 24, g);
  Matrix<float> before = x;
  auto block = x.middleCols(8, 8);  // one "head" of a [T, 3 * 8] matrix: a strided view
  ops::softmax<float>(block);
  for (Index i = 0; i < 5; ++i) {
    EXPECT_NEAR(x.row(i).segment(8, 8).sum(), 1.0f, 1e-6f);
    EXPECT_EQ(x.row(i).head(8), before.row(i).head(8));
    EXPECT_EQ(x.row(i).tail(8), before.row(i).tail(8));
    Eigen::VectorXd e = before.row(i).segment(8, 8).cast<double>().array().exp();
    e /= e.sum();
    for (Index j = 0; j < 8; ++j) EXPECT_NEAR(x(i, 8 + j), e[j], 1e-6);
  }
}

TEST(Ops, LogSumExpAndEmptyRows) {
  Matrix<float> x(3, 4);
  x << 0, 0, 0, 0, 1, 2, 3, 4, -INFINITY, -INFINITY, -INFINITY, -INFINITY;
  Vector<float> lse(3);
  ops::logsumexp<float>(x, lse);
  EXPECT_NEAR(lse[0], std::log(4.0f), 1e-6f);
  EXPECT_NEAR(lse[1], std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0)), 1e-5);
  EXPECT_EQ(lse[2], -INFINITY);
  Matrix<float> empty(3, 0);
  ops::logsumexp<float>(empty, lse);
  EXPECT_EQ(lse[1], -INFINITY);
  ops::softmax<float>(empty);  // nothing to do, no crash
}

TEST(Ops, GroupNormRmsIsPerHeadRmsNorm) {
  auto g = eftest::rng(201);
  const Index heads = 3, d = 10;
  Matrix<double> x = random_matrix(4, heads * d, g).cast<double>();
  Vector<double> w = random_matrix(heads * d, 1, g).cast<double>();
  Matrix<double> y(4, heads * d);
  ops::group_norm<double>(x, heads, ops::NormKind::rms, w, Vector<double>(), y, 1e-6);
  for (Index i = 0; i < 4; ++i)
    for (Index h = 0; h < heads; ++h) {
      const double ms = x.row(i).segment(h * d, d).squaredNorm() / d;
      for (Index j = 0; j < d; ++j)
        EXPECT_NEAR(y(i, h * d + j), x(i, h * d + j) / std::sqrt(ms + 1e-6) * w[h * d + j], 1e-12);
    }
}

TEST(Ops, GroupNormLayerMatchesTorchGroupNormOnOnePosition) {
  auto g = eftest::rng(202);
  const Index groups = 4, d = 6;
  Matrix<float> x = random_matrix(3, groups * d, g, 3.0f);
  Vector<float> w = random_matrix(groups * d, 1, g), b = random_matrix(groups * d, 1, g);
  Matrix<float> y(3, groups * d);
  ops::group_norm<float>(x, groups, ops::NormKind::layer, w, b, y, 1e-5f);
  for (Index i = 0; i < 3; ++i)
    for (Index k = 0; k < groups; ++k) {
      Eigen::VectorXd seg = x.row(i).segment(k * d, d).cast<double>().transpose();
      const double mean = seg.mean();
      const double var = (seg.array() - mean).square().mean();
      for (Index j = 0; j < d; ++j) {
        const double want = (seg[j] - mean) / std::sqrt(var + 1e-5) * w[k * d + j] + b[k * d + j];
        EXPECT_NEAR(y(i, k * d + j), want, 1e-5);
      }
    }
}

TEST(Ops, ShapeErrorsNameTheOpAndSizes) {
  Matrix<float> x(2, 3), y(2, 4);
  try {
    ops::softmax<float>(x, y);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape_mismatch);
    EXPECT_STREQ(e.what(), "eigenformer: ops::softmax: y has shape [2, 4], expected [2, 3]");
  }
  Vector<float> w(5);
  EXPECT_THROW(ops::rms_norm<float>(x, w, x, 1e-6f), Error);
  EXPECT_THROW(ops::group_norm<float>(x, 2, ops::NormKind::rms, Vector<float>(), Vector<float>(), x, 1e-6f), Error);
  Vector<float> b(3);
  EXPECT_THROW(ops::group_norm<float>(x, 1, ops::NormKind::rms, Vector<float>(), b, x, 1e-6f), Error);
  EXPECT_THROW(ops::glu<float>(x, y, x, Activation::silu), Error);
  EXPECT_THROW(ops::add<float>(x, x, y), Error);
}

TEST(Ops, AddAndGluInPlace) {
  auto g = eftest::rng(203);
  Matrix<float> a = random_matrix(7, 19, g), b = random_matrix(7, 19, g);
  Matrix<float> sum = a + b;
  ops::add<float>(a, b, a);
  EXPECT_EQ(a, sum);
  Matrix<float> gate = random_matrix(7, 19, g), up = random_matrix(7, 19, g), act(7, 19);
  ops::activation<float>(gate, act, Activation::silu);
  Matrix<float> want = act.cwiseProduct(up);
  ops::glu<float>(gate, up, up, Activation::silu);
  EXPECT_EQ(up, want);
}

}  // namespace
