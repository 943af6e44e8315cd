#pragma once
// Row-wise softmax and log-sum-exp over [rows, cols] views.

#include <limits>

#include "../kernels/softmax.hpp"
#include "rows.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace ops {

/// y[i, :] = softmax(x[i, :]) for every row; y may be x. Fully masked rows (all -inf) give 0.
template <class T>
void softmax(ConstMatrixRef<T> x /* [R, C] */, MatrixRef<T> y /* [R, C] */) {
  detail::check_same_shape("ops::softmax", "y", x, y);
  const auto n = static_cast<std::size_t>(x.cols());
  detail::for_each_row(x.rows(), x.cols(), [&](Index i) { kernels::softmax(detail::row(x, i), detail::row(y, i), n); });
}

/// In place.
template <class T>
void softmax(MatrixRef<T> x /* [R, C] */) {
  softmax<T>(x, x);
}

/// lse[i] = log sum_j exp(x[i, j]); -inf for fully masked rows.
template <class T>
void logsumexp(ConstMatrixRef<T> x /* [R, C] */, VectorRef<T> lse /* [R] */) {
  check(lse.size() == x.rows(), ErrorKind::shape_mismatch, "ops::logsumexp", "lse has ", lse.size(),
        " entries, expected ", x.rows());
  if (x.cols() == 0) {
    lse.setConstant(-std::numeric_limits<T>::infinity());
    return;
  }
  const auto n = static_cast<std::size_t>(x.cols());
  detail::for_each_row(x.rows(), x.cols(), [&](Index i) { lse[i] = kernels::logsumexp(detail::row(x, i), n); });
}

}  // namespace ops
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
