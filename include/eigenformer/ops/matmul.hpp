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
// Operands are row-major views with unit inner stride: matrices, maps and their row/column blocks
// bind without a copy (a view that does not fit, e.g. a transposed expression, is copied: pass the
// transpose flag instead). C must not overlap A or B.

#include "../config.hpp"
#include "../core/tensor.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// Which operand is transposed: nn: A B, nt: A B^T, tn: A^T B.
enum class MatmulOp { nn, nt, tn };

template <class T>
void matmul(ConstMatrixRef<T> A, ConstMatrixRef<T> B, MatrixRef<T> C, MatmulOp op = MatmulOp::nn,
            bool accumulate = false) {
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

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
