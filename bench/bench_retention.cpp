// RetNet retention benchmarks (retention/multiscale_retention.hpp), in one run:
//   - decode: one token through the whole MultiScaleRetention layer (projections + recurrent step +
//     group norm + gate + out_proj) after 1K / 8K / 64K tokens of history, next to one token through
//     MultiHeadAttention of the same width with a KV cache holding the same history. The retention
//     state does not depend on the history (it is set to a state at that position; its cost is
//     O(H dk dv)), the attention cache does.
//   - the same decode interleaved: each iteration decodes one token at each of the three histories in
//     turn and times them separately, so host noise (a shared 2-core machine) hits all three alike;
//     the counter spread = max / min - 1 of the three mean times is the flatness figure;
//   - the recurrent step kernel alone on the same state;
//   - prefill: the chunkwise form (chunk 512) at T = 2K / 8K / 32K against the parallel form.
// Width: embed 1024, 8 heads; retention value_dim 2048 (RetNet's 2x), attention head_dim 128.
#include <benchmark/benchmark.h>

#include <eigenformer/attention/multi_head_attention.hpp>
#include <eigenformer/cache/kv_cache.hpp>
#include <eigenformer/core/threading.hpp>
#include <eigenformer/kernels/retention.hpp>
#include <eigenformer/retention/multiscale_retention.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

using namespace eigenformer;

namespace {

constexpr Index kDecodeE = 1024, kDecodeHeads = 8;

void fill(float* p, Index n, unsigned seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  for (Index i = 0; i < n; ++i) p[i] = d(g);
}

template <class L>
void random_linear(L& l, unsigned seed) {
  fill(l.weight().data(), l.weight().size(), seed, 1.0f / std::sqrt(float(l.in_features())));
}

MultiScaleRetention<float> make_retention(Index E, Index V, Index H) {
  RetentionConfig c;
  c.embed_dim = E;
  c.value_dim = V;
  c.num_heads = H;
  MultiScaleRetention<float> m(c);
  random_linear(m.q_proj(), 1);
  random_linear(m.k_proj(), 2);
  random_linear(m.v_proj(), 3);
  random_linear(m.g_proj(), 4);
  random_linear(m.out_proj(), 5);
  return m;
}

// The state after `history` tokens: position and the running scale S = sum_{m < history} gamma^m.
RetentionState<float> state_at(const MultiScaleRetention<float>& m, Index history) {
  auto st = m.make_state();
  fill(st.kv.data(), st.kv.size(), 7, 0.1f);
  st.position = history;
  for (Index h = 0; h < kDecodeHeads; ++h) {
    const double g = std::exp(m.log_decays()[static_cast<std::size_t>(h)]);
    st.scale(h) = static_cast<float>((1 - std::pow(g, double(history))) / (1 - g));
  }
  return st;
}

// Args: {history, threads}.
void BM_RetentionDecode(benchmark::State& s) {
  const Index history = s.range(0);
  set_num_threads(static_cast<int>(s.range(1)));
  const auto m = make_retention(kDecodeE, 2 * kDecodeE, kDecodeHeads);
  auto st = state_at(m, history);
  Matrix<float> x(1, kDecodeE), y(1, kDecodeE);
  fill(x.data(), x.size(), 8);
  Workspace<float> ws;
  for (auto _ : s) {
    m.forward_recurrent(x, y, st, ws);
    st.position = history;  // keep the history fixed (the cost does not depend on it anyway)
    benchmark::DoNotOptimize(y.data());
  }
  s.counters["state_MiB"] = double(st.bytes()) / (1 << 20);
}

// Decode at 1K, 8K and 64K tokens of history, interleaved (see the file comment); one thread.
void BM_RetentionDecodeInterleaved(benchmark::State& s) {
  set_num_threads(1);
  const auto m = make_retention(kDecodeE, 2 * kDecodeE, kDecodeHeads);
  const Index histories[3] = {1024, 8192, 65536};
  RetentionState<float> st[3] = {state_at(m, histories[0]), state_at(m, histories[1]), state_at(m, histories[2])};
  Matrix<float> x(1, kDecodeE), y(1, kDecodeE);
  fill(x.data(), x.size(), 8);
  Workspace<float> ws;
  double total[3] = {0, 0, 0};
  for (auto _ : s) {
    for (int i = 0; i < 3; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      m.forward_recurrent(x, y, st[i], ws);
      benchmark::DoNotOptimize(y.data());
      total[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      st[i].position = histories[i];
    }
  }
  const double n = static_cast<double>(s.iterations());
  s.counters["us_1K"] = 1e6 * total[0] / n;
  s.counters["us_8K"] = 1e6 * total[1] / n;
  s.counters["us_64K"] = 1e6 * total[2] / n;
  s.counters["spread"] = *std::max_element(total, total + 3) / *std::min_element(total, total + 3) - 1;
}
BENCHMARK(BM_RetentionDecodeInterleaved)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_AttentionDecode(benchmark::State& s) {
  const Index history = s.range(0);
  set_num_threads(static_cast<int>(s.range(1)));
  AttentionConfig c;
  c.hidden_size = kDecodeE;
  c.num_attention_heads = kDecodeHeads;
  MultiHeadAttention a(c);
  random_linear(a.q_proj(), 1);
  random_linear(a.k_proj(), 2);
  random_linear(a.v_proj(), 3);
  random_linear(a.o_proj(), 5);
  const Index d = kDecodeE / kDecodeHeads;
  // A sliding-window cache of exactly `history` tokens: each decoded token evicts the oldest, so every
  // iteration attends to the same number of keys.
  KVCache<float> cache(KVCache<float>::Config{kDecodeHeads, d, d, history, CacheEviction::sliding_window, 0});
  {
    const Index chunk = 1024;
    Matrix<float> kv(chunk, kDecodeE);
    for (Index t = 0; t < history; t += chunk) {
      fill(kv.data(), kv.size(), static_cast<unsigned>(t));
      const Index n = std::min(chunk, history - t);
      cache.append(kv.topRows(n), kv.topRows(n));
    }
  }
  Matrix<float> x(1, kDecodeE), y(1, kDecodeE);
  fill(x.data(), x.size(), 8);
  Workspace<float> ws;
  for (auto _ : s) {
    a.forward(x, y, cache, ws);
    benchmark::DoNotOptimize(y.data());
  }
  s.counters["cache_MiB"] = double(cache.bytes()) / (1 << 20);
}

void decode_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"history", "threads"});
  for (long h : {1024, 8192, 65536}) b->Args({h, 1});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_RetentionDecode)->Apply(decode_shapes);
BENCHMARK(BM_AttentionDecode)->Apply(decode_shapes);

// The recurrent step alone (kernels::retention_step over the 8 heads of the decode layer's state,
// dk 128, dv 256: 1 MiB of state read and written per token), without the projections.
void BM_RetentionStepKernel(benchmark::State& s) {
  set_num_threads(1);
  const Index H = kDecodeHeads, dk = kDecodeE / H, dv = 2 * kDecodeE / H;
  Matrix<float> S(H * dk, dv), q(1, H * dk), k(1, H * dk), v(1, H * dv), o(1, H * dv);
  fill(S.data(), S.size(), 1, 0.1f);
  fill(q.data(), q.size(), 2);
  fill(k.data(), k.size(), 3);
  fill(v.data(), v.size(), 4);
  for (auto _ : s) {
    for (Index h = 0; h < H; ++h)
      kernels::retention_step(q.data() + h * dk, k.data() + h * dk, v.data() + h * dv, S.data() + h * dk * dv,
                              static_cast<std::size_t>(dv), o.data() + h * dv, static_cast<std::size_t>(dk),
                              static_cast<std::size_t>(dv), 0.99f, 0.1f);
    benchmark::DoNotOptimize(o.data());
  }
  s.SetBytesProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(2 * S.size() * sizeof(float)));
}
BENCHMARK(BM_RetentionStepKernel)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Prefill: embed 256, value 512, 4 heads (dk 64, dv 128); whole layer including projections.
// Args: {T, form (0 chunkwise with chunk 512, 1 parallel)}; 1 thread (stable on a shared machine).
void BM_RetentionPrefill(benchmark::State& s) {
  const Index T = s.range(0), E = 256;
  set_num_threads(1);
  const auto m = make_retention(E, 2 * E, 4);
  Matrix<float> x(T, E), y(T, E);
  fill(x.data(), x.size(), 9);
  Workspace<float> ws;
  for (auto _ : s) {
    if (s.range(1) == 0) {
      m.forward_chunkwise(x, y, ws, 512);
    } else {
      m.forward_parallel(x, y, ws);
    }
    benchmark::DoNotOptimize(y.data());
  }
  s.SetItemsProcessed(static_cast<int64_t>(s.iterations()) * static_cast<int64_t>(T));  // tokens/s
  s.counters["workspace_MiB"] = double(ws.high_water() * sizeof(float)) / (1 << 20);
}
BENCHMARK(BM_RetentionPrefill)
    ->ArgNames({"T", "parallel"})
    ->Args({2048, 0})
    ->Args({8192, 0})
    ->Args({32768, 0})
    ->Args({2048, 1})
    ->Args({8192, 1})
    ->Args({32768, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
