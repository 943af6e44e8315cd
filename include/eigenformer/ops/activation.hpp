#pragma once
// Elementwise ops over [rows, cols] views: activations, the GLU product, residual adds.

#include "../kernels/elementwise.hpp"
#include "rows.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace ops {

/// y = act(x); y may be x.
template <class T>
void activation(ConstMatrixRef<T> x /* [R, C] */, MatrixRef<T> y /* [R, C] */, Activation act) {
  detail::check_same_shape("ops::activation", "y", x, y);
  const auto n = static_cast<std::size_t>(x.cols());
  detail::for_each_row(x.rows(), x.cols(), [&](Index i) { kernels::activation(detail::row(x, i), detail::row(y, i), n, act); });
}

/// y = act(gate) * up; y may be gate or up.
template <class T>
void glu(ConstMatrixRef<T> gate /* [R, C] */, ConstMatrixRef<T> up /* [R, C] */,
         MatrixRef<T> y /* [R, C] */, Activation act) {
  detail::check_same_shape("ops::glu", "up", gate, up);
  detail::check_same_shape("ops::glu", "y", gate, y);
  const auto n = static_cast<std::size_t>(gate.cols());
  detail::for_each_row(gate.rows(), gate.cols(),
                       [&](Index i) { kernels::glu(detail::row(gate, i), detail::row(up, i), detail::row(y, i), n, act); });
}

/// y = a + b (residual connection); y may be a or b.
template <class T>
void add(ConstMatrixRef<T> a /* [R, C] */, ConstMatrixRef<T> b /* [R, C] */, MatrixRef<T> y /* [R, C] */) {
  detail::check_same_shape("ops::add", "b", a, b);
  detail::check_same_shape("ops::add", "y", a, y);
  const auto n = static_cast<std::size_t>(a.cols());
  detail::for_each_row(a.rows(), a.cols(), [&](Index i) { kernels::add(detail::row(a, i), detail::row(b, i), detail::row(y, i), n); });
}

}  // namespace ops
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
