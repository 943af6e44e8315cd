#pragma once
// Conformance declarations of RetNet (see registry.hpp for the declaration API, docs/conformance.md for
// the generated reference):
//   retention     MultiScaleRetention (retention/multiscale_retention.hpp): torchscale 0.3.0
//                 MultiScaleRetention, modes parallel / recurrent / chunkwise;
//   retnet_layer  RetNetDecoderLayer (retention/retnet_block.hpp): torchscale 0.3.0's RetNet DecoderLayer
//                 (pre-RMSNorm retention and GLU FFN blocks with residuals), the same three modes.

#include <string>
#include <vector>

#include "../../core/activation.hpp"
#include "../../core/workspace.hpp"
#include "../../retention/multiscale_retention.hpp"
#include "../../retention/retnet_block.hpp"
#include "../registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace detail {

/// Modes and config keys the two RetNet declarations share.
inline void retention_modes_and_keys(LayerSpec& s) {
  s.mode("parallel", "the parallel form over the whole sequence (torchscale forward with RetNetRelPos(T))")
      .mode("recurrent",
            "one token at a time from an empty state (torchscale forward with an incremental_state and "
            "RetNetRelPos(t + 1, activate_recurrent=True)); output row t is token t's output")
      .mode("chunkwise",
            "the chunkwise recurrent form in chunks of recurrent_chunk_size tokens (torchscale "
            "chunkwise_recurrent=True; a T that is not a multiple is zero-padded there, and the padded rows "
            "dropped, as RetNetDecoder.forward does; here the last chunk is shorter: the same rows)")
      .key(KeySpec::integer("decoder_embed_dim").required().min(1).doc(
          "model width = q/k width; key_dim = decoder_embed_dim / decoder_retention_heads must be even"))
      .key(KeySpec::integer("decoder_value_embed_dim")
               .nullable()
               .min(1)
               .doc("v/g width (RetNet uses 2 * decoder_embed_dim); null = decoder_embed_dim"))
      .key(KeySpec::integer("decoder_retention_heads").required().min(1).doc("heads; head h decays by "
                                                                              "gamma = 1 - 2^(-5 - h)"))
      .key(KeySpec::number("layernorm_eps").default_value("1e-06").min(0).doc(
          "eps of the per-head group norm (and, in retnet_layer, of the two RMSNorms); the three forms agree "
          "exactly only at 0 (torchscale issue #40)"))
      .key(KeySpec::integer("recurrent_chunk_size").default_value("512").min(1).modes("chunkwise").doc(
          "chunk length of the chunkwise form"));
}

inline RetentionConfig retention_config(const Config& c, const std::string& mode, const char* layer) {
  RetentionConfig r;
  r.embed_dim = c.integer("decoder_embed_dim");
  r.value_dim = c.optional_integer("decoder_value_embed_dim").value_or(0);
  r.num_heads = c.integer("decoder_retention_heads");
  r.layernorm_eps = c.number("layernorm_eps");
  r.chunk_size = c.integer("recurrent_chunk_size");
  if (c.given("recurrent_chunk_size") && mode != "chunkwise")
    case_fail(Problem::bad_config_value, layer, "config key 'recurrent_chunk_size' applies to mode chunkwise only "
              "(mode is ", mode, ")");
  if (r.embed_dim % r.num_heads != 0 || (r.embed_dim / r.num_heads) % 2 != 0)
    case_fail(Problem::bad_config_value, layer, "decoder_embed_dim = ", r.embed_dim,
              " must be decoder_retention_heads = ", r.num_heads, " times an even key_dim");
  const Index v = r.value_dim ? r.value_dim : r.embed_dim;
  if (v % r.num_heads != 0)
    case_fail(Problem::bad_config_value, layer, "decoder_value_embed_dim = ", v,
              " is not divisible by decoder_retention_heads = ", r.num_heads);
  return r;
}

inline void set_retention_sizes(Plan& p, const RetentionConfig& r) {
  p.set_size("decoder_value_embed_dim", r.value_dim ? r.value_dim : r.embed_dim);
}

/// Runs `layer` (MultiScaleRetention<float> or RetNetDecoderLayer<float>) in the case's mode.
template <class Layer>
Matrix<float> run_retention_mode(const Case& k, const Layer& layer, Index embed_dim) {
  const Matrix<float> x = k.matrix("input.hidden_states");
  Matrix<float> y(x.rows(), embed_dim);
  Workspace<float> ws;
  if (k.mode() == "recurrent") {
    auto state = layer.make_state();
    for (Index t = 0; t < x.rows(); ++t) layer.forward_recurrent(x.middleRows(t, 1), y.middleRows(t, 1), state, ws);
  } else if (k.mode() == "chunkwise") {
    layer.forward_chunkwise(x, y, ws);
  } else {
    layer.forward_parallel(x, y, ws);
  }
  return y;
}

}  // namespace detail

/// MultiScaleRetention (torchscale 0.3.0).
inline void register_retention(Registry& r) {
  LayerSpec s("retention", "torchscale 0.3.0 `MultiScaleRetention` (torchscale/component/multiscale_retention.py, "
                           "with RetNetRelPos from torchscale/architecture/retnet.py; float32, batch 1)",
              "Multi-scale retention: q, k (scaled by key_dim^-0.5) rotated by xPos-style angles, per-head decay, "
              "one of the three forms, per-head RMS group norm (no weights), gate_fn(g_proj(x)) *, out_proj.");
  detail::retention_modes_and_keys(s);
  s.key(KeySpec::string("gate_fn")
            .default_value("swish")
            .oneOf({"swish", "gelu"})
            .doc("activation of g_proj (the MultiScaleRetention constructor's gate_fn; torchscale names)"))
      .weight("q_proj.weight", {"decoder_embed_dim", "decoder_embed_dim"})
      .weight("k_proj.weight", {"decoder_embed_dim", "decoder_embed_dim"})
      .weight("v_proj.weight", {"decoder_value_embed_dim", "decoder_embed_dim"})
      .weight("g_proj.weight", {"decoder_value_embed_dim", "decoder_embed_dim"})
      .weight("out_proj.weight", {"decoder_embed_dim", "decoder_value_embed_dim"})
      .input("hidden_states", {"T", "decoder_embed_dim"})
      .output("hidden_states", {"T", "decoder_embed_dim"})
      .doc("recurrent: the outputs of the successive single-token calls, row by row")
      .tolerance(1e-5)
      .notes("Each mode is compared with torchscale's output in the same mode: with layernorm_eps > 0 the three "
             "forms differ slightly in torchscale as well.")
      .implement(
          [](const Config& c, Plan& p) {
            RetentionConfig rc = detail::retention_config(c, p.name("mode"), "retention");
            rc.gate_fn = parse_activation(c.string("gate_fn"), "gate_fn");
            detail::set_retention_sizes(p, rc);
            return rc;
          },
          [](const Case& k, const RetentionConfig& rc, Outputs& out) {
            const auto m = MultiScaleRetention<float>::load(k.file(), "", rc);
            out.add("hidden_states", detail::run_retention_mode(k, m, rc.embed_dim));
          });
  r.add(std::move(s));
}

/// One RetNet decoder layer (torchscale 0.3.0 DecoderLayer).
inline void register_retnet_layer(Registry& r) {
  LayerSpec s("retnet_layer",
              "torchscale 0.3.0 RetNet `DecoderLayer` (torchscale/architecture/retnet.py, RetNetConfig defaults: "
              "pre-norm, no deepnorm, no MoE; float32, batch 1)",
              "h = x + retention(retention_layer_norm(x)); y = h + fc2(act(fc1(z)) * gate(z)), z = "
              "final_layer_norm(h); RMSNorms with weights, no biases anywhere.");
  detail::retention_modes_and_keys(s);
  s.key(KeySpec::integer("decoder_ffn_embed_dim").required().min(1).doc("FFN width"))
      .key(KeySpec::string("activation_fn")
               .default_value("gelu")
               .oneOf({"gelu", "swish", "relu"})
               .doc("activation of ffn.fc1 (torchscale names: gelu = erf form, swish = SiLU)"));
  for (const char* p : {"q_proj", "k_proj", "v_proj", "g_proj", "out_proj"}) {
    const std::string n = p;
    const std::string E = "decoder_embed_dim", V = "decoder_value_embed_dim";
    std::vector<std::string> shape = n == "q_proj" || n == "k_proj" ? std::vector<std::string>{E, E}
                                     : n == "out_proj"               ? std::vector<std::string>{E, V}
                                                                     : std::vector<std::string>{V, E};
    s.weight("retention." + n + ".weight", shape);
  }
  s.weight("retention_layer_norm.weight", {"decoder_embed_dim"})
      .weight("ffn.fc1.weight", {"decoder_ffn_embed_dim", "decoder_embed_dim"})
      .doc("activated projection")
      .weight("ffn.gate.weight", {"decoder_ffn_embed_dim", "decoder_embed_dim"})
      .doc("linear projection")
      .weight("ffn.fc2.weight", {"decoder_embed_dim", "decoder_ffn_embed_dim"})
      .weight("final_layer_norm.weight", {"decoder_embed_dim"})
      .input("hidden_states", {"T", "decoder_embed_dim"})
      .output("hidden_states", {"T", "decoder_embed_dim"})
      .doc("recurrent: the outputs of the successive single-token calls, row by row")
      .tolerance(1e-5)
      .implement(
          [](const Config& c, Plan& p) {
            RetNetLayerConfig lc;
            lc.retention = detail::retention_config(c, p.name("mode"), "retnet_layer");
            lc.ffn_dim = c.integer("decoder_ffn_embed_dim");
            lc.activation = parse_activation(c.string("activation_fn"), "activation_fn");
            detail::set_retention_sizes(p, lc.retention);
            return lc;
          },
          [](const Case& k, const RetNetLayerConfig& lc, Outputs& out) {
            const auto m = RetNetDecoderLayer<float>::load(k.file(), "", lc);
            out.add("hidden_states", detail::run_retention_mode(k, m, lc.retention.embed_dim));
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
