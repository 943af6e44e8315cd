#pragma once
// The BitNet b1.58 decoder layer (BitNet b1.58 2B4T, arXiv:2504.12285), following transformers
// models/bitnet/modeling_bitnet.py with every nn.Linear replaced by a BitLinear (linear/bit_linear.hpp),
// as transformers' BitNet quantizer does:
//
//   h = x + o_proj( attn_sub_norm( Attention( RoPE(q_proj(n)), RoPE(k_proj(n)), v_proj(n) ) ) ),
//                                                                         n = input_layernorm(x)
//   y = h + down_proj( ffn_sub_norm( relu2(gate_proj(m)) * up_proj(m) ) ), m = post_attention_layernorm(h)
//
// BitNetMLP, BitNetAttention and BitNetDecoderLayer load themselves with the checkpoint names of
// BitNetMLP / BitNetAttention / BitNetDecoderLayer (`<prefix>.mlp.gate_proj`, `.mlp.ffn_sub_norm`,
// `.self_attn.q_proj`, `.self_attn.attn_sub_norm`, `.input_layernorm`, `.post_attention_layernorm`),
// from packed (U8 + weight_scale) or full-precision projections (BitLinear::load).
//
// Composition: the norms are RMSNorm<float>, the GLU product ops::glu, the attention math the flash
// kernel of ops/attention.hpp with RoPE from position/rope.hpp, the cache KVCache: nothing here is a
// new attention loop. BitNetAttention is the attention layer (BasicMultiHeadAttention) with BitLinear
// projections and attn_sub_norm as its output norm.
// The projections that read the same input (q/k/v, gate/up) quantize it once and share it.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "../cache/kv_cache.hpp"
#include "../config.hpp"
#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../attention/multi_head_attention.hpp"
#include "../linear/bit_linear.hpp"
#include "../norm/rms_norm.hpp"
#include "../ops/activation.hpp"
#include "../ops/attention.hpp"
#include "../position/rope.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// transformers BitNetConfig fields (and the quantization config's) that a decoder layer needs.
struct BitNetConfig {
  Index hidden_size = 0;          ///< `hidden_size` (2B4T: 2560)
  Index intermediate_size = 0;    ///< `intermediate_size` (2B4T: 6912)
  Index num_attention_heads = 0;  ///< `num_attention_heads` (2B4T: 20)
  Index num_key_value_heads = 0;  ///< `num_key_value_heads` (2B4T: 5); 0 = num_attention_heads
  Index head_dim = 0;             ///< 0 = hidden_size / num_attention_heads
  double rms_norm_eps = 1e-5;     ///< `rms_norm_eps`
  double rope_theta = 500000.0;   ///< `rope_theta`
  RopeScaling rope_scaling;       ///< `rope_scaling` (none in BitNet)
  Index max_position_embeddings = 0;  ///< `max_position_embeddings` (only for dynamic RoPE scaling)
  bool attention_bias = false;    ///< `attention_bias`
  Activation hidden_act = Activation::relu2;  ///< `hidden_act`
  TernaryFormat format = TernaryFormat::tq2;  ///< how projections are stored here
  BitScale packed_scale = BitScale::divide;   ///< quantization_config.linear_class (bitlinear: divide)

  /// The config with defaults filled in and checked (ErrorKind::config naming `where`).
  BitNetConfig resolved(const std::string& where) const {
    BitNetConfig c = *this;
    check(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_attention_heads > 0, ErrorKind::config, where,
          "hidden_size = ", c.hidden_size, ", intermediate_size = ", c.intermediate_size,
          " and num_attention_heads = ", c.num_attention_heads, " must be >= 1");
    if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
    check(c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads == 0, ErrorKind::config, where,
          "num_attention_heads = ", c.num_attention_heads, " must be a multiple of num_key_value_heads = ",
          c.num_key_value_heads);
    if (c.head_dim == 0) {
      check(c.hidden_size % c.num_attention_heads == 0, ErrorKind::config, where, "hidden_size = ", c.hidden_size,
            " is not divisible by num_attention_heads = ", c.num_attention_heads);
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    // attn_sub_norm is BitNetRMSNorm(hidden_size) applied to the [T, heads * head_dim] attention output
    check(c.num_attention_heads * c.head_dim == c.hidden_size, ErrorKind::config, where,
          "num_attention_heads * head_dim = ", c.num_attention_heads * c.head_dim, " must equal hidden_size = ",
          c.hidden_size, " (attn_sub_norm has hidden_size weights)");
    check(c.rms_norm_eps >= 0, ErrorKind::config, where, "rms_norm_eps = ", c.rms_norm_eps, " must be >= 0");
    return c;
  }

  BitLinear::Config linear(Index in, Index out, bool bias) const {
    BitLinear::Config l;
    l.in_features = in;
    l.out_features = out;
    l.bias = bias;
    l.format = format;
    l.packed_scale = packed_scale;
    return l;
  }
};

namespace bitnet_detail {

// The projections of `layers` applied to one input x, quantized once when none has its own norm.
template <std::size_t N>
void project_shared(ConstMatrixRef<float> x, const std::array<const BitLinear*, N>& layers,
                    const std::array<MatrixMap<float>*, N>& out, Workspace<float>& ws) {
  typename Workspace<float>::Frame frame(ws);
  bool own_norm = false;
  Index padded = 0;
  for (const BitLinear* l : layers) {
    own_norm = own_norm || l->has_rms_norm();
    padded = std::max(padded, l->padded_in_features());
  }
  if (own_norm) {
    for (std::size_t i = 0; i < N; ++i) layers[i]->forward(x, *out[i], ws);
    return;
  }
  const QuantizedActivations xq = BitLinear::quantize_input(x, padded, ws);
  for (std::size_t i = 0; i < N; ++i) layers[i]->forward_quantized(xq, *out[i], ws);
}

}  // namespace bitnet_detail

/// BitNet's FFN: y = down_proj(ffn_sub_norm(act(gate_proj(x)) * up_proj(x))), act = relu2.
class BitNetMLP {
 public:
  BitNetMLP() = default;

  BitNetMLP(const BitNetConfig& cfg, BitLinear gate, BitLinear up, BitLinear down, RMSNorm<float> ffn_sub_norm,
            std::string name = {})
      : cfg_(cfg.resolved(layer_where("BitNetMLP", name))), name_(std::move(name)), gate_(std::move(gate)),
        up_(std::move(up)), down_(std::move(down)), norm_(std::move(ffn_sub_norm)) {
    const Index H = cfg_.hidden_size, I = cfg_.intermediate_size;
    check_shape(where(), "gate_proj", gate_.out_features(), gate_.in_features(), I, H);
    check_shape(where(), "up_proj", up_.out_features(), up_.in_features(), I, H);
    check_shape(where(), "down_proj", down_.out_features(), down_.in_features(), H, I);
    check(norm_.config().hidden_size == I, ErrorKind::shape_mismatch, where(), "ffn_sub_norm has ",
          norm_.config().hidden_size, " weights, expected intermediate_size = ", I);
  }

  /// `<prefix>.{gate,up,down}_proj` and `<prefix>.ffn_sub_norm.weight`.
  static BitNetMLP load(const SafeTensors& st, const std::string& prefix, const BitNetConfig& config) {
    const BitNetConfig c = config.resolved(layer_where("BitNetMLP", prefix));
    const Index H = c.hidden_size, I = c.intermediate_size;
    return BitNetMLP(c, BitLinear::load(st, join_name(prefix, "gate_proj"), c.linear(H, I, false)),
                     BitLinear::load(st, join_name(prefix, "up_proj"), c.linear(H, I, false)),
                     BitLinear::load(st, join_name(prefix, "down_proj"), c.linear(I, H, false)),
                     RMSNorm<float>::load(st, join_name(prefix, "ffn_sub_norm"), {I, c.rms_norm_eps}), prefix);
  }

  const BitNetConfig& config() const noexcept { return cfg_; }
  const BitLinear& gate_proj() const noexcept { return gate_; }
  const BitLinear& up_proj() const noexcept { return up_; }
  const BitLinear& down_proj() const noexcept { return down_; }
  const RMSNorm<float>& ffn_sub_norm() const noexcept { return norm_; }

  /// x: [T, hidden] -> y: [T, hidden] (must not overlap x).
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
    if (x.rows() == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto g = ws.matrix(x.rows(), cfg_.intermediate_size), u = ws.matrix(x.rows(), cfg_.intermediate_size);
    bitnet_detail::project_shared<2>(x, {&gate_, &up_}, {&g, &u}, ws);
    ops::glu<float>(g, u, g, cfg_.hidden_act);
    norm_.forward(g, g);
    down_.forward(g, y, ws);
  }

  std::size_t bytes() const noexcept { return gate_.bytes() + up_.bytes() + down_.bytes(); }

 private:
  std::string where() const { return layer_where("BitNetMLP", name_); }

  BitNetConfig cfg_;
  std::string name_;
  BitLinear gate_, up_;  // [inter, hidden]
  BitLinear down_;       // [hidden, inter]
  RMSNorm<float> norm_;  // [inter]
};

/// BitLinear projections in the attention layer: q/k/v share one quantization of their input.
template <>
struct ProjectionOps<BitLinear> {
  static void forward(const BitLinear& p, ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws) {
    p.forward(x, y, ws);
  }
  template <std::size_t N>
  static void forward_shared(const std::array<const BitLinear*, N>& projs, ConstMatrixRef<float> x,
                             const std::array<MatrixMap<float>*, N>& out, Workspace<float>& ws) {
    bitnet_detail::project_shared<N>(x, projs, out, ws);
  }
};

/// BitNet's attention: the attention layer (attention/multi_head_attention.hpp: GQA, RoPE, causal,
/// prefill and KV-cache decoding) with BitLinear projections and attn_sub_norm between the attention
/// output and o_proj.
class BitNetAttention : public BasicMultiHeadAttention<BitLinear> {
 public:
  BitNetAttention() = default;

  BitNetAttention(const BitNetConfig& cfg, BitLinear q, BitLinear k, BitLinear v, BitLinear o,
                  RMSNorm<float> attn_sub_norm, std::string name = {})
      : BasicMultiHeadAttention<BitLinear>(attention_config(cfg.resolved(layer_where("BitNetAttention", name))),
                                           std::move(q), std::move(k), std::move(v), std::move(o),
                                           std::move(attn_sub_norm), std::move(name)) {
    check(has_out_norm(), ErrorKind::config, layer_where("BitNetAttention", ""), "attn_sub_norm is required");
  }

  /// `<prefix>.{q,k,v,o}_proj` and `<prefix>.attn_sub_norm.weight`.
  static BitNetAttention load(const SafeTensors& st, const std::string& prefix, const BitNetConfig& config) {
    const BitNetConfig c = config.resolved(layer_where("BitNetAttention", prefix));
    const Index H = c.num_attention_heads, Hkv = c.num_key_value_heads, d = c.head_dim, D = c.hidden_size;
    const bool b = c.attention_bias;
    return BitNetAttention(c, BitLinear::load(st, join_name(prefix, "q_proj"), c.linear(D, H * d, b)),
                           BitLinear::load(st, join_name(prefix, "k_proj"), c.linear(D, Hkv * d, b)),
                           BitLinear::load(st, join_name(prefix, "v_proj"), c.linear(D, Hkv * d, b)),
                           BitLinear::load(st, join_name(prefix, "o_proj"), c.linear(H * d, D, b)),
                           RMSNorm<float>::load(st, join_name(prefix, "attn_sub_norm"), {H * d, c.rms_norm_eps}),
                           prefix);
  }

  const RMSNorm<float>& attn_sub_norm() const noexcept { return out_norm(); }
  std::size_t bytes() const noexcept { return q_proj().bytes() + k_proj().bytes() + v_proj().bytes() + o_proj().bytes(); }

  /// The attention layer's configuration for a BitNet config: causal GQA with rotate-half RoPE.
  static AttentionConfig attention_config(const BitNetConfig& c) {
    AttentionConfig a;
    a.hidden_size = c.hidden_size;
    a.num_attention_heads = c.num_attention_heads;
    a.num_key_value_heads = c.num_key_value_heads;
    a.head_dim = c.head_dim;
    a.qkv_bias = a.o_bias = c.attention_bias;
    a.position = PositionEncoding::rope;
    a.rope.head_dim = c.head_dim;
    a.rope.theta = c.rope_theta;
    a.rope.layout = RopeLayout::half;
    a.rope.scaling = c.rope_scaling;
    a.rope.max_position_embeddings = c.max_position_embeddings;
    return a;
  }
};

/// One BitNetDecoderLayer: pre-norm attention and FFN blocks with residuals.
class BitNetDecoderLayer {
 public:
  BitNetDecoderLayer() = default;

  BitNetDecoderLayer(RMSNorm<float> input_layernorm, BitNetAttention self_attn, RMSNorm<float> post_attention_layernorm,
                     BitNetMLP mlp, std::string name = {})
      : name_(std::move(name)), ln1_(std::move(input_layernorm)), attn_(std::move(self_attn)),
        ln2_(std::move(post_attention_layernorm)), mlp_(std::move(mlp)) {
    const Index D = attn_.config().hidden_size;
    check(mlp_.config().hidden_size == D && ln1_.config().hidden_size == D && ln2_.config().hidden_size == D,
          ErrorKind::shape_mismatch, where(), "the norms, attention and MLP disagree on hidden_size (", D, ")");
  }

  /// `<prefix>.input_layernorm`, `.self_attn`, `.post_attention_layernorm`, `.mlp` (prefix e.g.
  /// "model.layers.0").
  static BitNetDecoderLayer load(const SafeTensors& st, const std::string& prefix, const BitNetConfig& config) {
    const BitNetConfig c = config.resolved(layer_where("BitNetDecoderLayer", prefix));
    const RMSNorm<float>::Config nc{c.hidden_size, c.rms_norm_eps};
    return BitNetDecoderLayer(RMSNorm<float>::load(st, join_name(prefix, "input_layernorm"), nc),
                              BitNetAttention::load(st, join_name(prefix, "self_attn"), c),
                              RMSNorm<float>::load(st, join_name(prefix, "post_attention_layernorm"), nc),
                              BitNetMLP::load(st, join_name(prefix, "mlp"), c), prefix);
  }

  const BitNetAttention& self_attn() const noexcept { return attn_; }
  const BitNetMLP& mlp() const noexcept { return mlp_; }
  const RMSNorm<float>& input_layernorm() const noexcept { return ln1_; }
  const RMSNorm<float>& post_attention_layernorm() const noexcept { return ln2_; }

  /// One sequence, causal. x, y: [T, hidden] (y must not overlap x).
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws,
               const std::int64_t* position_ids = nullptr) const {
    run(x, y, ws, [&](ConstMatrixRef<float> n, MatrixRef<float> a) { attn_.forward(n, a, ws, position_ids); });
  }

  /// Incremental decoding through the layer's KV cache.
  template <class E>
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, KVCache<E>& cache, Workspace<float>& ws) const {
    run(x, y, ws, [&](ConstMatrixRef<float> n, MatrixRef<float> a) { attn_.forward(n, a, cache, ws); });
  }

  std::size_t bytes() const noexcept { return attn_.bytes() + mlp_.bytes(); }

 private:
  std::string where() const { return layer_where("BitNetDecoderLayer", name_); }

  template <class Attend>
  void run(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws, Attend&& attend) const {
    const Index D = attn_.config().hidden_size;
    check_shape(where(), "input x", x.rows(), x.cols(), -1, D);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), D);
    if (x.rows() == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto n = ws.matrix(x.rows(), D), a = ws.matrix(x.rows(), D);
    ln1_.forward(x, n);
    attend(n, a);
    ops::add<float>(x, a, y);  // h = x + attn
    ln2_.forward(y, n);
    mlp_.forward(n, a, ws);
    ops::add<float>(y, a, y);  // y = h + mlp
  }

  std::string name_;
  RMSNorm<float> ln1_;  // input_layernorm [hidden]
  BitNetAttention attn_;
  RMSNorm<float> ln2_;  // post_attention_layernorm [hidden]
  BitNetMLP mlp_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
