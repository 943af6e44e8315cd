#pragma once
// Scalar reference twins of the softmax kernels.

#include <cmath>
#include <cstddef>
#include <limits>

#include "../../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

/// The row max was -inf: zeros for a fully masked row, all NaN if the row holds a NaN.
template <class T>
bool masked_row(const T* x, T* y, std::size_t n) {
  bool has_nan = false;
  for (std::size_t i = 0; i < n; ++i) has_nan |= x[i] != x[i];
  for (std::size_t i = 0; i < n; ++i) y[i] = has_nan ? std::numeric_limits<T>::quiet_NaN() : T(0);
  return !has_nan;
}

/// Softmax of one row. A row whose entries are all -inf (fully masked) gives 0 everywhere; a NaN
/// anywhere makes the whole row NaN; +inf entries give NaN (as exp(inf - inf)), matching PyTorch.
template <class T>
void softmax(const T* x, T* y, std::size_t n) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T m = ninf;
  for (std::size_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  if (m == ninf) {
    masked_row(x, y, n);
    return;
  }
  T s = 0;
  for (std::size_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - m);
    s += y[i];
  }
  for (std::size_t i = 0; i < n; ++i) y[i] /= s;
}

/// log sum_i exp(x_i); -inf for an empty or fully masked row.
template <class T>
T logsumexp(const T* x, std::size_t n) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T m = ninf;
  bool has_nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    has_nan |= x[i] != x[i];
  }
  if (has_nan) return std::numeric_limits<T>::quiet_NaN();
  if (m == ninf) return ninf;
  T s = 0;
  for (std::size_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
  return m + std::log(s);
}

/// One block of the online softmax (see kernels/softmax.hpp).
template <class T>
T softmax_online_block(T* s, std::size_t n, T& m, T& l) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T m_new = m;
  for (std::size_t i = 0; i < n; ++i) m_new = s[i] > m_new ? s[i] : m_new;
  if (m_new == ninf) {
    if (!masked_row(s, s, n)) l = std::numeric_limits<T>::quiet_NaN();
    return T(1);
  }
  const T alpha = std::exp(m - m_new);
  T sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = std::exp(s[i] - m_new);
    sum += s[i];
  }
  l = l * alpha + sum;
  m = m_new;
  return alpha;
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
