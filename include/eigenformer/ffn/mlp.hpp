#pragma once
// Feed-forward blocks of a Transformer layer, gated or not.
//
//   gated (GLU):  y = down( act(gate(x)) * up(x) )   Llama SwiGLU (silu), T5 v1.1 / Gemma GeGLU
//                                                    (gelu_tanh), BitNet b1.58 ReLU^2-GLU (relu2)
//   plain:        y = down( act(up(x)) )             GPT/BERT/OPT-style MLP (gelu, relu, ...)
//
// Checkpoint names follow the reference implementation through MLP::Names:
//   Names::llama()  gate_proj / up_proj / down_proj   (transformers LlamaMLP, MistralMLP, BitNet)
//   Names::t5()     wi_0 / wi_1 / wo                   (transformers T5DenseGatedActDense)
//   Names::fc()     - / fc1 / fc2                      (transformers OPT, Phi, CLIP)
// Paper: Shazeer 2020, "GLU Variants Improve Transformer" (arXiv:2002.05202).

#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"
#include "../ops/activation.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class MLP {
 public:
  /// Sub-layer names under the block's prefix.
  struct Names {
    std::string gate, up, down;
    static Names llama() { return {"gate_proj", "up_proj", "down_proj"}; }
    static Names t5() { return {"wi_0", "wi_1", "wo"}; }
    static Names fc() { return {"", "fc1", "fc2"}; }
  };

  struct Config {
    Index hidden_size = 0;        ///< model width (HF `hidden_size`)
    Index intermediate_size = 0;  ///< inner width (HF `intermediate_size`)
    Activation act = Activation::silu;  ///< HF `hidden_act`
    bool gated = true;            ///< GLU (gate * up) or plain MLP
    bool bias = false;            ///< biases on all projections (HF `mlp_bias`)
    Names names = Names::llama();
  };

  MLP() = default;

  /// Zero weights of the configured shapes.
  explicit MLP(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    const auto up_cfg = typename Linear<T>::Config{cfg.hidden_size, cfg.intermediate_size, cfg.bias};
    const auto down_cfg = typename Linear<T>::Config{cfg.intermediate_size, cfg.hidden_size, cfg.bias};
    if (cfg.gated) gate_ = Linear<T>(up_cfg, join_name(name_, cfg.names.gate));
    up_ = Linear<T>(up_cfg, join_name(name_, cfg.names.up));
    down_ = Linear<T>(down_cfg, join_name(name_, cfg.names.down));
  }

  /// From projections: gate [inter, hidden] (ignored unless cfg.gated), up [inter, hidden],
  /// down [hidden, inter].
  MLP(const Config& cfg, Linear<T> gate, Linear<T> up, Linear<T> down, std::string name = {})
      : cfg_(cfg), name_(std::move(name)), gate_(std::move(gate)), up_(std::move(up)), down_(std::move(down)) {
    check_config(cfg_, name_);
    auto shape = [&](const Linear<T>& l, const char* which, Index out, Index in) {
      check_shape(where(), which, l.out_features(), l.in_features(), out, in);
    };
    if (cfg_.gated) shape(gate_, "gate projection", cfg_.intermediate_size, cfg_.hidden_size);
    shape(up_, "up projection", cfg_.intermediate_size, cfg_.hidden_size);
    shape(down_, "down projection", cfg_.hidden_size, cfg_.intermediate_size);
  }

  /// Load `<prefix>.<names.gate|up|down>.weight` (and `.bias`).
  static MLP load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    const auto up_cfg = typename Linear<T>::Config{cfg.hidden_size, cfg.intermediate_size, cfg.bias};
    const auto down_cfg = typename Linear<T>::Config{cfg.intermediate_size, cfg.hidden_size, cfg.bias};
    Linear<T> gate;
    if (cfg.gated) gate = Linear<T>::load(st, join_name(prefix, cfg.names.gate), up_cfg);
    Linear<T> up = Linear<T>::load(st, join_name(prefix, cfg.names.up), up_cfg);
    Linear<T> down = Linear<T>::load(st, join_name(prefix, cfg.names.down), down_cfg);
    return MLP(cfg, std::move(gate), std::move(up), std::move(down), prefix);
  }

  const Config& config() const noexcept { return cfg_; }
  const Linear<T>& gate() const noexcept { return gate_; }
  const Linear<T>& up() const noexcept { return up_; }
  const Linear<T>& down() const noexcept { return down_; }
  Linear<T>& gate() noexcept { return gate_; }
  Linear<T>& up() noexcept { return up_; }
  Linear<T>& down() noexcept { return down_; }

  /// y = MLP(x). x: [T, hidden], y: [T, hidden] (must not overlap x). Intermediates ([T, inter],
  /// two of them when gated) come from `ws`: no allocation once it has grown.
  void forward(ConstMatrixRef<T> x /* [T, hidden] */, MatrixRef<T> y /* [T, hidden] */, Workspace<T>& ws) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
    typename Workspace<T>::Frame frame(ws);
    auto h = ws.matrix(x.rows(), cfg_.intermediate_size);  // [T, inter]
    up_.forward(x, h);
    if (cfg_.gated) {
      auto g = ws.matrix(x.rows(), cfg_.intermediate_size);  // [T, inter]
      gate_.forward(x, g);
      ops::glu<T>(g, h, h, cfg_.act);
    } else {
      ops::activation<T>(h, h, cfg_.act);
    }
    down_.forward(h, y);
  }

  /// Allocating convenience form.
  Matrix<T> forward(ConstMatrixRef<T> x /* [T, hidden] */) const {
    Workspace<T> ws;
    Matrix<T> y(x.rows(), cfg_.hidden_size);
    forward(x, y, ws);
    return y;
  }

  Index parameters() const noexcept {
    return (cfg_.gated ? gate_.parameters() : 0) + up_.parameters() + down_.parameters();
  }

 private:
  std::string where() const { return layer_where("MLP", name_); }

  static void check_config(const Config& cfg, const std::string& name) {
    check(cfg.hidden_size > 0 && cfg.intermediate_size > 0, ErrorKind::config, layer_where("MLP", name),
          "hidden_size = ", cfg.hidden_size, " and intermediate_size = ", cfg.intermediate_size, " must be >= 1");
    check(!cfg.names.up.empty() && !cfg.names.down.empty() && (!cfg.gated || !cfg.names.gate.empty()),
          ErrorKind::config, layer_where("MLP", name), "a projection name is empty");
  }

  Config cfg_;
  std::string name_;
  Linear<T> gate_;  // [inter, hidden], gated only
  Linear<T> up_;    // [inter, hidden]
  Linear<T> down_;  // [hidden, inter]
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
