// Threading: the thread count setting, and results independent of the thread count.
#include <eigenformer/core/threading.hpp>
#include <eigenformer/ffn/mlp.hpp>
#include <eigenformer/ops/norm.hpp>
#include <eigenformer/ops/softmax.hpp>

#include "test_util.hpp"

using namespace eigenformer;

namespace {

struct RestoreThreads {
  int saved = num_threads();
  ~RestoreThreads() { set_num_threads(saved); }
};

TEST(Threading, ZeroOrNegativeThreadCountIsAnError) {
  try {
    set_num_threads(0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("set_num_threads"), std::string::npos);
  }
  EXPECT_THROW(set_num_threads(-3), Error);
  EXPECT_GE(num_threads(), 1);
}

TEST(Threading, SetNumThreadsIsObserved) {
  RestoreThreads restore;
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(2);
  EXPECT_EQ(num_threads(), has_openmp() ? 2 : 1);
}

TEST(Threading, ParallelForCoversEveryIndexOnce) {
  RestoreThreads restore;
  set_num_threads(2);
  std::vector<int> hits(1000, 0);
  parallel_for(0, 1000, 1, [&](Index i) { hits[static_cast<std::size_t>(i)] += 1; });
  for (int h : hits) ASSERT_EQ(h, 1);
  parallel_for(5, 5, 1, [&](Index) { FAIL(); });
}

// Each output element is computed by one thread in a fixed order: bit-identical results.
TEST(Threading, OpsAreBitIdenticalAcrossThreadCounts) {
  RestoreThreads restore;
  auto g = eftest::rng(300);
  Matrix<float> x(64, 1024);
  std::normal_distribution<float> d(0.0f, 2.0f);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = d(g);
  Vector<float> w = Vector<float>::Constant(1024, 1.5f);
  Matrix<float> s1(64, 1024), s2(64, 1024), n1(64, 1024), n2(64, 1024);
  set_num_threads(1);
  ops::softmax<float>(x, s1);
  ops::rms_norm<float>(x, w, n1, 1e-6f);
  set_num_threads(2);
  ops::softmax<float>(x, s2);
  ops::rms_norm<float>(x, w, n2, 1e-6f);
  EXPECT_EQ(s1, s2);
  EXPECT_EQ(n1, n2);
}

// Linear splits its output features into blocks aligned to Eigen's GEBP panels, each a
// single-threaded product: every output element sees the same arithmetic for any thread count.
TEST(Threading, LinearIsBitIdenticalAcrossThreadCounts) {
  RestoreThreads restore;
  auto g = eftest::rng(302);
  std::normal_distribution<float> d(0.0f, 1.0f);
  struct Shape {
    Index tokens, in, out;
  };
  for (Shape s : {Shape{1, 1024, 1000}, Shape{3, 512, 777}, Shape{64, 300, 1031}, Shape{130, 257, 96}}) {
    Matrix<float> w(s.out, s.in), x(s.tokens, s.in);
    for (Index i = 0; i < w.size(); ++i) w.data()[i] = d(g);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = d(g);
    Linear<float> lin(w, Vector<float>::Constant(s.out, 0.25f));
    set_num_threads(1);
    Matrix<float> y1 = lin.forward(x);
    set_num_threads(2);
    Matrix<float> y2 = lin.forward(x);
    EXPECT_EQ(y1, y2) << s.tokens << "x" << s.in << "x" << s.out << ": max difference "
                      << (y1 - y2).cwiseAbs().maxCoeff();
  }
}

TEST(Threading, MlpIsBitIdenticalAcrossThreadCounts) {
  RestoreThreads restore;
  auto g = eftest::rng(301);
  MLP<float> mlp(MLP<float>::Config{256, 688, Activation::silu, true, false, MLP<float>::Names::llama()});
  std::normal_distribution<float> d(0.0f, 0.05f);
  for (auto* l : {&mlp.gate(), &mlp.up(), &mlp.down()})
    for (Index i = 0; i < l->weight().size(); ++i) l->weight().data()[i] = d(g);
  Matrix<float> x(96, 256);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = d(g) * 20.0f;
  set_num_threads(1);
  Matrix<float> y1 = mlp.forward(x);
  set_num_threads(2);
  Matrix<float> y2 = mlp.forward(x);
  EXPECT_EQ(y1, y2) << "max difference " << (y1 - y2).cwiseAbs().maxCoeff();
}

}  // namespace
