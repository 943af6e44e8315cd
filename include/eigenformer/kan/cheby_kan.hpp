#pragma once
// ChebyKANLayer: a KAN layer whose edge functions are Chebyshev series of tanh(x) (reference
// SynodicMonth/ChebyKAN, ChebyKANLayer.py):
//
//   y[o] = sum_{i, d <= degree} cheby_coeffs[i, o, d] T_d(tanh(x_i)),   T_d(t) = cos(d acos t)
//
// T_d is evaluated by the recurrence T_0 = 1, T_1 = t, T_{d+1} = 2 t T_d - T_{d-1} (the same
// polynomials; the reference's cos(d acos t) differs by rounding). Checkpoint name under a prefix:
// cheby_coeffs [in, out, degree + 1], held here as a Linear weight [out, in (degree + 1)].

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

struct ChebyKANConfig {
  Index in_features = 0;
  Index out_features = 0;
  int degree = 3;
};

template <class T>
class ChebyKANLayer {
 public:
  using Config = ChebyKANConfig;

  ChebyKANLayer() = default;

  explicit ChebyKANLayer(const Config& cfg, std::string name = {}) : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, name_);
    lin_ = Linear<T>({cfg_.in_features * (cfg_.degree + 1), cfg_.out_features, false}, name_);
  }

  /// From cheby_coeffs [in, out, degree + 1] flattened row-major.
  ChebyKANLayer(const Config& cfg, const std::vector<T>& cheby_coeffs, std::string name = {}) : ChebyKANLayer(cfg, std::move(name)) {
    const Index in = cfg_.in_features, out = cfg_.out_features, D = cfg_.degree + 1;
    check(Index(cheby_coeffs.size()) == in * out * D, ErrorKind::shape_mismatch, where(), "cheby_coeffs has ",
          cheby_coeffs.size(), " values, expected ", shape_str({in, out, D}));
    for (Index i = 0; i < in; ++i)
      for (Index o = 0; o < out; ++o)
        for (Index d = 0; d < D; ++d) lin_.weight()(o, i * D + d) = cheby_coeffs[std::size_t((i * out + o) * D + d)];
  }

  static ChebyKANLayer load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    const std::string n = join_name(prefix, "cheby_coeffs");
    const std::string w = layer_where("ChebyKANLayer", prefix);
    const TensorInfo& t = st.info(n, w);
    const std::vector<std::int64_t> want{cfg.in_features, cfg.out_features, cfg.degree + 1};
    check(t.shape == want, ErrorKind::shape_mismatch, w, "weight '", n, "' has shape ", shape_str(t.shape), ", expected ",
          shape_str(want), " ([input_dim, output_dim, degree + 1])");
    std::vector<T> c(static_cast<std::size_t>(t.numel()));
    st.read(t, c.data(), c.size());
    return ChebyKANLayer(cfg, c, prefix);
  }

  /// cheby_coeffs [in, out, degree + 1], flattened.
  std::vector<T> cheby_coeffs() const {
    const Index in = cfg_.in_features, out = cfg_.out_features, D = cfg_.degree + 1;
    std::vector<T> c(static_cast<std::size_t>(in * out * D));
    for (Index i = 0; i < in; ++i)
      for (Index o = 0; o < out; ++o)
        for (Index d = 0; d < D; ++d) c[std::size_t((i * out + o) * D + d)] = lin_.weight()(o, i * D + d);
    return c;
  }

  void save(SafeTensorsWriter& w, const std::string& prefix) const {
    const auto c = cheby_coeffs();
    const Dtype dt = std::is_same_v<T, double> ? Dtype::F64 : Dtype::F32;
    w.add(join_name(prefix, "cheby_coeffs"), dt, {cfg_.in_features, cfg_.out_features, cfg_.degree + 1}, c.data(),
          c.size() * sizeof(T));
  }

  const Config& config() const noexcept { return cfg_; }
  Index in_features() const noexcept { return cfg_.in_features; }
  Index out_features() const noexcept { return cfg_.out_features; }
  Linear<T>& linear() noexcept { return lin_; }  // weight [out, in (degree + 1)]
  const Linear<T>& linear() const noexcept { return lin_; }

  void forward(ConstMatrixRef<T> x /* [T, in] */, MatrixRef<T> y /* [T, out] */, Workspace<T>& ws) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.in_features);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.out_features);
    if (x.rows() == 0) return;
    const Index tokens = x.rows(), in = cfg_.in_features, D = cfg_.degree + 1;
    typename Workspace<T>::Frame frame(ws);
    auto phi = ws.matrix(tokens, in * D);  // [T, in (degree + 1)]
    parallel_for(0, tokens, 1, [&](Index t) {
      T* p = phi.row(t).data();
      for (Index i = 0; i < in; ++i) {
        const T u = std::tanh(x(t, i));
        T* q = p + i * D;
        q[0] = T(1);
        if (D > 1) q[1] = u;
        for (Index d = 2; d < D; ++d) q[d] = T(2) * u * q[d - 1] - q[d - 2];
      }
    });
    lin_.forward(phi, y);
  }

  Matrix<T> forward(ConstMatrixRef<T> x) const {
    Workspace<T> ws;
    Matrix<T> y(x.rows(), cfg_.out_features);
    forward(x, y, ws);
    return y;
  }

  Index parameters() const noexcept { return lin_.parameters(); }

 private:
  std::string where() const { return layer_where("ChebyKANLayer", name_); }
  static void check_config(const Config& c, const std::string& name) {
    check(c.in_features > 0 && c.out_features > 0 && c.degree >= 0, ErrorKind::config, layer_where("ChebyKANLayer", name),
          "in_features = ", c.in_features, ", out_features = ", c.out_features, ", degree = ", c.degree,
          " (sizes must be >= 1, degree >= 0)");
  }

  Config cfg_;
  std::string name_;
  Linear<T> lin_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
