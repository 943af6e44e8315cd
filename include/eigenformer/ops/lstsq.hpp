#pragma once
// Minimum-norm linear least squares: X = argmin ||A X - Y||_F, and among the minimizers the one of
// least norm (what torch.linalg.lstsq returns on the CPU, LAPACK gelsy, and what
// Eigen::CompleteOrthogonalDecomposition::solve returns).
//
// Method: a complete orthogonal decomposition A P = Q [T 0; 0 0] Z^T, computed as a Householder QR
// with column pivoting (the column of largest remaining norm first), the numerical rank r =
// #{k : |R_kk| > eps * min(m, n) * |R_00|} (Eigen's default threshold), then the trapezoid
// [R11 R12] of the first r rows reduced to [T 0] by Householder reflections from the right. The
// solution is X = P Z [T^-1 (Q^T Y)_(0:r); 0].
//
// Plain loops on purpose: Eigen's decomposition templates cost ~10 s of compile time in every
// translation unit that instantiates them, and this is only used on small systems (KAN's
// curve2coeff: G + k unknowns per input). Tested against Eigen's CompleteOrthogonalDecomposition
// (full rank, under- and overdetermined, rank-deficient) in tests/test_kan.cpp.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "../config.hpp"
#include "../core/error.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace lstsq_detail {
// Householder reflection H = I - tau v v^T (v[0] = 1, v[1..] returned in x[1..]) with
// H [alpha; x] = [beta; 0] (LAPACK dlarfg). Returns tau; alpha becomes beta.
inline double make_reflector(double& alpha, double* x, std::ptrdiff_t n, std::ptrdiff_t stride) {
  double xnorm = 0.0;
  for (std::ptrdiff_t i = 0; i < n; ++i) xnorm = std::hypot(xnorm, x[i * stride]);
  if (xnorm == 0.0) return 0.0;
  const double beta = -std::copysign(std::hypot(alpha, xnorm), alpha);
  const double tau = (beta - alpha) / beta, s = 1.0 / (alpha - beta);
  for (std::ptrdiff_t i = 0; i < n; ++i) x[i * stride] *= s;
  alpha = beta;
  return tau;
}
}  // namespace lstsq_detail

/// A: [m, n], Y: [m, p] -> X: [n, p]. Any shapes (m < n, m > n, rank-deficient, zero).
inline Eigen::MatrixXd lstsq_min_norm(Eigen::MatrixXd A, Eigen::MatrixXd Y) {
  using lstsq_detail::make_reflector;
  const Index m = A.rows(), n = A.cols(), p = Y.cols();
  check(Y.rows() == m, ErrorKind::shape_mismatch, "lstsq_min_norm", "A has ", m, " rows, Y has ", Y.rows());
  Eigen::MatrixXd X = Eigen::MatrixXd::Zero(n, p);
  const Index kmax = std::min(m, n);
  if (kmax == 0 || p == 0) return X;
  std::vector<Index> perm(static_cast<std::size_t>(n));
  for (Index j = 0; j < n; ++j) perm[std::size_t(j)] = j;

  // 1. A P = Q R: reflections applied to A (R in its upper triangle) and to Y (Q^T Y).
  std::vector<double> v(static_cast<std::size_t>(m));
  for (Index k = 0; k < kmax; ++k) {
    Index best = k;
    double best_norm = -1.0;
    for (Index j = k; j < n; ++j) {
      const double s = A.col(j).tail(m - k).squaredNorm();
      if (s > best_norm) {
        best_norm = s;
        best = j;
      }
    }
    if (best != k) {
      A.col(k).swap(A.col(best));
      std::swap(perm[std::size_t(k)], perm[std::size_t(best)]);
    }
    double alpha = A(k, k);
    const double tau = make_reflector(alpha, &A(std::min(k + 1, m - 1), k), m - k - 1, 1);
    A(k, k) = alpha;
    if (tau == 0.0) continue;
    v[0] = 1.0;
    for (Index i = k + 1; i < m; ++i) {
      v[std::size_t(i - k)] = A(i, k);
      A(i, k) = 0.0;
    }
    auto apply = [&](double* col) {  // col[k..m) -= tau v (v^T col[k..m))
      double dot = 0.0;
      for (Index i = k; i < m; ++i) dot += v[std::size_t(i - k)] * col[i];
      dot *= tau;
      for (Index i = k; i < m; ++i) col[i] -= dot * v[std::size_t(i - k)];
    };
    for (Index j = k + 1; j < n; ++j) apply(&A(0, j));
    for (Index j = 0; j < p; ++j) apply(&Y(0, j));
  }
  // 2. Numerical rank.
  const double r00 = std::abs(A(0, 0));
  const double threshold = std::numeric_limits<double>::epsilon() * static_cast<double>(kmax) * r00;
  Index r = 0;
  while (r < kmax && std::abs(A(r, r)) > threshold) ++r;
  if (r == 0) return X;
  // 3. [R11 R12] Z = [T 0]: for i = r-1 .. 0, a reflection on the coordinates {i, r, .., n-1}
  // that zeroes row i's entries in columns r..n-1; applied to rows 0..i (rows below i are already
  // zero in those columns, and zero in column i).
  const Index extra = n - r;
  Eigen::MatrixXd zv(r, extra);  // reflector tails, one row per i
  std::vector<double> ztau(static_cast<std::size_t>(r), 0.0);
  if (extra > 0) {
    for (Index i = r - 1; i >= 0; --i) {
      double alpha = A(i, i);
      const double tau = make_reflector(alpha, &A(i, r), extra, A.rows());
      ztau[std::size_t(i)] = tau;
      for (Index j = 0; j < extra; ++j) zv(i, j) = A(i, r + j);
      A(i, i) = alpha;
      for (Index j = 0; j < extra; ++j) A(i, r + j) = 0.0;
      if (tau == 0.0) continue;
      for (Index row = 0; row < i; ++row) {
        double dot = A(row, i);
        for (Index j = 0; j < extra; ++j) dot += A(row, r + j) * zv(i, j);
        dot *= tau;
        A(row, i) -= dot;
        for (Index j = 0; j < extra; ++j) A(row, r + j) -= dot * zv(i, j);
      }
    }
  }
  // 4. w = [T^-1 (Q^T Y)_(0:r); 0], then w = Z w (Z = Z_(r-1) .. Z_0: Z_0 first), then X = P w.
  Eigen::MatrixXd w = Eigen::MatrixXd::Zero(n, p);
  for (Index c = 0; c < p; ++c)
    for (Index i = r - 1; i >= 0; --i) {
      double s = Y(i, c);
      for (Index j = i + 1; j < r; ++j) s -= A(i, j) * w(j, c);
      w(i, c) = s / A(i, i);
    }
  if (extra > 0)
    for (Index i = 0; i < r; ++i) {
      const double tau = ztau[std::size_t(i)];
      if (tau == 0.0) continue;
      for (Index c = 0; c < p; ++c) {
        double dot = w(i, c);
        for (Index j = 0; j < extra; ++j) dot += zv(i, j) * w(r + j, c);
        dot *= tau;
        w(i, c) -= dot;
        for (Index j = 0; j < extra; ++j) w(r + j, c) -= dot * zv(i, j);
      }
    }
  for (Index k = 0; k < n; ++k) X.row(perm[std::size_t(k)]) = w.row(k);
  return X;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
