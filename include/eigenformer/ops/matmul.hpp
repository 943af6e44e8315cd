#pragma once
// C = op(A) op(B), or C += op(A) op(B): the library's one call into Eigen's matrix product.
//
// Every layer multiplies through this function instead of writing `C.noalias() = A * B` on its own
// block and map types: Eigen instantiates its whole product machinery (GEMM, GEMV, lazy coefficient
// products, for each operand storage order) once per distinct expression type, which cost about a
// second of compile time per call site in every translation unit. Here the operands are always the
// same two view types, so a translation unit instantiates it once per scalar type and transpose
// pattern. The arithmetic is Eigen's, unchanged.
//
// Threads: a product that Eigen would thread itself (at least 2 x nr rows of C and 10^5 multiply-adds,
// Eigen's parallelize_gemm rule, outside a parallel region) is split here instead, into blocks of C's
// rows aligned to the GEBP column panel nr, each a single-threaded Eigen product inside the library's
// parallel region. Eigen's threaded GEMM would pick its depth blocking kc from the thread count, which
// changes every sum's rounding; its single-threaded kc depends on the depth only, so the split gives
// the bits of one thread at any thread count (tests/test_concurrency.cpp, docs/determinism.md).
//
// Operands are row-major views with unit inner stride: matrices, maps and their row/column blocks
// bind without a copy (a view that does not fit, e.g. a transposed expression, is copied: pass the
// transpose flag instead). C must not overlap A or B.

#include <algorithm>

#include "../config.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// Which operand is transposed: nn: A B, nt: A B^T, tn: A^T B.
enum class MatmulOp { nn, nt, tn };

namespace matmul_detail {

template <class T>
void product(ConstMatrixRef<T> A, ConstMatrixRef<T> B, MatrixRef<T> C, MatmulOp op, bool accumulate) {
  switch (op) {
    case MatmulOp::nn:
      if (accumulate)
        C.noalias() += A * B;
      else
        C.noalias() = A * B;
      break;
    case MatmulOp::nt:
      if (accumulate)
        C.noalias() += A * B.transpose();
      else
        C.noalias() = A * B.transpose();
      break;
    case MatmulOp::tn:
      if (accumulate)
        C.noalias() += A.transpose() * B;
      else
        C.noalias() = A.transpose() * B;
      break;
  }
}

// Eigen's parallelize_gemm threshold: work / kMinTaskSize (50000) threads at most.
constexpr double kEigenMinThreadedMacs = 2 * 50000.0;

}  // namespace matmul_detail

template <class T>
void matmul(ConstMatrixRef<T> A, ConstMatrixRef<T> B, MatrixRef<T> C, MatmulOp op = MatmulOp::nn,
            bool accumulate = false) {
  const Index m = C.rows(), depth = op == MatmulOp::tn ? A.rows() : A.cols();
  constexpr Index nr = Eigen::internal::gebp_traits<T, T>::nr;
  bool outside = true;
#if defined(EIGEN_USE_BLAS)
  outside = false;  // the BLAS threads its products itself (core/threading.hpp)
#elif defined(_OPENMP)
  outside = !omp_in_parallel();
#endif
  const Index blocks = outside ? std::min<Index>(num_threads(), m / nr) : 1;
  const double macs = double(m) * double(C.cols()) * double(depth);
  if (blocks < 2 || C.cols() < 2 || macs < matmul_detail::kEigenMinThreadedMacs) {
    matmul_detail::product<T>(A, B, C, op, accumulate);
    return;
  }
  // Blocks of whole nr panels; the last takes the m % nr tail rows too (a block of one row would be
  // a GEMV, whose sums differ from GEMM's).
  const Index panels = m / nr, per = (panels + blocks - 1) / blocks, used = (panels + per - 1) / per;
  parallel_for(0, used, 1, [&](Index b) {
    const Index r0 = b * per * nr, len = b + 1 == used ? m - r0 : per * nr;
    if (op == MatmulOp::tn)
      matmul_detail::product<T>(A.middleCols(r0, len), B, C.middleRows(r0, len), op, accumulate);
    else
      matmul_detail::product<T>(A.middleRows(r0, len), B, C.middleRows(r0, len), op, accumulate);
  });
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
