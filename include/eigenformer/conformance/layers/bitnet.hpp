#pragma once
// Conformance declarations of BitNet b1.58 (see registry.hpp for the declaration API,
// docs/conformance.md for the generated reference):
//   bit_linear    BitLinear (linear/bit_linear.hpp): transformers' BitLinear (packed ternary weights, a
//                 divisor weight_scale) and AutoBitLinear (offline: packed weights, a multiplier
//                 weight_scale; online: full-precision weights quantized on load), optional input RMSNorm;
//   bitnet_layer  BitNetDecoderLayer (ffn/bitnet_block.hpp): transformers' BitNetDecoderLayer with every
//                 projection a BitLinear / AutoBitLinear, modes prefill and decode (KV cache).

#include <cstdint>
#include <string>
#include <vector>

#include "../../cache/kv_cache.hpp"
#include "../../core/activation.hpp"
#include "../../core/half.hpp"
#include "../../core/workspace.hpp"
#include "../../ffn/bitnet_block.hpp"
#include "../../linear/bit_linear.hpp"
#include "../registry.hpp"
#include "attention.hpp"  // detail::parse_rope_scaling

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {

/// The keys every BitNet declaration shares: linear_class, quantization_mode, ternary_format.
inline void bitnet_quant_keys(LayerSpec& s) {
  s.key(KeySpec::string("linear_class")
            .default_value("bitlinear")
            .oneOf({"bitlinear", "autobitlinear"})
            .doc("transformers BitNetQuantConfig.linear_class: bitlinear = BitLinear, y = acc / (s_x * "
                 "weight_scale) + bias (weight_scale is the divisor 1 / mean|W|); autobitlinear = AutoBitLinear, "
                 "y = (acc / s_x + bias) * weight_scale (the multiplier mean|W|)"))
      .key(KeySpec::string("quantization_mode")
               .default_value("offline")
               .oneOf({"offline", "online"})
               .doc("offline: packed uint8 weights [ceil(out / 4), in] (pack_weights: row r + j * ceil(out / 4) "
                    "in bits 2j, 2j + 1 as w + 1) and weight_scale [1]; online (autobitlinear only): "
                    "full-precision weights [out, in], absmean-quantized on load as WeightQuant does"))
      .key(KeySpec::string("ternary_format")
               .default_value("tq2")
               .oneOf({"tq2", "tq1"})
               .doc("eigenformer's storage of the ternary weights (tq2: 2 bits per weight, tq1: 1.6); the "
                    "outputs are the same"));
}

struct BitQuant {
  BitScale scale = BitScale::divide;
  TernaryFormat format = TernaryFormat::tq2;
  bool online = false;
};

inline BitQuant parse_bit_quant(const Config& c, const char* layer) {
  BitQuant q;
  const bool autobit = c.string("linear_class") == "autobitlinear";
  q.online = c.string("quantization_mode") == "online";
  if (q.online && !autobit)
    case_fail(Problem::bad_config_value, layer,
              "quantization_mode online needs linear_class autobitlinear (transformers' BitLinear holds packed "
              "weights only)");
  q.scale = autobit ? BitScale::multiply : BitScale::divide;
  q.format = c.string("ternary_format") == "tq1" ? TernaryFormat::tq1 : TernaryFormat::tq2;
  return q;
}

/// The tensors of one BitLinear `<name>.*` [out, in] (`out` a shape symbol; its packed row count is
/// the size symbol `out_packed`), present when `when` holds (may be empty).
inline void bit_linear_weights(LayerSpec& s, const std::string& name, const std::string& out,
                               const std::string& out_packed, const std::string& in, const std::string& when,
                               const std::string& bias_flag) {
  const std::string pre = name.empty() ? std::string() : name + ".";
  const std::string w = when.empty() ? std::string() : when + " & ";
  s.weight(pre + "weight", {out_packed, in}, DtypeClass::integer)
      .when(w + "quantization_mode=offline")
      .doc("U8, packed ternary weights (transformers pack_weights); " + out_packed + " = ceil(" + out + " / 4)")
      .weight(pre + "weight_scale", {"1"})
      .when(w + "quantization_mode=offline")
      .doc("divisor (bitlinear) or multiplier (autobitlinear)")
      .weight(pre + "weight", {out, in})
      .when(w + "quantization_mode=online")
      .doc("full-precision weights, quantized on load");
  if (!bias_flag.empty()) s.weight(pre + "bias", {out}).when(w + bias_flag);
}

template <class E>
void run_bitnet_decode(const Case& k, Index prompt_length, const BitNetDecoderLayer& m, const Matrix<float>& x,
                       Matrix<float>& y) {
  const Index T = x.rows();
  if (prompt_length > T)
    case_fail(Problem::bad_config_value, k.where(), "prompt_length = ", prompt_length, " exceeds the ", T,
              " tokens of the case");
  typename KVCache<E>::Config cc;
  cc.n_kv_heads = m.self_attn().config().num_key_value_heads;
  cc.head_dim = m.self_attn().config().head_dim;
  cc.capacity = T;
  KVCache<E> cache(cc);
  Workspace<float> ws;
  Index t = 0;
  if (prompt_length > 0) {
    m.forward(x.topRows(prompt_length), y.topRows(prompt_length), cache, ws);
    t = prompt_length;
  }
  for (; t < T; ++t) m.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws);
}

/// load() with an invalid packed code (3) reported as a bad input value rather than a malformed file:
/// the safetensors file itself is valid.
template <class Load>
auto load_bitnet(const Case& k, Load&& load) -> decltype(load()) {
  try {
    return load();
  } catch (const CaseError&) {
    throw;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::format) case_fail(Problem::bad_input, k.where(), e.where(), ": ", e.detail());
    throw;
  }
}

struct BitNetLayerCase {
  BitNetConfig cfg;
  Index prompt_length = 0;
  std::string cache_dtype = "float32";
};

}  // namespace detail

/// BitLinear: transformers' BitLinear / AutoBitLinear.
inline void register_bit_linear(Registry& r) {
  LayerSpec s("bit_linear",
              "transformers `integrations/bitnet.py` `BitLinear` and `AutoBitLinear` (BitNet b1.58, float32)",
              "Ternary linear layer: absmean ternary weights, per-token int8 absmax activations, exact integer "
              "accumulation, rescaled by the activation and weight scales (+ bias).");
  s.key(KeySpec::integer("in_features").required().min(1).doc("input width"))
      .key(KeySpec::integer("out_features").required().min(1).doc("output width"))
      .key(KeySpec::boolean("bias").doc("bias [out_features] (BitNet's projections have none)"));
  detail::bitnet_quant_keys(s);
  s.key(KeySpec::boolean("use_rms_norm").doc(
           "BitNetQuantConfig.use_rms_norm: an RMSNorm (weight `rms_norm.weight`) on the input before quantization"))
      .key(KeySpec::number("rms_norm_eps").default_value("1e-06").min(0).doc(
          "BitNetQuantConfig.rms_norm_eps (with use_rms_norm)"));
  detail::bit_linear_weights(s, "", "out_features", "out_features_packed", "in_features", "", "bias");
  s.weight("rms_norm.weight", {"in_features"})
      .when("use_rms_norm")
      .input("hidden_states", {"T", "in_features"})
      .output("hidden_states", {"T", "out_features"})
      .tolerance(1e-5)
      .notes("Without use_rms_norm and with linear_class bitlinear the output equals transformers' bit for bit. "
             "Float rounding before the activation quantization (the RMSNorm) can move one activation across a "
             "rounding boundary, which changes outputs by about max|x| / 127 * mean|W|, far beyond the tolerance; "
             "the golden cases have none.")
      .implement(
          [](const Config& c, Plan& p) {
            BitLinear::Config l;
            l.in_features = c.integer("in_features");
            l.out_features = c.integer("out_features");
            l.bias = c.boolean("bias");
            const detail::BitQuant q = detail::parse_bit_quant(c, "bit_linear");
            l.format = q.format;
            l.packed_scale = q.scale;
            l.rms_norm = c.boolean("use_rms_norm");
            l.rms_norm_eps = c.number("rms_norm_eps");
            if (c.given("rms_norm_eps") && !l.rms_norm)
              case_fail(Problem::bad_config_value, "bit_linear", "config key 'rms_norm_eps' needs use_rms_norm true");
            p.set_size("out_features_packed", (l.out_features + 3) / 4);
            return l;
          },
          [](const Case& k, const BitLinear::Config& cfg, Outputs& out) {
            const BitLinear lin = detail::load_bitnet(k, [&] { return BitLinear::load(k.file(), "", cfg); });
            out.add("hidden_states", lin.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// BitNetDecoderLayer: transformers' BitNet decoder layer with BitLinear projections.
inline void register_bitnet_layer(Registry& r) {
  LayerSpec s("bitnet_layer",
              "transformers `BitNetDecoderLayer` (models/bitnet/modeling_bitnet.py, eager, float32, batch 1) with "
              "every nn.Linear replaced by `BitLinear` / `AutoBitLinear` as transformers' BitNet quantizer does",
              "h = x + o_proj(attn_sub_norm(attention(input_layernorm(x)))); y = h + down_proj(ffn_sub_norm("
              "act(gate_proj(m)) * up_proj(m))), m = post_attention_layernorm(h). Causal GQA with rotate_half RoPE.");
  const std::string decode = "decode";
  s.mode("prefill", "the whole sequence in one call (HF forward without a cache)")
      .mode("decode",
            "the first `prompt_length` tokens in one call, then every further token alone, through a KV cache "
            "(HF generation with a DynamicCache); output row t is token t's output")
      .key(KeySpec::integer("hidden_size").required().min(1).doc("model width"))
      .key(KeySpec::integer("intermediate_size").required().min(1).doc("FFN width"))
      .key(KeySpec::integer("num_attention_heads").required().min(1).doc("query heads; head_dim = hidden_size / "
                                                                          "num_attention_heads"))
      .key(KeySpec::integer("num_key_value_heads").nullable().min(1).doc(
          "key/value heads (GQA); null = num_attention_heads"))
      .key(KeySpec::number("rms_norm_eps").default_value("1e-05").min(0).doc(
          "eps of every RMSNorm (input_layernorm, post_attention_layernorm, attn_sub_norm, ffn_sub_norm)"))
      .key(KeySpec::number("rope_theta").default_value("500000.0").min(0, true).doc("RoPE base"))
      .key(KeySpec::json("rope_scaling").doc("HF rope_scaling object as for `attention`; null = none (BitNet)"))
      .key(KeySpec::integer("max_position_embeddings")
               .nullable()
               .min(1)
               .doc("used by rope_scaling dynamic (required) and yarn (fallback for original_max_position_embeddings)"))
      .key(KeySpec::boolean("attention_bias").doc("biases on q/k/v/o_proj"))
      .key(KeySpec::string("hidden_act")
               .default_value("relu2")
               .oneOf({"relu2", "silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu"})
               .doc("activation of gate_proj, HF names"));
  detail::bitnet_quant_keys(s);
  s.key(KeySpec::integer("prompt_length").min(0).modes(decode).doc(
           "tokens of the first (prefill) call; 0 = every token alone"))
      .key(KeySpec::string("cache_dtype")
               .default_value("float32")
               .oneOf({"float32", "float16", "bfloat16"})
               .modes(decode)
               .doc("KV cache element type"));

  s.weight("input_layernorm.weight", {"hidden_size"});
  for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    const std::string n = p;
    const bool kv = n == "k_proj" || n == "v_proj";
    const std::string out = kv ? "num_key_value_heads*head_dim" : "hidden_size";
    const std::string in = "hidden_size";
    detail::bit_linear_weights(s, "self_attn." + n, out, kv ? "kv_packed" : "hidden_size_packed", in, "",
                               "attention_bias");
  }
  s.weight("self_attn.attn_sub_norm.weight", {"hidden_size"})
      .doc("RMSNorm of the attention output, before o_proj")
      .weight("post_attention_layernorm.weight", {"hidden_size"});
  detail::bit_linear_weights(s, "mlp.gate_proj", "intermediate_size", "intermediate_size_packed", "hidden_size", "",
                             "");
  detail::bit_linear_weights(s, "mlp.up_proj", "intermediate_size", "intermediate_size_packed", "hidden_size", "", "");
  detail::bit_linear_weights(s, "mlp.down_proj", "hidden_size", "hidden_size_packed", "intermediate_size", "", "");
  s.weight("mlp.ffn_sub_norm.weight", {"intermediate_size"})
      .doc("RMSNorm of act(gate) * up, before down_proj")
      .input("hidden_states", {"T", "hidden_size"})
      .input("position_ids", {"T"}, DtypeClass::integer)
      .optional()
      .in_modes({"prefill"})
      .doc("RoPE positions (>= 0); default 0..T-1. The causal mask always uses 0..T-1")
      .output("hidden_states", {"T", "hidden_size"})
      .doc("decode: the outputs of the successive calls, row by row")
      .tolerance(1e-5)
      .notes("Float rounding in the norms and the attention can move an activation across a quantization "
             "boundary of a later BitLinear (an output change of about max|x| / 127 * mean|W|, far beyond the "
             "tolerance); the golden cases have none.")
      .implement(
          [](const Config& c, Plan& p) {
            detail::BitNetLayerCase a;
            BitNetConfig& g = a.cfg;
            const std::string& mode = p.name("mode");
            g.hidden_size = c.integer("hidden_size");
            g.intermediate_size = c.integer("intermediate_size");
            g.num_attention_heads = c.integer("num_attention_heads");
            g.num_key_value_heads = c.optional_integer("num_key_value_heads").value_or(0);
            g.rms_norm_eps = c.number("rms_norm_eps");
            g.rope_theta = c.number("rope_theta");
            if (!c.is_null("rope_scaling")) g.rope_scaling = detail::parse_rope_scaling(c.json("rope_scaling"));
            g.max_position_embeddings = c.optional_integer("max_position_embeddings").value_or(0);
            g.attention_bias = c.boolean("attention_bias");
            g.hidden_act = parse_activation(c.string("hidden_act"), "hidden_act");
            const detail::BitQuant q = detail::parse_bit_quant(c, "bitnet_layer");
            g.format = q.format;
            g.packed_scale = q.scale;
            g = g.resolved("bitnet_layer");  // heads, GQA grouping, head_dim (throws Error(config))
            {
              RopeConfig rc = BitNetAttention::attention_config(g).rope;
              rc.validate("bitnet_layer: rope");
            }
            p.set_size("num_key_value_heads", g.num_key_value_heads);
            p.set_size("head_dim", g.head_dim);
            p.set_size("hidden_size_packed", (g.hidden_size + 3) / 4);
            p.set_size("kv_packed", (g.num_key_value_heads * g.head_dim + 3) / 4);
            p.set_size("intermediate_size_packed", (g.intermediate_size + 3) / 4);
            for (const char* key : {"prompt_length", "cache_dtype"})
              if (c.given(key) && mode != "decode")
                case_fail(Problem::bad_config_value, "bitnet_layer", "config key ", quote_name(key),
                          " applies to mode decode only (mode is ", mode, ")");
            a.prompt_length = c.integer("prompt_length");
            a.cache_dtype = c.string("cache_dtype");
            return a;
          },
          [](const Case& k, const detail::BitNetLayerCase& a, Outputs& out) {
            const BitNetDecoderLayer m =
                detail::load_bitnet(k, [&] { return BitNetDecoderLayer::load(k.file(), "", a.cfg); });
            const Matrix<float> x = k.matrix("input.hidden_states");
            Matrix<float> y(x.rows(), a.cfg.hidden_size);
            if (k.mode() == "decode") {
              if (a.cache_dtype == "float16")
                detail::run_bitnet_decode<f16>(k, a.prompt_length, m, x, y);
              else if (a.cache_dtype == "bfloat16")
                detail::run_bitnet_decode<bf16>(k, a.prompt_length, m, x, y);
              else
                detail::run_bitnet_decode<float>(k, a.prompt_length, m, x, y);
            } else {
              std::vector<std::int64_t> pos;
              if (k.has("input.position_ids")) pos = k.integers("input.position_ids");
              Workspace<float> ws;
              m.forward(x, y, ws, pos.empty() ? nullptr : pos.data());
            }
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
