#pragma once
// Conformance declarations of the sparse attention layers (see registry.hpp for the declaration API,
// docs/conformance.md for the generated reference): Hugging Face LongformerSelfAttention and
// BigBirdBlockSparseAttention (docs/sparse_attention.md).

#include <cstdint>
#include <string>
#include <vector>

#include "../../attention/bigbird.hpp"
#include "../../attention/longformer.hpp"
#include "../../core/workspace.hpp"
#include "../registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// transformers LongformerSelfAttention.
inline void register_longformer(Registry& r) {
  LayerSpec s("longformer_self_attention", "transformers `LongformerSelfAttention`",
              "Sliding window of attention_window / 2 keys on each side plus global tokens (query/key/value), "
              "global rows recomputed with query_global/key_global/value_global over every key. Output: the "
              "context before LongformerSelfOutput.dense.");
  s.key(KeySpec::integer("hidden_size").required().min(1).doc("model width"))
      .key(KeySpec::integer("num_attention_heads").required().min(1).doc("heads (head_dim = hidden_size / heads)"))
      .key(KeySpec::integer("attention_window").required().min(2).doc(
          "this layer's window (HF config.attention_window[layer_id]); even; T must be a multiple of it"))
      .key(KeySpec::integer("attention_dilation").default_value("1").min(1).doc(
          "dilated sliding window (not in HF: keep 1 for HF checkpoints)"));
  for (const char* n : {"query", "key", "value", "query_global", "key_global", "value_global"}) {
    s.weight(std::string(n) + ".weight", {"hidden_size", "hidden_size"});
    s.weight(std::string(n) + ".bias", {"hidden_size"});
  }
  s.input("hidden_states", {"T", "hidden_size"})
      .input("is_index_global_attn", {"T"}, DtypeClass::mask)
      .optional()
      .doc("1 = global token (HF: attention_mask > 0); default none")
      .output("hidden_states", {"T", "hidden_size"})
      .tolerance(2e-5)
      .implement(
          [](const Config& c, Plan&) {
            LongformerSelfAttention::Config cfg;
            cfg.hidden = c.integer("hidden_size");
            cfg.n_heads = c.integer("num_attention_heads");
            cfg.attention_window = c.integer("attention_window");
            cfg.dilation = c.integer("attention_dilation");
            if (cfg.hidden % cfg.n_heads != 0)
              case_fail(Problem::bad_config_value, "longformer_self_attention", "hidden_size = ", cfg.hidden,
                        " is not a multiple of num_attention_heads = ", cfg.n_heads);
            if (cfg.attention_window % 2 != 0)
              case_fail(Problem::bad_config_value, "longformer_self_attention", "attention_window = ",
                        cfg.attention_window, " must be even");
            return cfg;
          },
          [](const Case& k, const LongformerSelfAttention::Config& cfg, Outputs& out) {
            const LongformerSelfAttention layer = LongformerSelfAttention::load(k.file(), "", cfg);
            const Matrix<float> x = k.matrix("input.hidden_states");
            std::vector<std::uint8_t> global;
            if (k.has("input.is_index_global_attn"))
              for (const std::int64_t v : k.integers("input.is_index_global_attn")) global.push_back(v ? 1 : 0);
            Matrix<float> y(x.rows(), cfg.hidden);
            Workspace<float> ws;
            layer.forward(x, global, y, ws);
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

/// transformers BigBirdBlockSparseAttention.
inline void register_bigbird(Registry& r) {
  LayerSpec s("bigbird_block_sparse_attention", "transformers `BigBirdBlockSparseAttention`",
              "BigBird ITC block-sparse attention: global first/last blocks, 3 sliding blocks, num_random_blocks "
              "random blocks per query block; full attention when T <= (5 + 2 num_random_blocks) block_size "
              "(BigBirdModel's original_full fallback). Output: the context before the output dense.");
  s.key(KeySpec::integer("hidden_size").required().min(1).doc("model width"))
      .key(KeySpec::integer("num_attention_heads").required().min(1).doc("heads (head_dim = hidden_size / heads)"))
      .key(KeySpec::integer("block_size").default_value("64").min(1).doc("block size; T must be a multiple"))
      .key(KeySpec::integer("num_random_blocks").default_value("3").min(0).doc("random key blocks per query block"))
      .key(KeySpec::boolean("use_bias").default_value("true").doc("biases on query/key/value"))
      .key(KeySpec::string("random_blocks")
               .default_value("hf_eval")
               .oneOf({"hf_eval", "seeded"})
               .doc("hf_eval: HF's eval-mode table (all zeros: block 0 again, counted 1 + r times); seeded: "
                    "eigenformer's seeded draw (not numpy's)"))
      .key(KeySpec::integer("seed").default_value("0").min(0).doc("seed of the seeded draw"))
      .weight("query.weight", {"hidden_size", "hidden_size"})
      .weight("query.bias", {"hidden_size"})
      .when("use_bias")
      .weight("key.weight", {"hidden_size", "hidden_size"})
      .weight("key.bias", {"hidden_size"})
      .when("use_bias")
      .weight("value.weight", {"hidden_size", "hidden_size"})
      .weight("value.bias", {"hidden_size"})
      .when("use_bias")
      .input("hidden_states", {"T", "hidden_size"})
      .output("hidden_states", {"T", "hidden_size"})
      .tolerance(2e-5)
      .implement(
          [](const Config& c, Plan&) {
            BigBirdBlockSparseAttention::Config cfg;
            cfg.hidden = c.integer("hidden_size");
            cfg.n_heads = c.integer("num_attention_heads");
            cfg.block_size = c.integer("block_size");
            cfg.num_random_blocks = c.integer("num_random_blocks");
            cfg.use_bias = c.boolean("use_bias");
            cfg.random = c.string("random_blocks") == "seeded" ? BigBirdBlockSparseAttention::Random::seeded
                                                               : BigBirdBlockSparseAttention::Random::hf_eval;
            cfg.seed = static_cast<std::uint64_t>(c.integer("seed"));
            if (cfg.hidden % cfg.n_heads != 0)
              case_fail(Problem::bad_config_value, "bigbird_block_sparse_attention", "hidden_size = ", cfg.hidden,
                        " is not a multiple of num_attention_heads = ", cfg.n_heads);
            return cfg;
          },
          [](const Case& k, const BigBirdBlockSparseAttention::Config& cfg, Outputs& out) {
            const BigBirdBlockSparseAttention layer = BigBirdBlockSparseAttention::load(k.file(), "", cfg);
            const Matrix<float> x = k.matrix("input.hidden_states");
            Matrix<float> y(x.rows(), cfg.hidden);
            Workspace<float> ws;
            layer.forward(x, y, ws);
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

/// Every sparse attention layer (the one line in builtin.hpp).
inline void register_sparse_attention(Registry& r) {
  register_longformer(r);
  register_bigbird(r);
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
