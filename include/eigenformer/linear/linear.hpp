#pragma once
// Linear: y = x W^T + b, with PyTorch's weight layout W [out_features, in_features]
// (torch.nn.Linear; checkpoint names `<prefix>.weight`, `<prefix>.bias`).
//
// The product runs through Eigen's GEMM (GEMV for one token). Built with the CMake option
// EIGENFORMER_USE_BLAS (which defines EIGEN_USE_BLAS for the whole target), Eigen forwards large
// float/double products to the system BLAS (e.g. Debian's OpenBLAS) instead.
// Benchmarks: bench/bench_linear.cpp.

#include <algorithm>
#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../io/safetensors.hpp"
#include "../ops/matmul.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class Linear {
 public:
  struct Config {
    Index in_features = 0;
    Index out_features = 0;
    bool bias = false;
  };

  Linear() = default;

  /// Zero weights of the configured shape (fill them through weight() / bias()).
  explicit Linear(const Config& cfg, std::string name = {}) : name_(std::move(name)) {
    check_config(cfg);
    weight_.setZero(cfg.out_features, cfg.in_features);
    if (cfg.bias) bias_.setZero(cfg.out_features);
  }

  /// From tensors: weight [out, in]; bias [out] or empty for none.
  Linear(Matrix<T> weight, Vector<T> bias, std::string name = {})
      : name_(std::move(name)), weight_(std::move(weight)), bias_(std::move(bias)) {
    check(weight_.rows() > 0 && weight_.cols() > 0, ErrorKind::config, where(), "weight has shape ",
          shape_str({weight_.rows(), weight_.cols()}), ", both sizes must be >= 1");
    check(bias_.size() == 0 || bias_.size() == weight_.rows(), ErrorKind::shape_mismatch, where(), "bias has ",
          bias_.size(), " entries, expected ", weight_.rows(), " (out_features) or 0");
  }

  /// Load `<prefix>.weight` [out, in] (and `<prefix>.bias` [out] when cfg.bias) from a checkpoint,
  /// converting F32/F16/BF16/F64 to T.
  static Linear load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, prefix);
    const std::string where = layer_where("Linear", prefix);
    Matrix<T> w = st.matrix<T>(join_name(prefix, "weight"), cfg.out_features, cfg.in_features, where);
    Vector<T> b;
    if (cfg.bias) b = st.vector<T>(join_name(prefix, "bias"), cfg.out_features, where);
    return Linear(std::move(w), std::move(b), prefix);
  }

  Index in_features() const noexcept { return weight_.cols(); }
  Index out_features() const noexcept { return weight_.rows(); }
  bool has_bias() const noexcept { return bias_.size() != 0; }
  const std::string& name() const noexcept { return name_; }
  Matrix<T>& weight() noexcept { return weight_; }  // [out, in]
  const Matrix<T>& weight() const noexcept { return weight_; }
  Vector<T>& bias() noexcept { return bias_; }  // [out] or empty
  const Vector<T>& bias() const noexcept { return bias_; }

  /// y = x W^T + b. x: [T, in], y: [T, out]; y must not overlap x.
  void forward(ConstMatrixRef<T> x /* [T, in] */, MatrixRef<T> y /* [T, out] */) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, in_features());
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), out_features());
    if (x.rows() == 0) return;
    // Threads split the output features into contiguous column blocks, each computed by a
    // single-threaded Eigen product. Eigen's own threaded GEMM would pick its depth blocking from
    // the thread count (changing the summation order), and does not thread GEMV at all; this split
    // keeps every output element's arithmetic identical for any thread count and threads T = 1 too.
    const Index out = out_features();
    const double flops = 2.0 * double(x.rows()) * double(x.cols()) * double(out);
#if defined(EIGEN_USE_BLAS)
    const Index threads = 1;  // the BLAS threads its products itself
    (void)flops;
#else
    const Index threads = flops >= kMinParallelFlops ? std::min<Index>(num_threads(), out / kColumnAlign) : 1;
#endif
    if (threads <= 1) {
      matmul<T>(x, weight_, y, MatmulOp::nt);
    } else {
      const Index chunk = (out + threads * kColumnAlign - 1) / (threads * kColumnAlign) * kColumnAlign;
      parallel_for(0, threads, 1, [&](Index c) {
        const Index begin = c * chunk, len = std::min(chunk, out - begin);
        if (len > 0) matmul<T>(x, weight_.middleRows(begin, len), y.middleCols(begin, len), MatmulOp::nt);
      });
    }
    if (has_bias()) y.rowwise() += bias_.transpose();
  }

  /// Allocating convenience form.
  Matrix<T> forward(ConstMatrixRef<T> x /* [T, in] */) const {
    Matrix<T> y(x.rows(), out_features());
    forward(x, y);
    return y;
  }

  /// Parameter count (weight + bias).
  Index parameters() const noexcept { return weight_.size() + bias_.size(); }

 private:
  static constexpr double kMinParallelFlops = 1 << 20;  // below this, one thread is faster
  static constexpr Index kColumnAlign = 48;  // split unit: a multiple of every GEBP row panel (8, 16, 24 on AVX2)

  std::string where() const { return layer_where("Linear", name_); }

  static void check_config(const Config& cfg, const std::string& name = {}) {
    check(cfg.in_features > 0 && cfg.out_features > 0, ErrorKind::config, layer_where("Linear", name),
          "in_features = ", cfg.in_features, " and out_features = ", cfg.out_features, " must be >= 1");
  }

  std::string name_;
  Matrix<T> weight_;  // [out, in]
  Vector<T> bias_;    // [out] or empty
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
