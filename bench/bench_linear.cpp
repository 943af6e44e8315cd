// Linear and MLP at transformer shapes, against Eigen's plain GEMM (and OpenBLAS's cblas_sgemm when
// found) on the same shapes in the same run, plus an FMA-peak probe of this core.
//
// Args: {tokens, in_features, out_features, threads}. Counter GFLOP/s = 2 * T * in * out per call.

#include <benchmark/benchmark.h>

#include <eigenformer/core/threading.hpp>
#include <eigenformer/ffn/mlp.hpp>
#include <eigenformer/linear/linear.hpp>

#include <random>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(EIGENFORMER_BENCH_CBLAS)
#include <cblas.h>
#endif

using namespace eigenformer;

namespace {

Matrix<float> random_matrix(Index r, Index c, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  Matrix<float> m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

void flops_counter(benchmark::State& s, double flops_per_iter) {
  s.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void linear_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "in", "out", "threads"});
  for (long threads : {1, 2}) {
    b->Args({512, 4096, 4096, threads});
    b->Args({1, 4096, 4096, threads});
    b->Args({512, 1024, 1024, threads});
    b->Args({1, 1024, 4096, threads});
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

void BM_Linear(benchmark::State& s) {
  const Index T = s.range(0), in = s.range(1), out = s.range(2);
  set_num_threads(static_cast<int>(s.range(3)));
  Linear<float> lin(random_matrix(out, in, 1), Vector<float>());
  Matrix<float> x = random_matrix(T, in, 2), y(T, out);
  for (auto _ : s) {
    lin.forward(x, y);
    benchmark::DoNotOptimize(y.data());
  }
  flops_counter(s, 2.0 * double(T) * double(in) * double(out));
}
BENCHMARK(BM_Linear)->Apply(linear_shapes);

// Eigen's own product on plain column-major matrices: C [T, out] = A [T, in] * B [in, out].
void BM_EigenGemm(benchmark::State& s) {
  const Index T = s.range(0), in = s.range(1), out = s.range(2);
  set_num_threads(static_cast<int>(s.range(3)));
  Eigen::MatrixXf a = random_matrix(T, in, 2), b = random_matrix(in, out, 1), c(T, out);
  for (auto _ : s) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  flops_counter(s, 2.0 * double(T) * double(in) * double(out));
}
BENCHMARK(BM_EigenGemm)->Apply(linear_shapes);

#if defined(EIGENFORMER_BENCH_CBLAS)
// OpenBLAS directly, same layout as Linear: y [T, out] = x [T, in] * W^T, W [out, in] row-major.
void BM_OpenBlasSgemm(benchmark::State& s) {
  const Index T = s.range(0), in = s.range(1), out = s.range(2);
  openblas_set_num_threads(static_cast<int>(s.range(3)));
  Matrix<float> w = random_matrix(out, in, 1), x = random_matrix(T, in, 2), y(T, out);
  for (auto _ : s) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(out), int(in), 1.0f, x.data(), int(in),
                w.data(), int(in), 0.0f, y.data(), int(out));
    benchmark::DoNotOptimize(y.data());
  }
  flops_counter(s, 2.0 * double(T) * double(in) * double(out));
}
BENCHMARK(BM_OpenBlasSgemm)->Apply(linear_shapes);
#endif

// SwiGLU MLP (Llama shapes scaled down): args {T, hidden, intermediate, threads}.
void BM_MLP_SwiGLU(benchmark::State& s) {
  const Index T = s.range(0), hidden = s.range(1), inter = s.range(2);
  set_num_threads(static_cast<int>(s.range(3)));
  MLP<float> mlp(MLP<float>::Config{hidden, inter});
  mlp.gate().weight() = random_matrix(inter, hidden, 1);
  mlp.up().weight() = random_matrix(inter, hidden, 2);
  mlp.down().weight() = random_matrix(hidden, inter, 3);
  Matrix<float> x = random_matrix(T, hidden, 4), y(T, hidden);
  Workspace<float> ws;
  for (auto _ : s) {
    mlp.forward(x, y, ws);
    benchmark::DoNotOptimize(y.data());
  }
  flops_counter(s, 2.0 * double(T) * double(mlp.parameters()));
}
BENCHMARK(BM_MLP_SwiGLU)
    ->ArgNames({"T", "hidden", "inter", "threads"})
    ->Args({1, 2048, 5632, 1})
    ->Args({512, 2048, 5632, 1})
    ->Args({512, 2048, 5632, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// This core's FMA peak: 12 independent 8-lane FMA chains in registers (2 FMA ports x 4-cycle
// latency need >= 8 in flight). The reference line for every GFLOP/s figure above.
#if defined(__AVX2__) && defined(__FMA__)
void BM_FmaPeak(benchmark::State& s) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-3f * float(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  constexpr int kInner = 4096;
  for (auto _ : s) {
    for (int it = 0; it < kInner; ++it)
#pragma GCC unroll 12
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    benchmark::DoNotOptimize(acc);
  }
  flops_counter(s, 2.0 * 12 * 8 * kInner);
}
BENCHMARK(BM_FmaPeak);
#endif

}  // namespace
