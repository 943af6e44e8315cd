#pragma once
// FastKANLayer: a KAN layer with Gaussian radial basis functions instead of B-splines (Li 2024,
// "Kolmogorov-Arnold Networks are Radial Basis Function Networks", arXiv:2405.06721; reference
// ZiyaoLi/fast-kan, fastkan/fastkan.py, class FastKANLayer):
//
//   y = spline_linear( exp(-((LayerNorm(x)_i - grid_g) / denominator)^2) over (i, g) )
//       + base_linear(silu(x))                                  (with use_base_update)
//
// grid = linspace(grid_min, grid_max, num_grids), denominator = (grid_max - grid_min) / (num_grids - 1).
// Checkpoint names under a prefix: layernorm.{weight, bias} [in], rbf.grid [num_grids],
// spline_linear.weight [out, in * num_grids] (basis index i * num_grids + g), base_linear.{weight [out, in],
// bias [out]}. Built from the shared pieces: LayerNorm, the SIMD exp and SiLU kernels, Linear.

#include <cmath>
#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../kernels/elementwise.hpp"
#include "../linear/linear.hpp"
#include "../norm/layer_norm.hpp"
#include "../ops/activation.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

struct FastKANConfig {
  Index in_features = 0;
  Index out_features = 0;
  double grid_min = -2.0, grid_max = 2.0;
  int num_grids = 8;
  bool use_base_update = true;
  bool use_layernorm = true;  ///< fast-kan's current FastKANLayer always normalizes
  double layernorm_eps = 1e-5;
  Activation base_activation = Activation::silu;
};

template <class T>
class FastKANLayer {
 public:
  using Config = FastKANConfig;

  FastKANLayer() = default;

  /// Zero weights, unit LayerNorm, the configured grid.
  explicit FastKANLayer(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    if (cfg_.use_layernorm) ln_ = LayerNorm<T>(ln_config(cfg_), join_name(name_, "layernorm"));
    grid_ = default_grid(cfg_);
    spline_ = Linear<T>({cfg_.in_features * cfg_.num_grids, cfg_.out_features, false}, join_name(name_, "spline_linear"));
    if (cfg_.use_base_update) base_ = Linear<T>({cfg_.in_features, cfg_.out_features, true}, join_name(name_, "base_linear"));
  }

  static FastKANLayer load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    FastKANLayer l;
    l.cfg_ = cfg;
    l.name_ = prefix;
    if (cfg.use_layernorm) l.ln_ = LayerNorm<T>::load(st, join_name(prefix, "layernorm"), ln_config(cfg));
    l.grid_ = st.vector<T>(join_name(prefix, "rbf.grid"), cfg.num_grids, layer_where("FastKANLayer", prefix));
    l.spline_ = Linear<T>::load(st, join_name(prefix, "spline_linear"), {cfg.in_features * cfg.num_grids, cfg.out_features, false});
    if (cfg.use_base_update) l.base_ = Linear<T>::load(st, join_name(prefix, "base_linear"), {cfg.in_features, cfg.out_features, true});
    return l;
  }

  const Config& config() const noexcept { return cfg_; }
  Index in_features() const noexcept { return cfg_.in_features; }
  Index out_features() const noexcept { return cfg_.out_features; }
  Vector<T>& grid() noexcept { return grid_; }  // [num_grids]
  const Vector<T>& grid() const noexcept { return grid_; }
  Linear<T>& spline_linear() noexcept { return spline_; }
  const Linear<T>& spline_linear() const noexcept { return spline_; }
  Linear<T>& base_linear() noexcept { return base_; }
  const Linear<T>& base_linear() const noexcept { return base_; }
  LayerNorm<T>& layernorm() noexcept { return ln_; }
  const LayerNorm<T>& layernorm() const noexcept { return ln_; }
  T denominator() const noexcept { return T((cfg_.grid_max - cfg_.grid_min) / double(cfg_.num_grids - 1)); }

  /// x: [T, in] -> y: [T, out] (must not overlap x).
  void forward(ConstMatrixRef<T> x /* [T, in] */, MatrixRef<T> y /* [T, out] */, Workspace<T>& ws) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.in_features);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.out_features);
    if (x.rows() == 0) return;
    const Index tokens = x.rows(), in = cfg_.in_features, G = cfg_.num_grids;
    typename Workspace<T>::Frame frame(ws);
    auto h = ws.matrix(tokens, in);
    if (cfg_.use_layernorm)
      ln_.forward(x, h);
    else
      h = x;
    auto phi = ws.matrix(tokens, in * G);  // [T, in * num_grids]
    const T inv_den = T(1) / denominator();
    parallel_for(0, tokens, 1, [&](Index t) {
      T* p = phi.row(t).data();
      for (Index i = 0; i < in; ++i)
        for (Index g = 0; g < G; ++g) {
          const T u = (h(t, i) - grid_[g]) * inv_den;
          p[i * G + g] = -u * u;
        }
      kernels::exp(p, p, std::size_t(in * G));
    });
    spline_.forward(phi, y);
    if (cfg_.use_base_update) {
      auto a = ws.matrix(tokens, in);
      ops::activation<T>(x, a, cfg_.base_activation);
      auto b = ws.matrix(tokens, cfg_.out_features);
      base_.forward(a, b);
      ops::add<T>(y, b, y);
    }
  }

  Matrix<T> forward(ConstMatrixRef<T> x) const {
    Workspace<T> ws;
    Matrix<T> y(x.rows(), cfg_.out_features);
    forward(x, y, ws);
    return y;
  }

  void save(SafeTensorsWriter& w, const std::string& prefix) const {
    const Dtype dt = std::is_same_v<T, double> ? Dtype::F64 : Dtype::F32;
    if (cfg_.use_layernorm) {
      w.add(join_name(prefix, "layernorm.weight"), ln_.weight(), dt);
      w.add(join_name(prefix, "layernorm.bias"), ln_.bias(), dt);
    }
    w.add(join_name(prefix, "rbf.grid"), grid_, dt);
    w.add(join_name(prefix, "spline_linear.weight"), spline_.weight(), dt);
    if (cfg_.use_base_update) {
      w.add(join_name(prefix, "base_linear.weight"), base_.weight(), dt);
      w.add(join_name(prefix, "base_linear.bias"), base_.bias(), dt);
    }
  }

  Index parameters() const noexcept {
    return spline_.parameters() + (cfg_.use_base_update ? base_.parameters() : 0) +
           (cfg_.use_layernorm ? 2 * cfg_.in_features : 0);
  }

 private:
  std::string where() const { return layer_where("FastKANLayer", name_); }
  static typename LayerNorm<T>::Config ln_config(const Config& c) {
    typename LayerNorm<T>::Config l;
    l.hidden_size = c.in_features;
    l.eps = c.layernorm_eps;
    return l;
  }
  static Vector<T> default_grid(const Config& c) {
    Vector<T> g(c.num_grids);
    for (Index q = 0; q < c.num_grids; ++q)
      g[q] = T(c.grid_min + (c.grid_max - c.grid_min) * double(q) / double(c.num_grids - 1));
    return g;
  }
  static void check_config(const Config& c, const std::string& name) {
    const std::string w = layer_where("FastKANLayer", name);
    check(c.in_features > 0 && c.out_features > 0, ErrorKind::config, w, "in_features = ", c.in_features,
          " and out_features = ", c.out_features, " must be >= 1");
    check(c.num_grids >= 2, ErrorKind::config, w, "num_grids = ", c.num_grids, " must be >= 2");
    check(c.grid_max > c.grid_min, ErrorKind::config, w, "grid [", c.grid_min, ", ", c.grid_max, "] must be increasing");
  }

  Config cfg_;
  std::string name_;
  LayerNorm<T> ln_;
  Vector<T> grid_;   // [num_grids]
  Linear<T> spline_;  // [out, in * num_grids]
  Linear<T> base_;    // [out, in] + bias
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
