#pragma once
// LayerNorm layer: y = (x - mean) / sqrt(var + eps) * w + b, biased variance
// (Ba et al. 2016, arXiv:1607.06450; torch.nn.LayerNorm: `<prefix>.weight`, `<prefix>.bias`,
// eps default 1e-5, HF `layer_norm_eps`).

#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../io/safetensors.hpp"
#include "../ops/norm.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class LayerNorm {
 public:
  struct Config {
    Index hidden_size = 0;
    double eps = 1e-5;        ///< torch default; HF `layer_norm_eps`
    bool affine = true;       ///< torch `elementwise_affine`: learnable weight
    bool bias = true;         ///< learnable bias (only with affine)
  };

  LayerNorm() = default;

  /// Weight 1 and bias 0.
  explicit LayerNorm(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    if (cfg_.affine) weight_.setOnes(cfg_.hidden_size);
    if (cfg_.affine && cfg_.bias) bias_.setZero(cfg_.hidden_size);
  }

  /// weight, bias: [hidden] (empty where the config has none).
  LayerNorm(const Config& cfg, Vector<T> weight, Vector<T> bias, std::string name = {})
      : cfg_(cfg), name_(std::move(name)), weight_(std::move(weight)), bias_(std::move(bias)) {
    check_config(cfg_, name_);
    const Index want_w = cfg_.affine ? cfg_.hidden_size : 0;
    const Index want_b = cfg_.affine && cfg_.bias ? cfg_.hidden_size : 0;
    check(weight_.size() == want_w, ErrorKind::shape_mismatch, where(), "weight has ", weight_.size(),
          " entries, expected ", want_w);
    check(bias_.size() == want_b, ErrorKind::shape_mismatch, where(), "bias has ", bias_.size(),
          " entries, expected ", want_b);
  }

  static LayerNorm load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    const std::string where = layer_where("LayerNorm", prefix);
    Vector<T> w, b;
    if (cfg.affine) w = st.vector<T>(join_name(prefix, "weight"), cfg.hidden_size, where);
    if (cfg.affine && cfg.bias) b = st.vector<T>(join_name(prefix, "bias"), cfg.hidden_size, where);
    return LayerNorm(cfg, std::move(w), std::move(b), prefix);
  }

  const Config& config() const noexcept { return cfg_; }
  const Vector<T>& weight() const noexcept { return weight_; }  // [hidden] or empty
  const Vector<T>& bias() const noexcept { return bias_; }      // [hidden] or empty

  /// x: [T, hidden] -> y: [T, hidden]; y may be x.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
    ops::layer_norm<T>(x, weight_, bias_, y, static_cast<T>(cfg_.eps));
  }
  Matrix<T> forward(ConstMatrixRef<T> x) const {
    Matrix<T> y(x.rows(), cfg_.hidden_size);
    forward(x, y);
    return y;
  }

 private:
  std::string where() const { return layer_where("LayerNorm", name_); }
  static void check_config(const Config& cfg, const std::string& name) {
    check(cfg.hidden_size > 0, ErrorKind::config, layer_where("LayerNorm", name), "hidden_size = ",
          cfg.hidden_size, " must be >= 1");
    check(cfg.eps >= 0, ErrorKind::config, layer_where("LayerNorm", name), "eps = ", cfg.eps, " must be >= 0");
  }

  Config cfg_;
  std::string name_;
  Vector<T> weight_;  // [hidden] or empty
  Vector<T> bias_;    // [hidden] or empty
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
