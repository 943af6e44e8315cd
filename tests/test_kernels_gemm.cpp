// The attention-tile GEMM kernels (nn, tn, nt) against their scalar twins (computed in double), for
// float, f16 and bf16 operands, across shapes that cross every row block, packet and column tail;
// and the row conversion (widen) the wide decode route uses for 16-bit caches.
#include <eigenformer/kernels/gemm.hpp>

#include "test_util.hpp"

namespace ek = eigenformer::kernels;
using eigenformer::bf16;
using eigenformer::f16;

namespace {

template <class E>
std::vector<E> convert(const std::vector<float>& v) {
  std::vector<E> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = eigenformer::from_float<E>(v[i]);
  return out;
}

template <class E>
std::vector<double> widen(const std::vector<E>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = eigenformer::to_float(v[i]);
  return out;
}

// Error bound of a float dot product of length k with FMA: k * eps * sum |a_p b_p| (loose, standard).
double dot_bound(const double* a, std::size_t sa, const double* b, std::size_t sb, std::size_t k) {
  double s = 0;
  for (std::size_t p = 0; p < k; ++p) s += std::fabs(a[p * sa] * b[p * sb]);
  return (k + 2) * 1.2e-7 * s + 1e-30;
}

// C (+)= A B (gemm_nn, A [m x k]) or A^T B (gemm_tn when TA, A stored [k x m]: the wide decode
// route multiplies V^T from the left).
template <class E, class EA = float, bool TA = false>
void check_nn(std::size_t m, std::size_t n, std::size_t k, bool accumulate, std::mt19937& g) {
  const std::size_t lda = TA ? m + 3 : k + 1, ldb = n + 3, ldc = n + 2;
  const std::size_t a_row = TA ? 1 : lda, a_col = TA ? lda : 1;  // element (i, p) of op(A)
  auto A = convert<EA>(eftest::normal((TA ? std::max<std::size_t>(k, 1) : m) * lda, 1.0f, g));
  auto B = convert<E>(eftest::normal(k * ldb, 1.0f, g));
  auto C = eftest::normal(m * ldc, 1.0f, g);
  auto Ad = widen(A), Cd = eftest::to_double(C);
  auto Bd = widen(B);
  if constexpr (TA)
    ek::gemm_tn(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate);
  else
    ek::gemm_nn(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc, accumulate);
  ek::ref::gemm_strided(m, n, k, Ad.data(), a_row, a_col, Bd.data(), ldb, Cd.data(), ldc, accumulate);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < ldc; ++j) {
      if (j >= n) {  // outside the n columns: untouched
        ASSERT_EQ(double(C[i * ldc + j]), Cd[i * ldc + j]);
        continue;
      }
      // k = 0: B is empty (a null data pointer, which may not be offset): an empty sum, bound 0.
      const double tol = (k == 0 ? 0.0 : dot_bound(Ad.data() + i * a_row, a_col, Bd.data() + j, ldb, k)) + (accumulate ? 1.2e-7 * std::fabs(Cd[i * ldc + j]) : 0);
      ASSERT_NEAR(C[i * ldc + j], Cd[i * ldc + j], tol) << "m=" << m << " n=" << n << " k=" << k << " i=" << i << " j=" << j << " TA=" << TA;
    }
}

template <class E>
void check_nt(std::size_t m, std::size_t n, std::size_t k, std::mt19937& g) {
  const std::size_t lda = k + 2, ldb = k + 5, ldc = n + 1;
  auto A = eftest::normal(m * lda, 1.0f, g);
  auto B = convert<E>(eftest::normal(n * ldb, 1.0f, g));
  std::vector<float> C(m * ldc, 7.0f);
  auto Ad = eftest::to_double(A);
  auto Bd = widen(B);
  std::vector<double> Cd(m * ldc, 7.0);
  ek::gemm_nt(m, n, k, A.data(), lda, B.data(), ldb, C.data(), ldc);
  ek::ref::gemm_nt(m, n, k, Ad.data(), lda, Bd.data(), ldb, Cd.data(), ldc);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < ldc; ++j) {
      const double tol = j < n ? dot_bound(Ad.data() + i * lda, 1, Bd.data() + j * ldb, 1, k) : 0.0;
      ASSERT_NEAR(C[i * ldc + j], Cd[i * ldc + j], tol) << "m=" << m << " n=" << n << " k=" << k;
    }
}

const std::size_t kRows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13};  // <= 8 with k <= 2: the thin path
const std::size_t kCols[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 80};
const std::size_t kDepth[] = {0, 1, 2, 7, 8, 9, 64, 80, 129};

TEST(KernelGemm, NnMatchesTwinFloat) {
  auto g = eftest::rng(600);
  for (auto m : kRows)
    for (auto n : kCols)
      for (auto k : kDepth) {
        check_nn<float>(m, n, k, false, g);
        check_nn<float>(m, n, k, true, g);
      }
}

TEST(KernelGemm, NnMatchesTwinHalfAndBf16) {
  auto g = eftest::rng(601);
  for (auto m : {1u, 4u, 6u, 7u})
    for (auto n : {3u, 16u, 17u, 40u})
      for (auto k : {1u, 2u, 9u, 64u}) {
        check_nn<f16>(m, n, k, true, g);
        check_nn<bf16>(m, n, k, false, g);
      }
}

// A (the left operand) stored as f16 / bf16 too: the wide decode path multiplies cached keys from the left.
TEST(KernelGemm, NnMatchesTwinHalfAndBf16LeftOperand) {
  auto g = eftest::rng(603);
  for (auto m : {1u, 6u, 7u, 13u})
    for (auto n : {3u, 16u, 17u, 40u})
      for (auto k : {1u, 9u, 64u}) {
        check_nn<float, f16>(m, n, k, true, g);
        check_nn<float, bf16>(m, n, k, false, g);
        check_nn<f16, bf16>(m, n, k, true, g);
      }
}

TEST(KernelGemm, TnMatchesTwin) {
  auto g = eftest::rng(604);
  for (auto m : kRows)
    for (auto n : kCols)
      for (auto k : kDepth) {
        check_nn<float, float, true>(m, n, k, false, g);
        check_nn<float, float, true>(m, n, k, true, g);
      }
  for (auto m : {1u, 6u, 7u, 24u})
    for (auto n : {3u, 16u, 17u})
      for (auto k : {1u, 9u, 64u}) {
        check_nn<float, f16, true>(m, n, k, true, g);
        check_nn<bf16, bf16, true>(m, n, k, false, g);
      }
}

// widen: f16 / bf16 rows to float, exactly, across packet tails.
TEST(KernelGemm, WidenIsExact) {
  auto g = eftest::rng(605);
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 33u}) {
    const auto h = convert<f16>(eftest::normal(n, 3.0f, g));
    const auto b = convert<bf16>(eftest::normal(n, 3.0f, g));
    std::vector<float> y(n + 1, 5.0f);
    ek::widen(h.data(), y.data(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(y[i], eigenformer::to_float(h[i])) << n;
    ek::widen(b.data(), y.data(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(y[i], eigenformer::to_float(b[i])) << n;
    ASSERT_EQ(y[n], 5.0f);  // nothing written past n
  }
}

TEST(KernelGemm, NtMatchesTwin) {
  auto g = eftest::rng(602);
  for (auto m : kRows)
    for (auto n : kCols)
      for (auto k : kDepth) check_nt<float>(m, n, k, g);
  for (auto m : {1u, 2u, 3u})
    for (auto n : {1u, 5u, 8u})
      for (auto k : {7u, 8u, 64u, 80u}) {
        check_nt<f16>(m, n, k, g);
        check_nt<bf16>(m, n, k, g);
      }
}

}  // namespace
