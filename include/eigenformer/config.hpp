#pragma once
// Compile-time configuration: which SIMD instruction set the kernels use, and the inline ABI
// namespace that carries it.
//
// The ISA is chosen from the compiler's own macros (as Eigen's ConfigureVectorization.h does); the
// library never adds -march/-m flags itself. Consumers choose theirs:
//   -mavx2 -mfma (or -march=native on such a CPU)  -> AVX2+FMA kernels
//   aarch64 (NEON is always present)               -> NEON kernels
//   anything else, or EIGENFORMER_FORCE_SCALAR     -> portable scalar kernels
//
// Everything whose generated code depends on the ISA (kernels, ops, layers) lives in
// `eigenformer::EIGENFORMER_ABI_NAMESPACE`, an inline namespace named after the ISA. Two translation
// units built with different flags therefore produce different symbols and can never be merged
// silently by the linker (which would run AVX2 code on a machine without it, or vice versa).

#if defined(EIGENFORMER_FORCE_SCALAR)
#define EIGENFORMER_ISA_SCALAR 1
#define EIGENFORMER_ISA_NAME "scalar"
#define EIGENFORMER_ABI_NAMESPACE isa_scalar
#elif defined(__AVX2__) && defined(__FMA__)
#define EIGENFORMER_ISA_AVX2 1
#define EIGENFORMER_ISA_NAME "avx2+fma"
#define EIGENFORMER_ABI_NAMESPACE isa_avx2
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define EIGENFORMER_ISA_NEON 1
#define EIGENFORMER_ISA_NAME "neon"
#define EIGENFORMER_ABI_NAMESPACE isa_neon
#else
#define EIGENFORMER_ISA_SCALAR 1
#define EIGENFORMER_ISA_NAME "scalar"
#define EIGENFORMER_ABI_NAMESPACE isa_scalar
#endif

#if defined(_MSC_VER)
#define EIGENFORMER_ALWAYS_INLINE __forceinline
#define EIGENFORMER_RESTRICT __restrict
#else
#define EIGENFORMER_ALWAYS_INLINE inline __attribute__((always_inline))
#define EIGENFORMER_RESTRICT __restrict__
#endif

// Debug-only assertion for kernel preconditions. Layer boundaries use the always-on checks of
// core/error.hpp instead.
#if defined(NDEBUG)
#define EIGENFORMER_DEBUG_ASSERT(cond) ((void)0)
#else
#include <cassert>
#define EIGENFORMER_DEBUG_ASSERT(cond) assert(cond)
#endif

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
/// The instruction set the kernels of this translation unit were compiled for.
inline constexpr const char* isa_name() noexcept { return EIGENFORMER_ISA_NAME; }
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
