// MLA (DeepSeek multi-head latent attention) decode benchmarks, DeepSeek-V2-Lite attention shapes
// (hidden 2048, 16 heads, q_proj, kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head_dim 128):
// one new token against Tk cached tokens, in the same run:
//
//   BM_MLADecode_absorbed   MultiHeadLatentAttention::forward through a LatentCache: the cache holds
//                           576 values per token; attention is flash_attention with 1 kv head of dim
//                           576 whose value (512) aliases the key rows
//   BM_MLADecode_expanded   the same layer through a KVCache of every head's decompressed K (192) and
//                           V (128): 16 x 320 = 5120 values per token, read by flash_attention
//   BM_MHADecode            MultiHeadAttention with the same hidden size, 16 heads and head_dim 128
//                           (the dense model of this size): 16 x 256 = 4096 values per token
// and the attention alone (no projections), to separate the cache read from the ~55 MB of weights a
// whole layer reads per token:
//   BM_MLAAttention_absorbed / BM_MLAAttention_expanded
//
// Counters: GFLOP/s (the multiply-adds x 2 of projections and attention), GB/s (cache bytes read +
// weight bytes), cache_B_per_token (bytes per token per layer of the cache the variant reads).
// Args: {Tk, threads}. The whole-layer runs use a fixed number of iterations (the cache grows by one
// token per iteration, from Tk to Tk + kIters). The host is shared and noisy: compare medians of
// repeated, interleaved runs, e.g.
//   bench_mla --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//             --benchmark_report_aggregates_only=true
// On an oversubscribed machine the one-thread figures are the stable ones (a two-thread parallel
// region can wait a whole scheduler time slice for its second thread).
//
// Expected balance (V2-Lite shapes, float cache): absorbed reads 576 x 4 B per cached token and does
// 16 x (576 + 512) x 2 = 34.8 kFLOP on it (15 FLOP/B: compute-bound); expanded reads 5120 x 4 B and
// does 16 x 320 x 2 = 10.2 kFLOP (0.5 FLOP/B: bandwidth-bound). Absorbed wins by the ratio of the two
// roofs, so its speed-up grows with the FMA efficiency of the decode kernel at 16 query rows x 576.

#include <benchmark/benchmark.h>

#include <eigenformer/attention/mla.hpp>
#include <eigenformer/attention/multi_head_attention.hpp>
#include <eigenformer/core/threading.hpp>

#include <random>
#include <vector>

using namespace eigenformer;

namespace {

constexpr int kIters = 40;

void fill(float* p, std::size_t n, unsigned seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  for (std::size_t i = 0; i < n; ++i) p[i] = d(g);
}

void randomize(Linear<float>& l, unsigned seed) {
  fill(l.weight().data(), static_cast<std::size_t>(l.weight().size()), seed,
       1.0f / std::sqrt(static_cast<float>(l.in_features())));
}

const MLAConfig& lite() {
  static const MLAConfig c = MLAConfig::deepseek_v2_lite();
  return c;
}

// One V2-Lite MLA layer with random weights (shared by the benchmarks: 55 MB).
const MultiHeadLatentAttention& mla_layer() {
  static const MultiHeadLatentAttention a = [] {
    MultiHeadLatentAttention l(lite(), "bench.self_attn");
    randomize(l.q_proj(), 1);
    randomize(l.kv_a_proj_with_mqa(), 2);
    randomize(l.kv_b_proj(), 3);
    randomize(l.o_proj(), 4);
    return l;
  }();
  return a;
}

const MultiHeadAttention& mha_layer() {
  static const MultiHeadAttention a = [] {
    AttentionConfig c;
    c.hidden_size = 2048;
    c.num_attention_heads = c.num_key_value_heads = 16;
    c.head_dim = 128;
    c.rope.theta = 10000;
    MultiHeadAttention l(c, "bench.mha");
    randomize(l.q_proj(), 5);
    randomize(l.k_proj(), 6);
    randomize(l.v_proj(), 7);
    randomize(l.o_proj(), 8);
    return l;
  }();
  return a;
}

// Projection multiply-adds per token (weights read once per token in decode).
double mla_projection_macs() {
  const MultiHeadLatentAttention& a = mla_layer();
  return double(a.parameters());  // q_proj + kv_a + kv_b (absorption or decompression) + o_proj (+ norm)
}

void counters(benchmark::State& s, double flops, double bytes, double cache_bytes_per_token) {
  s.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  s.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  s.counters["cache_B_per_token"] = cache_bytes_per_token;
}

// Fills a cache with Tk tokens: one block of random rows appended repeatedly (the values do not
// change the cost; this keeps the set-up of a 32K-token expanded cache, 671 MB, short).
template <class E>
void fill_latent(LatentCache<E>& cache, Index Tk) {
  const Index chunk = 1024, w = cache.row_dim();
  Matrix<float> rows(chunk, w);
  fill(rows.data(), static_cast<std::size_t>(rows.size()), 11);
  for (Index t = 0; t < Tk; t += chunk) cache.append(rows.topRows(std::min(chunk, Tk - t)));
}

template <class E>
void fill_kv(KVCache<E>& cache, Index Tk) {
  const auto& c = cache.config();
  const Index chunk = 512;
  Matrix<float> k(chunk, c.n_kv_heads * c.head_dim), v(chunk, c.n_kv_heads * c.v_head_dim);
  fill(k.data(), static_cast<std::size_t>(k.size()), 12);
  fill(v.data(), static_cast<std::size_t>(v.size()), 13);
  for (Index t = 0; t < Tk; t += chunk) {
    const Index n = std::min(chunk, Tk - t);
    cache.append(k.topRows(n), v.topRows(n));
  }
}

template <class E>
void BM_MLADecode_absorbed(benchmark::State& s) {
  const Index Tk = s.range(0);
  set_num_threads(static_cast<int>(s.range(1)));
  const MultiHeadLatentAttention& a = mla_layer();
  LatentCache<E> cache(a.latent_cache_config<E>(Tk + kIters + 1));
  fill_latent(cache, Tk);
  Matrix<float> x(1, 2048), y(1, 2048);
  fill(x.data(), 2048, 9);
  Workspace<float> ws;
  for (auto _ : s) {
    a.forward(x, y, cache, ws, MLAPath::absorbed);
    benchmark::DoNotOptimize(y.data());
  }
  const double H = 16, W = 576, r = 512;
  const double flops = 2 * (mla_projection_macs() + H * double(Tk) * (W + r));
  counters(s, flops, double(mla_projection_macs()) * 4 + double(Tk) * W * sizeof(E), W * sizeof(E));
}

template <class E>
void BM_MLADecode_expanded(benchmark::State& s) {
  const Index Tk = s.range(0);
  set_num_threads(static_cast<int>(s.range(1)));
  const MultiHeadLatentAttention& a = mla_layer();
  KVCache<E> cache(a.expanded_cache_config<E>(Tk + kIters + 1));
  fill_kv(cache, Tk);
  Matrix<float> x(1, 2048), y(1, 2048);
  fill(x.data(), 2048, 9);
  Workspace<float> ws;
  for (auto _ : s) {
    a.forward(x, y, cache, ws);
    benchmark::DoNotOptimize(y.data());
  }
  const double H = 16, dq = 192, dv = 128;
  const double flops = 2 * (mla_projection_macs() + H * double(Tk) * (dq + dv));
  counters(s, flops, double(mla_projection_macs()) * 4 + double(Tk) * H * (dq + dv) * sizeof(E),
           H * (dq + dv) * sizeof(E));
}

template <class E>
void BM_MHADecode(benchmark::State& s) {
  const Index Tk = s.range(0);
  set_num_threads(static_cast<int>(s.range(1)));
  const MultiHeadAttention& a = mha_layer();
  KVCache<E> cache(typename KVCache<E>::Config{16, 128, 128, Tk + kIters + 1, CacheEviction::none, 0});
  fill_kv(cache, Tk);
  Matrix<float> x(1, 2048), y(1, 2048);
  fill(x.data(), 2048, 9);
  Workspace<float> ws;
  for (auto _ : s) {
    a.forward(x, y, cache, ws);
    benchmark::DoNotOptimize(y.data());
  }
  const double H = 16, d = 128, params = double(a.parameters());
  counters(s, 2 * (params + H * double(Tk) * 2 * d), params * 4 + double(Tk) * H * 2 * d * sizeof(E),
           H * 2 * d * sizeof(E));
}

// Attention alone: the absorbed kernel call (16 query heads of dim 576 against the latent rows, value
// = first 512 values of each row) ...
template <class E>
void BM_MLAAttention_absorbed(benchmark::State& s) {
  const Index Tk = s.range(0), H = 16, r = 512, W = 576;
  set_num_threads(static_cast<int>(s.range(1)));
  LatentCache<E> cache({r, W - r, Tk});
  fill_latent(cache, Tk);
  Matrix<float> q(1, H * W), out(1, H * r);
  fill(q.data(), static_cast<std::size_t>(q.size()), 10, 0.05f);
  const AttentionDims dims{H, 1, W, r, static_cast<float>(mla_layer().scale())};
  const AttentionIO io{q.data(), H * W, 1, Tk - 1, out.data(), H * r, nullptr, 0};
  const KVSpan<E> span = cache.span();
  Workspace<float> ws;
  for (auto _ : s) {
    flash_attention(dims, io, &span, 1, AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
  counters(s, 2 * double(H) * double(Tk) * double(W + r), double(Tk) * W * sizeof(E), W * sizeof(E));
}

// ... and the expanded one (16 heads, K 192, V 128, from a KVCache).
template <class E>
void BM_MLAAttention_expanded(benchmark::State& s) {
  const Index Tk = s.range(0), H = 16, dq = 192, dv = 128;
  set_num_threads(static_cast<int>(s.range(1)));
  KVCache<E> cache(typename KVCache<E>::Config{H, dq, dv, Tk, CacheEviction::none, 0});
  fill_kv(cache, Tk);
  std::array<KVSpan<E>, 3> spans;
  const std::size_t n = cache.spans(spans);
  Matrix<float> q(1, H * dq), out(1, H * dv);
  fill(q.data(), static_cast<std::size_t>(q.size()), 10, 0.05f);
  const AttentionDims dims{H, H, dq, dv, static_cast<float>(mla_layer().scale())};
  const AttentionIO io{q.data(), H * dq, 1, Tk - 1, out.data(), H * dv, nullptr, 0};
  Workspace<float> ws;
  for (auto _ : s) {
    flash_attention(dims, io, spans.data(), n, AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
  counters(s, 2 * double(H) * double(Tk) * double(dq + dv), double(Tk) * H * (dq + dv) * sizeof(E),
           H * (dq + dv) * sizeof(E));
}

void layer_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"Tk", "threads"});
  for (long threads : {1, 2})
    for (long Tk : {4096, 16384, 32768}) b->Args({Tk, threads});
  b->Iterations(kIters)->UseRealTime()->Unit(benchmark::kMillisecond);
}
void attention_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"Tk", "threads"});
  for (long threads : {1, 2})
    for (long Tk : {4096, 16384, 32768}) b->Args({Tk, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_MLADecode_absorbed<float>)->Name("BM_MLADecode_absorbed_f32")->Apply(layer_shapes);
BENCHMARK(BM_MLADecode_expanded<float>)->Name("BM_MLADecode_expanded_f32")->Apply(layer_shapes);
BENCHMARK(BM_MHADecode<float>)->Name("BM_MHADecode_f32")->Apply(layer_shapes);
BENCHMARK(BM_MLADecode_absorbed<f16>)->Name("BM_MLADecode_absorbed_f16")->Apply(layer_shapes);
BENCHMARK(BM_MLADecode_expanded<f16>)->Name("BM_MLADecode_expanded_f16")->Apply(layer_shapes);
BENCHMARK(BM_MHADecode<f16>)->Name("BM_MHADecode_f16")->Apply(layer_shapes);
BENCHMARK(BM_MLAAttention_absorbed<float>)->Name("BM_MLAAttention_absorbed_f32")->Apply(attention_shapes);
BENCHMARK(BM_MLAAttention_expanded<float>)->Name("BM_MLAAttention_expanded_f32")->Apply(attention_shapes);
BENCHMARK(BM_MLAAttention_absorbed<f16>)->Name("BM_MLAAttention_absorbed_f16")->Apply(attention_shapes);
BENCHMARK(BM_MLAAttention_expanded<f16>)->Name("BM_MLAAttention_expanded_f16")->Apply(attention_shapes);

}  // namespace
