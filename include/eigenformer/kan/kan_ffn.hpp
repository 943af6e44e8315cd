#pragma once
// KANFFN: the feed-forward block of a Transformer layer built from two KAN layers instead of an MLP
// (a "Kansformer" block: h = x + KANFFN(norm(x))), y = down(up(x)) with up: hidden -> intermediate and
// down: intermediate -> hidden. The edge functions carry the nonlinearity, so there is no activation
// between the two. One interface over three bases:
//   KanBasis::bspline       KANLinear     (efficient-kan; kan/kan_linear.hpp)
//   KanBasis::gaussian_rbf  FastKANLayer  (fast-kan; kan/fast_kan.hpp)
//   KanBasis::chebyshev     ChebyKANLayer (ChebyKAN; kan/cheby_kan.hpp)
// Checkpoint names: `<prefix>.layers.0.*` (up) and `<prefix>.layers.1.*` (down), as efficient-kan's
// KAN and fast-kan's FastKAN name a [hidden, intermediate, hidden] network. forward(x, y, ws) has
// MLP's signature.

#include <string>
#include <utility>
#include <variant>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "cheby_kan.hpp"
#include "fast_kan.hpp"
#include "kan_linear.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

enum class KanBasis { bspline, gaussian_rbf, chebyshev };

inline const char* to_string(KanBasis b) noexcept {
  switch (b) {
    case KanBasis::bspline: return "bspline";
    case KanBasis::gaussian_rbf: return "gaussian_rbf";
    case KanBasis::chebyshev: return "chebyshev";
  }
  return "?";
}

template <class T>
class KANFFN {
 public:
  struct Config {
    Index hidden_size = 0;
    Index intermediate_size = 0;
    KanBasis basis = KanBasis::bspline;
    KANLinearConfig bspline;    ///< grid_size, spline_order, ... (sizes are set from the two above)
    FastKANConfig rbf;          ///< grid_min, grid_max, num_grids, use_base_update, ...
    ChebyKANConfig chebyshev;   ///< degree
  };
  using Layer = std::variant<KANLinear<T>, FastKANLayer<T>, ChebyKANLayer<T>>;

  KANFFN() = default;

  /// Zero weights (see each layer's constructor).
  explicit KANFFN(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    up_ = make(cfg_, cfg_.hidden_size, cfg_.intermediate_size, join_name(name_, "layers.0"));
    down_ = make(cfg_, cfg_.intermediate_size, cfg_.hidden_size, join_name(name_, "layers.1"));
  }

  static KANFFN load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    KANFFN f;
    f.cfg_ = cfg;
    f.name_ = prefix;
    f.up_ = load_layer(st, join_name(prefix, "layers.0"), cfg, cfg.hidden_size, cfg.intermediate_size);
    f.down_ = load_layer(st, join_name(prefix, "layers.1"), cfg, cfg.intermediate_size, cfg.hidden_size);
    return f;
  }

  void save(SafeTensorsWriter& w, const std::string& prefix) const {
    std::visit([&](const auto& l) { l.save(w, join_name(prefix, "layers.0")); }, up_);
    std::visit([&](const auto& l) { l.save(w, join_name(prefix, "layers.1")); }, down_);
  }

  const Config& config() const noexcept { return cfg_; }
  Layer& up() noexcept { return up_; }
  Layer& down() noexcept { return down_; }
  const Layer& up() const noexcept { return up_; }
  const Layer& down() const noexcept { return down_; }

  /// y = down(up(x)). x: [T, hidden], y: [T, hidden] (must not overlap x).
  void forward(ConstMatrixRef<T> x /* [T, hidden] */, MatrixRef<T> y /* [T, hidden] */, Workspace<T>& ws) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
    typename Workspace<T>::Frame frame(ws);
    auto h = ws.matrix(x.rows(), cfg_.intermediate_size);  // [T, inter]
    std::visit([&](const auto& l) { l.forward(x, h, ws); }, up_);
    std::visit([&](const auto& l) { l.forward(h, y, ws); }, down_);
  }

  Matrix<T> forward(ConstMatrixRef<T> x) const {
    Workspace<T> ws;
    Matrix<T> y(x.rows(), cfg_.hidden_size);
    forward(x, y, ws);
    return y;
  }

  Index parameters() const {
    return std::visit([](const auto& l) { return l.parameters(); }, up_) +
           std::visit([](const auto& l) { return l.parameters(); }, down_);
  }

 private:
  std::string where() const { return layer_where("KANFFN", name_); }
  static void check_config(const Config& c, const std::string& name) {
    check(c.hidden_size > 0 && c.intermediate_size > 0, ErrorKind::config, layer_where("KANFFN", name),
          "hidden_size = ", c.hidden_size, " and intermediate_size = ", c.intermediate_size, " must be >= 1");
  }
  template <class C>
  static C sized(C c, Index in, Index out) {
    c.in_features = in;
    c.out_features = out;
    return c;
  }
  static Layer make(const Config& c, Index in, Index out, const std::string& name) {
    switch (c.basis) {
      case KanBasis::gaussian_rbf: return FastKANLayer<T>(sized(c.rbf, in, out), name);
      case KanBasis::chebyshev: return ChebyKANLayer<T>(sized(c.chebyshev, in, out), name);
      case KanBasis::bspline: break;
    }
    return KANLinear<T>(sized(c.bspline, in, out), name);
  }
  static Layer load_layer(const SafeTensors& st, const std::string& prefix, const Config& c, Index in, Index out) {
    switch (c.basis) {
      case KanBasis::gaussian_rbf: return FastKANLayer<T>::load(st, prefix, sized(c.rbf, in, out));
      case KanBasis::chebyshev: return ChebyKANLayer<T>::load(st, prefix, sized(c.chebyshev, in, out));
      case KanBasis::bspline: break;
    }
    return KANLinear<T>::load(st, prefix, sized(c.bspline, in, out));
  }

  Config cfg_;
  std::string name_;
  Layer up_, down_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
