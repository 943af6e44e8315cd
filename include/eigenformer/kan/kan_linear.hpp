#pragma once
// KANLinear: one Kolmogorov-Arnold layer with efficient-kan's semantics and checkpoint names
// (Blealtan/efficient-kan, src/efficient_kan/kan.py, class KANLinear; paper: Liu et al. 2024,
// "KAN: Kolmogorov-Arnold Networks", arXiv:2404.19756).
//
//   y[o] = sum_i base_weight[o, i] act(x_i) + sum_{i, j} spline_weight[o, i, j] spline_scaler[o, i] B_j(x_i)
//
// B_j: degree-k (spline_order) B-splines on the knot row grid[i, :] of input i (G + 2k + 1 knots:
// G = grid_size intervals over grid_range, k more on each side), Cox-de Boor of any order; an input
// outside [grid[i, 0], grid[i, G+2k]) has every B_j = 0, as in the reference.
// Checkpoint names under a prefix: base_weight [out, in], spline_weight [out, in, G + k],
// spline_scaler [out, in] (only with enable_standalone_scale_spline), grid [in, G + 2k + 1] (a buffer).
//
// Forward: the G + k bases of an input are nonzero only on a window of k + 1 (kernels/kan.hpp), so a
// token costs (k + 2) x in x out multiply-adds (local path, few tokens); many tokens go through one
// GEMM of the dense basis [T, in (G + k + 1)] with the packed weight (GEMM path). Both use the packed
// weight Wp [in (G + k + 1), out] (scaler folded in, base weight as one more row) built by prepare():
// call prepare() after editing the parameters through the mutable accessors (the Adam step and
// update_grid do it themselves).
// Training: backward() (input, base weight, spline weight, scaler), regularization_loss() (efficient-kan's
// L1 + entropy on the spline weights), update_grid() (grid_eps mix of uniform and sample-quantile
// grids, least-squares refit); Adam in kan/adam.hpp. docs/kan.md has the details and the pykan mapping.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/kan.hpp"
#include "../kernels/ref/kan.hpp"
#include "../ops/lstsq.hpp"
#include "../ops/matmul.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// Which forward kernel KANLinear uses.
enum class KanPath {
  automatic,  ///< local for up to KANLinear::kLocalMaxTokens tokens, else GEMM
  local,      ///< sparse windows: (k + 2) x in x out multiply-adds per token
  gemm,       ///< dense basis [T, in (G + k + 1)] times the packed weight
};

/// KANLinear's configuration (efficient-kan's constructor arguments); shared by float and double layers.
struct KANLinearConfig {
  Index in_features = 0;
  Index out_features = 0;
  int grid_size = 5;     ///< G, intervals over grid_range
  int spline_order = 3;  ///< k, the degree of the B-splines
  double grid_min = -1.0, grid_max = 1.0;  ///< efficient-kan's grid_range
  bool enable_standalone_scale_spline = true;
  double grid_eps = 0.02;  ///< update_grid: weight of the uniform grid against the quantile grid
  Activation base_activation = Activation::silu;
};

/// Gradients of a KANLinear's parameters, in the parameters' layout.
template <class T>
struct KANLinearGrad {
  Matrix<T> base_weight;    // [out, in]
  Matrix<T> spline_weight;  // [out, in * (G + k)]
  Matrix<T> spline_scaler;  // [out, in], or empty without a standalone scaler
  void setZero() {
    base_weight.setZero();
    spline_weight.setZero();
    spline_scaler.setZero();
  }
};

template <class T>
class KANLinear {
 public:
  using Config = KANLinearConfig;

  /// Forward uses the local kernel up to this many tokens (bench/bench_kan.cpp), the GEMM path above.
  static constexpr Index kLocalMaxTokens = 16;

  KANLinear() = default;

  /// The default uniform grid; zero base and spline weights, spline_scaler = 1.
  explicit KANLinear(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    grid_ = default_grid(cfg_);
    base_weight_.setZero(cfg_.out_features, cfg_.in_features);
    spline_weight_.setZero(cfg_.out_features, cfg_.in_features * n_coef());
    if (cfg_.enable_standalone_scale_spline) spline_scaler_.setOnes(cfg_.out_features, cfg_.in_features);
    prepare();
  }

  /// From tensors: grid [in, G + 2k + 1], base_weight [out, in], spline_weight [out, in * (G + k)]
  /// (efficient-kan's [out, in, G + k] flattened), spline_scaler [out, in] (empty unless
  /// cfg.enable_standalone_scale_spline).
  KANLinear(const Config& cfg, Matrix<T> grid, Matrix<T> base_weight, Matrix<T> spline_weight,
            Matrix<T> spline_scaler, std::string name = {})
      : cfg_(cfg),
        name_(std::move(name)),
        grid_(std::move(grid)),
        base_weight_(std::move(base_weight)),
        spline_weight_(std::move(spline_weight)),
        spline_scaler_(std::move(spline_scaler)) {
    check_config(cfg_, name_);
    const Index in = cfg_.in_features, out = cfg_.out_features;
    check_shape(where(), "grid", grid_.rows(), grid_.cols(), in, n_knots());
    check_shape(where(), "base_weight", base_weight_.rows(), base_weight_.cols(), out, in);
    check_shape(where(), "spline_weight (flattened [out, in * (G + k)])", spline_weight_.rows(),
                spline_weight_.cols(), out, in * n_coef());
    if (cfg_.enable_standalone_scale_spline)
      check_shape(where(), "spline_scaler", spline_scaler_.rows(), spline_scaler_.cols(), out, in);
    else
      check(spline_scaler_.size() == 0, ErrorKind::config, where(),
            "spline_scaler given but enable_standalone_scale_spline is false");
    check_grid();
    prepare();
  }

  /// Load `<prefix>.base_weight`, `.spline_weight` [out, in, G + k], `.spline_scaler` (when
  /// cfg.enable_standalone_scale_spline) and `.grid` [in, G + 2k + 1].
  static KANLinear load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    const std::string where = layer_where("KANLinear", prefix);
    const Index in = cfg.in_features, out = cfg.out_features;
    const Index nc = cfg.grid_size + cfg.spline_order, nk = cfg.grid_size + 2 * cfg.spline_order + 1;
    Matrix<T> base = st.matrix<T>(join_name(prefix, "base_weight"), out, in, where);
    const std::string sw_name = join_name(prefix, "spline_weight");
    const TensorInfo& sw = st.info(sw_name, where);
    const std::vector<std::int64_t> want{out, in, nc};
    check(sw.shape == want, ErrorKind::shape_mismatch, where, "weight '", sw_name, "' has shape ",
          shape_str(sw.shape), ", expected ", shape_str(want), " ([out_features, in_features, grid_size + spline_order])");
    Matrix<T> spline(out, in * nc);
    st.read(sw, spline.data(), static_cast<std::size_t>(spline.size()));
    Matrix<T> scaler;
    if (cfg.enable_standalone_scale_spline) scaler = st.matrix<T>(join_name(prefix, "spline_scaler"), out, in, where);
    Matrix<T> grid = st.matrix<T>(join_name(prefix, "grid"), in, nk, where);
    return KANLinear(cfg, std::move(grid), std::move(base), std::move(spline), std::move(scaler), prefix);
  }

  /// Add the parameters under `prefix` with efficient-kan's names and shapes.
  void save(SafeTensorsWriter& w, const std::string& prefix) const {
    const Dtype dt = std::is_same_v<T, double> ? Dtype::F64 : Dtype::F32;
    w.add(join_name(prefix, "base_weight"), base_weight_, dt);
    std::vector<std::int64_t> shape{cfg_.out_features, cfg_.in_features, n_coef()};
    w.add(join_name(prefix, "spline_weight"), dt, shape, spline_weight_.data(),
          static_cast<std::size_t>(spline_weight_.size()) * sizeof(T));
    if (has_scaler()) w.add(join_name(prefix, "spline_scaler"), spline_scaler_, dt);
    w.add(join_name(prefix, "grid"), grid_, dt);
  }

  /// efficient-kan's reset_parameters: base_weight and spline_scaler kaiming-uniform
  /// (a = sqrt(5) scale), spline_weight fitted to uniform noise of amplitude scale_noise / G on the
  /// G + 1 grid points (times scale_spline without a standalone scaler). Not bit-identical to torch's RNG.
  void reset_parameters(std::mt19937& rng, double scale_noise = 0.1, double scale_base = 1.0,
                        double scale_spline = 1.0) {
    const Index in = cfg_.in_features, out = cfg_.out_features;
    auto kaiming = [&](Matrix<T>& m, double scale) {
      const double a = std::sqrt(5.0) * scale;
      const double bound = std::sqrt(2.0 / (1.0 + a * a)) * std::sqrt(3.0 / double(in));
      std::uniform_real_distribution<double> d(-bound, bound);
      for (Index q = 0; q < m.size(); ++q) m.data()[q] = T(d(rng));
    };
    kaiming(base_weight_, scale_base);
    const int G = cfg_.grid_size, k = cfg_.spline_order;
    Matrix<double> xs(G + 1, in);
    for (Index i = 0; i < in; ++i)
      for (int g = 0; g <= G; ++g) xs(g, i) = double(grid_(i, k + g));
    std::uniform_real_distribution<double> u(-0.5, 0.5);
    std::vector<Matrix<double>> ys(static_cast<std::size_t>(in), Matrix<double>(G + 1, out));
    for (int g = 0; g <= G; ++g)
      for (Index i = 0; i < in; ++i)
        for (Index o = 0; o < out; ++o) ys[std::size_t(i)](g, o) = u(rng) * scale_noise / G;
    spline_weight_ = curve2coeff(xs, ys);
    if (!has_scaler()) spline_weight_ *= T(scale_spline);
    if (has_scaler()) kaiming(spline_scaler_, scale_spline);
    prepare();
  }

  const Config& config() const noexcept { return cfg_; }
  const std::string& name() const noexcept { return name_; }
  Index in_features() const noexcept { return cfg_.in_features; }
  Index out_features() const noexcept { return cfg_.out_features; }
  bool has_scaler() const noexcept { return cfg_.enable_standalone_scale_spline; }
  const Matrix<T>& grid() const noexcept { return grid_; }                    // [in, G + 2k + 1]
  const Matrix<T>& base_weight() const noexcept { return base_weight_; }      // [out, in]
  const Matrix<T>& spline_weight() const noexcept { return spline_weight_; }  // [out, in * (G + k)]
  const Matrix<T>& spline_scaler() const noexcept { return spline_scaler_; }  // [out, in] or empty
  /// Mutable parameters: call prepare() after changing them.
  Matrix<T>& mutable_grid() noexcept { return grid_; }
  Matrix<T>& mutable_base_weight() noexcept { return base_weight_; }
  Matrix<T>& mutable_spline_weight() noexcept { return spline_weight_; }
  Matrix<T>& mutable_spline_scaler() noexcept { return spline_scaler_; }
  /// The packed weight Wp [in (G + k + 1), out] the kernels use.
  const Matrix<T>& packed_weight() const noexcept { return packed_; }
  /// True when every knot row is uniform (the SIMD basis path is used, float only).
  bool uniform_grid() const noexcept { return uniform_; }

  /// Rebuild the packed weight (and the uniform-grid test) from the parameters.
  void prepare() {
    check_grid();
    const Index in = cfg_.in_features, out = cfg_.out_features, nc = n_coef(), S = nc + 1;
    packed_.resize(in * S, out);
    for (Index o = 0; o < out; ++o)
      for (Index i = 0; i < in; ++i) {
        const T sc = has_scaler() ? spline_scaler_(o, i) : T(1);
        for (Index j = 0; j < nc; ++j) packed_(i * S + j, o) = spline_weight_(o, i * nc + j) * sc;
        packed_(i * S + nc, o) = base_weight_(o, i);
      }
    // Uniform rows: every knot within 4 float ulps (of the row's largest knot) of g0 + j h.
    uniform_ = std::is_same_v<T, float> && cfg_.spline_order >= 1 &&
               cfg_.spline_order <= kernels::kKanMaxUniformOrder;
    g0_.resize(in);
    inv_h_.resize(in);
    const Index nk = n_knots();
    for (Index i = 0; i < in && uniform_; ++i) {
      const double a = double(grid_(i, 0)), b = double(grid_(i, nk - 1));
      const double h = (b - a) / double(nk - 1);
      const double tol = 4.0 * 1.1920929e-7 * std::max(std::fabs(a), std::fabs(b));
      for (Index j = 0; j < nk; ++j)
        if (std::fabs(double(grid_(i, j)) - (a + double(j) * h)) > tol) uniform_ = false;
      g0_[i] = float(a);
      inv_h_[i] = float(1.0 / h);
    }
  }

  /// y = KANLinear(x). x: [T, in], y: [T, out] (must not overlap x). Scratch from `ws`.
  void forward(ConstMatrixRef<T> x /* [T, in] */, MatrixRef<T> y /* [T, out] */, Workspace<T>& ws,
               KanPath path = KanPath::automatic) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.in_features);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.out_features);
    const Index tokens = x.rows();
    if (tokens == 0) return;
    const Index in = cfg_.in_features, out = cfg_.out_features, S = n_coef() + 1;
    const int G = cfg_.grid_size, k = cfg_.spline_order;
    typename Workspace<T>::Frame frame(ws);
    std::int32_t* j0 = ws.template raw<std::int32_t>(static_cast<std::size_t>(tokens * in));
    auto vals = ws.matrix(tokens, (k + 1) * in);  // per token: [k + 1, in]
    auto base = ws.matrix(tokens, in);            // act(x)
    basis(x, j0, vals, base);
    if (path == KanPath::automatic) path = tokens <= kLocalMaxTokens ? KanPath::local : KanPath::gemm;
    const double flops = 2.0 * double(tokens) * double(in) * double(out) * double(path == KanPath::gemm ? S : k + 2);
    const Index threads = flops >= kMinParallelFlops ? std::max<Index>(1, std::min<Index>(num_threads(), out / kColumnAlign)) : 1;
    const Index chunk = (out + threads * kColumnAlign - 1) / (threads * kColumnAlign) * kColumnAlign;
    if (path == KanPath::gemm) {
      auto phi = ws.matrix(tokens, in * S);  // [T, in (G + k + 1)]
      parallel_for(0, tokens, std::max<Index>(1, 4096 / (in * S)), [&](Index t) {
        kernels::kan_expand_dense(std::size_t(in), G, k, j0 + t * in, vals.row(t).data(), std::size_t(in),
                                  base.row(t).data(), phi.row(t).data());
      });
      if (threads <= 1) {
        matmul<T>(phi, packed_, y);
      } else {
        parallel_for(0, threads, 1, [&](Index c) {
          const Index begin = c * chunk, len = std::min(chunk, out - begin);
          if (len > 0) matmul<T>(phi, packed_.middleCols(begin, len), y.middleCols(begin, len));
        });
      }
    } else {
      // Column sub-blocks keep the tokens' output rows in L1 while the inputs stream by.
      const Index block = std::max<Index>(64, (8192 / tokens) / 16 * 16);
      parallel_for(0, threads, 1, [&](Index c) {
        const Index begin = c * chunk, end = std::min(chunk * (c + 1), out);
        for (Index o0 = begin; o0 < end; o0 += block) {
          const Index o1 = std::min(end, o0 + block);
          kernels::kan_spline_local<T>(std::size_t(tokens), std::size_t(in), G, k, j0, vals.data(), std::size_t(in),
                                       std::size_t(vals.outerStride()), base.data(), packed_.data(), std::size_t(out),
                                       std::size_t(o0), std::size_t(o1), y.data(), std::size_t(y.outerStride()));
        }
      });
    }
  }

  /// Allocating convenience form.
  Matrix<T> forward(ConstMatrixRef<T> x /* [T, in] */, KanPath path = KanPath::automatic) const {
    Workspace<T> ws;
    Matrix<T> y(x.rows(), cfg_.out_features);
    forward(x, y, ws, path);
    return y;
  }

  /// Backward of y = forward(x) for an upstream gradient dy [T, out]: writes dx [T, in] and ADDS the
  /// parameter gradients to `g` (shaped by make_grad()). Base activation silu or identity.
  void backward(ConstMatrixRef<T> x /* [T, in] */, ConstMatrixRef<T> dy /* [T, out] */,
                MatrixRef<T> dx /* [T, in] */, KANLinearGrad<T>& g) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.in_features);
    check_shape(where(), "gradient dy", dy.rows(), dy.cols(), x.rows(), cfg_.out_features);
    check_shape(where(), "gradient dx", dx.rows(), dx.cols(), x.rows(), cfg_.in_features);
    check_grad(g);
    check(cfg_.base_activation == Activation::silu || cfg_.base_activation == Activation::identity,
          ErrorKind::config, where(), "backward supports base_activation silu or identity, not ",
          to_string(cfg_.base_activation));
    const Index tokens = x.rows(), in = cfg_.in_features, out = cfg_.out_features, nc = n_coef(), S = nc + 1;
    if (tokens == 0) return;
    Matrix<T> phi(tokens, in * S), dphi(tokens, in * S);  // bases and their derivatives
    dense_basis(x, phi, &dphi);
    Matrix<T> dW(in * S, out), dP(tokens, in * S);
    matmul<T>(phi, dy, dW, MatmulOp::tn);      // [in S, out]
    matmul<T>(dy, packed_, dP, MatmulOp::nt);  // [T, in S]
    for (Index t = 0; t < tokens; ++t)
      for (Index i = 0; i < in; ++i) {
        T s = T(0);
        for (Index j = 0; j < S; ++j) s += dP(t, i * S + j) * dphi(t, i * S + j);
        dx(t, i) = s;
      }
    for (Index o = 0; o < out; ++o)
      for (Index i = 0; i < in; ++i) {
        const T sc = has_scaler() ? spline_scaler_(o, i) : T(1);
        T dsc = T(0);
        for (Index j = 0; j < nc; ++j) {
          const T d = dW(i * S + j, o);
          g.spline_weight(o, i * nc + j) += d * sc;
          dsc += d * spline_weight_(o, i * nc + j);
        }
        if (has_scaler()) g.spline_scaler(o, i) += dsc;
        g.base_weight(o, i) += dW(i * S + nc, o);
      }
  }

  /// (parameter, gradient) pairs for an optimizer (kan/adam.hpp); call prepare() after the step.
  std::vector<std::pair<Matrix<T>*, const Matrix<T>*>> parameter_list(const KANLinearGrad<T>& g) {
    check_grad(g);
    std::vector<std::pair<Matrix<T>*, const Matrix<T>*>> v{{&base_weight_, &g.base_weight},
                                                           {&spline_weight_, &g.spline_weight}};
    if (has_scaler()) v.push_back({&spline_scaler_, &g.spline_scaler});
    return v;
  }

  /// Zero gradients shaped like the parameters.
  KANLinearGrad<T> make_grad() const {
    KANLinearGrad<T> g;
    g.base_weight.setZero(base_weight_.rows(), base_weight_.cols());
    g.spline_weight.setZero(spline_weight_.rows(), spline_weight_.cols());
    g.spline_scaler.setZero(spline_scaler_.rows(), spline_scaler_.cols());
    return g;
  }

  /// efficient-kan's regularization_loss: l1[o, i] = mean_j |spline_weight[o, i, j]|,
  /// reg = regularize_activation sum(l1) + regularize_entropy (-sum p log p), p = l1 / sum(l1).
  /// With `g`, adds d reg / d spline_weight. Entries with l1 = 0 count 0 in the entropy (torch gives
  /// NaN there).
  T regularization_loss(T regularize_activation = T(1), T regularize_entropy = T(1),
                        KANLinearGrad<T>* g = nullptr) const {
    if (g) check_grad(*g);
    const Index in = cfg_.in_features, out = cfg_.out_features, nc = n_coef();
    Matrix<T> l1(out, in);
    for (Index o = 0; o < out; ++o)
      for (Index i = 0; i < in; ++i) l1(o, i) = spline_weight_.row(o).segment(i * nc, nc).cwiseAbs().mean();
    const T total = l1.sum();
    if (!(total > T(0))) return T(0);
    T ent = T(0);
    for (Index q = 0; q < l1.size(); ++q) {
      const T p = l1.data()[q] / total;
      if (p > T(0)) ent -= p * std::log(p);
    }
    if (g) {
      for (Index o = 0; o < out; ++o)
        for (Index i = 0; i < in; ++i) {
          const T p = l1(o, i) / total;
          // d ent / d l1_q = -(log p_q + ent) / total
          const T dl1 = regularize_activation + (p > T(0) ? regularize_entropy * (-(std::log(p) + ent) / total) : T(0));
          for (Index j = 0; j < nc; ++j) {
            const T w = spline_weight_(o, i * nc + j);
            const T sgn = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
            g->spline_weight(o, i * nc + j) += dl1 * sgn / T(nc);
          }
        }
    }
    return regularize_activation * total + regularize_entropy * ent;
  }

  /// The KAN paper's regularization on samples (Liu et al. 2024, eq. 2.17-2.19; pykan's reg): with
  /// phi_{i,o}(x) the edge functions (base + spline), l1[i, o] = mean_b |phi_{i,o}(x[b, i])|,
  /// reg = mu1 sum(l1) + mu2 (-sum p log p), p = l1 / sum(l1). With `g`, ADDS the parameter gradients;
  /// with `dx`, writes d reg / d x [batch, in] (to chain through earlier layers; KAN::backward does).
  T activation_regularization(ConstMatrixRef<T> x /* [batch, in] */, T mu1, T mu2, KANLinearGrad<T>* g = nullptr,
                              Matrix<T>* dx = nullptr) const {
    check_shape(where(), "regularization samples x", x.rows(), x.cols(), -1, cfg_.in_features);
    if (g) check_grad(*g);
    const Index batch = x.rows(), in = cfg_.in_features, out = cfg_.out_features, nc = n_coef(), S = nc + 1;
    if (dx) dx->setZero(batch, in);
    if (batch == 0) return T(0);
    Matrix<T> phi, dphi;
    dense_basis(x, phi, dx ? &dphi : nullptr);
    // Edge values v[b, i * out + o].
    Matrix<T> v(batch, in * out);
    for (Index i = 0; i < in; ++i)
      matmul<T>(phi.middleCols(i * S, S), packed_.middleRows(i * S, S), v.middleCols(i * out, out));
    Matrix<T> l1(in, out);
    for (Index i = 0; i < in; ++i)
      for (Index o = 0; o < out; ++o) l1(i, o) = v.col(i * out + o).cwiseAbs().sum() / T(batch);
    const T total = l1.sum();
    if (!(total > T(0))) return T(0);
    T ent = T(0);
    for (Index q = 0; q < l1.size(); ++q) {
      const T p = l1.data()[q] / total;
      if (p > T(0)) ent -= p * std::log(p);
    }
    if (g || dx) {
      // d reg / d v[b, i, o] = (mu1 + mu2 d ent / d l1) sign(v) / batch.
      Matrix<T> dv(batch, in * out);
      for (Index i = 0; i < in; ++i)
        for (Index o = 0; o < out; ++o) {
          const T p = l1(i, o) / total;
          const T dl1 = mu1 + (p > T(0) ? mu2 * (-(std::log(p) + ent) / total) : T(0));
          for (Index b = 0; b < batch; ++b) {
            const T e = v(b, i * out + o);
            dv(b, i * out + o) = (e > T(0) ? dl1 : e < T(0) ? -dl1 : T(0)) / T(batch);
          }
        }
      for (Index i = 0; i < in; ++i) {
        const auto dvi = dv.middleCols(i * out, out);  // [batch, out]
        if (g) {
          Matrix<T> dW(S, out);
          matmul<T>(phi.middleCols(i * S, S), dvi, dW, MatmulOp::tn);
          for (Index o = 0; o < out; ++o) {
            const T sc = has_scaler() ? spline_scaler_(o, i) : T(1);
            T dsc = T(0);
            for (Index j = 0; j < nc; ++j) {
              g->spline_weight(o, i * nc + j) += dW(j, o) * sc;
              dsc += dW(j, o) * spline_weight_(o, i * nc + j);
            }
            if (has_scaler()) g->spline_scaler(o, i) += dsc;
            g->base_weight(o, i) += dW(nc, o);
          }
        }
        if (dx) {
          Matrix<T> dval(batch, S);
          matmul<T>(dvi, packed_.middleRows(i * S, S), dval, MatmulOp::nt);
          for (Index b = 0; b < batch; ++b) (*dx)(b, i) = dval.row(b).dot(dphi.row(b).segment(i * S, S));
        }
      }
    }
    return mu1 * total + mu2 * ent;
  }

  /// efficient-kan's update_grid: per input, the new grid mixes the uniform grid over
  /// [min - margin, max + margin] of the samples (weight grid_eps) with the sample quantiles at
  /// linspace(0, batch - 1, G + 1) (weight 1 - grid_eps), extended by k steps each side; then
  /// spline_weight is refit by least squares so the layer's spline part stays the same on x.
  /// Deviation: efficient-kan stores the refit of the *scaled* spline into spline_weight (the scaler
  /// then applies twice); here it is divided by spline_scaler, so the function is kept for any scaler.
  void update_grid(ConstMatrixRef<T> x /* [batch, in] */, double margin = 0.01) {
    check_shape(where(), "update_grid samples x", x.rows(), x.cols(), -1, cfg_.in_features);
    const Index batch = x.rows(), in = cfg_.in_features;
    check(batch >= 1, ErrorKind::invalid_argument, where(), "update_grid needs at least one sample");
    const int G = cfg_.grid_size, k = cfg_.spline_order;
    Matrix<double> xs = x.template cast<double>();
    const std::vector<Matrix<double>> ys = spline_outputs(xs);  // with the old grid
    Matrix<T> grid(in, n_knots());
    std::vector<T> col(static_cast<std::size_t>(batch));
    const T eps = T(cfg_.grid_eps);
    for (Index i = 0; i < in; ++i) {
      for (Index b = 0; b < batch; ++b) col[std::size_t(b)] = x(b, i);
      std::sort(col.begin(), col.end());
      const T lo = col.front(), hi = col.back();
      const T step = (hi - lo + T(2 * margin)) / T(G);
      for (int q = 0; q <= G; ++q) {
        const auto idx = static_cast<std::size_t>(std::floor(double(q) * double(batch - 1) / double(G)));
        const T adaptive = col[std::min(idx, col.size() - 1)];
        const T uniform = T(q) * step + lo - T(margin);
        grid(i, k + q) = eps * uniform + (T(1) - eps) * adaptive;
      }
      for (int r = 1; r <= k; ++r) {
        grid(i, k - r) = grid(i, k) - step * T(r);
        grid(i, k + G + r) = grid(i, k + G) + step * T(r);
      }
    }
    check_grid(grid);  // repeated samples can make quantile knots coincide: refuse before changing anything
    grid_ = std::move(grid);
    refit(xs, ys);
  }

  /// Grid extension (pykan's refine / initialize_from_another_model): a layer with `grid_size`
  /// uniform intervals over each input's current main range [grid(i, k), grid(i, G + k)], the same
  /// base weights and scalers, and spline weights fitted by least squares to this layer's spline part
  /// on the samples x [batch, in].
  KANLinear refined(int grid_size, ConstMatrixRef<T> x /* [batch, in] */) const {
    check_shape(where(), "refined samples x", x.rows(), x.cols(), -1, cfg_.in_features);
    Config c = cfg_;
    c.grid_size = grid_size;
    KANLinear r(c, name_);
    const int k = cfg_.spline_order;
    for (Index i = 0; i < cfg_.in_features; ++i) {
      const T lo = grid_(i, k), hi = grid_(i, k + cfg_.grid_size);
      const T h = (hi - lo) / T(grid_size);
      for (int j = 0; j <= grid_size + 2 * k; ++j) r.grid_(i, j) = lo + T(j - k) * h;
    }
    r.base_weight_ = base_weight_;
    if (has_scaler()) r.spline_scaler_ = spline_scaler_;
    const Matrix<double> xs = x.template cast<double>();
    r.refit(xs, spline_outputs(xs));
    return r;
  }

  /// efficient-kan's curve2coeff: spline coefficients [out, in * (G + k)] whose curves fit ys[i]
  /// [batch, out] at the samples xs(:, i) in the least-squares sense (minimum norm when the system is
  /// underdetermined), on the current grid.
  Matrix<T> curve2coeff(const Matrix<double>& xs /* [batch, in] */, const std::vector<Matrix<double>>& ys) const {
    const Index in = cfg_.in_features, out = cfg_.out_features, nc = n_coef();
    check(xs.cols() == in && Index(ys.size()) == in, ErrorKind::shape_mismatch, where(),
          "curve2coeff: samples have ", xs.cols(), " columns and ", ys.size(), " targets, expected ", in);
    Matrix<T> w(out, in * nc);
    for (Index i = 0; i < in; ++i) {
      check_shape(where(), "curve2coeff target", ys[std::size_t(i)].rows(), ys[std::size_t(i)].cols(), xs.rows(), out);
      const Eigen::MatrixXd B = basis_matrix(xs.col(i), i);
      const Eigen::MatrixXd C = lstsq_min_norm(B, ys[std::size_t(i)]);  // [G + k, out]
      for (Index o = 0; o < out; ++o)
        for (Index j = 0; j < nc; ++j) w(o, i * nc + j) = T(C(j, o));
    }
    return w;
  }

  /// Dense bases [T, in (G + k + 1)] (efficient-kan's b_splines with act(x) as the last entry of each
  /// input), and optionally their derivatives d/dx_i.
  void dense_basis(ConstMatrixRef<T> x, Matrix<T>& phi, Matrix<T>* dphi = nullptr) const {
    const Index tokens = x.rows(), in = cfg_.in_features, nc = n_coef(), S = nc + 1;
    const int G = cfg_.grid_size, k = cfg_.spline_order;
    phi.resize(tokens, in * S);
    if (dphi) dphi->resize(tokens, in * S);
    std::vector<T> tmp(static_cast<std::size_t>(2 * (G + 2 * k) + 2));
    for (Index t = 0; t < tokens; ++t)
      for (Index i = 0; i < in; ++i) {
        const T xi = x(t, i);
        kernels::ref::bspline_dense(xi, grid_.row(i).data(), G, k, &phi(t, i * S), tmp.data());
        phi(t, i * S + nc) = kernels::ref::activate(xi, cfg_.base_activation);
        if (dphi) {
          kernels::ref::bspline_dense_derivative(xi, grid_.row(i).data(), G, k, &(*dphi)(t, i * S), tmp.data());
          T da = T(1);
          if (cfg_.base_activation == Activation::silu) {
            const T s = T(1) / (T(1) + std::exp(-xi));
            da = s * (T(1) + xi * (T(1) - s));
          }
          (*dphi)(t, i * S + nc) = da;
        }
      }
  }

  /// Parameter count (base + spline + scaler; the grid is a buffer).
  Index parameters() const noexcept { return base_weight_.size() + spline_weight_.size() + spline_scaler_.size(); }

 private:
  static constexpr double kMinParallelFlops = 1 << 20;
  static constexpr Index kColumnAlign = 48;

  Index n_coef() const noexcept { return cfg_.grid_size + cfg_.spline_order; }
  Index n_knots() const noexcept { return cfg_.grid_size + 2 * cfg_.spline_order + 1; }
  std::string where() const { return layer_where("KANLinear", name_); }

  static void check_config(const Config& cfg, const std::string& name) {
    const std::string w = layer_where("KANLinear", name);
    check(cfg.in_features > 0 && cfg.out_features > 0, ErrorKind::config, w, "in_features = ", cfg.in_features,
          " and out_features = ", cfg.out_features, " must be >= 1");
    check(cfg.grid_size >= 1, ErrorKind::config, w, "grid_size = ", cfg.grid_size, " must be >= 1");
    check(cfg.spline_order >= 0 && cfg.spline_order <= kernels::kKanMaxOrder, ErrorKind::config, w,
          "spline_order = ", cfg.spline_order, " must be in [0, ", kernels::kKanMaxOrder, "]");
    check(cfg.grid_max > cfg.grid_min, ErrorKind::config, w, "grid_range [", cfg.grid_min, ", ", cfg.grid_max,
          "] must be increasing");
    check(cfg.grid_eps >= 0.0 && cfg.grid_eps <= 1.0, ErrorKind::config, w, "grid_eps = ", cfg.grid_eps,
          " must be in [0, 1]");
  }

  static Matrix<T> default_grid(const Config& cfg) {
    // torch.arange(-k, G + k + 1) * h + grid_range[0], h = (max - min) / G, in T.
    const int G = cfg.grid_size, k = cfg.spline_order;
    const T h = T((cfg.grid_max - cfg.grid_min) / G);
    Matrix<T> g(cfg.in_features, G + 2 * k + 1);
    for (Index i = 0; i < g.rows(); ++i)
      for (int j = 0; j <= G + 2 * k; ++j) g(i, j) = T(j - k) * h + T(cfg.grid_min);
    return g;
  }

  void check_grid() const { check_grid(grid_); }
  void check_grid(const Matrix<T>& g) const {
    check_shape(where(), "grid", g.rows(), g.cols(), cfg_.in_features, n_knots());
    for (Index i = 0; i < g.rows(); ++i)
      for (Index j = 0; j + 1 < g.cols(); ++j)
        check(g(i, j) < g(i, j + 1), ErrorKind::config, where(), "grid row ", i, " is not strictly increasing at knot ",
              j, " (", g(i, j), " >= ", g(i, j + 1), ")");
  }

  void check_grad(const KANLinearGrad<T>& g) const {
    check_shape(where(), "grad base_weight", g.base_weight.rows(), g.base_weight.cols(), base_weight_.rows(),
                base_weight_.cols());
    check_shape(where(), "grad spline_weight", g.spline_weight.rows(), g.spline_weight.cols(), spline_weight_.rows(),
                spline_weight_.cols());
    check_shape(where(), "grad spline_scaler", g.spline_scaler.rows(), g.spline_scaler.cols(), spline_scaler_.rows(),
                spline_scaler_.cols());
  }

  // Windows and act(x) of every token (parallel over tokens).
  void basis(ConstMatrixRef<T> x, std::int32_t* j0, MatrixMap<T>& vals, MatrixMap<T>& base) const {
    const Index tokens = x.rows(), in = cfg_.in_features;
    const int G = cfg_.grid_size, k = cfg_.spline_order;
    parallel_for(0, tokens, std::max<Index>(1, 2048 / in), [&](Index t) {
      const T* xr = x.row(t).data();
      if constexpr (std::is_same_v<T, float>) {
        if (uniform_) {
          kernels::bspline_local_uniform(xr, std::size_t(in), g0_.data(), inv_h_.data(), G, k, j0 + t * in,
                                         vals.row(t).data(), std::size_t(in));
        } else {
          kernels::bspline_local(xr, std::size_t(in), grid_.data(), std::size_t(grid_.cols()), G, k, j0 + t * in,
                                 vals.row(t).data(), std::size_t(in));
        }
      } else {
        kernels::bspline_local(xr, std::size_t(in), grid_.data(), std::size_t(grid_.cols()), G, k, j0 + t * in,
                               vals.row(t).data(), std::size_t(in));
      }
      kernels::activation(xr, base.row(t).data(), std::size_t(in), cfg_.base_activation);
    });
  }

  // Spline part of every edge at the samples xs [batch, in]: ys[i] [batch, out], in double.
  std::vector<Matrix<double>> spline_outputs(const Matrix<double>& xs) const {
    const Index in = cfg_.in_features, out = cfg_.out_features, nc = n_coef();
    std::vector<Matrix<double>> ys(static_cast<std::size_t>(in));
    for (Index i = 0; i < in; ++i) {
      const Matrix<double> B = basis_matrix(xs.col(i), i);  // [batch, G + k]
      Matrix<double> C(nc, out);
      for (Index o = 0; o < out; ++o)
        for (Index j = 0; j < nc; ++j)
          C(j, o) = double(spline_weight_(o, i * nc + j)) * (has_scaler() ? double(spline_scaler_(o, i)) : 1.0);
      ys[std::size_t(i)] = B * C;
    }
    return ys;
  }

  // spline_weight := least-squares fit of ys on the current grid, with the scalers divided out.
  void refit(const Matrix<double>& xs, const std::vector<Matrix<double>>& ys) {
    const Index in = cfg_.in_features, out = cfg_.out_features, nc = n_coef();
    Matrix<T> w = curve2coeff(xs, ys);
    if (has_scaler())
      for (Index o = 0; o < out; ++o)
        for (Index i = 0; i < in; ++i) {
          const T sc = spline_scaler_(o, i);
          if (sc != T(0)) w.row(o).segment(i * nc, nc) /= sc;
        }
    spline_weight_ = std::move(w);
    prepare();
  }

  // Basis matrix [n, G + k] of samples xs of input i, in double.
  Eigen::MatrixXd basis_matrix(const Eigen::Ref<const Eigen::VectorXd>& xs, Index i) const {
    const int G = cfg_.grid_size, k = cfg_.spline_order;
    const Index nc = n_coef();
    std::vector<double> g(static_cast<std::size_t>(n_knots())), tmp(static_cast<std::size_t>(G + 2 * k + 1));
    for (Index j = 0; j < n_knots(); ++j) g[std::size_t(j)] = double(grid_(i, j));
    Eigen::MatrixXd B(xs.size(), nc);
    std::vector<double> row(static_cast<std::size_t>(nc));
    for (Index b = 0; b < xs.size(); ++b) {
      kernels::ref::bspline_dense(xs[b], g.data(), G, k, row.data(), tmp.data());
      for (Index j = 0; j < nc; ++j) B(b, j) = row[std::size_t(j)];
    }
    return B;
  }

  Config cfg_;
  std::string name_;
  Matrix<T> grid_;           // [in, G + 2k + 1]
  Matrix<T> base_weight_;    // [out, in]
  Matrix<T> spline_weight_;  // [out, in * (G + k)]
  Matrix<T> spline_scaler_;  // [out, in] or empty
  Matrix<T> packed_;         // [in (G + k + 1), out]
  bool uniform_ = false;
  Eigen::Matrix<float, Eigen::Dynamic, 1> g0_, inv_h_;  // [in], uniform grids only
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
