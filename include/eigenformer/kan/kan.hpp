#pragma once
// KAN: a stack of KANLinear layers (efficient-kan's class KAN, src/efficient_kan/kan.py), with
// checkpoint names `<prefix>.layers.<l>.{base_weight, spline_weight, spline_scaler, grid}`.
//
// Used two ways:
//  - as a network to fit, e.g. the [2, 5, 1] KAN of examples/kan_fit.cpp: forward_train() records the
//    layer inputs on a Tape, backward() gives every layer's gradients, adam_step() updates and
//    re-packs, update_grid() refits every layer's grid to its inputs (efficient-kan's
//    forward(update_grid=True));
//  - as the feed-forward block of a Transformer in place of MLP (a "Kansformer" block): layers_hidden
//    = {hidden, intermediate, hidden}; forward(x, y, ws) has MLP's signature. The nonlinearity is in
//    the learned edge functions, so there is no separate activation between the layers.

#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "adam.hpp"
#include "kan_linear.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class KAN {
 public:
  struct Config {
    std::vector<Index> layers_hidden;  ///< widths, e.g. {2, 5, 1}, or {hidden, intermediate, hidden} as an FFN
    int grid_size = 5;
    int spline_order = 3;
    double grid_min = -1.0, grid_max = 1.0;
    bool enable_standalone_scale_spline = true;
    double grid_eps = 0.02;
    Activation base_activation = Activation::silu;

    /// The configuration of layer l.
    KANLinearConfig layer(std::size_t l) const {
      KANLinearConfig c;
      c.in_features = layers_hidden[l];
      c.out_features = layers_hidden[l + 1];
      c.grid_size = grid_size;
      c.spline_order = spline_order;
      c.grid_min = grid_min;
      c.grid_max = grid_max;
      c.enable_standalone_scale_spline = enable_standalone_scale_spline;
      c.grid_eps = grid_eps;
      c.base_activation = base_activation;
      return c;
    }
  };

  /// Gradients of every layer and the tape of a training forward pass.
  using Grad = std::vector<KANLinearGrad<T>>;
  struct Tape {
    std::vector<Matrix<T>> inputs;  // inputs[l]: [T, layers_hidden[l]]
  };

  KAN() = default;

  /// Zero-weight layers (see KANLinear(cfg)); call reset_parameters() for efficient-kan's init.
  explicit KAN(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    for (std::size_t l = 0; l + 1 < cfg_.layers_hidden.size(); ++l)
      layers_.emplace_back(cfg_.layer(l), layer_name(name_, l));
  }

  /// Load `<prefix>.layers.<l>.*` for every layer.
  static KAN load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    KAN k;
    k.cfg_ = cfg;
    k.name_ = prefix;
    for (std::size_t l = 0; l + 1 < cfg.layers_hidden.size(); ++l)
      k.layers_.push_back(KANLinear<T>::load(st, layer_name(prefix, l), cfg.layer(l)));
    return k;
  }

  void save(SafeTensorsWriter& w, const std::string& prefix) const {
    for (std::size_t l = 0; l < layers_.size(); ++l) layers_[l].save(w, layer_name(prefix, l));
  }

  void reset_parameters(std::mt19937& rng, double scale_noise = 0.1, double scale_base = 1.0, double scale_spline = 1.0) {
    for (auto& l : layers_) l.reset_parameters(rng, scale_noise, scale_base, scale_spline);
  }

  const Config& config() const noexcept { return cfg_; }
  std::vector<KANLinear<T>>& layers() noexcept { return layers_; }
  const std::vector<KANLinear<T>>& layers() const noexcept { return layers_; }
  Index in_features() const noexcept { return cfg_.layers_hidden.front(); }
  Index out_features() const noexcept { return cfg_.layers_hidden.back(); }

  /// y = KAN(x). x: [T, layers_hidden[0]], y: [T, layers_hidden.back()] (must not overlap x).
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, in_features());
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), out_features());
    if (layers_.size() == 1) return layers_[0].forward(x, y, ws);
    typename Workspace<T>::Frame frame(ws);
    const T* a = nullptr;  // the previous layer's output [T, width], contiguous
    Index width = 0;
    for (std::size_t l = 0; l + 1 < layers_.size(); ++l) {
      auto b = ws.matrix(x.rows(), layers_[l].out_features());
      if (l == 0)
        layers_[0].forward(x, b, ws);
      else
        layers_[l].forward(ConstMatrixMap<T>(a, x.rows(), width, Eigen::OuterStride<>(width)), b, ws);
      a = b.data();
      width = b.cols();
    }
    layers_.back().forward(ConstMatrixMap<T>(a, x.rows(), width, Eigen::OuterStride<>(width)), y, ws);
  }

  Matrix<T> forward(ConstMatrixRef<T> x) const {
    Workspace<T> ws;
    Matrix<T> y(x.rows(), out_features());
    forward(x, y, ws);
    return y;
  }

  /// Forward pass that records every layer's input for backward().
  Matrix<T> forward_train(ConstMatrixRef<T> x, Tape& tape) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, in_features());
    tape.inputs.resize(layers_.size());
    tape.inputs[0] = x;
    Workspace<T> ws;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      Matrix<T> y(x.rows(), layers_[l].out_features());
      layers_[l].forward(tape.inputs[l], y, ws);
      if (l + 1 < layers_.size())
        tape.inputs[l + 1] = std::move(y);
      else
        return y;
    }
    return Matrix<T>();
  }

  Grad make_grad() const {
    Grad g;
    for (const auto& l : layers_) g.push_back(l.make_grad());
    return g;
  }

  /// The paper's sample-based regularization weights (see KANLinear::activation_regularization).
  struct Regularization {
    T mu1 = T(1);  ///< L1 of the edge activations
    T mu2 = T(1);  ///< their entropy
  };

  /// Gradients of sum(dy * y) for the pass recorded in `tape`: ADDS into g; dx (optional) [T, in].
  /// With `reg`, also of reg->mu1 sum_l |Phi_l|_1 + reg->mu2 sum_l S(Phi_l) on the recorded layer inputs
  /// (the paper's regularization, chained through the layers below); returns that term's value (else 0).
  T backward(const Tape& tape, ConstMatrixRef<T> dy, Grad& g, Matrix<T>* dx = nullptr,
             const Regularization* reg = nullptr) const {
    check(tape.inputs.size() == layers_.size() && g.size() == layers_.size(), ErrorKind::invalid_argument, where(),
          "backward: tape has ", tape.inputs.size(), " inputs and grad ", g.size(), " layers, expected ", layers_.size());
    Matrix<T> d = dy;
    T value = T(0);
    for (std::size_t l = layers_.size(); l-- > 0;) {
      Matrix<T> dprev(tape.inputs[l].rows(), tape.inputs[l].cols());
      layers_[l].backward(tape.inputs[l], d, dprev, g[l]);
      if (reg) {
        Matrix<T> rdx;
        value += layers_[l].activation_regularization(tape.inputs[l], reg->mu1, reg->mu2, &g[l], &rdx);
        dprev += rdx;
      }
      d = std::move(dprev);
    }
    if (dx) *dx = std::move(d);
    return value;
  }

  /// Sum of the layers' regularization losses (KANLinear::regularization_loss), gradients into g.
  T regularization_loss(T regularize_activation = T(1), T regularize_entropy = T(1), Grad* g = nullptr) const {
    T r = T(0);
    for (std::size_t l = 0; l < layers_.size(); ++l)
      r += layers_[l].regularization_loss(regularize_activation, regularize_entropy, g ? &(*g)[l] : nullptr);
    return r;
  }

  /// One optimizer step over every layer's parameters, then re-pack.
  void adam_step(Adam<T>& opt, const Grad& g) {
    typename Adam<T>::ParamList all;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const auto p = layers_[l].parameter_list(g[l]);
      all.insert(all.end(), p.begin(), p.end());
    }
    opt.step(all);
    for (auto& l : layers_) l.prepare();
  }

  /// efficient-kan's KAN.forward(x, update_grid=True): each layer updates its grid on its input, then
  /// the (updated) layer's output feeds the next.
  void update_grid(ConstMatrixRef<T> x, double margin = 0.01) {
    Matrix<T> a = x;
    for (auto& l : layers_) {
      l.update_grid(a, margin);
      a = l.forward(a);
    }
  }

  /// Grid extension of every layer (KANLinear::refined) to `grid_size`, on the layers' inputs for x.
  void refine(int grid_size, ConstMatrixRef<T> x) {
    Matrix<T> a = x;
    for (auto& l : layers_) {
      Matrix<T> next = l.forward(a);
      l = l.refined(grid_size, a);
      a = std::move(next);
    }
    cfg_.grid_size = grid_size;
  }

  Index parameters() const noexcept {
    Index n = 0;
    for (const auto& l : layers_) n += l.parameters();
    return n;
  }

 private:
  std::string where() const { return layer_where("KAN", name_); }
  static std::string layer_name(const std::string& prefix, std::size_t l) {
    return join_name(prefix, "layers." + std::to_string(l));
  }
  static void check_config(const Config& cfg, const std::string& name) {
    check(cfg.layers_hidden.size() >= 2, ErrorKind::config, layer_where("KAN", name), "layers_hidden has ",
          cfg.layers_hidden.size(), " widths, need at least 2");
  }

  Config cfg_;
  std::string name_;
  std::vector<KANLinear<T>> layers_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
