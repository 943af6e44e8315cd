// retention_memory: the inference memory of a RetNet (O(1) recurrent state per layer), of YOCO
// (gated-retention states, or with the sliding-window self-decoder a 1024-row K/V ring per self layer,
// plus ONE global K/V cache shared by every cross-decoder layer) and of a standard decoder of the same size (a K/V cache per layer), at 4K, 32K and 128K tokens of context.
//
// The model is Llama-3-8B-sized: width 4096, 32 layers, 32 attention heads of 128 with 8 K/V heads
// (GQA), FFN 14336. YOCO splits the 32 layers as the reference does (YOCOConfig::from_args: 16
// gated-retention self-decoder layers with 32 heads, 16 cross-decoder layers); RetNet uses 16
// retention heads and value_dim = 2 x width (torchscale's default ratio). K/V caches are counted in
// f16 (2 bytes an element), the recurrent states in float (as the library keeps them). The state
// figures are cross-checked against the bytes() of the state objects the layers would use.
//
// Usage: retention_memory [--context TOKENS]   (adds one context length to the table)

#include <eigenformer/retention/multiscale_retention.hpp>
#include <eigenformer/retention/yoco.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace eigenformer;

namespace {

double mib(std::size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> contexts = {4096, 32768, 131072};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--context") == 0 && i + 1 < argc) {
      const long long v = std::atoll(argv[++i]);
      if (v <= 0) {
        std::fprintf(stderr, "--context must be a positive token count\n");
        return 2;
      }
      contexts.push_back(v);
    } else {
      std::fprintf(stderr, "usage: %s [--context TOKENS]\n", argv[0]);
      return 2;
    }
  }

  const std::size_t kv_bytes = 2;  // f16 K/V cache elements
  const YOCOConfig yoco = YOCOConfig::from_args(4096, 32, 14336, 32, 32, 8);
  const Index layers = yoco.n_self_layers + yoco.n_cross_layers;
  YOCOConfig swa = yoco;  // the sliding-window-attention self-decoder (YOCOArgs.sliding_window)
  swa.sliding_window = 1024;

  RetentionConfig ret;
  ret.embed_dim = 4096;
  ret.value_dim = 8192;
  ret.num_heads = 16;
  // One real state object of each kind: the per-layer bytes the layers would hold.
  const RetentionState<float> ret_state(ret.num_heads, ret.embed_dim / ret.num_heads, ret.value_dim / ret.num_heads);
  const GatedRetentionState<float> gret_state(yoco.n_self_heads, yoco.dim / yoco.n_self_heads);
  const std::size_t retnet_bytes = static_cast<std::size_t>(layers) * ret_state.bytes();
  if (yoco_memory(yoco, 0).state_bytes != static_cast<std::size_t>(yoco.n_self_layers) * gret_state.bytes()) {
    std::fprintf(stderr, "yoco_memory disagrees with GatedRetentionState::bytes()\n");
    return 1;
  }

  std::printf("Model: width %ld, %ld layers, %ld attention heads of %ld, %ld K/V heads; K/V in f16, states in float\n",
              long(yoco.dim), long(layers), long(yoco.n_attn_heads), long(yoco.head_dim()),
              long(yoco.n_attn_kv_heads));
  std::printf("  standard decoder: %ld attention layers, each with its own K/V cache\n", long(layers));
  std::printf("  RetNet:           %ld retention layers, %ld heads, state [%ld x %ld] per head (%.2f MiB a layer)\n",
              long(layers), long(ret.num_heads), long(ret.embed_dim / ret.num_heads),
              long(ret.value_dim / ret.num_heads), mib(ret_state.bytes()));
  std::printf("  YOCO:             %ld gated-retention self-decoder layers (%.2f MiB of state each) + %ld cross-decoder"
              " layers sharing one K/V cache\n",
              long(yoco.n_self_layers), mib(gret_state.bytes()), long(yoco.n_cross_layers));
  std::printf("  YOCO-SWA:         the same with sliding-window attention (window %ld) in the self-decoder: a ring of"
              " %ld K/V rows per self layer\n\n",
              long(swa.sliding_window), long(swa.sliding_window));

  std::printf("%10s %18s %14s %14s %16s %16s %12s\n", "context", "standard (MiB)", "RetNet (MiB)", "YOCO (MiB)",
              "YOCO states", "YOCO-SWA (MiB)", "YOCO / std");
  for (const std::int64_t ctx : contexts) {
    const DecoderMemory std_mem = standard_decoder_memory(yoco, ctx, kv_bytes);
    const DecoderMemory y = yoco_memory(yoco, ctx, kv_bytes);
    const DecoderMemory w = yoco_memory(swa, ctx, kv_bytes);
    std::printf("%10lld %18.1f %14.1f %14.1f %16.1f %16.1f %11.3fx\n", static_cast<long long>(ctx),
                mib(std_mem.total()), mib(retnet_bytes), mib(y.total()), mib(y.state_bytes), mib(w.total()),
                static_cast<double>(y.total()) / static_cast<double>(std_mem.total()));
  }

  // YOCO's cache does not depend on how many cross-decoder layers read it.
  std::printf("\nYOCO at 32K context with 16 self-decoder layers and n cross-decoder layers:\n");
  for (const Index n_cross : {Index(4), Index(16), Index(48)}) {
    YOCOConfig c = yoco;
    c.n_cross_layers = n_cross;
    std::printf("  n = %2ld: YOCO %8.1f MiB, standard decoder of %2ld layers %9.1f MiB\n", long(n_cross),
                mib(yoco_memory(c, 32768, kv_bytes).total()), long(c.n_self_layers + n_cross),
                mib(standard_decoder_memory(c, 32768, kv_bytes).total()));
    if (yoco_memory(c, 32768, kv_bytes).total() != yoco_memory(yoco, 32768, kv_bytes).total()) {
      std::fprintf(stderr, "YOCO cache grew with the number of cross layers\n");
      return 1;
    }
  }
  return 0;
}
