#pragma once
// RetNetDecoderLayer: one RetNet decoder layer as torchscale 0.3.0 builds it (torchscale/architecture/
// retnet.py, DecoderLayer with its RetNetConfig defaults: decoder_normalize_before / subln, no deepnorm,
// so the residual multiplier alpha is 1; no MoE; dropout and drop_path are training-only):
//
//   h = x + retention(retention_layer_norm(x))                     RMSNorm (weight), eps layernorm_eps
//   y = h + ffn(final_layer_norm(h))                               RMSNorm (weight), eps layernorm_eps
//   ffn(z) = fc2( act(fc1(z)) * gate(z) )                          torchscale GLU, no biases; act =
//                                                                  activation_fn ("gelu" default, "swish")
//
// Checkpoint names under a prefix such as `layers.0`: `retention.{q,k,v,g,out}_proj.weight`,
// `retention_layer_norm.weight`, `ffn.fc1.weight`, `ffn.gate.weight`, `ffn.fc2.weight`,
// `final_layer_norm.weight`. The retention runs in any of its three forms (multiscale_retention.hpp).

#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../ffn/mlp.hpp"
#include "../io/safetensors.hpp"
#include "../norm/rms_norm.hpp"
#include "../ops/activation.hpp"
#include "multiscale_retention.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

struct RetNetLayerConfig {
  RetentionConfig retention;                  ///< embed_dim, value_dim, heads, layernorm_eps (also the norms'), chunk
  Index ffn_dim = 0;                          ///< torchscale `decoder_ffn_embed_dim`
  Activation activation = Activation::gelu_erf;  ///< torchscale `activation_fn` ("gelu"; "swish" = silu)
};

template <class T>
class RetNetDecoderLayer {
 public:
  RetNetDecoderLayer() = default;

  /// From parts: the FFN must be a gated MLP of [ffn_dim, embed_dim] whose activated projection is fc1.
  RetNetDecoderLayer(const RetNetLayerConfig& cfg, MultiScaleRetention<T> retention, RMSNorm<T> retention_norm,
                     MLP<T> ffn, RMSNorm<T> final_norm, std::string name = {})
      : cfg_(cfg), name_(std::move(name)), retention_(std::move(retention)), retention_norm_(std::move(retention_norm)),
        ffn_(std::move(ffn)), final_norm_(std::move(final_norm)) {
    const Index E = retention_.config().embed_dim;
    check(ffn_.config().hidden_size == E && ffn_.config().gated, ErrorKind::shape_mismatch, where(), "ffn has width ",
          ffn_.config().hidden_size, (ffn_.config().gated ? "" : " and is not gated"), ", expected a GLU of width ", E);
    check(retention_norm_.config().hidden_size == E && final_norm_.config().hidden_size == E,
          ErrorKind::shape_mismatch, where(), "norms have ", retention_norm_.config().hidden_size, " and ",
          final_norm_.config().hidden_size, " weights, expected ", E);
  }

  /// torchscale GLU names under `<prefix>.ffn`: the activated projection is fc1, the linear one gate.
  static typename MLP<T>::Config ffn_config(const RetNetLayerConfig& cfg) {
    typename MLP<T>::Config c;
    c.hidden_size = cfg.retention.embed_dim;
    c.intermediate_size = cfg.ffn_dim;
    c.act = cfg.activation;
    c.gated = true;
    c.bias = false;
    c.names = typename MLP<T>::Names{"fc1", "gate", "fc2"};
    return c;
  }

  /// Load a layer from torchscale names under `prefix` (e.g. "layers.0").
  static RetNetDecoderLayer load(const SafeTensors& st, const std::string& prefix, const RetNetLayerConfig& cfg) {
    check(cfg.ffn_dim > 0, ErrorKind::config, layer_where("RetNetDecoderLayer", prefix), "ffn_dim = ", cfg.ffn_dim,
          " must be >= 1");
    auto ret = MultiScaleRetention<T>::load(st, join_name(prefix, "retention"), cfg.retention);
    const typename RMSNorm<T>::Config nc{ret.config().embed_dim, cfg.retention.layernorm_eps, false};
    auto rn = RMSNorm<T>::load(st, join_name(prefix, "retention_layer_norm"), nc);
    auto ffn = MLP<T>::load(st, join_name(prefix, "ffn"), ffn_config(cfg));
    auto fn = RMSNorm<T>::load(st, join_name(prefix, "final_layer_norm"), nc);
    return RetNetDecoderLayer(cfg, std::move(ret), std::move(rn), std::move(ffn), std::move(fn), prefix);
  }

  const RetNetLayerConfig& config() const noexcept { return cfg_; }
  const MultiScaleRetention<T>& retention() const noexcept { return retention_; }
  const RMSNorm<T>& retention_layer_norm() const noexcept { return retention_norm_; }
  const MLP<T>& ffn() const noexcept { return ffn_; }
  const RMSNorm<T>& final_layer_norm() const noexcept { return final_norm_; }
  RetentionState<T> make_state() const { return retention_.make_state(); }

  /// x, y: [T, embed_dim]; y may be x.
  void forward_parallel(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws) const {
    run(x, y, ws, [&](MatrixMap<T>& h) { retention_.forward_parallel(h, h, ws); });
  }
  void forward_recurrent(ConstMatrixRef<T> x, MatrixRef<T> y, RetentionState<T>& state, Workspace<T>& ws) const {
    run(x, y, ws, [&](MatrixMap<T>& h) { retention_.forward_recurrent(h, h, state, ws); });
  }
  void forward_chunkwise(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws, Index chunk_size = 0) const {
    run(x, y, ws, [&](MatrixMap<T>& h) { retention_.forward_chunkwise(h, h, ws, chunk_size); });
  }
  void forward_chunkwise(ConstMatrixRef<T> x, MatrixRef<T> y, RetentionState<T>& state, Workspace<T>& ws,
                         Index chunk_size = 0) const {
    run(x, y, ws, [&](MatrixMap<T>& h) { retention_.forward_chunkwise(h, h, state, ws, chunk_size); });
  }

  Index parameters() const noexcept {
    return retention_.parameters() + ffn_.parameters() + 2 * retention_.config().embed_dim;
  }

 private:
  std::string where() const { return layer_where("RetNetDecoderLayer", name_); }

  template <class Retain>
  void run(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws, Retain&& retain) const {
    const Index E = retention_.config().embed_dim;
    check_shape(where(), "input x", x.rows(), x.cols(), -1, E);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), E);
    if (x.rows() == 0) return;
    typename Workspace<T>::Frame frame(ws);
    auto h = ws.matrix(x.rows(), E), f = ws.matrix(x.rows(), E);  // [T, E] each
    retention_norm_.forward(x, h);
    retain(h);                       // h = retention(norm(x)), in place
    ops::add<T>(x, h, y);            // y = x + h
    final_norm_.forward(y, h);
    ffn_.forward(h, f, ws);
    ops::add<T>(y, f, y);            // y = y + ffn(norm(y))
  }

  RetNetLayerConfig cfg_;
  std::string name_;
  MultiScaleRetention<T> retention_;
  RMSNorm<T> retention_norm_;  // [E]
  MLP<T> ffn_;                 // fc1 / gate [ffn, E], fc2 [E, ffn]
  RMSNorm<T> final_norm_;      // [E]
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
