// RMSNorm, LayerNorm and Embedding layers against plain loops; loading; errors.
#include <eigenformer/embedding/embedding.hpp>
#include <eigenformer/norm/layer_norm.hpp>
#include <eigenformer/norm/rms_norm.hpp>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

using eftest::random_matrix;

TEST(RMSNormLayer, MatchesLlamaFormulaAndGemmaOffset) {
  auto g = eftest::rng(500);
  for (bool offset : {false, true}) {
    Vector<float> w = random_matrix(37, 1, g);
    SafeTensorsWriter wr;
    wr.add("model.norm.weight", w);
    auto st = SafeTensors::from_bytes(wr.to_bytes());
    auto norm = RMSNorm<float>::load(st, "model.norm", {37, 1e-6, offset});
    Matrix<float> x = random_matrix(5, 37, g, 3.0f);
    Matrix<float> y = norm.forward(x);
    for (Index i = 0; i < 5; ++i) {
      double ms = 0;
      for (Index j = 0; j < 37; ++j) ms += double(x(i, j)) * x(i, j);
      const double r = 1.0 / std::sqrt(ms / 37 + 1e-6);
      for (Index j = 0; j < 37; ++j)
        ASSERT_NEAR(y(i, j), x(i, j) * r * (offset ? 1.0 + w[j] : double(w[j])), 1e-5);
    }
  }
}

TEST(LayerNormLayer, MatchesTorchFormulaWithAndWithoutAffine) {
  auto g = eftest::rng(501);
  struct Mode {
    bool affine, bias;
  };
  for (Mode m : {Mode{true, true}, Mode{true, false}, Mode{false, false}}) {
    SafeTensorsWriter wr;
    Vector<float> w = random_matrix(21, 1, g), b = random_matrix(21, 1, g);
    wr.add("ln.weight", w);
    wr.add("ln.bias", b);
    auto st = SafeTensors::from_bytes(wr.to_bytes());
    auto ln = LayerNorm<float>::load(st, "ln", {21, 1e-5, m.affine, m.bias});
    Matrix<float> x = random_matrix(4, 21, g, 2.0f);
    Matrix<float> y = x;
    ln.forward(y, y);  // in place
    for (Index i = 0; i < 4; ++i) {
      Eigen::VectorXd v = x.row(i).cast<double>().transpose();
      const double mean = v.mean(), var = (v.array() - mean).square().mean();
      for (Index j = 0; j < 21; ++j) {
        double want = (v[j] - mean) / std::sqrt(var + 1e-5);
        if (m.affine) want *= w[j];
        if (m.bias) want += b[j];
        ASSERT_NEAR(y(i, j), want, 1e-5);
      }
    }
  }
}

TEST(NormLayers, Errors) {
  EXPECT_THROW(RMSNorm<float>(RMSNorm<float>::Config{0}), Error);
  EXPECT_THROW(RMSNorm<float>(RMSNorm<float>::Config{4, -1.0}), Error);
  EXPECT_THROW(RMSNorm<float>(RMSNorm<float>::Config{4}, Vector<float>(3)), Error);
  EXPECT_THROW(LayerNorm<float>(LayerNorm<float>::Config{4}, Vector<float>(4), Vector<float>()), Error);
  RMSNorm<float> n(RMSNorm<float>::Config{4}, "model.norm");
  Matrix<float> x(2, 5);
  try {
    n.forward(x);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "eigenformer: RMSNorm 'model.norm': input x has shape [2, 5], expected [*, 4]");
  }
}

TEST(EmbeddingLayer, LooksUpRowsAndRejectsOutOfRangeIdsBeforeWriting) {
  auto g = eftest::rng(502);
  Matrix<float> table = random_matrix(11, 6, g);
  SafeTensorsWriter wr;
  wr.add("model.embed_tokens.weight", table, Dtype::F16);
  auto st = SafeTensors::from_bytes(wr.to_bytes());
  auto emb = Embedding<float>::load(st, "model.embed_tokens", {11, 6});
  std::vector<std::int32_t> ids = {3, 0, 10, 3};
  Matrix<float> y = emb.forward(ids);
  for (std::size_t i = 0; i < ids.size(); ++i)
    for (Index j = 0; j < 6; ++j)
      EXPECT_EQ(y(Index(i), j), half_to_float(float_to_half(table(ids[i], j))));
  Matrix<float> out = Matrix<float>::Constant(3, 6, 7.0f);
  std::vector<std::int64_t> bad = {1, 11, 2};
  try {
    emb.forward(bad.data(), 3, out);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("token id 11 at position 1"), std::string::npos) << e.what();
  }
  EXPECT_TRUE((out.array() == 7.0f).all());  // nothing written
  std::vector<int> neg = {-1};
  EXPECT_THROW(emb.forward(neg), Error);
}

}  // namespace
