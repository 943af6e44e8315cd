#pragma once
// Conformance declarations of the dense layers: linear, mlp, rms_norm, layer_norm, embedding
// (see registry.hpp for the declaration API, docs/conformance.md for the generated reference).

#include <cstdint>
#include <string>
#include <vector>

#include "../../core/activation.hpp"
#include "../../core/workspace.hpp"
#include "../../embedding/embedding.hpp"
#include "../../ffn/mlp.hpp"
#include "../../linear/linear.hpp"
#include "../../norm/layer_norm.hpp"
#include "../../norm/rms_norm.hpp"
#include "../registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// torch.nn.Linear.
inline void register_linear(Registry& r) {
  LayerSpec s("linear", "`torch.nn.Linear`", "y = x W^T + b.");
  s.key(KeySpec::integer("in_features").required().min(1).doc("input width"))
      .key(KeySpec::integer("out_features").required().min(1).doc("output width"))
      .key(KeySpec::boolean("bias").default_value("true").doc("learnable bias (the torch default)"))
      .weight("weight", {"out_features", "in_features"})
      .doc("PyTorch layout [out, in]")
      .weight("bias", {"out_features"})
      .when("bias")
      .input("hidden_states", {"T", "in_features"})
      .output("hidden_states", {"T", "out_features"})
      .tolerance(1e-5)
      .implement(
          [](const Config& c, Plan&) {
            return Linear<float>::Config{c.integer("in_features"), c.integer("out_features"), c.boolean("bias")};
          },
          [](const Case& k, const Linear<float>::Config& cfg, Outputs& out) {
            const Linear<float> lin = Linear<float>::load(k.file(), "", cfg);
            out.add("hidden_states", lin.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// Llama MLP (gate_proj/up_proj/down_proj), T5 gated FFN (wi_0/wi_1/wo), plain fc1/fc2 MLP.
inline void register_mlp(Registry& r) {
  LayerSpec s("mlp", "transformers `LlamaMLP`, `T5DenseGatedActDense`, `CLIPMLP` (fc1/fc2)",
              "Gated: y = down(act(gate(x)) * up(x)); plain: y = down(act(up(x))).");
  s.key(KeySpec::integer("hidden_size").required().min(1).doc("model width (T5 `d_model`)"))
      .key(KeySpec::integer("intermediate_size").required().min(1).doc("inner width (T5 `d_ff`)"))
      .key(KeySpec::string("hidden_act")
               .default_value("silu")
               .oneOf({"silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "relu2",
                       "linear", "identity"})
               .doc("activation, HF names (T5 `dense_act_fn`; gelu = erf form, gelu_new / gelu_pytorch_tanh / "
                    "gelu_fast = tanh form)"))
      .key(KeySpec::boolean("mlp_bias").doc("biases on every projection (HF `mlp_bias`; fc1/fc2 MLPs: true)"))
      .key(KeySpec::string("checkpoint_names")
               .default_value("llama")
               .oneOf({"llama", "t5", "fc"})
               .doc("weight names: llama = gate_proj, up_proj, down_proj; t5 = wi_0 (gate), wi_1 (up), wo; "
                    "fc = fc1 (up), fc2 (down), no gate"))
      .key(KeySpec::boolean("gated").nullable().doc("GLU (gate * up); null = true for llama and t5, false for fc"));
  struct Names {
    const char* style;
    const char* gate;
    const char* up;
    const char* down;
  };
  for (const Names& n : {Names{"llama", "gate_proj", "up_proj", "down_proj"}, Names{"t5", "wi_0", "wi_1", "wo"},
                         Names{"fc", nullptr, "fc1", "fc2"}}) {
    const std::string style = std::string("checkpoint_names=") + n.style;
    if (n.gate) {
      s.weight(std::string(n.gate) + ".weight", {"intermediate_size", "hidden_size"}).when(style + " & gated");
      s.weight(std::string(n.gate) + ".bias", {"intermediate_size"}).when(style + " & gated & mlp_bias");
    }
    s.weight(std::string(n.up) + ".weight", {"intermediate_size", "hidden_size"}).when(style);
    s.weight(std::string(n.up) + ".bias", {"intermediate_size"}).when(style + " & mlp_bias");
    s.weight(std::string(n.down) + ".weight", {"hidden_size", "intermediate_size"}).when(style);
    s.weight(std::string(n.down) + ".bias", {"hidden_size"}).when(style + " & mlp_bias");
  }
  s.input("hidden_states", {"T", "hidden_size"})
      .output("hidden_states", {"T", "hidden_size"})
      .tolerance(2e-5)
      .implement(
          [](const Config& c, Plan& p) {
            typename MLP<float>::Config m;
            m.hidden_size = c.integer("hidden_size");
            m.intermediate_size = c.integer("intermediate_size");
            m.act = parse_activation(c.string("hidden_act"), "hidden_act");
            m.bias = c.boolean("mlp_bias");
            const std::string& style = c.string("checkpoint_names");
            m.names = style == "t5" ? MLP<float>::Names::t5() : style == "fc" ? MLP<float>::Names::fc()
                                                                                : MLP<float>::Names::llama();
            m.gated = c.optional_boolean("gated").value_or(style != "fc");
            if (m.gated && style == "fc")
              case_fail(Problem::bad_config_value, "mlp", "gated = true, but checkpoint_names fc has no gate projection");
            p.set_flag("gated", m.gated);
            return m;
          },
          [](const Case& k, const MLP<float>::Config& cfg, Outputs& out) {
            const MLP<float> mlp = MLP<float>::load(k.file(), "", cfg);
            out.add("hidden_states", mlp.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// LlamaRMSNorm; GemmaRMSNorm (1 + w) with unit_offset.
inline void register_rms_norm(Registry& r) {
  LayerSpec s("rms_norm", "transformers `LlamaRMSNorm`; `GemmaRMSNorm` with `unit_offset`",
              "y = x / sqrt(mean(x^2) + eps) * w (Gemma: * (1 + w)).");
  s.key(KeySpec::integer("hidden_size").required().min(1).doc("width"))
      .key(KeySpec::number("rms_norm_eps").default_value("1e-06").min(0).doc("epsilon added to mean(x^2)"))
      .key(KeySpec::boolean("unit_offset").doc("multiply by (1 + weight), as GemmaRMSNorm stores it"))
      .weight("weight", {"hidden_size"})
      .input("hidden_states", {"T", "hidden_size"})
      .output("hidden_states", {"T", "hidden_size"})
      .tolerance(1e-5)
      .implement(
          [](const Config& c, Plan&) {
            return RMSNorm<float>::Config{c.integer("hidden_size"), c.number("rms_norm_eps"), c.boolean("unit_offset")};
          },
          [](const Case& k, const RMSNorm<float>::Config& cfg, Outputs& out) {
            const RMSNorm<float> norm = RMSNorm<float>::load(k.file(), "", cfg);
            out.add("hidden_states", norm.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// torch.nn.LayerNorm over the last dimension.
inline void register_layer_norm(Registry& r) {
  LayerSpec s("layer_norm", "`torch.nn.LayerNorm` (one normalized dimension)",
              "y = (x - mean) / sqrt(var + eps) * w + b, biased variance.");
  s.key(KeySpec::integer("normalized_shape").required().min(1).doc("width (the last dimension)"))
      .key(KeySpec::number("eps").default_value("1e-05").min(0).doc("epsilon added to the variance"))
      .key(KeySpec::boolean("elementwise_affine").default_value("true").doc("learnable weight (and bias)"))
      .key(KeySpec::boolean("bias").default_value("true").doc("learnable bias (with elementwise_affine)"))
      .weight("weight", {"normalized_shape"})
      .when("elementwise_affine")
      .weight("bias", {"normalized_shape"})
      .when("elementwise_affine & bias")
      .input("hidden_states", {"T", "normalized_shape"})
      .output("hidden_states", {"T", "normalized_shape"})
      .tolerance(1e-5)
      .implement(
          [](const Config& c, Plan&) {
            return LayerNorm<float>::Config{c.integer("normalized_shape"), c.number("eps"),
                                            c.boolean("elementwise_affine"), c.boolean("bias")};
          },
          [](const Case& k, const LayerNorm<float>::Config& cfg, Outputs& out) {
            const LayerNorm<float> norm = LayerNorm<float>::load(k.file(), "", cfg);
            out.add("hidden_states", norm.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// torch.nn.Embedding.
inline void register_embedding(Registry& r) {
  LayerSpec s("embedding", "`torch.nn.Embedding`", "y[t] = weight[input_ids[t]] (an exact copy).");
  s.key(KeySpec::integer("num_embeddings").required().min(1).doc("rows of the table (HF `vocab_size`)"))
      .key(KeySpec::integer("embedding_dim").required().min(1).doc("width (HF `hidden_size`)"))
      .weight("weight", {"num_embeddings", "embedding_dim"})
      .input("input_ids", {"T"}, DtypeClass::integer)
      .doc("token ids in [0, num_embeddings)")
      .output("hidden_states", {"T", "embedding_dim"})
      .tolerance(0)
      .implement(
          [](const Config& c, Plan&) {
            return Embedding<float>::Config{c.integer("num_embeddings"), c.integer("embedding_dim")};
          },
          [](const Case& k, const Embedding<float>::Config& cfg, Outputs& out) {
            const Embedding<float> emb = Embedding<float>::load(k.file(), "", cfg);
            const std::vector<std::int64_t> ids = k.integers("input.input_ids");
            Matrix<float> y(static_cast<Index>(ids.size()), cfg.embedding_dim);
            emb.forward(ids.data(), static_cast<Index>(ids.size()), y);
            out.add("hidden_states", y);
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer
