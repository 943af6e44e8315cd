#pragma once
// Conformance declaration of MultiHeadLatentAttention (attention/mla.hpp; see registry.hpp for the
// declaration API, docs/conformance.md for the generated reference): DeepSeek-V2/V3 multi-head latent
// attention with transformers' DeepseekV3Attention names and config keys; modes prefill (one causal
// call over the sequence, expanded or absorbed path) and decode (a prompt, then one token at a time,
// through a LatentCache).

#include <cstdint>
#include <string>
#include <vector>

#include "../../attention/mla.hpp"
#include "../../cache/latent_cache.hpp"
#include "../../core/half.hpp"
#include "../../core/workspace.hpp"
#include "../../position/rope.hpp"
#include "../registry.hpp"
#include "attention.hpp"  // detail::parse_rope_scaling

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {

struct MLACase {
  MLAConfig cfg;
  MLAPath path = MLAPath::automatic;
  std::string cache_dtype = "float32";
  Index prompt_length = 0;
};

inline MLAPath parse_mla_path(const std::string& s) {
  return s == "expanded" ? MLAPath::expanded : s == "absorbed" ? MLAPath::absorbed : MLAPath::automatic;
}

template <class E>
void run_mla_decode(const Case& k, const MLACase& a, const MultiHeadLatentAttention& m, const Matrix<float>& x,
                    Matrix<float>& y) {
  const Index T = x.rows();
  if (a.prompt_length > T)
    case_fail(Problem::bad_config_value, k.where(), "prompt_length = ", a.prompt_length, " exceeds the ", T,
              " tokens of the case");
  LatentCache<E> cache(m.latent_cache_config<E>(T));
  Workspace<float> ws;
  Index t = 0;
  if (a.prompt_length > 0) {
    m.forward(x.topRows(a.prompt_length), y.topRows(a.prompt_length), cache, ws, a.path);
    t = a.prompt_length;
  }
  for (; t < T; ++t) m.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws, a.path);
}

}  // namespace detail

/// MultiHeadLatentAttention (DeepSeek-V2 / V3, transformers DeepseekV3Attention).
inline void register_mla(Registry& r) {
  LayerSpec s("mla",
              "transformers `DeepseekV3Attention` (models/deepseek_v3; DeepSeek-V2 uses the same module; eager, "
              "float32, batch 1)",
              "Multi-head latent attention: queries from q_proj (or q_a_proj, q_a_layernorm, q_b_proj), keys and "
              "values decompressed from the kv_a_layernorm-normalized latent by kv_b_proj, one decoupled RoPE key "
              "shared by all heads, causal softmax, o_proj.");
  const std::string decode = "decode";
  s.mode("prefill", "the whole sequence in one causal call (HF forward without a cache)")
      .mode("decode",
            "the first `prompt_length` tokens in one call, then every further token alone, through a LatentCache "
            "of [c_kv | k_rope] rows (HF generation with a DynamicCache); output row t is token t's output")
      .key(KeySpec::integer("hidden_size").required().min(1).doc("model width"))
      .key(KeySpec::integer("num_attention_heads").required().min(1).doc("heads"))
      .key(KeySpec::integer("num_key_value_heads")
               .nullable()
               .min(1)
               .doc("must equal num_attention_heads (MLA has no kv-head grouping); null = num_attention_heads"))
      .key(KeySpec::integer("q_lora_rank")
               .nullable()
               .min(0)
               .doc("query compression rank (q_a_proj, q_a_layernorm, q_b_proj; DeepSeek-V2/V3); null or 0 = a "
                    "plain q_proj (DeepSeek-V2-Lite)"))
      .key(KeySpec::integer("kv_lora_rank").required().min(1).doc("width of the cached latent c_kv"))
      .key(KeySpec::integer("qk_nope_head_dim").required().min(1).doc("per-head query/key dims without RoPE"))
      .key(KeySpec::integer("qk_rope_head_dim").required().min(2).doc(
          "per-head query/key dims with RoPE (even); the RoPE key is shared by all heads"))
      .key(KeySpec::integer("v_head_dim").required().min(1).doc("per-head value width"))
      .key(KeySpec::boolean("attention_bias").doc("biases on q_a_proj, kv_a_proj_with_mqa and o_proj (HF: never on "
                                                  "q_proj, q_b_proj, kv_b_proj)"))
      .key(KeySpec::boolean("rope_interleave")
               .default_value("true")
               .doc("RoPE on interleaved pairs (2i, 2i + 1) as HF's apply_rotary_pos_emb_interleave (the HF "
                    "default); false = rotate_half pairs (i, i + d/2)"))
      .key(KeySpec::number("rope_theta").default_value("10000.0").min(0, true).doc("RoPE base"))
      .key(KeySpec::json("rope_scaling").doc(
          "HF rope_scaling object as for `attention` (DeepSeek: yarn with factor, original_max_position_embeddings, "
          "beta_fast, beta_slow, mscale, mscale_all_dim); with a non-zero mscale_all_dim the softmax scale is "
          "multiplied by yarn_get_mscale(factor, mscale_all_dim)^2; null = none"))
      .key(KeySpec::integer("max_position_embeddings")
               .nullable()
               .min(1)
               .doc("used by rope_scaling dynamic (required) and yarn (fallback for original_max_position_embeddings)"))
      .key(KeySpec::string("path")
               .default_value("automatic")
               .oneOf({"automatic", "expanded", "absorbed"})
               .doc("attention computation: expanded (decompress K/V per head), absorbed (W_UK / W_UV folded into "
                    "the query / output, attention over the latent rows), automatic (fewer multiply-adds: expanded "
                    "for a prefill, absorbed for decoding); the outputs agree up to rounding"))
      .key(KeySpec::integer("prompt_length").min(0).modes(decode).doc(
          "tokens of the first (prefill) call; 0 = every token alone"))
      .key(KeySpec::string("cache_dtype")
               .default_value("float32")
               .oneOf({"float32", "float16", "bfloat16"})
               .modes(decode)
               .doc("LatentCache element type"));

  const std::string q_lora = "q_lora";
  s.weight("q_proj.weight", {"num_attention_heads*qk_head_dim", "hidden_size"})
      .when("!" + q_lora)
      .doc("q_lora_rank null or 0")
      .weight("q_a_proj.weight", {"q_lora_rank", "hidden_size"})
      .when(q_lora)
      .weight("q_a_proj.bias", {"q_lora_rank"})
      .when(q_lora + " & attention_bias")
      .weight("q_a_layernorm.weight", {"q_lora_rank"})
      .when(q_lora)
      .doc("RMSNorm, eps 1e-6 (HF builds it with the default eps, whatever rms_norm_eps says)")
      .weight("q_b_proj.weight", {"num_attention_heads*qk_head_dim", "q_lora_rank"})
      .when(q_lora)
      .doc("qk_head_dim = qk_nope_head_dim + qk_rope_head_dim; per head [nope | rope] rows")
      .weight("kv_a_proj_with_mqa.weight", {"kv_a_dim", "hidden_size"})
      .doc("kv_a_dim = kv_lora_rank + qk_rope_head_dim: [latent | RoPE key] rows")
      .weight("kv_a_proj_with_mqa.bias", {"kv_a_dim"})
      .when("attention_bias")
      .weight("kv_a_layernorm.weight", {"kv_lora_rank"})
      .doc("RMSNorm, eps 1e-6")
      .weight("kv_b_proj.weight", {"num_attention_heads*kv_b_head_dim", "kv_lora_rank"})
      .doc("kv_b_head_dim = qk_nope_head_dim + v_head_dim; per head [k_nope | v] rows")
      .weight("o_proj.weight", {"hidden_size", "num_attention_heads*v_head_dim"})
      .weight("o_proj.bias", {"hidden_size"})
      .when("attention_bias")
      .input("hidden_states", {"T", "hidden_size"})
      .input("position_ids", {"T"}, DtypeClass::integer)
      .optional()
      .in_modes({"prefill"})
      .doc("RoPE positions (>= 0); default 0..T-1. The causal mask always uses 0..T-1")
      .output("hidden_states", {"T", "hidden_size"})
      .doc("decode: the outputs of the successive calls, row by row")
      .tolerance(2e-5)
      .notes("Golden cases with `cache_dtype` float16 or bfloat16 carry their own `expected.tolerance`: the cached "
             "latents are rounded by design.")
      .implement(
          [](const Config& c, Plan& p) {
            detail::MLACase a;
            MLAConfig& g = a.cfg;
            const std::string& mode = p.name("mode");
            g.hidden_size = c.integer("hidden_size");
            g.num_attention_heads = c.integer("num_attention_heads");
            g.num_key_value_heads = c.optional_integer("num_key_value_heads").value_or(0);
            g.q_lora_rank = c.optional_integer("q_lora_rank").value_or(0);
            g.kv_lora_rank = c.integer("kv_lora_rank");
            g.qk_nope_head_dim = c.integer("qk_nope_head_dim");
            g.qk_rope_head_dim = c.integer("qk_rope_head_dim");
            g.v_head_dim = c.integer("v_head_dim");
            g.attention_bias = c.boolean("attention_bias");
            g.rope_interleave = c.boolean("rope_interleave");
            g.rope.theta = c.number("rope_theta");
            g.rope.max_position_embeddings = c.optional_integer("max_position_embeddings").value_or(0);
            if (!c.is_null("rope_scaling")) g.rope.scaling = detail::parse_rope_scaling(c.json("rope_scaling"));
            // Validates every size and the RoPE settings (throws Error(config) naming the parameter); no
            // weights are allocated.
            g = MultiHeadLatentAttention::resolve(g, "mla");
            p.set_flag("q_lora", g.q_lora_rank > 0);
            p.set_size("q_lora_rank", g.q_lora_rank);
            p.set_size("qk_head_dim", g.qk_head_dim());
            p.set_size("kv_a_dim", g.kv_lora_rank + g.qk_rope_head_dim);
            p.set_size("kv_b_head_dim", g.qk_nope_head_dim + g.v_head_dim);
            a.path = detail::parse_mla_path(c.string("path"));
            for (const char* key : {"prompt_length", "cache_dtype"})
              if (c.given(key) && mode != "decode")
                case_fail(Problem::bad_config_value, "mla", "config key ", quote_name(key),
                          " applies to mode decode only (mode is ", mode, ")");
            a.prompt_length = c.integer("prompt_length");
            a.cache_dtype = c.string("cache_dtype");
            return a;
          },
          [](const Case& k, const detail::MLACase& a, Outputs& out) {
            const MultiHeadLatentAttention m = MultiHeadLatentAttention::load(k.file(), "", a.cfg);
            const Matrix<float> x = k.matrix("input.hidden_states");
            Matrix<float> y(x.rows(), a.cfg.hidden_size);
            if (k.mode() == "decode") {
              if (a.cache_dtype == "float16")
                detail::run_mla_decode<f16>(k, a, m, x, y);
              else if (a.cache_dtype == "bfloat16")
                detail::run_mla_decode<bf16>(k, a, m, x, y);
              else
                detail::run_mla_decode<float>(k, a, m, x, y);
            } else {
              std::vector<std::int64_t> pos;
              if (k.has("input.position_ids")) pos = k.integers("input.position_ids");
              for (std::size_t i = 0; i < pos.size(); ++i)
                if (pos[i] < 0)
                  case_fail(Problem::bad_input, k.where(), "input.position_ids: positions[", i, "] = ", pos[i],
                            " is negative");
              Workspace<float> ws;
              m.forward(x, y, ws, pos.empty() ? nullptr : pos.data(), a.path);
            }
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
