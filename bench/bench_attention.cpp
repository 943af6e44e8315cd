// Attention benchmarks: the flash prefill kernel against a naive materialized-scores version built
// on Eigen GEMMs (same shapes, same run), prefill memory at long T, and decode against a plain
// streaming read of the same K/V bytes.
//
// GFLOP/s counts 4 T^2 d H flops for dense attention (QK^T and PV) and half of that for causal,
// for both implementations (the naive one computes the masked half anyway).

#include <benchmark/benchmark.h>

#include <eigenformer/cache/kv_cache.hpp>
#include <eigenformer/core/threading.hpp>
#include <eigenformer/kernels/loops.hpp>
#include <eigenformer/ops/attention.hpp>
#include <eigenformer/ops/softmax.hpp>

#include <sys/resource.h>

#include <random>
#include <vector>

using namespace eigenformer;

namespace {

void fill(float* p, std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (std::size_t i = 0; i < n; ++i) p[i] = d(g);
}

void gflops(benchmark::State& s, double flops) {
  s.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: {T, head_dim, heads, threads}. Causal MHA self-attention.
void BM_AttentionPrefill(benchmark::State& s) {
  const Index T = s.range(0), d = s.range(1), H = s.range(2);
  set_num_threads(static_cast<int>(s.range(3)));
  Matrix<float> q(T, H * d), k(T, H * d), v(T, H * d), out(T, H * d);
  fill(q.data(), q.size(), 1);
  fill(k.data(), k.size(), 2);
  fill(v.data(), v.size(), 3);
  const AttentionDims dims{H, H, d, d, 1.0f / std::sqrt(float(d))};
  const KVSpan<float> span{k.data(), v.data(), H * d, H * d, d, d, T, 0};
  const AttentionIO io{q.data(), H * d, T, 0, out.data(), H * d, nullptr, 0};
  Workspace<float> ws;
  for (auto _ : s) {
    flash_attention(dims, io, &span, 1, AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
  gflops(s, 4.0 * double(T) * double(T) * double(d) * double(H) / 2);
  s.counters["workspace_MiB"] = double(ws.high_water() * sizeof(float)) / (1 << 20);
}

void prefill_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "d", "H", "threads"});
  for (long threads : {1, 2})
    for (long d : {64, 128})
      for (long T : {512, 2048}) b->Args({T, d, 8, threads});
  b->Args({8192, 128, 8, 2});
  b->Args({2048, 128, 32, 2});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_AttentionPrefill)->Apply(prefill_shapes);

// The naive version: per head S = Q K^T (Eigen GEMM), scale, causal mask, row softmax, O = P V.
void BM_AttentionPrefillNaive(benchmark::State& s) {
  const Index T = s.range(0), d = s.range(1), H = s.range(2);
  set_num_threads(static_cast<int>(s.range(3)));
  Matrix<float> q(T, H * d), k(T, H * d), v(T, H * d), out(T, H * d), S(T, T);
  fill(q.data(), q.size(), 1);
  fill(k.data(), k.size(), 2);
  fill(v.data(), v.size(), 3);
  const float scale = 1.0f / std::sqrt(float(d));
  for (auto _ : s) {
    for (Index h = 0; h < H; ++h) {
      S.noalias() = (q.middleCols(h * d, d) * scale) * k.middleCols(h * d, d).transpose();
      for (Index i = 0; i < T; ++i) S.row(i).tail(T - i - 1).setConstant(-std::numeric_limits<float>::infinity());
      ops::softmax<float>(S);
      out.middleCols(h * d, d).noalias() = S * v.middleCols(h * d, d);
    }
    benchmark::DoNotOptimize(out.data());
  }
  gflops(s, 4.0 * double(T) * double(T) * double(d) * double(H) / 2);
}
void naive_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "d", "H", "threads"});
  for (long threads : {1, 2})
    for (long d : {64, 128})
      for (long T : {512, 2048}) b->Args({T, d, 8, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_AttentionPrefillNaive)->Apply(naive_shapes);

// Peak memory of a long prefill: one head, T = 32768. Reports the workspace high-water mark and the
// growth of the process's peak resident set during the run, next to T * head_dim * 4 bytes (one
// head's Q) and T^2 * 4 bytes (what a materialized score matrix would need).
void BM_AttentionPrefillMemory(benchmark::State& s) {
  const Index T = s.range(0), d = s.range(1);
  set_num_threads(2);
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  Matrix<float> q(T, d), k(T, d), v(T, d), out(T, d);
  fill(q.data(), q.size(), 1);
  fill(k.data(), k.size(), 2);
  fill(v.data(), v.size(), 3);
  const AttentionDims dims{1, 1, d, d, 1.0f / std::sqrt(float(d))};
  const KVSpan<float> span{k.data(), v.data(), d, d, d, d, T, 0};
  const AttentionIO io{q.data(), d, T, 0, out.data(), d, nullptr, 0};
  Workspace<float> ws;
  for (auto _ : s) {
    flash_attention(dims, io, &span, 1, AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  const double mib = 1 << 20;
  s.counters["workspace_MiB"] = double(ws.high_water() * sizeof(float)) / mib;
  s.counters["peak_rss_growth_MiB"] = double(after.ru_maxrss - before.ru_maxrss) * 1024 / mib;
  s.counters["Q_MiB"] = double(T * d * sizeof(float)) / mib;
  s.counters["TxT_scores_MiB"] = double(T) * double(T) * sizeof(float) / mib;
  gflops(s, 4.0 * double(T) * double(T) * double(d) / 2);
}
BENCHMARK(BM_AttentionPrefillMemory)->Args({32768, 64})->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

// Decode: one query token, GQA 32 query heads / 8 kv heads, head_dim 128, against Tk cached tokens.
// Args: {Tk, threads}. bytes_per_second = K and V bytes read per call.
template <class E>
void BM_AttentionDecode(benchmark::State& s) {
  const Index Tk = s.range(0), H = 32, Hkv = 8, d = 128;
  set_num_threads(static_cast<int>(s.range(1)));
  KVCache<E> cache(typename KVCache<E>::Config{Hkv, d, d, Tk, CacheEviction::none, 0});
  {
    const Index chunk = 1024;
    Matrix<float> kv(chunk, Hkv * d);
    for (Index t = 0; t < Tk; t += chunk) {
      fill(kv.data(), kv.size(), static_cast<unsigned>(t));
      const Index n = std::min(chunk, Tk - t);
      cache.append(kv.topRows(n), kv.topRows(n));
    }
  }
  std::array<KVSpan<E>, 3> spans;
  const std::size_t n_spans = cache.spans(spans);
  Matrix<float> q(1, H * d), out(1, H * d);
  fill(q.data(), q.size(), 9);
  const AttentionDims dims{H, Hkv, d, d, 1.0f / std::sqrt(float(d))};
  const AttentionIO io{q.data(), H * d, 1, Tk - 1, out.data(), H * d, nullptr, 0};
  Workspace<float> ws;
  for (auto _ : s) {
    flash_attention(dims, io, spans.data(), n_spans, AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(2 * Tk * Hkv * d * sizeof(E)));
}

// The baseline: sum every float of the same K and V bytes (as float) with the same thread count.
void BM_StreamRead(benchmark::State& s) {
  const Index Tk = s.range(0), Hkv = 8, d = 128;
  const int threads = static_cast<int>(s.range(1));
  set_num_threads(threads);
  std::vector<float> kv(static_cast<std::size_t>(2 * Tk * Hkv * d));
  fill(kv.data(), kv.size(), 5);
  std::vector<float> part(static_cast<std::size_t>(threads));
  for (auto _ : s) {
    const std::size_t per = kv.size() / static_cast<std::size_t>(threads);
    parallel_for(0, threads, 1, [&](Index c) {
      part[static_cast<std::size_t>(c)] =
          kernels::loops::sum(kv.data() + static_cast<std::size_t>(c) * per, per, [](auto x) { return x; });
    });
    benchmark::DoNotOptimize(part.data());
  }
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(kv.size() * sizeof(float)));
}

void decode_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"Tk", "threads"});
  for (long threads : {1, 2})
    for (long Tk : {4096, 16384, 65536}) b->Args({Tk, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_AttentionDecode<float>)->Name("BM_AttentionDecode_f32")->Apply(decode_shapes);
// The same kernel on caches that stay in L2 / L3 between calls (2 MiB and 8 MiB of K and V, one thread):
// its arithmetic rate, which bounds the DRAM-regime figures above (time / (Tk x 8 kv heads) = the cost of
// one key of one kv head for its 4 query heads).
BENCHMARK(BM_AttentionDecode<float>)
    ->Name("BM_AttentionDecodeInCache_f32")
    ->ArgNames({"Tk", "threads"})
    ->Args({256, 1})
    ->Args({1024, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AttentionDecode<f16>)->Name("BM_AttentionDecode_f16")->Apply(decode_shapes);
BENCHMARK(BM_StreamRead)->Apply(decode_shapes);

}  // namespace
