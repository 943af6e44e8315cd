#pragma once
// Conformance declaration of MultiHeadAttention (see registry.hpp for the declaration API,
// docs/conformance.md for the generated reference): MHA / GQA / MQA with Llama (q/k/v/o_proj) or
// Bloom (fused query_key_value, dense) checkpoint names; RoPE with every HF scaling, ALiBi, xPos or
// no positions; causal or bidirectional; sliding window, logit soft-capping, sinks, biases, key
// padding; modes prefill (one call over the whole sequence) and decode (through a KVCache).

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "../../attention/multi_head_attention.hpp"
#include "../../cache/kv_cache.hpp"
#include "../../core/half.hpp"
#include "../../core/workspace.hpp"
#include "../../position/rope.hpp"
#include "../registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {

/// HF `rope_scaling` (a JSON object, transformers 4.57 modeling_rope_utils) into RopeScaling. Keys a
/// rope type does not use, missing required keys, and values of the wrong type are errors (HF warns
/// about unknown keys; a conformance case is held to the exact set).
inline RopeScaling parse_rope_scaling(const JsonValue& js) {
  const std::string w = "rope_scaling";
  RopeScaling s;
  const JsonValue* t1 = js.find("rope_type");
  const JsonValue* t2 = js.find("type");  // the pre-4.40 name
  const JsonValue* t = t1 ? t1 : t2;
  if (!t || t->kind != JsonValue::Kind::string)
    case_fail(Problem::bad_config_value, w, "needs a string \"rope_type\" (or \"type\")");
  if (t1 && t2 && (t2->kind != JsonValue::Kind::string || t2->text != t1->text))
    case_fail(Problem::bad_config_value, w, "\"rope_type\" and \"type\" disagree");
  s.type = parse_rope_type(t->text, w);
  std::set<std::string> required = {"factor"}, optional;
  switch (s.type) {
    case RopeType::none: required.clear(); break;
    case RopeType::linear: break;
    case RopeType::dynamic: optional = {"original_max_position_embeddings"}; break;
    case RopeType::yarn:
      optional = {"attention_factor", "beta_fast", "beta_slow", "original_max_position_embeddings", "mscale",
                  "mscale_all_dim", "truncate"};
      break;
    case RopeType::llama3:
      required = {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"};
      break;
  }
  for (const auto& m : js.members) {
    if (m.first == "rope_type" || m.first == "type") continue;
    if (!required.count(m.first) && !optional.count(m.first))
      case_fail(Problem::bad_config_value, w, "key ", quote_name(m.first), " is not a parameter of rope_type ",
                t->text);
  }
  for (const std::string& k : required)
    if (!js.find(k)) case_fail(Problem::bad_config_value, w, "rope_type ", t->text, " needs key ", quote_name(k));
  // number (or null where HF treats null as unset: returns false)
  auto num = [&](const char* key, double& out, bool nullable) -> bool {
    const JsonValue* v = js.find(key);
    if (!v) return false;
    if (v->is_null() && nullable) return false;
    if (v->kind != JsonValue::Kind::number)
      case_fail(Problem::bad_config_value, w, quote_name(key), " must be a number", nullable ? " or null" : "", ", got ",
                json_kind_name(v->kind));
    out = v->number;
    return true;
  };
  double v = 0;
  if (num("factor", v, false)) s.factor = v;
  if (const JsonValue* o = js.find("original_max_position_embeddings")) {
    if (!o->is_null()) {
      if (!o->is_integer_literal() || o->number < 1 || o->number > 1e15)
        case_fail(Problem::bad_config_value, w, "\"original_max_position_embeddings\" must be an integer >= 1");
      s.original_max_position_embeddings = static_cast<Index>(o->number);
    }
  }
  if (num("beta_fast", v, true)) s.beta_fast = v;
  if (num("beta_slow", v, true)) s.beta_slow = v;
  if (num("mscale", v, true)) s.mscale = v;
  if (num("mscale_all_dim", v, true)) s.mscale_all_dim = v;
  if (num("attention_factor", v, true)) s.attention_factor = v;
  if (num("low_freq_factor", v, false)) s.low_freq_factor = v;
  if (num("high_freq_factor", v, false)) s.high_freq_factor = v;
  if (const JsonValue* tr = js.find("truncate")) {
    if (tr->kind != JsonValue::Kind::boolean)
      case_fail(Problem::bad_config_value, w, "\"truncate\" must be true or false");
    s.truncate = tr->boolean;
  }
  return s;
}

struct AttentionCase {
  AttentionConfig cfg;
  bool bloom_names = false;
  std::string cache_dtype = "float32";
  CacheEviction eviction = CacheEviction::none;
  Index cache_capacity = 0;  // 0: T
  Index sink_tokens = 0;
  Index prompt_length = 0;
};

/// Bloom's fused query_key_value is interleaved per head: fused row h*3*d + t*d + i is row h*d + i of
/// projection t (0 query, 1 key, 2 value); see tests/data/golden/attention/README.md.
inline MultiHeadAttention build_attention(const Case& k, const AttentionCase& a) {
  if (!a.bloom_names) return MultiHeadAttention::load(k.file(), "", a.cfg);
  MultiHeadAttention m(a.cfg);
  const Index H = a.cfg.num_attention_heads, hid = a.cfg.hidden_size;
  const Index d = m.config().head_dim;
  const std::string where = k.where();
  const Matrix<float> w = k.file().matrix<float>("query_key_value.weight", 3 * H * d, hid, where);
  Vector<float> b;
  if (a.cfg.qkv_bias) b = k.file().vector<float>("query_key_value.bias", 3 * H * d, where);
  Linear<float>* proj[3] = {&m.q_proj(), &m.k_proj(), &m.v_proj()};
  for (Index h = 0; h < H; ++h)
    for (Index t = 0; t < 3; ++t)
      for (Index i = 0; i < d; ++i) {
        proj[t]->weight().row(h * d + i) = w.row(h * 3 * d + t * d + i);
        if (a.cfg.qkv_bias) proj[t]->bias()[h * d + i] = b[h * 3 * d + t * d + i];
      }
  m.o_proj().weight() = k.file().matrix<float>("dense.weight", hid, H * d, where);
  if (a.cfg.o_bias) m.o_proj().bias() = k.file().vector<float>("dense.bias", hid, where);
  if (a.cfg.sinks) m.sinks() = k.file().vector<float>("sinks", H, where);
  return m;
}

template <class E>
void run_decode(const Case& k, const AttentionCase& a, const MultiHeadAttention& m, const Matrix<float>& x,
                Matrix<float>& y) {
  const Index T = x.rows();
  const Index cap = a.cache_capacity ? a.cache_capacity : T;
  if (cap > T)
    case_fail(Problem::bad_config_value, k.where(), "cache_capacity = ", cap, " exceeds the ", T,
              " tokens of the case");
  if (a.prompt_length > T)
    case_fail(Problem::bad_config_value, k.where(), "prompt_length = ", a.prompt_length, " exceeds the ", T,
              " tokens of the case");
  typename KVCache<E>::Config cc;
  cc.n_kv_heads = m.config().num_key_value_heads;
  cc.head_dim = m.config().head_dim;
  cc.capacity = cap;
  cc.eviction = a.eviction;
  cc.sink_tokens = a.sink_tokens;
  KVCache<E> cache(cc);
  Workspace<float> ws;
  Index t = 0;
  if (a.prompt_length > 0) {
    m.forward(x.topRows(a.prompt_length), y.topRows(a.prompt_length), cache, ws);
    t = a.prompt_length;
  }
  for (; t < T; ++t) m.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws);
}

}  // namespace detail

/// MultiHeadAttention (Llama, Mistral, Gemma 2, Bloom, gpt-oss semantics).
inline void register_attention(Registry& r) {
  LayerSpec s("attention",
              "transformers `LlamaAttention`, `MistralAttention`, `Gemma2Attention`, `GptOssAttention`, "
              "`StableLmAttention`, `BloomAttention` (eager, float32, batch 1)",
              "Self-attention of one sequence: q/k/v projections, positions, masked softmax(scale q k^T) v, "
              "output projection.");
  const std::string decode = "decode";
  s.mode("prefill", "the whole sequence in one call (HF forward without a cache)")
      .mode("decode",
            "the first `prompt_length` tokens in one call, then every further token alone, through a KV cache "
            "(HF generation with a DynamicCache); output row t is token t's output")
      .key(KeySpec::integer("hidden_size").required().min(1).doc("model width"))
      .key(KeySpec::integer("num_attention_heads").required().min(1).doc("query heads (Bloom `n_head`)"))
      .key(KeySpec::integer("num_key_value_heads").nullable().min(1).doc(
          "key/value heads (GQA; 1 = MQA); null = num_attention_heads"))
      .key(KeySpec::integer("head_dim").nullable().min(1).doc("per-head width; null = hidden_size / num_attention_heads"))
      .key(KeySpec::string("checkpoint_names")
               .default_value("llama")
               .oneOf({"llama", "bloom"})
               .doc("llama = q_proj, k_proj, v_proj, o_proj (Llama, Mistral, Gemma 2, gpt-oss); bloom = fused "
                    "query_key_value (per head [q; k; v] rows) and dense (BloomAttention's own names)"))
      .key(KeySpec::boolean("attention_bias").doc("biases on all four projections (HF `attention_bias`; Bloom: true)"))
      .key(KeySpec::number("query_pre_attn_scalar")
               .nullable()
               .min(0, true)
               .doc("logit scale query_pre_attn_scalar^-0.5 (Gemma 2); null = head_dim^-0.5"))
      .key(KeySpec::boolean("is_causal").default_value("true").doc("causal mask; false = bidirectional"))
      .key(KeySpec::integer("sliding_window")
               .nullable()
               .min(1)
               .doc("each query sees itself and the sliding_window - 1 keys before it (HF masking_utils); null = "
                    "none. The layer's own value: null for a full-attention layer of a model with layer_types"))
      .key(KeySpec::number("attn_logit_softcapping")
               .nullable()
               .min(0, true)
               .doc("logits c * tanh(logit / c) (Gemma 2); null = none"))
      .key(KeySpec::boolean("sinks").doc("learned per-head sink logits (gpt-oss): weight `sinks`"))
      .key(KeySpec::string("position_encoding")
               .default_value("rope")
               .oneOf({"rope", "alibi", "xpos", "none"})
               .doc("rope (Llama family), alibi (Bloom), xpos (torchscale; prefill only), none"))
      .key(KeySpec::number("rope_theta").default_value("10000.0").min(0, true).doc("RoPE base"))
      .key(KeySpec::json("rope_scaling").doc(
          "HF rope_scaling object: rope_type (or type) default, linear, dynamic, yarn or llama3 with that type's HF "
          "parameters (factor, original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast, "
          "beta_slow, mscale, mscale_all_dim, attention_factor, truncate); null = none"))
      .key(KeySpec::number("partial_rotary_factor")
               .default_value("1.0")
               .min(0, true)
               .max(1)
               .doc("RoPE rotates the first int(head_dim * partial_rotary_factor) dims of each head (StableLM, "
                    "GPT-NeoX rotary_pct, Phi)"))
      .key(KeySpec::boolean("rope_interleave").doc(
          "RoPE pairs dims (2i, 2i + 1) (GPT-J, RoFormer); false = (i, i + d/2), rotate_half (Llama)"))
      .key(KeySpec::integer("max_position_embeddings")
               .nullable()
               .min(1)
               .doc("used by rope_scaling dynamic (required) and yarn (fallback for original_max_position_embeddings)"))
      .key(KeySpec::string("alibi_form")
               .default_value("causal")
               .oneOf({"causal", "symmetric"})
               .doc("ALiBi bias slope * (k - q) (causal; Bloom's slope * k is the same after softmax) or "
                    "-slope * |q - k| (symmetric)"))
      .key(KeySpec::number("xpos_scale_base").default_value("512.0").min(0, true).doc("torchscale xpos_scale_base"))
      .key(KeySpec::integer("prompt_length").min(0).modes(decode).doc("tokens of the first (prefill) call; 0 = every "
                                                                       "token alone"))
      .key(KeySpec::string("cache_dtype")
               .default_value("float32")
               .oneOf({"float32", "float16", "bfloat16"})
               .modes(decode)
               .doc("KV cache element type"))
      .key(KeySpec::string("cache_eviction")
               .default_value("none")
               .oneOf({"none", "sliding_window", "streaming"})
               .modes(decode)
               .doc("KVCache eviction: none (cache_capacity >= T), sliding_window (a ring of the newest "
                    "cache_capacity tokens; with sliding_window attention, cache_capacity >= sliding_window keeps every "
                    "key the window needs), streaming (StreamingLLM: cache_sink_tokens first tokens + a ring)"))
      .key(KeySpec::integer("cache_capacity").nullable().min(1).modes(decode).doc(
          "KV cache capacity in tokens, at most T; null = T"))
      .key(KeySpec::integer("cache_sink_tokens").min(0).modes(decode).doc("streaming eviction: tokens kept forever"));

  for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    const std::string n = p;
    const std::string heads = n == "q_proj" || n == "o_proj" ? "num_attention_heads" : "num_key_value_heads";
    const std::vector<std::string> shape =
        n == "o_proj" ? std::vector<std::string>{"hidden_size", heads + "*head_dim"}
                      : std::vector<std::string>{heads + "*head_dim", "hidden_size"};
    s.weight(n + ".weight", shape).when("checkpoint_names=llama");
    s.weight(n + ".bias", {shape[0]}).when("checkpoint_names=llama & attention_bias");
  }
  s.weight("query_key_value.weight", {"3*num_attention_heads*head_dim", "hidden_size"})
      .when("checkpoint_names=bloom")
      .doc("rows h*3*head_dim + t*head_dim + i = row h*head_dim + i of q (t=0), k (1), v (2)")
      .weight("query_key_value.bias", {"3*num_attention_heads*head_dim"})
      .when("checkpoint_names=bloom & attention_bias")
      .weight("dense.weight", {"hidden_size", "num_attention_heads*head_dim"})
      .when("checkpoint_names=bloom")
      .weight("dense.bias", {"hidden_size"})
      .when("checkpoint_names=bloom & attention_bias")
      .weight("sinks", {"num_attention_heads"})
      .when("sinks")
      .doc("one logit per query head, an extra softmax column")
      .input("hidden_states", {"T", "hidden_size"})
      .input("position_ids", {"T"}, DtypeClass::integer)
      .optional()
      .in_modes({"prefill"})
      .when("position_encoding=rope|xpos")
      .doc("RoPE / xPos positions (>= 0); default 0..T-1. Masks always use 0..T-1 (cache positions)")
      .input("attention_mask", {"T"}, DtypeClass::mask)
      .optional()
      .in_modes({"prefill"})
      .doc("HF 2-D padding mask: 1 = attend to this key, 0 = padding; default all 1")
      .output("hidden_states", {"T", "hidden_size"})
      .doc("decode: the outputs of the successive calls, row by row")
      .tolerance(2e-5)
      .notes(
          "Queries that see no key at all (left padding under a causal mask, no sinks) give output 0 before "
          "`o_proj` here; HF's eager path gives an arbitrary average there. Golden cases mark such rows in "
          "`expected.hidden_states.row_mask`.")
      .implement(
          [](const Config& c, Plan& p) {
            detail::AttentionCase a;
            AttentionConfig& g = a.cfg;
            const std::string& mode = p.name("mode");
            g.hidden_size = c.integer("hidden_size");
            g.num_attention_heads = c.integer("num_attention_heads");
            g.num_key_value_heads = c.optional_integer("num_key_value_heads").value_or(g.num_attention_heads);
            if (g.num_attention_heads % g.num_key_value_heads != 0)
              case_fail(Problem::bad_config_value, "attention", "num_attention_heads = ", g.num_attention_heads,
                        " is not a multiple of num_key_value_heads = ", g.num_key_value_heads);
            if (c.is_null("head_dim")) {
              if (g.hidden_size % g.num_attention_heads != 0)
                case_fail(Problem::bad_config_value, "attention", "hidden_size = ", g.hidden_size,
                          " is not divisible by num_attention_heads = ", g.num_attention_heads, "; set head_dim");
              g.head_dim = g.hidden_size / g.num_attention_heads;
            } else {
              g.head_dim = c.integer("head_dim");
            }
            p.set_size("num_key_value_heads", g.num_key_value_heads);
            p.set_size("head_dim", g.head_dim);
            a.bloom_names = c.string("checkpoint_names") == "bloom";
            if (a.bloom_names && g.num_key_value_heads != g.num_attention_heads)
              case_fail(Problem::bad_config_value, "attention",
                        "checkpoint_names bloom (fused per-head q/k/v) needs num_key_value_heads = num_attention_heads");
            g.qkv_bias = g.o_bias = c.boolean("attention_bias");
            if (const auto q = c.optional_number("query_pre_attn_scalar")) g.scale = 1.0 / std::sqrt(*q);
            g.causal = c.boolean("is_causal");
            g.sliding_window = c.optional_integer("sliding_window").value_or(0);
            g.softcap = c.optional_number("attn_logit_softcapping").value_or(0.0);
            g.sinks = c.boolean("sinks");
            const std::string& pe = c.string("position_encoding");
            g.position = pe == "rope"    ? PositionEncoding::rope
                         : pe == "alibi" ? PositionEncoding::alibi
                         : pe == "xpos"  ? PositionEncoding::xpos
                                         : PositionEncoding::none;
            // RoPE keys only mean something with RoPE: reject them elsewhere rather than ignore them.
            for (const char* key : {"rope_theta", "rope_scaling", "partial_rotary_factor", "rope_interleave"})
              if (c.given(key) && g.position != PositionEncoding::rope)
                case_fail(Problem::bad_config_value, "attention", "config key ", quote_name(key),
                          " needs position_encoding rope (is ", pe, ")");
            if (c.given("alibi_form") && g.position != PositionEncoding::alibi)
              case_fail(Problem::bad_config_value, "attention", "config key 'alibi_form' needs position_encoding alibi");
            if (c.given("xpos_scale_base") && g.position != PositionEncoding::xpos)
              case_fail(Problem::bad_config_value, "attention",
                        "config key 'xpos_scale_base' needs position_encoding xpos");
            if (g.position == PositionEncoding::rope) {
              RopeConfig& rc = g.rope;
              rc.head_dim = g.head_dim;
              rc.theta = c.number("rope_theta");
              rc.rotary_dim = RopeConfig::partial_rotary_dim(g.head_dim, c.number("partial_rotary_factor"));
              if (rc.rotary_dim == g.head_dim) rc.rotary_dim = 0;
              if (c.number("partial_rotary_factor") < 1.0 && rc.rotary_dim == 0)
                case_fail(Problem::bad_config_value, "attention", "partial_rotary_factor = ",
                          c.number("partial_rotary_factor"), " rotates int(", g.head_dim, " * factor) = 0 dims");
              rc.layout = c.boolean("rope_interleave") ? RopeLayout::interleaved : RopeLayout::half;
              rc.max_position_embeddings = c.optional_integer("max_position_embeddings").value_or(0);
              if (!c.is_null("rope_scaling")) rc.scaling = detail::parse_rope_scaling(c.json("rope_scaling"));
              rc.validate("attention: rope");
            }
            g.alibi_form = c.string("alibi_form") == "symmetric" ? AlibiForm::symmetric : AlibiForm::causal;
            g.xpos_scale_base = c.number("xpos_scale_base");
            for (const char* key : {"prompt_length", "cache_dtype", "cache_eviction", "cache_capacity", "cache_sink_tokens"})
              if (c.given(key) && mode != "decode")
                case_fail(Problem::bad_config_value, "attention", "config key ", quote_name(key),
                          " applies to mode decode only (mode is ", mode, ")");
            a.prompt_length = c.integer("prompt_length");
            a.cache_dtype = c.string("cache_dtype");
            const std::string& ev = c.string("cache_eviction");
            a.eviction = ev == "sliding_window" ? CacheEviction::sliding_window
                         : ev == "streaming"    ? CacheEviction::streaming
                                                : CacheEviction::none;
            a.cache_capacity = c.optional_integer("cache_capacity").value_or(0);
            a.sink_tokens = c.integer("cache_sink_tokens");
            // The library validates the rest when run() builds the layer, after the weights' shapes are
            // checked (building it here would allocate projections of unchecked sizes).
            return a;
          },
          [](const Case& k, const detail::AttentionCase& a, Outputs& out) {
            const MultiHeadAttention m = detail::build_attention(k, a);
            const Matrix<float> x = k.matrix("input.hidden_states");
            Matrix<float> y(x.rows(), a.cfg.hidden_size);
            if (k.mode() == "decode") {
              if (a.cache_dtype == "float16")
                detail::run_decode<f16>(k, a, m, x, y);
              else if (a.cache_dtype == "bfloat16")
                detail::run_decode<bf16>(k, a, m, x, y);
              else
                detail::run_decode<float>(k, a, m, x, y);
            } else {
              std::vector<std::int64_t> pos;
              std::vector<std::uint8_t> mask;
              if (k.has("input.position_ids")) pos = k.integers("input.position_ids");
              if (k.has("input.attention_mask"))
                for (const std::int64_t v : k.integers("input.attention_mask")) mask.push_back(v ? 1 : 0);
              Workspace<float> ws;
              m.forward(x, y, ws, pos.empty() ? nullptr : pos.data(), mask.empty() ? nullptr : mask.data());
            }
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
