#pragma once
// Scalar reference twins of the small GEMM kernels used inside attention tiles.

#include <cstddef>
#include <type_traits>

#include "../../config.hpp"
#include "../../core/half.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

// An element of A as T: floating-point types convert directly, f16 / bf16 through float.
template <class T, class EA>
T widen(EA a) noexcept {
  if constexpr (std::is_floating_point_v<EA>)
    return static_cast<T>(a);
  else
    return static_cast<T>(to_float(a));
}

/// C[m x n] (+)= A B, element (i, p) of A at A[i * a_row + p * a_col]; B and C row-major.
template <class T, class EA, class E>
void gemm_strided(std::size_t m, std::size_t n, std::size_t k, const EA* A, std::size_t a_row, std::size_t a_col,
                  const E* B, std::size_t ldb, T* C, std::size_t ldc, bool accumulate) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      T s = accumulate ? C[i * ldc + j] : T(0);
      for (std::size_t p = 0; p < k; ++p)
        s += widen<T>(A[i * a_row + p * a_col]) * static_cast<T>(to_float(B[p * ldb + j]));
      C[i * ldc + j] = s;
    }
}

/// C[m x n] (+)= A[m x k] * B[k x n]; all row-major with leading dimensions lda, ldb, ldc.
/// A may be stored as f16 / bf16 (widened on load) when T is float.
template <class T, class EA, class E>
void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const EA* A, std::size_t lda, const E* B, std::size_t ldb,
             T* C, std::size_t ldc, bool accumulate) {
  gemm_strided(m, n, k, A, lda, 1, B, ldb, C, ldc, accumulate);
}

/// C[m x n] (+)= A^T * B with A stored as [k x m] (element (i, p) of A^T at A[p * lda + i]).
template <class T, class EA, class E>
void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const EA* A, std::size_t lda, const E* B, std::size_t ldb,
             T* C, std::size_t ldc, bool accumulate) {
  gemm_strided(m, n, k, A, 1, lda, B, ldb, C, ldc, accumulate);
}

/// C[m x n] = A[m x k] * B[n x k]^T (dot products of rows of A with rows of B).
template <class T, class E>
void gemm_nt(std::size_t m, std::size_t n, std::size_t k, const T* A, std::size_t lda, const E* B, std::size_t ldb,
             T* C, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      T s = 0;
      for (std::size_t p = 0; p < k; ++p) s += A[i * lda + p] * static_cast<T>(to_float(B[j * ldb + p]));
      C[i * ldc + j] = s;
    }
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
