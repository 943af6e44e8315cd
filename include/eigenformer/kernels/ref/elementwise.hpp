#pragma once
// Scalar reference twins of the elementwise kernels: plain loops over the textbook formula, in the
// caller's precision (float, or double for test references). No SIMD, no approximations.

#include <cmath>
#include <cstddef>

#include "../../config.hpp"
#include "../../core/activation.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

template <class T>
T activate(T x, Activation a) {
  switch (a) {
    case Activation::identity: return x;
    case Activation::relu: return x > T(0) ? x : (x != x ? x : T(0));
    case Activation::relu2: {
      const T r = x > T(0) ? x : (x != x ? x : T(0));
      return r * r;
    }
    case Activation::silu: return x / (T(1) + std::exp(-x));
    // 0.5 x (1 + erf(x / sqrt 2)), written with erfc so the negative tail does not cancel.
    case Activation::gelu_erf: return T(0.5) * x * std::erfc(-x / std::sqrt(T(2)));
    // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), the form without cancellation for u << 0.
    case Activation::gelu_tanh: {
      const T u = std::sqrt(T(2) / T(3.14159265358979323846)) * (x + T(0.044715) * x * x * x);
      return x / (T(1) + std::exp(T(-2) * u));
    }
  }
  return x;
}

template <class T>
void exp(const T* x, T* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

template <class T>
void activation(const T* x, T* y, std::size_t n, Activation a) {
  for (std::size_t i = 0; i < n; ++i) y[i] = activate(x[i], a);
}

/// y = act(gate) * up
template <class T>
void glu(const T* gate, const T* up, T* y, std::size_t n, Activation a) {
  for (std::size_t i = 0; i < n; ++i) y[i] = activate(gate[i], a) * up[i];
}

/// y = a + b
template <class T>
void add(const T* a, const T* b, T* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

/// y = x * s
template <class T>
void scale(const T* x, T s, T* y, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
