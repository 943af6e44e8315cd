#pragma once
// Small GEMM kernels for the tiles of attention (and anything else that multiplies blocks that are
// already in cache): register-blocked micro-kernels over packets, no packing, no allocation.
//
//   gemm_nn: C[m x n] (+)= A[m x k] * B[k x n]      broadcast-A x packet-B outer products;
//            blocks of 6 rows x 2 packets (12 accumulators + 2 B + 1 A = 15 of AVX2's 16 ymm);
//            with k <= 2 and at most 8 rows (decode's P V steps) a thin path that broadcasts A once
//   gemm_nt: C[m x n]  =  A[m x k] * B[n x k]^T     dot products along k; blocks of 2 x 4
//   gemm_tn: C[m x n] (+)= A[k x m]^T * B[k x n]    as gemm_nn, A read down its columns (the 6
//            broadcasts of a step are consecutive elements of one row of A)
//
// A and C are float; B may be float, f16 or bf16 (converted while loading, for half-precision
// caches). All matrices are row-major with leading dimensions (elements between rows). The scalar
// twins are in kernels/ref/gemm.hpp; tests/test_kernels_gemm.cpp compares them across shapes that
// cross every block and packet tail.

#include <cstddef>
#include <type_traits>

#include "convert.hpp"
#include "packet.hpp"
#include "ref/gemm.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

namespace gemm_detail {

using simd::F1;
using simd::Native;

// MR rows x NP packets of C. A is [m x k] (element (r, p) at A[r * lda + p]), or, when TA, stored
// transposed as [k x m] (element (r, p) at A[p * lda + r]).
template <class P, int MR, int NP, bool TA, class EA, class E>
EIGENFORMER_ALWAYS_INLINE void nn_block(const EA* A, std::size_t lda, const E* B, std::size_t ldb, float* C,
                                        std::size_t ldc, std::size_t k, bool accumulate) {
  constexpr std::size_t W = static_cast<std::size_t>(P::size);
  P acc[MR][NP];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int c = 0; c < NP; ++c)
      acc[r][c] = accumulate ? simd::load<P>(C + r * ldc + c * W) : simd::set1<P>(0.0f);
  for (std::size_t p = 0; p < k; ++p) {
    P b[NP];
#pragma GCC unroll 2
    for (int c = 0; c < NP; ++c) b[c] = simd::load_as<P>(B + p * ldb + c * W);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const P a = simd::set1<P>(to_float(TA ? A[p * lda + r] : A[r * lda + p]));
#pragma GCC unroll 2
      for (int c = 0; c < NP; ++c) acc[r][c] = simd::fmadd(a, b[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int c = 0; c < NP; ++c) simd::store(C + r * ldc + c * W, acc[r][c]);
}

// All rows of a column strip NP packets wide: blocks of 6 rows, then the remainder.
template <class P, int NP, bool TA, class EA, class E>
EIGENFORMER_ALWAYS_INLINE void nn_strip(std::size_t m, const EA* A, std::size_t lda, const E* B, std::size_t ldb,
                                        float* C, std::size_t ldc, std::size_t k, bool acc) {
  // Offset of row block i in A.
  const auto a_at = [&](std::size_t i) { return TA ? A + i : A + i * lda; };
  std::size_t i = 0;
  for (; i + 6 <= m; i += 6) nn_block<P, 6, NP, TA>(a_at(i), lda, B, ldb, C + i * ldc, ldc, k, acc);
  switch (m - i) {
    case 5: nn_block<P, 5, NP, TA>(a_at(i), lda, B, ldb, C + i * ldc, ldc, k, acc); break;
    case 4: nn_block<P, 4, NP, TA>(a_at(i), lda, B, ldb, C + i * ldc, ldc, k, acc); break;
    case 3: nn_block<P, 3, NP, TA>(a_at(i), lda, B, ldb, C + i * ldc, ldc, k, acc); break;
    case 2: nn_block<P, 2, NP, TA>(a_at(i), lda, B, ldb, C + i * ldc, ldc, k, acc); break;
    case 1: nn_block<P, 1, NP, TA>(a_at(i), lda, B, ldb, C + i * ldc, ldc, k, acc); break;
    default: break;
  }
}

// Few rows and one or two steps of k (decode's P V steps, a few keys at a time): the MR x K
// broadcasts of A are made once, outside the column loop, and each packet of C is loaded, updated
// and stored once. Same operations in the same order as nn_block, so results are identical.
constexpr std::size_t kThinRows = 8;  // gemm_nn with k <= 2 and at most this many rows takes nn_thin

template <int MR, int K, class EA, class E>
EIGENFORMER_ALWAYS_INLINE void nn_thin(std::size_t n, const EA* A, std::size_t lda, const E* B, std::size_t ldb,
                                       float* C, std::size_t ldc, bool accumulate) {
  constexpr std::size_t W = static_cast<std::size_t>(Native::size);
  float as[MR][K];
  Native a[MR][K];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int p = 0; p < K; ++p) {
      as[r][p] = to_float(A[r * lda + p]);
      a[r][p] = simd::set1<Native>(as[r][p]);
    }
  std::size_t j = 0;
  for (; j + W <= n; j += W) {
    Native b[K];
#pragma GCC unroll 2
    for (int p = 0; p < K; ++p) b[p] = simd::load_as<Native>(B + p * ldb + j);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      Native c = accumulate ? simd::load<Native>(C + r * ldc + j) : simd::set1<Native>(0.0f);
#pragma GCC unroll 2
      for (int p = 0; p < K; ++p) c = simd::fmadd(a[r][p], b[p], c);
      simd::store(C + r * ldc + j, c);
    }
  }
  for (; j < n; ++j)
    for (int r = 0; r < MR; ++r) {
      F1 c{accumulate ? C[r * ldc + j] : 0.0f};
      for (int p = 0; p < K; ++p) c = simd::fmadd(F1{as[r][p]}, simd::load_as<F1>(B + p * ldb + j), c);
      C[r * ldc + j] = c.v;
    }
}

template <int K, class EA, class E>
void nn_thin_rows(std::size_t m, std::size_t n, const EA* A, std::size_t lda, const E* B, std::size_t ldb, float* C,
                  std::size_t ldc, bool accumulate) {
  std::size_t i = 0;
  for (; i + 4 <= m; i += 4) nn_thin<4, K>(n, A + i * lda, lda, B, ldb, C + i * ldc, ldc, accumulate);
  switch (m - i) {
    case 3: nn_thin<3, K>(n, A + i * lda, lda, B, ldb, C + i * ldc, ldc, accumulate); break;
    case 2: nn_thin<2, K>(n, A + i * lda, lda, B, ldb, C + i * ldc, ldc, accumulate); break;
    case 1: nn_thin<1, K>(n, A + i * lda, lda, B, ldb, C + i * ldc, ldc, accumulate); break;
    default: break;
  }
}

// C (+)= op(A) B over all column strips: 2 packets, 1 packet, then single columns.
template <bool TA, class EA, class E>
void nn_all(std::size_t m, std::size_t n, std::size_t k, const EA* A, std::size_t lda, const E* B, std::size_t ldb,
            float* C, std::size_t ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: A and B may be null (no offset may be applied to them)
    if (!accumulate)
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) C[i * ldc + j] = 0.0f;
    return;
  }
  if constexpr (!TA) {
    if (k <= 2 && m <= kThinRows) {
      if (k == 1)
        nn_thin_rows<1>(m, n, A, lda, B, ldb, C, ldc, accumulate);
      else
        nn_thin_rows<2>(m, n, A, lda, B, ldb, C, ldc, accumulate);
      return;
    }
  }
  constexpr std::size_t W = static_cast<std::size_t>(Native::size);
  std::size_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) nn_strip<Native, 2, TA>(m, A, lda, B + j, ldb, C + j, ldc, k, accumulate);
  if (W > 1 && j + W <= n) {
    nn_strip<Native, 1, TA>(m, A, lda, B + j, ldb, C + j, ldc, k, accumulate);
    j += W;
  }
  for (; j < n; ++j) nn_strip<F1, 1, TA>(m, A, lda, B + j, ldb, C + j, ldc, k, accumulate);
}

// MR rows of A against NB rows of B: MR x NB dot products of length k.
template <int MR, int NB, class E>
EIGENFORMER_ALWAYS_INLINE void nt_block(const float* A, std::size_t lda, const E* B, std::size_t ldb, float* C,
                                        std::size_t ldc, std::size_t k) {
  constexpr std::size_t W = static_cast<std::size_t>(Native::size);
  Native acc[MR][NB];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NB; ++c) acc[r][c] = simd::set1<Native>(0.0f);
  std::size_t p = 0;
  for (; p + W <= k; p += W) {
    Native a[MR];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      a[r] = simd::load<Native>(A + r * lda + p);
      simd::keep_in_register(a[r]);  // used NB times below
    }
#pragma GCC unroll 4
    for (int c = 0; c < NB; ++c) {
      const Native b = simd::load_as<Native>(B + c * ldb + p);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) acc[r][c] = simd::fmadd(a[r], b, acc[r][c]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NB; ++c) {
      F1 s{simd::hsum(acc[r][c])};
      const float* at = A + r * lda + p;
      const E* bt = B + c * ldb + p;
      for (std::size_t q = 0; q + p < k; ++q) s = simd::fmadd(F1{at[q]}, simd::load_as<F1>(bt + q), s);
      C[r * ldc + c] = s.v;
    }
}

template <int NB, class E>
EIGENFORMER_ALWAYS_INLINE void nt_strip(std::size_t m, const float* A, std::size_t lda, const E* B, std::size_t ldb,
                                        float* C, std::size_t ldc, std::size_t k) {
  std::size_t i = 0;
  for (; i + 2 <= m; i += 2) nt_block<2, NB>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, k);
  if (i < m) nt_block<1, NB>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, k);
}

}  // namespace gemm_detail

/// C[m x n] (+)= A[m x k] * B[k x n]. C must not overlap A or B. A may be float, f16 or bf16 too.
template <class EA, class E, class = std::enable_if_t<!std::is_same_v<EA, double>>>
inline void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const EA* A, std::size_t lda, const E* B,
                    std::size_t ldb, float* C, std::size_t ldc, bool accumulate) {
  gemm_detail::nn_all<false>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

/// C[m x n] (+)= A^T * B with A stored as [k x m] (row p of A holds column p of A^T), B [k x n].
/// C must not overlap A or B. A may be float, f16 or bf16 too.
template <class EA, class E, class = std::enable_if_t<!std::is_same_v<EA, double>>>
inline void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const EA* A, std::size_t lda, const E* B,
                    std::size_t ldb, float* C, std::size_t ldc, bool accumulate) {
  gemm_detail::nn_all<true>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

/// C[m x n] = A[m x k] * B[n x k]^T. C must not overlap A or B.
template <class E>
inline void gemm_nt(std::size_t m, std::size_t n, std::size_t k, const float* A, std::size_t lda, const E* B,
                    std::size_t ldb, float* C, std::size_t ldc) {
  using namespace gemm_detail;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: A and B may be null (no offset may be applied to them)
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; ++j) C[i * ldc + j] = 0.0f;
    return;
  }
  std::size_t j = 0;
  for (; j + 4 <= n; j += 4) nt_strip<4>(m, A, lda, B + j * ldb, ldb, C + j, ldc, k);
  switch (n - j) {
    case 3: nt_strip<3>(m, A, lda, B + j * ldb, ldb, C + j, ldc, k); break;
    case 2: nt_strip<2>(m, A, lda, B + j * ldb, ldb, C + j, ldc, k); break;
    case 1: nt_strip<1>(m, A, lda, B + j * ldb, ldb, C + j, ldc, k); break;
    default: break;
  }
}

// Double precision: the twins.
template <class E>
inline void gemm_tn(std::size_t m, std::size_t n, std::size_t k, const double* A, std::size_t lda, const E* B,
                    std::size_t ldb, double* C, std::size_t ldc, bool accumulate) {
  ref::gemm_tn(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}
template <class E>
inline void gemm_nn(std::size_t m, std::size_t n, std::size_t k, const double* A, std::size_t lda, const E* B,
                    std::size_t ldb, double* C, std::size_t ldc, bool accumulate) {
  ref::gemm_nn(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}
template <class E>
inline void gemm_nt(std::size_t m, std::size_t n, std::size_t k, const double* A, std::size_t lda, const E* B,
                    std::size_t ldb, double* C, std::size_t ldc) {
  ref::gemm_nt(m, n, k, A, lda, B, ldb, C, ldc);
}

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
