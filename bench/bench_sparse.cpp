// Sparse / long-context attention patterns through the one flash kernel (ops/sparse_patterns.hpp,
// ops/dilated_attention.hpp) against dense causal attention through the same kernel, same run.
// Shapes of issue 6: T = 4K, 16K, 64K, head_dim 64, 8 heads (MHA), 2 threads.
//   dense    causal AttentionMask (skipped at 64K: ~4 TFLOP)
//   local    causal window of 512 keys (LocalPattern::causal(512))
//   bigbird  BigBird block 64, 3 random blocks per query block, bidirectional (BlockSparsePolicy)
//   longnet  LongNet branches (2048,1),(4096,2),(8192,4), causal, lse merge (dilated_attention)
// Time is wall time; the CPU column is process CPU time (both threads: robust to preemption on a
// shared machine). Counters: us_per_token = wall time / T (flat when cost is linear in T); the table in
// docs/sparse_attention.md comes from: bench_sparse --benchmark_repetitions=3
// --benchmark_report_aggregates_only=true.

#include <benchmark/benchmark.h>

#include <eigenformer/core/threading.hpp>
#include <eigenformer/ops/attention.hpp>
#include <eigenformer/ops/dilated_attention.hpp>
#include <eigenformer/ops/sparse_patterns.hpp>

#include <random>
#include <vector>

using namespace eigenformer;

namespace {

constexpr Index kHeads = 8, kDim = 64;

struct Inputs {
  Matrix<float> q, k, v, out;
  explicit Inputs(Index T) : q(T, kHeads * kDim), k(T, kHeads * kDim), v(T, kHeads * kDim), out(T, kHeads * kDim) {
    std::mt19937 g(1);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto* m : {&q, &k, &v})
      for (Index i = 0; i < m->size(); ++i) m->data()[i] = d(g);
  }
};

enum Pattern { kDense = 0, kLocal = 1, kBigBird = 2, kLongNet = 3 };

void BM_SparseAttention(benchmark::State& s) {
  const auto pattern = static_cast<Pattern>(s.range(0));
  const Index T = s.range(1);
  set_num_threads(static_cast<int>(s.range(2)));
  Inputs in(T);
  const AttentionDims dims{kHeads, kHeads, kDim, kDim, 1.0f / std::sqrt(float(kDim))};
  const KVSpan<float> span{in.k.data(), in.v.data(), kHeads * kDim, kHeads * kDim, kDim, kDim, T, 0};
  const AttentionIO io{in.q.data(), kHeads * kDim, T, 0, in.out.data(), kHeads * kDim, nullptr, 0};
  Workspace<float> ws;
  BlockLayout bigbird;
  if (pattern == kBigBird) bigbird = bigbird_layout(T, kHeads, BigBirdConfig{64, 3, 0});
  const std::vector<DilatedBranch> branches = {{2048, 1}, {4096, 2}, {8192, 4}};
  double pairs = 0;  // attended (query, key) pairs per head, for the GFLOP/s counter
  for (auto _ : s) {
    switch (pattern) {
      case kDense: flash_attention(dims, io, &span, 1, AttentionMask{}, ws); break;
      case kLocal: flash_attention(dims, io, &span, 1, LocalPattern::causal(512), ws); break;
      case kBigBird: flash_attention(dims, io, &span, 1, BlockSparsePolicy<>(bigbird), ws); break;
      case kLongNet: dilated_attention(dims, io, span, branches, true, ws); break;
    }
    benchmark::DoNotOptimize(in.out.data());
  }
  const double t = double(T);
  switch (pattern) {
    case kDense: pairs = t * (t + 1) / 2; break;
    case kLocal: pairs = t * 512; break;
    case kBigBird: pairs = double(bigbird.nnz()) / kHeads * 64 * 64; break;
    case kLongNet:
      for (const auto& b : branches) {
        const double w = double(std::min<Index>(b.segment, T)) / double(b.dilation);
        pairs += t / double(b.dilation) * (w + 1) / 2;
      }
      break;
  }
  s.counters["us_per_token"] =
      benchmark::Counter(t * 1e-6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  s.counters["GFLOP/s"] = benchmark::Counter(4.0 * pairs * kDim * kHeads * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  s.counters["keys_per_query"] = pairs / t;
  s.counters["workspace_MiB"] = double(ws.high_water() * sizeof(float)) / (1 << 20);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"pattern", "T", "threads"});
  for (long T : {4096, 16384, 65536})
    for (long p : {kDense, kLocal, kBigBird, kLongNet}) {
      if (p == kDense && T > 16384) continue;  // ~4.4 TFLOP: minutes per repetition
      b->Args({p, T, 2});
    }
  b->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_SparseAttention)->Apply(shapes);

}  // namespace
