#pragma once
// Conformance declarations of YOCO (see registry.hpp for the declaration API, docs/conformance.md for the
// generated reference):
//   gated_retention  GatedRetention (retention/gated_retention.hpp): unilm YOCO GateRetention, modes
//                    chunkwise / recurrent;
//   yoco             YOCO (retention/yoco.hpp): the decoder-decoder without embedding and output projection,
//                    modes prefill / decode.
// unilm YOCO needs CUDA (Triton kernels, flash_attn, fairseq model-parallel layers) and is not
// pip-installable: the golden cases come from a PyTorch transcription of its source
// (tools/yoco_reference.py, microsoft/unilm@7402b0eefe7eee5863c7b2c164a7b13cdc6425e6).

#include <cstdint>
#include <string>
#include <vector>

#include "../../core/workspace.hpp"
#include "../../retention/gated_retention.hpp"
#include "../../retention/yoco.hpp"
#include "../registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {

inline const char* yoco_reference_note() {
  return "unilm YOCO runs only on CUDA (Triton kernels, flash_attn) and is not pip-installable: the expected "
         "outputs come from a PyTorch transcription of its source (tools/yoco_reference.py, "
         "microsoft/unilm@7402b0eefe7eee5863c7b2c164a7b13cdc6425e6), not from the original package.";
}

struct YOCOCase {
  YOCOConfig cfg;
  Index prompt_length = 0;
};

}  // namespace detail

/// GatedRetention (unilm YOCO GateRetention).
inline void register_gated_retention(Registry& r) {
  LayerSpec s("gated_retention",
              "unilm YOCO `GateRetention` (YOCO/yoco/models/decoder/gate_retention.py with "
              "kernel/gate_recurrent.py; transcribed in tools/yoco_reference.py; float32, batch 1)",
              "Gated retention: q, k rotated (interleaved pairs, theta_j = 1 / rope_theta^linspace(0, 1, d/2)), k "
              "scaled by d^-0.5, per-token per-head decay exp(logsigmoid(gt_proj(x)) / gate_logit_normalizer), "
              "no normalisation of the scores, per-head RMS subln (no weights), swish(g_proj(x)) *, out_proj.");
  s.mode("chunkwise",
         "chunk_gate_retention in chunks of chunk_size tokens from an empty state (the forward without an "
         "incremental_state; SelfDecoder zero-pads T to a multiple of the chunk and drops the padded rows, here "
         "the last chunk is shorter: the same rows)")
      .mode("recurrent",
            "recurrent_gate_retention one token at a time from an empty state (incremental_state, "
            "is_prefilling False, rel_pos of position t); output row t is token t's output")
      .key(KeySpec::integer("dim").required().min(1).doc(
          "model width (YOCOArgs dim); head_dim = dim / n_self_heads must be even"))
      .key(KeySpec::integer("n_self_heads").required().min(1).doc("retention heads (YOCOArgs n_self_heads)"))
      .key(KeySpec::number("norm_eps").default_value("1e-05").min(0).doc("eps of the subln RMSNorm"))
      .key(KeySpec::number("rope_theta").default_value("10000.0").min(0, true).doc("rotation base"))
      .key(KeySpec::number("gate_logit_normalizer")
               .default_value("16.0")
               .min(0, true)
               .doc("divisor of logsigmoid(gt) (the GateRetention constructor argument)"))
      .key(KeySpec::integer("chunk_size").default_value("256").min(1).modes("chunkwise").doc(
          "chunk length (the reference's chunk_gate_retention(..., chunk_size=256))"))
      .weight("q_proj.weight", {"dim", "dim"})
      .weight("k_proj.weight", {"dim", "dim"})
      .weight("v_proj.weight", {"dim", "dim"})
      .weight("g_proj.weight", {"dim", "dim"})
      .weight("gt_proj.weight", {"n_self_heads", "dim"})
      .doc("gate logits, one per head")
      .weight("out_proj.weight", {"dim", "dim"})
      .input("hidden_states", {"T", "dim"})
      .output("hidden_states", {"T", "dim"})
      .doc("recurrent: the outputs of the successive single-token calls, row by row")
      .tolerance(1e-5)
      .notes(detail::yoco_reference_note())
      .implement(
          [](const Config& c, Plan& p) {
            GatedRetentionConfig g;
            g.embed_dim = c.integer("dim");
            g.num_heads = c.integer("n_self_heads");
            g.norm_eps = c.number("norm_eps");
            g.rope_theta = c.number("rope_theta");
            g.gate_logit_normalizer = c.number("gate_logit_normalizer");
            g.chunk_size = c.integer("chunk_size");
            if (c.given("chunk_size") && p.name("mode") != "chunkwise")
              case_fail(Problem::bad_config_value, "gated_retention",
                        "config key 'chunk_size' applies to mode chunkwise only (mode is ", p.name("mode"), ")");
            if (g.embed_dim % g.num_heads != 0 || (g.embed_dim / g.num_heads) % 2 != 0)
              case_fail(Problem::bad_config_value, "gated_retention", "dim = ", g.embed_dim,
                        " must be n_self_heads = ", g.num_heads, " times an even head_dim");
            return g;
          },
          [](const Case& k, const GatedRetentionConfig& g, Outputs& out) {
            const auto m = GatedRetention<float>::load(k.file(), "", g);
            const Matrix<float> x = k.matrix("input.hidden_states");
            Matrix<float> y(x.rows(), g.embed_dim);
            Workspace<float> ws;
            if (k.mode() == "recurrent") {
              auto state = m.make_state();
              for (Index t = 0; t < x.rows(); ++t)
                m.forward_recurrent(x.middleRows(t, 1), y.middleRows(t, 1), state, ws);
            } else {
              m.forward_chunkwise(x, y, ws);
            }
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

/// YOCO (unilm YOCO decoder-decoder, without embedding and output projection).
inline void register_yoco(Registry& r) {
  LayerSpec s("yoco",
              "unilm YOCO `YOCO` without embed_tokens and output_projection (YOCO/yoco/models/decoder/yoco.py: "
              "SelfDecoder, CrossDecoder, DecoderLayer; cross_attention.py, feedforward_network.py, "
              "gate_retention.py, sliding_window_attention.py; transcribed in tools/yoco_reference.py; float32, "
              "batch 1)",
              "Decoder-decoder: n_layers / 2 self-decoder layers (pre-RMSNorm gated retention, or sliding-window "
              "attention, and SwiGLU FFN "
              "blocks), one global K/V from kv_layer_norm of their output (k_proj rotated, v_proj), n_layers / 2 "
              "cross-decoder layers attending to it (causal, GQA), final layer_norm. Input: the embedded tokens.");
  const std::string decode = "decode";
  s.mode("prefill",
         "one forward over the sequence (no incremental_state, is_prefilling True: the self-decoder chunkwise in "
         "chunks of block_size, the cross-decoder over every row)")
      .mode("decode",
            "the first `prompt_length` tokens in one prefill call (with an incremental_state), then every further "
            "token alone (is_prefilling False, start_pos t) through YOCOCache; output row t is token t's output")
      .key(KeySpec::integer("dim").required().min(1).doc("model width (YOCOArgs dim)"))
      .key(KeySpec::integer("n_layers").required().min(2).max(4).doc(
          "2 or 4: n_layers / 2 self-decoder and n_layers / 2 cross-decoder layers (conformance cases declare at "
          "most layers.0 and layers.1 of each)"))
      .key(KeySpec::integer("hidden_dim").required().min(1).doc("FFN width"))
      .key(KeySpec::integer("n_self_heads").required().min(1).doc(
          "gated retention heads; dim / n_self_heads must be even"))
      .key(KeySpec::integer("n_attn_heads").required().min(1).doc(
          "cross-attention query heads; head_dim = dim / n_attn_heads must be even"))
      .key(KeySpec::integer("n_attn_kv_heads").required().min(1).doc(
          "heads of the global K/V; divides n_attn_heads"))
      .key(KeySpec::number("norm_eps").default_value("1e-05").min(0).doc("eps of every RMSNorm and the subln"))
      .key(KeySpec::number("rope_theta").default_value("10000.0").min(0, true).doc("rotation base (both decoders)"))
      .key(KeySpec::integer("block_size").default_value("256").min(1).doc(
          "self-decoder chunk of a multi-token call (SelfDecoder.block_size and GateRetention's chunk_size, 256 "
          "in the reference)"))
      .key(KeySpec::integer("prompt_length").min(0).modes(decode).doc(
          "tokens of the first (prefill) call; 0 = every token alone"))
      .key(KeySpec::integer("sliding_window").default_value("0").min(0).doc(
          "YOCOArgs sliding_window: 0 (None) = gated-retention self-decoder; > 0 = SlidingWindowAttention "
          "self-decoder layers (each query sees itself and sliding_window - 1 keys before it)"));
  auto self_layer = [&s](const std::string& i, const char* when) {
    const std::string p = "self_decoder.layers." + i + ".";
    const std::string w = when ? std::string(when) + " & " : std::string();
    for (const char* n : {"q_proj", "k_proj", "v_proj"}) {
      s.weight(p + "mixer." + n + ".weight", {"dim", "dim"});
      if (when) s.when(when);
    }
    s.weight(p + "mixer.g_proj.weight", {"dim", "dim"}).when(w + "!sliding");
    s.weight(p + "mixer.gt_proj.weight", {"n_self_heads", "dim"}).when(w + "!sliding");
    s.weight(p + "mixer.out_proj.weight", {"dim", "dim"});
    if (when) s.when(when);
  };
  auto block = [&s](const std::string& p, const char* when) {
    s.weight(p + "mixer_layer_norm.weight", {"dim"});
    if (when) s.when(when);
    s.weight(p + "ffn.fc1.weight", {"hidden_dim", "dim"});
    if (when) s.when(when);
    s.weight(p + "ffn.gate.weight", {"hidden_dim", "dim"});
    if (when) s.when(when);
    s.weight(p + "ffn.fc2.weight", {"dim", "hidden_dim"});
    if (when) s.when(when);
    s.weight(p + "final_layer_norm.weight", {"dim"});
    if (when) s.when(when);
  };
  auto cross_layer = [&s](const std::string& i, const char* when) {
    const std::string p = "cross_decoder.layers." + i + ".";
    s.weight(p + "mixer.q_proj.weight", {"dim", "dim"});
    if (when) s.when(when);
    s.weight(p + "mixer.out_proj.weight", {"dim", "dim"});
    if (when) s.when(when);
  };
  const char* two = "two_layers_each";
  self_layer("0", nullptr);
  block("self_decoder.layers.0.", nullptr);
  self_layer("1", two);
  block("self_decoder.layers.1.", two);
  s.weight("cross_decoder.kv_layer_norm.weight", {"dim"})
      .weight("cross_decoder.k_proj.weight", {"n_attn_kv_heads*head_dim", "dim"})
      .weight("cross_decoder.v_proj.weight", {"n_attn_kv_heads*head_dim", "dim"});
  cross_layer("0", nullptr);
  block("cross_decoder.layers.0.", nullptr);
  cross_layer("1", two);
  block("cross_decoder.layers.1.", two);
  s.weight("layer_norm.weight", {"dim"})
      .input("hidden_states", {"T", "dim"})
      .doc("the embedded tokens (the caller's embed_scale * embed_tokens(ids))")
      .output("hidden_states", {"T", "dim"})
      .doc("layer_norm of the last hidden states (before output_projection), every row")
      .tolerance(1e-5)
      .notes(detail::yoco_reference_note())
      .implement(
          [decode](const Config& c, Plan& p) {
            detail::YOCOCase a;
            YOCOConfig& y = a.cfg;
            const std::int64_t n_layers = c.integer("n_layers");
            if (n_layers != 2 && n_layers != 4)
              case_fail(Problem::bad_config_value, "yoco", "n_layers = ", n_layers,
                        " must be 2 or 4 in a conformance case");
            y.dim = c.integer("dim");
            y.hidden_dim = c.integer("hidden_dim");
            y.n_self_layers = y.n_cross_layers = n_layers / 2;
            y.n_self_heads = c.integer("n_self_heads");
            y.n_attn_heads = c.integer("n_attn_heads");
            y.n_attn_kv_heads = c.integer("n_attn_kv_heads");
            y.norm_eps = c.number("norm_eps");
            y.rope_theta = c.number("rope_theta");
            y.chunk_size = c.integer("block_size");
            y.sliding_window = c.integer("sliding_window");
            if (y.dim % y.n_self_heads != 0 || (y.dim / y.n_self_heads) % 2 != 0)
              case_fail(Problem::bad_config_value, "yoco", "dim = ", y.dim, " must be n_self_heads = ",
                        y.n_self_heads, " times an even head_dim");
            if (y.dim % y.n_attn_heads != 0 || (y.dim / y.n_attn_heads) % 2 != 0)
              case_fail(Problem::bad_config_value, "yoco", "dim = ", y.dim, " must be n_attn_heads = ",
                        y.n_attn_heads, " times an even head_dim");
            if (y.n_attn_heads % y.n_attn_kv_heads != 0)
              case_fail(Problem::bad_config_value, "yoco", "n_attn_heads = ", y.n_attn_heads,
                        " must be a multiple of n_attn_kv_heads = ", y.n_attn_kv_heads);
            if (c.given("prompt_length") && p.name("mode") != decode)
              case_fail(Problem::bad_config_value, "yoco", "config key 'prompt_length' applies to mode decode only "
                        "(mode is ", p.name("mode"), ")");
            a.prompt_length = c.integer("prompt_length");
            p.set_size("head_dim", y.head_dim());
            p.set_flag("two_layers_each", n_layers == 4);
            p.set_flag("sliding", y.sliding_window > 0);
            return a;
          },
          [](const Case& k, const detail::YOCOCase& a, Outputs& out) {
            const YOCO m = YOCO::load(k.file(), a.cfg);
            const Matrix<float> x = k.matrix("input.hidden_states");
            const Index T = x.rows();
            Matrix<float> y(T, a.cfg.dim);
            Workspace<float> ws;
            YOCOCache cache = m.make_cache(T);
            if (k.mode() == "decode") {
              if (a.prompt_length > T)
                case_fail(Problem::bad_config_value, k.where(), "prompt_length = ", a.prompt_length, " exceeds the ",
                          T, " tokens of the case");
              Index t = 0;
              if (a.prompt_length > 0) {
                m.forward(x.topRows(a.prompt_length), y.topRows(a.prompt_length), cache, ws);
                t = a.prompt_length;
              }
              for (; t < T; ++t) m.forward(x.middleRows(t, 1), y.middleRows(t, 1), cache, ws);
            } else if (T > 0) {
              m.forward(x, y, cache, ws);
            }
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
