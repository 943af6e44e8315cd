#pragma once
// Adam (Kingma & Ba 2015, arXiv:1412.6980) with PyTorch's torch.optim.Adam update and defaults:
//   g += weight_decay p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// over a fixed list of (parameter, gradient) matrices; used to fit KAN layers (kan/kan_linear.hpp,
// kan/kan.hpp: their adam_step() also rebuilds the packed weights).

#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class T>
class Adam {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;  ///< L2 penalty added to the gradient (torch.optim.Adam's weight_decay)
  };

  /// (parameter, its gradient); the same list, with the same shapes, at every step.
  using ParamList = std::vector<std::pair<Matrix<T>*, const Matrix<T>*>>;

  Adam() = default;
  explicit Adam(const Options& o) : opt_(o) {
    check(o.lr >= 0 && o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.eps >= 0, ErrorKind::config,
          "Adam", "lr = ", o.lr, ", betas = (", o.beta1, ", ", o.beta2, "), eps = ", o.eps, " out of range");
  }

  const Options& options() const noexcept { return opt_; }
  void set_lr(double lr) noexcept { opt_.lr = lr; }
  long steps() const noexcept { return t_; }

  void step(const ParamList& params) {
    if (m_.empty()) {
      for (const auto& pg : params) {
        m_.push_back(Matrix<T>::Zero(pg.first->rows(), pg.first->cols()));
        v_.push_back(Matrix<T>::Zero(pg.first->rows(), pg.first->cols()));
      }
    }
    check(params.size() == m_.size(), ErrorKind::invalid_argument, "Adam", "step with ", params.size(),
          " parameters, the first step had ", m_.size());
    ++t_;
    const double c1 = 1.0 - std::pow(opt_.beta1, double(t_)), c2 = 1.0 - std::pow(opt_.beta2, double(t_));
    for (std::size_t q = 0; q < params.size(); ++q) {
      Matrix<T>& p = *params[q].first;
      const Matrix<T>& g = *params[q].second;
      check_shape("Adam", "gradient", g.rows(), g.cols(), p.rows(), p.cols());
      check_shape("Adam", "parameter", p.rows(), p.cols(), m_[q].rows(), m_[q].cols());
      for (Index e = 0; e < p.size(); ++e) {
        double gi = double(g.data()[e]) + opt_.weight_decay * double(p.data()[e]);
        const double m = opt_.beta1 * double(m_[q].data()[e]) + (1.0 - opt_.beta1) * gi;
        const double v = opt_.beta2 * double(v_[q].data()[e]) + (1.0 - opt_.beta2) * gi * gi;
        m_[q].data()[e] = T(m);
        v_[q].data()[e] = T(v);
        p.data()[e] = T(double(p.data()[e]) - opt_.lr * (m / c1) / (std::sqrt(v / c2) + opt_.eps));
      }
    }
  }

  /// Forget the moments (after the parameters changed shape or meaning, e.g. a grid update).
  void reset() {
    m_.clear();
    v_.clear();
    t_ = 0;
  }

 private:
  Options opt_;
  std::vector<Matrix<T>> m_, v_;
  long t_ = 0;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
