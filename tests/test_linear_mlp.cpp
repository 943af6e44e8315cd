// Linear and MLP layers against plain double-precision loops; checkpoint loading; errors.
#include <eigenformer/ffn/mlp.hpp>
#include <eigenformer/linear/linear.hpp>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

using eftest::random_matrix;

// y[t][o] = sum_i x[t][i] * W[o][i] + b[o], in double.
Matrix<double> naive_linear(const Matrix<double>& x, const Matrix<double>& w, const Vector<double>& b) {
  Matrix<double> y(x.rows(), w.rows());
  for (Index t = 0; t < x.rows(); ++t)
    for (Index o = 0; o < w.rows(); ++o) {
      double s = b.size() ? b[o] : 0.0;
      for (Index i = 0; i < x.cols(); ++i) s += x(t, i) * w(o, i);
      y(t, o) = s;
    }
  return y;
}

double naive_act(double x, Activation a) {
  switch (a) {
    case Activation::silu: return x / (1 + std::exp(-x));
    case Activation::gelu_erf: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::relu: return x > 0 ? x : 0;
    case Activation::relu2: return x > 0 ? x * x : 0;
    case Activation::identity: return x;
  }
  return x;
}

TEST(Linear, MatchesNaiveAcrossShapes) {
  auto g = eftest::rng(400);
  for (Index in : {1, 7, 32, 65}) {
    for (Index out : {1, 9, 64}) {
      for (Index tokens : {0, 1, 3, 17}) {
        for (bool bias : {false, true}) {
          Matrix<float> w = random_matrix<float>(out, in, g);
          Vector<float> b = bias ? Vector<float>(random_matrix<float>(out, 1, g)) : Vector<float>();
          Linear<float> lin(w, b, "proj");
          Matrix<float> x = random_matrix<float>(tokens, in, g);
          Matrix<float> y = lin.forward(x);
          Matrix<double> want = naive_linear(x.cast<double>(), w.cast<double>(), b.cast<double>());
          ASSERT_EQ(y.rows(), tokens);
          for (Index i = 0; i < y.size(); ++i)
            ASSERT_NEAR(y.data()[i], want.data()[i], 1e-5 * (1 + std::sqrt(double(in))))
                << in << "x" << out << " T=" << tokens;
        }
      }
    }
  }
}

TEST(Linear, DoubleIsExactToRounding) {
  auto g = eftest::rng(401);
  Matrix<double> w = random_matrix<double>(13, 29, g), x = random_matrix<double>(5, 29, g);
  Vector<double> b = random_matrix<double>(13, 1, g);
  Linear<double> lin(w, b);
  EXPECT_LT((lin.forward(x) - naive_linear(x, w, b)).cwiseAbs().maxCoeff(), 1e-13);
}

TEST(Linear, WritesIntoAStridedOutputView) {
  auto g = eftest::rng(402);
  Linear<float> lin(random_matrix<float>(8, 16, g), Vector<float>());
  Matrix<float> x = random_matrix<float>(4, 16, g);
  Matrix<float> qkv = Matrix<float>::Zero(4, 24);
  lin.forward(x, qkv.middleCols(8, 8));
  EXPECT_TRUE(qkv.leftCols(8).isZero());
  EXPECT_TRUE(qkv.rightCols(8).isZero());
  EXPECT_LT((qkv.middleCols(8, 8) - lin.forward(x)).cwiseAbs().maxCoeff(), 1e-6);
}

TEST(Linear, ShapeAndConfigErrors) {
  Linear<float> lin(Linear<float>::Config{6, 4, true}, "model.layers.0.mlp.up_proj");
  Matrix<float> x(3, 5), y(3, 4);
  try {
    lin.forward(x, y);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape_mismatch);
    EXPECT_STREQ(e.what(),
                 "eigenformer: Linear 'model.layers.0.mlp.up_proj': input x has shape [3, 5], expected [*, 6]");
  }
  Matrix<float> x6(3, 6), y5(3, 5);
  EXPECT_THROW(lin.forward(x6, y5), Error);
  EXPECT_THROW(Linear<float>(Linear<float>::Config{0, 4, false}), Error);
  EXPECT_THROW(Linear<float>(Matrix<float>(4, 6), Vector<float>(5)), Error);
}

TEST(Linear, LoadsFromSafetensorsWithConversion) {
  auto g = eftest::rng(403);
  Matrix<float> w = random_matrix<float>(5, 3, g);
  Vector<float> b = random_matrix<float>(5, 1, g);
  SafeTensorsWriter wr;
  wr.add("model.layers.0.self_attn.q_proj.weight", w, Dtype::BF16);
  wr.add("model.layers.0.self_attn.q_proj.bias", b, Dtype::F32);
  auto st = SafeTensors::from_bytes(wr.to_bytes());
  auto lin = Linear<float>::load(st, "model.layers.0.self_attn.q_proj", {3, 5, true});
  EXPECT_EQ(lin.bias(), b);
  for (Index i = 0; i < w.size(); ++i)
    EXPECT_EQ(lin.weight().data()[i], bf16_to_float(float_to_bf16(w.data()[i])));
  // wrong configured shape: the error names the layer, the tensor and both shapes
  try {
    Linear<float>::load(st, "model.layers.0.self_attn.q_proj", {4, 5, true});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::shape_mismatch);
    const std::string m = e.what();
    EXPECT_NE(m.find("Linear 'model.layers.0.self_attn.q_proj'"), std::string::npos) << m;
    EXPECT_NE(m.find("q_proj.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("[5, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[5, 4]"), std::string::npos) << m;
  }
  try {
    Linear<float>::load(st, "model.layers.0.self_attn.k_proj", {3, 5, false});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::missing_weight);
    EXPECT_NE(std::string(e.what()).find("k_proj.weight"), std::string::npos);
  }
}

// MLP against a double-precision reference written out in loops.
Matrix<double> naive_mlp(const Matrix<double>& x, const MLP<float>& m) {
  const auto& c = m.config();
  auto lin = [](const Matrix<double>& in, const Linear<float>& l) {
    return naive_linear(in, l.weight().cast<double>(), l.bias().cast<double>());
  };
  Matrix<double> h = lin(x, m.up());
  if (c.gated) {
    Matrix<double> gate = lin(x, m.gate());
    for (Index i = 0; i < h.size(); ++i) h.data()[i] *= naive_act(gate.data()[i], c.act);
  } else {
    for (Index i = 0; i < h.size(); ++i) h.data()[i] = naive_act(h.data()[i], c.act);
  }
  return lin(h, m.down());
}

struct MlpCase {
  const char* name;
  Activation act;
  bool gated;
  bool bias;
  MLP<float>::Names names;
};

class MlpVariants : public ::testing::TestWithParam<MlpCase> {};

TEST_P(MlpVariants, MatchesNaiveAndLoadsByReferenceNames) {
  const MlpCase c = GetParam();
  auto g = eftest::rng(410);
  MLP<float>::Config cfg{24, 40, c.act, c.gated, c.bias, c.names};
  SafeTensorsWriter wr;
  auto add = [&](const std::string& leaf, Index out, Index in) {
    if (leaf.empty()) return;
    wr.add("model.layers.3.mlp." + leaf + ".weight", random_matrix<float>(out, in, g, 0.2));
    if (c.bias) wr.add("model.layers.3.mlp." + leaf + ".bias", Vector<float>(random_matrix<float>(out, 1, g, 0.2)));
  };
  if (c.gated) add(c.names.gate, 40, 24);
  add(c.names.up, 40, 24);
  add(c.names.down, 24, 40);
  auto st = SafeTensors::from_bytes(wr.to_bytes());
  auto mlp = MLP<float>::load(st, "model.layers.3.mlp", cfg);
  for (Index tokens : {1, 2, 13}) {
    Matrix<float> x = random_matrix<float>(tokens, 24, g, 2.0);
    Matrix<float> y = mlp.forward(x);
    Matrix<double> want = naive_mlp(x.cast<double>(), mlp);
    for (Index i = 0; i < y.size(); ++i) ASSERT_NEAR(y.data()[i], want.data()[i], 1e-4) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, MlpVariants,
    ::testing::Values(MlpCase{"llama_swiglu", Activation::silu, true, false, MLP<float>::Names::llama()},
                      MlpCase{"t5_geglu", Activation::gelu_tanh, true, false, MLP<float>::Names::t5()},
                      MlpCase{"bitnet_relu2_glu", Activation::relu2, true, false, MLP<float>::Names::llama()},
                      MlpCase{"gated_with_bias", Activation::gelu_erf, true, true, MLP<float>::Names::llama()},
                      MlpCase{"opt_relu_fc", Activation::relu, false, true, MLP<float>::Names::fc()},
                      MlpCase{"gelu_fc", Activation::gelu_erf, false, true, MLP<float>::Names::fc()}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Mlp, WorkspaceStopsAllocatingAfterTheFirstCall) {
  auto g = eftest::rng(411);
  MLP<float> mlp(MLP<float>::Config{16, 48});
  Workspace<float> ws;
  Matrix<float> x = random_matrix<float>(9, 16, g), y(9, 16);
  mlp.forward(x, y, ws);
  const auto allocs = ws.allocations();
  for (int i = 0; i < 5; ++i) mlp.forward(x, y, ws);
  Matrix<float> x1 = x.topRows(1), y1(1, 16);
  mlp.forward(x1, y1, ws);  // smaller: fits
  EXPECT_EQ(ws.allocations(), allocs);
  EXPECT_EQ(ws.high_water(), 2u * 9 * 48);
}

TEST(Mlp, Errors) {
  MLP<float> mlp(MLP<float>::Config{16, 48}, "mlp");
  Matrix<float> x(2, 15), y(2, 16);
  Workspace<float> ws;
  EXPECT_THROW(mlp.forward(x, y, ws), Error);
  MLP<float>::Config bad{16, 0};
  EXPECT_THROW(MLP<float>{bad}, Error);
  SafeTensorsWriter wr;
  wr.add("mlp.gate_proj.weight", Matrix<float>(Matrix<float>::Zero(48, 16)));
  auto st = SafeTensors::from_bytes(wr.to_bytes());
  try {
    MLP<float>::load(st, "mlp", MLP<float>::Config{16, 48});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::missing_weight);
    EXPECT_NE(std::string(e.what()).find("mlp.up_proj.weight"), std::string::npos) << e.what();
  }
}

TEST(Workspace, FramesRewindAndViewsStayValidAcrossGrowth) {
  Workspace<float> ws(16);
  typename Workspace<float>::Frame outer(ws);
  auto a = ws.matrix(2, 8);
  a.setConstant(1.0f);
  {
    typename Workspace<float>::Frame inner(ws);
    auto b = ws.matrix(100, 100);  // does not fit: a new block, `a` untouched
    b.setConstant(2.0f);
    EXPECT_EQ(a(1, 7), 1.0f);
  }
  auto c = ws.matrix(1, 4);
  c.setConstant(3.0f);
  EXPECT_EQ(a(1, 7), 1.0f);
  EXPECT_THROW(ws.matrix(-1, 2), Error);
}

}  // namespace
