// attention_quickstart: a Llama-style GQA attention layer, end to end.
//
//   1. write random weights under Hugging Face Llama names to a safetensors file;
//   2. load the layer from it (RoPE with Llama-3 scaling, 8 query heads sharing 2 kv heads);
//   3. run a prompt through it at once (prefill), then again token by token through a KV cache,
//      and show both give the same outputs;
//   4. print timings and the cache's size, in float and in f16.
//
// Usage: attention_quickstart [--tokens N] [--out FILE]

#include <eigenformer/eigenformer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

using namespace eigenformer;

int main(int argc, char** argv) try {
  Index tokens = 256;
  std::string path = "attention_quickstart.safetensors";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = std::atol(argv[++i]);
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) path = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--tokens N] [--out FILE]\n", argv[0]);
      return 2;
    }
  }
  const Index hidden = 512, heads = 8, kv_heads = 2, head_dim = 64;

  // 1. Weights with HF Llama names.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  auto random = [&](Index r, Index c) {
    Matrix<float> m(r, c);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
  };
  {
    SafeTensorsWriter w;
    w.add("model.layers.0.self_attn.q_proj.weight", random(heads * head_dim, hidden));
    w.add("model.layers.0.self_attn.k_proj.weight", random(kv_heads * head_dim, hidden));
    w.add("model.layers.0.self_attn.v_proj.weight", random(kv_heads * head_dim, hidden));
    w.add("model.layers.0.self_attn.o_proj.weight", random(hidden, heads * head_dim));
    w.write(path);
  }

  // 2. The configuration, with HF's names in the comments.
  AttentionConfig cfg;
  cfg.hidden_size = hidden;                 // hidden_size
  cfg.num_attention_heads = heads;          // num_attention_heads
  cfg.num_key_value_heads = kv_heads;       // num_key_value_heads
  cfg.head_dim = head_dim;                  // head_dim
  cfg.rope.theta = 500000;                  // rope_theta
  cfg.rope.scaling.type = RopeType::llama3; // rope_scaling = {"rope_type": "llama3", ...}
  cfg.rope.scaling.factor = 8;
  cfg.rope.scaling.original_max_position_embeddings = 8192;
  cfg.rope.max_position_embeddings = 131072;
  const SafeTensors st = SafeTensors::open(path);
  const MultiHeadAttention attn = MultiHeadAttention::load(st, "model.layers.0.self_attn", cfg);
  std::printf("eigenformer %s (%s, %d threads): GQA %ld/%ld heads x %ld, %ld parameters, from %s\n",
              EIGENFORMER_VERSION_STRING, isa_name(), num_threads(), long(heads), long(kv_heads), long(head_dim),
              long(attn.parameters()), path.c_str());

  // 3. Prefill vs token-by-token decoding through a cache.
  Matrix<float> x(tokens, hidden), full(tokens, hidden), step(tokens, hidden);
  std::normal_distribution<float> act(0.0f, 1.0f);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = act(rng);
  Workspace<float> ws;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };

  auto t0 = now();
  attn.forward(x, full, ws);
  auto t1 = now();
  KVCache<float> cache({kv_heads, head_dim, head_dim, tokens});
  for (Index t = 0; t < tokens; ++t) attn.forward(x.middleRows(t, 1), step.middleRows(t, 1), cache, ws);
  auto t2 = now();
  std::printf("prefill of %ld tokens: %.2f ms; %ld decode steps: %.3f ms per token\n", long(tokens), ms(t0, t1),
              long(tokens), ms(t1, t2) / double(tokens));
  std::printf("decode == prefill: max |difference| = %.2e\n", double((step - full).cwiseAbs().maxCoeff()));

  // 4. A half-precision cache: half the bytes, outputs within f16 rounding of the float ones.
  KVCache<f16> half({kv_heads, head_dim, head_dim, tokens});
  Matrix<float> hstep(tokens, hidden);
  for (Index t = 0; t < tokens; ++t) attn.forward(x.middleRows(t, 1), hstep.middleRows(t, 1), half, ws);
  std::printf("cache bytes: float %zu, f16 %zu (%zu per token); f16 vs float: max |difference| = %.2e\n",
              cache.bytes(), half.bytes(), KVCache<f16>::bytes_per_token(kv_heads, head_dim, head_dim),
              double((hstep - step).cwiseAbs().maxCoeff()));
  return 0;
} catch (const eigenformer::Error& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
