#pragma once
// Elementwise float kernels (exp, activations, GLU, residual add, scale) on raw pointers.
// Each has a scalar twin of the same name in kernels::ref; the double overloads here forward to
// those twins (double is the reference precision, it has no SIMD path).
//
// Accuracy against the twins computed in double (tests/test_kernels_elementwise.cpp), eps = 2^-23:
//   exp        <= 2 ulp (measured 1.25), subnormal results included
//   silu       <= 2 eps (1 + |x|) relative           (the exp argument's own rounding costs |x| eps)
//   gelu_tanh  <= 2 eps (1 + |2u|) relative
//   gelu_erf   <= 4 eps (1 + x^2/2) relative          (erfc fit ~1 eps)
//   relu2      correctly rounded; relu, identity, add, scale: exact
// Special values: NaN in gives NaN out; exp(-inf) = 0, exp(+inf) = +inf; silu(-inf) and
// gelu(-inf) are NaN as the plain formula -inf * 0 gives (PyTorch behaves the same).

#include <cstddef>

#include "../core/activation.hpp"
#include "loops.hpp"
#include "ref/elementwise.hpp"
#include "vmath.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {

inline void exp(const float* x, float* y, std::size_t n) {
  loops::map(x, y, n, [](auto v) { return simd::exp(v); });
}

inline void activation(const float* x, float* y, std::size_t n, Activation a) {
  switch (a) {
    case Activation::identity:
      if (x != y)
        for (std::size_t i = 0; i < n; ++i) y[i] = x[i];
      return;
    case Activation::relu:
      loops::map(x, y, n, [](auto v) { return simd::max(simd::set1<decltype(v)>(0.0f), v); });
      return;
    case Activation::relu2: loops::map(x, y, n, [](auto v) { return simd::relu2(v); }); return;
    case Activation::silu: loops::map(x, y, n, [](auto v) { return simd::silu(v); }); return;
    case Activation::gelu_erf: loops::map(x, y, n, [](auto v) { return simd::gelu_erf(v); }); return;
    case Activation::gelu_tanh: loops::map(x, y, n, [](auto v) { return simd::gelu_tanh(v); }); return;
  }
}

/// y = act(gate) * up (the gated linear unit of SwiGLU / GeGLU / ReLU^2-GLU FFNs).
inline void glu(const float* gate, const float* up, float* y, std::size_t n, Activation a) {
  auto with = [&](auto act) {
    loops::map2(gate, up, y, n, [act](auto g, auto u) { return simd::mul(act(g), u); });
  };
  switch (a) {
    case Activation::identity: with([](auto v) { return v; }); return;
    case Activation::relu: with([](auto v) { return simd::max(simd::set1<decltype(v)>(0.0f), v); }); return;
    case Activation::relu2: with([](auto v) { return simd::relu2(v); }); return;
    case Activation::silu: with([](auto v) { return simd::silu(v); }); return;
    case Activation::gelu_erf: with([](auto v) { return simd::gelu_erf(v); }); return;
    case Activation::gelu_tanh: with([](auto v) { return simd::gelu_tanh(v); }); return;
  }
}

/// y = a + b (residual connections).
inline void add(const float* a, const float* b, float* y, std::size_t n) {
  loops::map2(a, b, y, n, [](auto u, auto v) { return simd::add(u, v); });
}

/// y = x * s
inline void scale(const float* x, float s, float* y, std::size_t n) {
  loops::map(x, y, n, [s](auto v) { return simd::mul(v, simd::set1<decltype(v)>(s)); });
}

// Double precision: the reference twins.
inline void exp(const double* x, double* y, std::size_t n) { ref::exp(x, y, n); }
inline void activation(const double* x, double* y, std::size_t n, Activation a) { ref::activation(x, y, n, a); }
inline void glu(const double* g, const double* u, double* y, std::size_t n, Activation a) { ref::glu(g, u, y, n, a); }
inline void add(const double* a, const double* b, double* y, std::size_t n) { ref::add(a, b, y, n); }
inline void scale(const double* x, double s, double* y, std::size_t n) { ref::scale(x, s, y, n); }

}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
