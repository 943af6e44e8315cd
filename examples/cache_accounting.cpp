// cache_accounting: how many bytes the attention cache of one model takes per token, per layer and
// for a whole context, under MHA, GQA-8, MQA and DeepSeek's multi-head latent attention (MLA), in
// float and f16.
//
// The model is DeepSeek-V2-Lite-like by default (hidden 2048, 16 heads of 128, 27 layers; MLA with
// kv_lora_rank 512 and a 64-dim decoupled RoPE key) or DeepSeek-V3-like (--model v3: hidden 7168, 128
// heads, 61 layers). The MLA rows come from the layer's own configuration
// (MultiHeadLatentAttention::resolve + cache_footprints); every figure is cross-checked against the
// bytes_per_token() of the cache classes that would hold it (KVCache, LatentCache), and one real
// LatentCache<f16> is allocated to show its storage matches.
//
// Usage: cache_accounting [--model v2-lite|v3] [--context TOKENS]

#include <eigenformer/attention/mla.hpp>
#include <eigenformer/cache/kv_cache.hpp>
#include <eigenformer/cache/latent_cache.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace eigenformer;

namespace {

struct Model {
  const char* name;
  MLAConfig mla;
  Index layers;
  Index head_dim;  // of the MHA / GQA / MQA variants: hidden / heads
};

template <class E>
std::vector<CacheFootprint> footprints(const Model& m) {
  const Index H = m.mla.num_attention_heads, d = m.head_dim;
  const MLAConfig c = MultiHeadLatentAttention::resolve(m.mla);
  std::vector<CacheFootprint> rows = {
      kv_cache_footprint("MHA", H, d, d, sizeof(E)),
      kv_cache_footprint("GQA-8", 8, d, d, sizeof(E)),
      kv_cache_footprint("MQA", 1, d, d, sizeof(E)),
      latent_cache_footprint(c.kv_lora_rank, c.qk_rope_head_dim, sizeof(E), "MLA"),
      kv_cache_footprint("MLA expanded", H, c.qk_head_dim(), c.v_head_dim, sizeof(E)),
  };
  // Cross-check against the cache classes themselves.
  const bool ok = rows[0].bytes_per_token() == KVCache<E>::bytes_per_token(H, d, d) &&
                  rows[1].bytes_per_token() == KVCache<E>::bytes_per_token(8, d, d) &&
                  rows[2].bytes_per_token() == KVCache<E>::bytes_per_token(1, d, d) &&
                  rows[3].bytes_per_token() == LatentCache<E>::bytes_per_token(c.kv_lora_rank, c.qk_rope_head_dim) &&
                  rows[4].bytes_per_token() == KVCache<E>::bytes_per_token(H, c.qk_head_dim(), c.v_head_dim);
  if (!ok) {
    std::fprintf(stderr, "accounting disagrees with the cache classes\n");
    std::exit(1);
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) try {
  Index context = 32768;
  std::string model = "v2-lite";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--context") && i + 1 < argc) context = std::atol(argv[++i]);
    else if (!std::strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--model v2-lite|v3] [--context TOKENS]\n", argv[0]);
      return 2;
    }
  }
  Model m;
  if (model == "v2-lite") {
    m = {"DeepSeek-V2-Lite-like (hidden 2048, 16 heads x 128, 27 layers)", MLAConfig::deepseek_v2_lite(), 27, 128};
  } else if (model == "v3") {
    m = {"DeepSeek-V3-like (hidden 7168, 128 heads x 128, 61 layers)", MLAConfig::deepseek_v3(), 61, 128};
  } else {
    std::fprintf(stderr, "unknown --model %s (v2-lite or v3)\n", model.c_str());
    return 2;
  }
  if (context < 1) {
    std::fprintf(stderr, "--context must be >= 1\n");
    return 2;
  }

  std::printf("Attention cache of %s, context %ld tokens\n\n", m.name, static_cast<long>(context));
  const auto f32 = footprints<float>(m);
  const auto h16 = footprints<f16>(m);
  std::printf("float32 (4 bytes per value):\n%s\n", format_footprints(f32, context, m.layers).c_str());
  std::printf("f16 / bf16 (2 bytes per value):\n%s\n", format_footprints(h16, context, m.layers).c_str());

  const CacheFootprint &mha = f32[0], &gqa = f32[1], &mqa = f32[2], &mla = f32[3], &mla_exp = f32[4];
  std::printf("MLA caches %ld values per token per layer (%s): %.1fx fewer than MHA (%ld), %.1fx fewer than\n"
              "GQA-8 (%ld), %.1fx fewer than its own decompressed K/V (%s = %ld), %.2fx as many as MQA (%ld).\n",
              long(mla.values_per_token), mla.layout.c_str(), double(mha.values_per_token) / double(mla.values_per_token),
              long(mha.values_per_token), double(gqa.values_per_token) / double(mla.values_per_token),
              long(gqa.values_per_token), double(mla_exp.values_per_token) / double(mla.values_per_token),
              mla_exp.layout.c_str(), long(mla_exp.values_per_token),
              double(mla.values_per_token) / double(mqa.values_per_token), long(mqa.values_per_token));

  // One real cache: its storage is what the table says.
  const MLAConfig c = MultiHeadLatentAttention::resolve(m.mla);
  LatentCache<f16> cache({c.kv_lora_rank, c.qk_rope_head_dim, context});
  std::printf("\nA LatentCache<f16> for %ld tokens (one layer) allocates %.2f MiB = %ld x %zu bytes.\n",
              static_cast<long>(context), double(cache.bytes()) / double(1 << 20), static_cast<long>(context),
              LatentCache<f16>::bytes_per_token(c.kv_lora_rank, c.qk_rope_head_dim));
  if (cache.bytes() != h16[3].bytes_per_token() * static_cast<std::size_t>(context)) return 1;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
