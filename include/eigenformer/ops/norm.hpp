#pragma once
// Row-wise normalizations over [rows, features] views: RMSNorm, LayerNorm, and group/head norm
// (each row split into `groups` equal column groups, each normalized on its own).

#include "../kernels/norm.hpp"
#include "rows.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace ops {

enum class NormKind {
  rms,    ///< x / sqrt(mean(x^2) + eps)                 (RMSNorm; RetNet's head norm)
  layer,  ///< (x - mean) / sqrt(var + eps), biased var   (LayerNorm; torch.nn.GroupNorm)
};

/// y = x / sqrt(mean(x^2) + eps) * w per row; w has C entries, or 0 for none; y may be x.
template <class T>
void rms_norm(ConstMatrixRef<T> x /* [R, C] */, ConstVectorRef<T> w /* [C] or [0] */,
              MatrixRef<T> y /* [R, C] */, T eps) {
  detail::check_same_shape("ops::rms_norm", "y", x, y);
  const T* wp = detail::optional_weight("ops::rms_norm", "weight", w, x.cols());
  const auto n = static_cast<std::size_t>(x.cols());
  const auto ldx = static_cast<std::size_t>(x.outerStride()), ldy = static_cast<std::size_t>(y.outerStride());
  detail::for_each_row_block(x.rows(), x.cols(), [&](Index begin, Index end) {
    kernels::rms_norm_rows(detail::row(x, begin), ldx, wp, detail::row(y, begin), ldy,
                           static_cast<std::size_t>(end - begin), n, eps);
  });
}

/// y = (x - mean) / sqrt(var + eps) * w + b per row; w, b have C entries or 0; y may be x.
template <class T>
void layer_norm(ConstMatrixRef<T> x /* [R, C] */, ConstVectorRef<T> w /* [C] or [0] */,
                ConstVectorRef<T> b /* [C] or [0] */, MatrixRef<T> y /* [R, C] */, T eps) {
  detail::check_same_shape("ops::layer_norm", "y", x, y);
  const T* wp = detail::optional_weight("ops::layer_norm", "weight", w, x.cols());
  const T* bp = detail::optional_weight("ops::layer_norm", "bias", b, x.cols());
  const auto n = static_cast<std::size_t>(x.cols());
  detail::for_each_row(x.rows(), x.cols(),
                       [&](Index i) { kernels::layer_norm(detail::row(x, i), wp, bp, detail::row(y, i), n, eps); });
}

/// Group / head norm: each row of x is `groups` contiguous groups of C / groups features, each
/// normalized on its own (kind rms: RetNet's per-head RMS norm; kind layer: torch.nn.GroupNorm on
/// one position). w, b have C entries (the affine of all groups side by side) or 0; b is only
/// allowed with kind layer. y may be x.
template <class T>
void group_norm(ConstMatrixRef<T> x /* [R, C] */, Index groups, NormKind kind,
                ConstVectorRef<T> w /* [C] or [0] */, ConstVectorRef<T> b /* [C] or [0] */,
                MatrixRef<T> y /* [R, C] */, T eps) {
  constexpr const char* op = "ops::group_norm";
  detail::check_same_shape(op, "y", x, y);
  check(groups >= 1 && x.cols() % groups == 0, ErrorKind::invalid_argument, op, "groups = ", groups,
        " must be >= 1 and divide the feature count ", x.cols());
  const T* wp = detail::optional_weight(op, "weight", w, x.cols());
  const T* bp = detail::optional_weight(op, "bias", b, x.cols());
  check(kind == NormKind::layer || bp == nullptr, ErrorKind::invalid_argument, op,
        "a bias needs kind = layer");
  const Index g = x.cols() / groups;
  const auto n = static_cast<std::size_t>(g);
  detail::for_each_row(x.rows(), x.cols(), [&](Index i) {
    for (Index k = 0; k < groups; ++k) {
      const T* wk = wp ? wp + k * g : nullptr;
      if (kind == NormKind::rms) {
        kernels::rms_norm(detail::row(x, i) + k * g, wk, detail::row(y, i) + k * g, n, eps);
      } else {
        kernels::layer_norm(detail::row(x, i) + k * g, wk, bp ? bp + k * g : nullptr, detail::row(y, i) + k * g, n, eps);
      }
    }
  });
}

}  // namespace ops
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
