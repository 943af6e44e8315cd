#pragma once
// Optional flush-to-zero of denormal (subnormal) floats.
//
// By default eigenformer computes with IEEE gradual underflow: subnormal inputs and results are
// handled exactly as the hardware does (correctly rounded; the kernels' exp even rounds results in
// the subnormal range instead of flushing them), so results match the double references down to
// the smallest subnormal (docs/numerics.md). On many CPUs an operation on a subnormal is much
// slower than on a normal number. When that matters more than the last 2^-126 of range, turn on
// flush-to-zero for a scope:
//
//   {
//     eigenformer::ScopedFlushDenormals ftz;  // subnormal inputs read as 0, subnormal results become 0
//     decoder.forward(ids, n, logits, state, ws);
//   }                                          // previous mode restored
//
// What it sets: on x86 the MXCSR bits FTZ (results) and DAZ (inputs); on aarch64 the FPCR bit FZ
// (both). Elsewhere it does nothing and can_flush_denormals() is false. The mode is per thread: the
// guard sets it on the calling thread and, when the library is compiled with OpenMP and the guard
// is not created inside a parallel region, on the threads of an OpenMP team of num_threads()
// threads (the worker pool the library's parallel loops use; OpenMP runtimes keep those threads,
// and a thread created later inherits the mode of the thread that creates it). The destructor puts
// the calling thread's previous mode back on the same threads. Guards nest.
// Not covered: threads of your own (create a guard in each), and a system BLAS's threads.
//
// Tests: tests/test_edge_cases.cpp (Denormals.*).

#include <cstdint>

#include "threading.hpp"

#if defined(__x86_64__) || defined(_M_X64) || (defined(__i386__) && defined(__SSE__))
#include <xmmintrin.h>
#define EIGENFORMER_FTZ_X86 1
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define EIGENFORMER_FTZ_AARCH64 1
#endif

namespace eigenformer {

/// True where flush-to-zero can be set (x86 with SSE, aarch64); elsewhere the functions below
/// are no-ops.
constexpr bool can_flush_denormals() noexcept {
#if defined(EIGENFORMER_FTZ_X86) || defined(EIGENFORMER_FTZ_AARCH64)
  return true;
#else
  return false;
#endif
}

/// Does the calling thread flush denormals now?
inline bool denormals_flushed() noexcept {
#if defined(EIGENFORMER_FTZ_X86)
  return (_mm_getcsr() & 0x8040u) == 0x8040u;  // FTZ (bit 15) and DAZ (bit 6)
#elif defined(EIGENFORMER_FTZ_AARCH64)
  std::uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  return (fpcr >> 24) & 1u;  // FZ
#else
  return false;
#endif
}

/// Set (on = true) or clear flush-to-zero on the calling thread only. Returns the previous mode.
inline bool set_flush_denormals(bool on) noexcept {
  const bool prev = denormals_flushed();
#if defined(EIGENFORMER_FTZ_X86)
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | 0x8040u) : (csr & ~0x8040u));
#elif defined(EIGENFORMER_FTZ_AARCH64)
  std::uint64_t fpcr;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
  fpcr = on ? (fpcr | (std::uint64_t{1} << 24)) : (fpcr & ~(std::uint64_t{1} << 24));
  __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#else
  (void)on;
#endif
  return prev;
}

/// RAII flush-to-zero (see the file comment): on for the calling thread and the library's OpenMP
/// workers while the guard lives; `on = false` turns it off for the scope instead.
class ScopedFlushDenormals {
 public:
  explicit ScopedFlushDenormals(bool on = true) : prev_(denormals_flushed()) { apply(on); }
  ~ScopedFlushDenormals() { apply(prev_); }
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

  /// The calling thread's mode before the guard.
  bool previous() const noexcept { return prev_; }

 private:
  static void apply(bool on) noexcept {
    set_flush_denormals(on);
#if defined(_OPENMP)
    if (!omp_in_parallel() && num_threads() > 1) {
#pragma omp parallel num_threads(num_threads())
      set_flush_denormals(on);
    }
#endif
  }

  bool prev_;
};

}  // namespace eigenformer
