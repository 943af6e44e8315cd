// eigenformer next to PyTorch (libtorch, Debian's libtorch-dev) on the same shapes, in one binary
// and one run, one thread each, float32:
//   - Linear 4096 -> 4096 at 1 and 128 tokens: Linear<float>::forward vs torch::linear;
//   - SwiGLU MLP 4096 -> 11008 -> 4096 at 1 and 32 tokens: MLP<float>::forward vs
//     torch::linear(silu(linear(x, Wg)) * linear(x, Wu), Wd);
//   - causal attention prefill, 32 heads of 128, T = 2048: flash_attention vs PyTorch eager attention
//     (matmul, causal mask, softmax, matmul: libtorch 1.13 has no scaled_dot_product_attention);
//   - decode: 1 query, 32 query heads / 8 K/V heads of 128, 4096 cached tokens: flash_attention over the
//     KV cache vs eager (repeat_interleave of K/V as HF's repeat_kv, matmul, softmax, matmul).
// Ratios are the peer's time over eigenformer's (> 1: eigenformer faster). Built only where CMake
// finds Torch (bench/CMakeLists.txt).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <eigenformer/cache/kv_cache.hpp>
#include <eigenformer/core/threading.hpp>
#include <eigenformer/ffn/mlp.hpp>
#include <eigenformer/linear/linear.hpp>
#include <eigenformer/ops/attention.hpp>

#include <cmath>
#include <cstring>

namespace ef = eigenformer;

namespace {

// The same values in both libraries: a torch tensor and an Eigen matrix over one buffer copy.
torch::Tensor randn(std::initializer_list<std::int64_t> shape, std::uint64_t seed, double scale = 1.0) {
  torch::manual_seed(seed);
  return (torch::randn(shape, torch::kFloat32) * scale).contiguous();
}
ef::Matrix<float> to_eigen(const torch::Tensor& t) {
  const auto r = t.size(0), c = t.numel() / t.size(0);
  ef::Matrix<float> m(r, c);
  std::memcpy(m.data(), t.data_ptr<float>(), sizeof(float) * std::size_t(t.numel()));
  return m;
}

void one_thread() {
  ef::set_num_threads(1);
  torch::set_num_threads(1);
}

// ---- Linear -------------------------------------------------------------------------------------
void BM_Linear_eigenformer(benchmark::State& s) {
  one_thread();
  const auto T = s.range(0);
  const torch::Tensor w = randn({4096, 4096}, 1, 1.0 / 64), x = randn({T, 4096}, 2);
  const ef::Linear<float> lin(to_eigen(w), ef::Vector<float>());
  const ef::Matrix<float> xe = to_eigen(x);
  ef::Matrix<float> y(T, 4096);
  for (auto _ : s) {
    lin.forward(xe, y);
    benchmark::DoNotOptimize(y.data());
  }
}
void BM_Linear_torch(benchmark::State& s) {
  one_thread();
  torch::NoGradGuard ng;
  const auto T = s.range(0);
  const torch::Tensor w = randn({4096, 4096}, 1, 1.0 / 64), x = randn({T, 4096}, 2);
  for (auto _ : s) {
    auto y = torch::linear(x, w);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
}
BENCHMARK(BM_Linear_eigenformer)->ArgName("tokens")->Arg(1)->Arg(128)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Linear_torch)->ArgName("tokens")->Arg(1)->Arg(128)->Unit(benchmark::kMicrosecond)->UseRealTime();

// ---- SwiGLU MLP ---------------------------------------------------------------------------------
struct MlpWeights {
  torch::Tensor wg = randn({11008, 4096}, 3, 1.0 / 64), wu = randn({11008, 4096}, 4, 1.0 / 64),
                wd = randn({4096, 11008}, 5, 1.0 / 105);
};
const MlpWeights& mlp_weights() {
  static const MlpWeights w;
  return w;
}
void BM_MLP_eigenformer(benchmark::State& s) {
  one_thread();
  const auto T = s.range(0);
  const MlpWeights& w = mlp_weights();
  ef::MLP<float>::Config c;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  const ef::MLP<float> mlp(c, ef::Linear<float>(to_eigen(w.wg), {}), ef::Linear<float>(to_eigen(w.wu), {}),
                           ef::Linear<float>(to_eigen(w.wd), {}));
  const ef::Matrix<float> x = to_eigen(randn({T, 4096}, 6));
  ef::Matrix<float> y(T, 4096);
  ef::Workspace<float> ws;
  for (auto _ : s) {
    mlp.forward(x, y, ws);
    benchmark::DoNotOptimize(y.data());
  }
}
void BM_MLP_torch(benchmark::State& s) {
  one_thread();
  torch::NoGradGuard ng;
  const auto T = s.range(0);
  const MlpWeights& w = mlp_weights();
  const torch::Tensor x = randn({T, 4096}, 6);
  for (auto _ : s) {
    auto y = torch::linear(torch::silu(torch::linear(x, w.wg)) * torch::linear(x, w.wu), w.wd);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
}
BENCHMARK(BM_MLP_eigenformer)->ArgName("tokens")->Arg(1)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MLP_torch)->ArgName("tokens")->Arg(1)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- Attention prefill (causal, 32 heads x 128, T = 2048) ---------------------------------------
constexpr std::int64_t kH = 32, kHkv = 8, kD = 128;

void BM_AttentionPrefill_eigenformer(benchmark::State& s) {
  one_thread();
  const std::int64_t T = s.range(0);
  const ef::Matrix<float> q = to_eigen(randn({T, kH * kD}, 7)), k = to_eigen(randn({T, kH * kD}, 8)),
                          v = to_eigen(randn({T, kH * kD}, 9));
  ef::Matrix<float> out(T, kH * kD);
  const ef::AttentionDims dims{kH, kH, kD, kD, 1.0f / std::sqrt(float(kD))};
  const ef::KVSpan<float> span{k.data(), v.data(), kH * kD, kH * kD, kD, kD, T, 0};
  const ef::AttentionIO io{q.data(), kH * kD, T, 0, out.data(), kH * kD, nullptr, 0};
  ef::Workspace<float> ws;
  for (auto _ : s) {
    ef::flash_attention(dims, io, &span, 1, ef::AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
}
void BM_AttentionPrefill_torch(benchmark::State& s) {
  one_thread();
  torch::NoGradGuard ng;
  const std::int64_t T = s.range(0);
  auto heads = [T](const torch::Tensor& t) { return t.view({T, kH, kD}).transpose(0, 1); };  // [H, T, d]
  const torch::Tensor q = heads(randn({T, kH * kD}, 7)), k = heads(randn({T, kH * kD}, 8)),
                      v = heads(randn({T, kH * kD}, 9));
  const torch::Tensor mask = torch::ones({T, T}, torch::kBool).triu(1);
  for (auto _ : s) {
    auto sc = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(kD));
    sc.masked_fill_(mask, -std::numeric_limits<float>::infinity());
    auto o = torch::matmul(torch::softmax(sc, -1), v).transpose(0, 1).reshape({T, kH * kD});
    benchmark::DoNotOptimize(o.data_ptr<float>());
  }
}
BENCHMARK(BM_AttentionPrefill_eigenformer)->ArgName("T")->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionPrefill_torch)->ArgName("T")->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- Attention decode (1 query, GQA 32 / 8 heads of 128, Tk cached tokens) ----------------------
void BM_AttentionDecode_eigenformer(benchmark::State& s) {
  one_thread();
  const std::int64_t Tk = s.range(0);
  ef::KVCache<float> cache({kHkv, kD, kD, Tk});
  cache.append(to_eigen(randn({Tk, kHkv * kD}, 10)), to_eigen(randn({Tk, kHkv * kD}, 11)));
  std::array<ef::KVSpan<float>, 3> spans;
  const std::size_t n = cache.spans(spans);
  const ef::Matrix<float> q = to_eigen(randn({1, kH * kD}, 12));
  ef::Matrix<float> out(1, kH * kD);
  const ef::AttentionDims dims{kH, kHkv, kD, kD, 1.0f / std::sqrt(float(kD))};
  const ef::AttentionIO io{q.data(), kH * kD, 1, Tk - 1, out.data(), kH * kD, nullptr, 0};
  ef::Workspace<float> ws;
  for (auto _ : s) {
    ef::flash_attention(dims, io, spans.data(), n, ef::AttentionMask{}, ws);
    benchmark::DoNotOptimize(out.data());
  }
}
void BM_AttentionDecode_torch(benchmark::State& s) {
  one_thread();
  torch::NoGradGuard ng;
  const std::int64_t Tk = s.range(0);
  // HF's cache layout [kv_heads, Tk, d]; repeat_kv to every query head, as the eager path does.
  const torch::Tensor k = randn({Tk, kHkv * kD}, 10).view({Tk, kHkv, kD}).transpose(0, 1).contiguous(),
                      v = randn({Tk, kHkv * kD}, 11).view({Tk, kHkv, kD}).transpose(0, 1).contiguous();
  const torch::Tensor q = randn({1, kH * kD}, 12).view({1, kH, kD}).transpose(0, 1);  // [H, 1, d]
  for (auto _ : s) {
    auto kr = k.repeat_interleave(kH / kHkv, 0), vr = v.repeat_interleave(kH / kHkv, 0);
    auto sc = torch::matmul(q, kr.transpose(-2, -1)) / std::sqrt(double(kD));
    auto o = torch::matmul(torch::softmax(sc, -1), vr);
    benchmark::DoNotOptimize(o.data_ptr<float>());
  }
}
BENCHMARK(BM_AttentionDecode_eigenformer)->ArgName("cached")->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_AttentionDecode_torch)->ArgName("cached")->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
