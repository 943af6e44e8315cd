// KANLinear forward (efficient-kan layer: in = out = 1024, G = 5, k = 3) against two Linear baselines
// in the same binary and run:
//   Linear_equal_params: in x (G + k + 1) = 9216 -> 1024, the parameter count of the KAN layer
//                        (spline + base weights; the scaler is folded into the packed weight)
//   Linear_same_width:   1024 -> 1024
// KANLinear runs its automatic path (local kernel up to KANLinear::kLocalMaxTokens tokens, GEMM
// above); the explicit local and GEMM paths and the SIMD basis kernel alone are benchmarked beside it.
// Args: {tokens, threads}.

#include <benchmark/benchmark.h>

#include <eigenformer/core/threading.hpp>
#include <eigenformer/kan/kan_linear.hpp>
#include <eigenformer/kernels/kan.hpp>
#include <eigenformer/linear/linear.hpp>

#include <random>
#include <vector>

using namespace eigenformer;

namespace {

constexpr Index kIn = 1024, kOut = 1024;
constexpr int kG = 5, kK = 3;

Matrix<float> random_matrix(Index r, Index c, unsigned seed, float sigma) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  Matrix<float> m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

const KANLinear<float>& kan_layer() {
  static const KANLinear<float> l = [] {
    KANLinearConfig c;
    c.in_features = kIn;
    c.out_features = kOut;
    c.grid_size = kG;
    c.spline_order = kK;
    KANLinear<float> k(c, "kan");
    std::mt19937 rng(1);
    k.mutable_base_weight() = random_matrix(kOut, kIn, 2, 0.02f);
    k.mutable_spline_weight() = random_matrix(kOut, kIn * (kG + kK), 3, 0.02f);
    k.mutable_spline_scaler() = random_matrix(kOut, kIn, 4, 1.0f);
    k.prepare();
    return k;
  }();
  return l;
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "threads"});
  for (long threads : {1, 2})
    for (long t : {1, 4, 8, 16, 512}) b->Args({t, threads});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void small_shapes(benchmark::internal::Benchmark* b) {  // the local path is for few tokens
  b->ArgNames({"T", "threads"});
  for (long threads : {1, 2})
    for (long t : {1, 4, 8, 16}) b->Args({t, threads});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void run_kan(benchmark::State& s, KanPath path) {
  const Index T = s.range(0);
  set_num_threads(int(s.range(1)));
  const auto& l = kan_layer();
  const Matrix<float> x = random_matrix(T, kIn, 5, 0.6f);  // mostly inside the grid [-1, 1]
  Matrix<float> y(T, kOut);
  Workspace<float> ws;
  for (auto _ : s) {
    l.forward(x, y, ws, path);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  s.counters["params"] = double(l.parameters());
}

void BM_KANLinear_forward(benchmark::State& s) { run_kan(s, KanPath::automatic); }
void BM_KANLinear_forward_local(benchmark::State& s) { run_kan(s, KanPath::local); }
void BM_KANLinear_forward_gemm(benchmark::State& s) { run_kan(s, KanPath::gemm); }

void run_linear(benchmark::State& s, Index in) {
  const Index T = s.range(0);
  set_num_threads(int(s.range(1)));
  Linear<float> l(random_matrix(kOut, in, 6, 0.02f), Vector<float>(), "linear");
  const Matrix<float> x = random_matrix(T, in, 7, 1.0f);
  Matrix<float> y(T, kOut);
  for (auto _ : s) {
    l.forward(x, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  s.counters["params"] = double(l.parameters());
}

void BM_Linear_equal_params(benchmark::State& s) { run_linear(s, kIn * (kG + kK + 1)); }
void BM_Linear_same_width(benchmark::State& s) { run_linear(s, kIn); }

// The SIMD uniform-grid basis against the scalar general-grid one, one token of 1024 inputs.
void BM_KanBasis(benchmark::State& s) {
  const bool uniform = s.range(0) != 0;
  const auto& l = kan_layer();
  const Matrix<float> x = random_matrix(1, kIn, 8, 0.6f);
  std::vector<std::int32_t> j0(kIn);
  std::vector<float> vals(kIn * (kK + 1)), g0(kIn, l.grid()(0, 0)), ih(kIn, 1.0f / (l.grid()(0, 1) - l.grid()(0, 0)));
  for (auto _ : s) {
    if (uniform)
      kernels::bspline_local_uniform(x.data(), kIn, g0.data(), ih.data(), kG, kK, j0.data(), vals.data(), kIn);
    else
      kernels::bspline_local(x.data(), kIn, l.grid().data(), std::size_t(l.grid().cols()), kG, kK, j0.data(), vals.data(), kIn);
    benchmark::DoNotOptimize(vals.data());
  }
  s.SetItemsProcessed(s.iterations() * kIn);
}

}  // namespace

BENCHMARK(BM_KANLinear_forward)->Apply(shapes);
BENCHMARK(BM_KANLinear_forward_local)->Apply(small_shapes);
BENCHMARK(BM_KANLinear_forward_gemm)->Apply(shapes);
BENCHMARK(BM_Linear_equal_params)->Apply(shapes);
BENCHMARK(BM_Linear_same_width)->Apply(shapes);
BENCHMARK(BM_KanBasis)->ArgName("uniform")->Arg(1)->Arg(0);
