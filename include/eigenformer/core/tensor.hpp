#pragma once
// Tensor conventions.
//
// Activations are row-major [tokens, features] matrices. Functions take them as Eigen::Ref views
// (no copy of user data as long as the innermost stride is 1; any outer stride is accepted), so a
// caller can pass a Matrix, a Map over its own buffer, or a block of a larger matrix. Per-head data
// are column blocks of these views: head h of a [T, n_heads * head_dim] matrix is
// `x.middleCols(h * head_dim, head_dim)`.
//
// The scalar type is a template parameter: float is the first-class type (SIMD kernels); double is
// supported everywhere through the scalar reference kernels and is what tests use for references.

#include <Eigen/Core>

namespace eigenformer {

using Index = Eigen::Index;

/// Row-major dynamic matrix: [rows, cols], rows are tokens.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Column vector (weights of norms, biases).
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Mutable view of a row-major matrix with contiguous rows and any row stride.
template <class T>
using MatrixRef = Eigen::Ref<Matrix<T>>;

/// Read-only view of a row-major matrix with contiguous rows and any row stride.
template <class T>
using ConstMatrixRef = Eigen::Ref<const Matrix<T>>;

template <class T>
using VectorRef = Eigen::Ref<Vector<T>>;

template <class T>
using ConstVectorRef = Eigen::Ref<const Vector<T>>;

/// A view over a caller's buffer: `MatrixMap<float>(ptr, rows, cols, Eigen::OuterStride<>(ld))`.
template <class T>
using MatrixMap = Eigen::Map<Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
using ConstMatrixMap = Eigen::Map<const Matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

}  // namespace eigenformer
