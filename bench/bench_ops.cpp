// Op and kernel benchmarks: every SIMD kernel beside its scalar `_ref` twin, and a plain memory
// read+write (memcpy) of the same bytes as the bandwidth baseline for the norms.
//
//   bench_ops --benchmark_filter='Softmax|Exp'     (compare BM_X with BM_X_ref at the same size)
//
// Counters: bytes_per_second (read + written), items_per_second (elements).

#include <benchmark/benchmark.h>

#include <eigenformer/core/threading.hpp>
#include <eigenformer/kernels/elementwise.hpp>
#include <eigenformer/kernels/norm.hpp>
#include <eigenformer/kernels/softmax.hpp>

#include <cstring>
#include <random>
#include <vector>

namespace ek = eigenformer::kernels;
using eigenformer::Activation;

namespace {

std::vector<float> data(std::size_t n, float sigma, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Rows of `cols` floats: range(0) = rows, range(1) = cols. Reports bytes read + written.
void set_counters(benchmark::State& s, std::size_t elems, std::size_t bytes_per_elem) {
  s.SetItemsProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(elems));
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(elems * bytes_per_elem));
}

template <bool Ref>
void BM_Exp(benchmark::State& s) {
  const auto n = static_cast<std::size_t>(s.range(0));
  auto x = data(n, 10.0f, 1);
  std::vector<float> y(n);
  for (auto _ : s) {
    if (Ref) ek::ref::exp(x.data(), y.data(), n);
    else ek::exp(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, n, 8);
}
BENCHMARK(BM_Exp<false>)->Name("BM_Exp")->Arg(4096)->Arg(65536);
BENCHMARK(BM_Exp<true>)->Name("BM_Exp_ref")->Arg(4096)->Arg(65536);

template <bool Ref>
void BM_Softmax(benchmark::State& s) {
  const auto rows = static_cast<std::size_t>(s.range(0)), cols = static_cast<std::size_t>(s.range(1));
  auto x = data(rows * cols, 3.0f, 2);
  std::vector<float> y(rows * cols);
  for (auto _ : s) {
    for (std::size_t r = 0; r < rows; ++r) {
      if (Ref) ek::ref::softmax(x.data() + r * cols, y.data() + r * cols, cols);
      else ek::softmax(x.data() + r * cols, y.data() + r * cols, cols);
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, rows * cols, 8);
}
BENCHMARK(BM_Softmax<false>)->Name("BM_Softmax")->Args({1, 4096})->Args({64, 4096})->Args({512, 128});
BENCHMARK(BM_Softmax<true>)->Name("BM_Softmax_ref")->Args({1, 4096})->Args({64, 4096})->Args({512, 128});

template <bool Ref>
void BM_RMSNorm(benchmark::State& s) {
  const auto rows = static_cast<std::size_t>(s.range(0)), cols = static_cast<std::size_t>(s.range(1));
  auto x = data(rows * cols, 1.0f, 3);
  auto w = data(cols, 1.0f, 4);
  std::vector<float> y(rows * cols);
  for (auto _ : s) {
    if (Ref) {
      for (std::size_t r = 0; r < rows; ++r)
        ek::ref::rms_norm(x.data() + r * cols, w.data(), y.data() + r * cols, cols, 1e-6f);
    } else {
      ek::rms_norm_rows(x.data(), cols, w.data(), y.data(), cols, rows, cols, 1e-6f);
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, rows * cols, 8);
}
BENCHMARK(BM_RMSNorm<false>)->Name("BM_RMSNorm")->Args({1, 4096})->Args({512, 4096});
BENCHMARK(BM_RMSNorm<true>)->Name("BM_RMSNorm_ref")->Args({1, 4096})->Args({512, 4096});

template <bool Ref>
void BM_LayerNorm(benchmark::State& s) {
  const auto rows = static_cast<std::size_t>(s.range(0)), cols = static_cast<std::size_t>(s.range(1));
  auto x = data(rows * cols, 1.0f, 5);
  auto w = data(cols, 1.0f, 6), b = data(cols, 1.0f, 7);
  std::vector<float> y(rows * cols);
  for (auto _ : s) {
    for (std::size_t r = 0; r < rows; ++r) {
      if (Ref) ek::ref::layer_norm(x.data() + r * cols, w.data(), b.data(), y.data() + r * cols, cols, 1e-5f);
      else ek::layer_norm(x.data() + r * cols, w.data(), b.data(), y.data() + r * cols, cols, 1e-5f);
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, rows * cols, 8);
}
BENCHMARK(BM_LayerNorm<false>)->Name("BM_LayerNorm")->Args({1, 4096})->Args({512, 4096});
BENCHMARK(BM_LayerNorm<true>)->Name("BM_LayerNorm_ref")->Args({1, 4096})->Args({512, 4096});

template <class P>
inline void opaque(P& v) {
#if defined(__GNUC__) && defined(__x86_64__)
  asm volatile("" : "+x"(v.v));
#elif defined(__GNUC__) && defined(__aarch64__)
  asm volatile("" : "+w"(v.v));
#else
  benchmark::DoNotOptimize(v);
#endif
}

// The bandwidth baseline: read rows * cols floats and write as many with the same SIMD loop the
// kernels use, and nothing else (glibc's memcpy is also shown; on some VMs its `rep movsb` path is
// slow for small sizes, so the copy loop is the fairer line).
void BM_CopyReadWrite(benchmark::State& s) {
  const auto rows = static_cast<std::size_t>(s.range(0)), cols = static_cast<std::size_t>(s.range(1));
  auto x = data(rows * cols, 1.0f, 8);
  std::vector<float> y(rows * cols);
  for (auto _ : s) {
    ek::loops::map(x.data(), y.data(), rows * cols, [](auto v) {
      opaque(v);  // keeps the compiler from turning the loop into a memcpy call
      return v;
    });
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(s, rows * cols, 8);
}
BENCHMARK(BM_CopyReadWrite)->Args({1, 4096})->Args({512, 4096});

void BM_MemcpyReadWrite(benchmark::State& s) {
  const auto rows = static_cast<std::size_t>(s.range(0)), cols = static_cast<std::size_t>(s.range(1));
  auto x = data(rows * cols, 1.0f, 8);
  std::vector<float> y(rows * cols);
  for (auto _ : s) {
    std::memcpy(y.data(), x.data(), rows * cols * sizeof(float));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(s, rows * cols, 8);
}
BENCHMARK(BM_MemcpyReadWrite)->Args({1, 4096})->Args({512, 4096});

template <Activation A, bool Ref>
void BM_Act(benchmark::State& s) {
  const auto n = static_cast<std::size_t>(s.range(0));
  auto x = data(n, 3.0f, 9);
  std::vector<float> y(n);
  for (auto _ : s) {
    if (Ref) ek::ref::activation(x.data(), y.data(), n, A);
    else ek::activation(x.data(), y.data(), n, A);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, n, 8);
}
BENCHMARK(BM_Act<Activation::silu, false>)->Name("BM_SiLU")->Arg(11008);
BENCHMARK(BM_Act<Activation::silu, true>)->Name("BM_SiLU_ref")->Arg(11008);
BENCHMARK(BM_Act<Activation::gelu_erf, false>)->Name("BM_GeluErf")->Arg(11008);
BENCHMARK(BM_Act<Activation::gelu_erf, true>)->Name("BM_GeluErf_ref")->Arg(11008);
BENCHMARK(BM_Act<Activation::gelu_tanh, false>)->Name("BM_GeluTanh")->Arg(11008);
BENCHMARK(BM_Act<Activation::gelu_tanh, true>)->Name("BM_GeluTanh_ref")->Arg(11008);
BENCHMARK(BM_Act<Activation::relu2, false>)->Name("BM_ReLU2")->Arg(11008);
BENCHMARK(BM_Act<Activation::relu2, true>)->Name("BM_ReLU2_ref")->Arg(11008);

template <bool Ref>
void BM_SwiGLU(benchmark::State& s) {
  const auto n = static_cast<std::size_t>(s.range(0));
  auto g = data(n, 3.0f, 10), u = data(n, 1.0f, 11);
  std::vector<float> y(n);
  for (auto _ : s) {
    if (Ref) ek::ref::glu(g.data(), u.data(), y.data(), n, Activation::silu);
    else ek::glu(g.data(), u.data(), y.data(), n, Activation::silu);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, n, 12);
}
BENCHMARK(BM_SwiGLU<false>)->Name("BM_SwiGLU")->Arg(11008);
BENCHMARK(BM_SwiGLU<true>)->Name("BM_SwiGLU_ref")->Arg(11008);

template <bool Ref>
void BM_ResidualAdd(benchmark::State& s) {
  const auto n = static_cast<std::size_t>(s.range(0));
  auto a = data(n, 1.0f, 12), b = data(n, 1.0f, 13);
  std::vector<float> y(n);
  for (auto _ : s) {
    if (Ref) ek::ref::add(a.data(), b.data(), y.data(), n);
    else ek::add(a.data(), b.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(s, n, 12);
}
BENCHMARK(BM_ResidualAdd<false>)->Name("BM_ResidualAdd")->Arg(4096);
BENCHMARK(BM_ResidualAdd<true>)->Name("BM_ResidualAdd_ref")->Arg(4096);

}  // namespace
