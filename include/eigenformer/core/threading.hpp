#pragma once
// Threading: an optional OpenMP backend.
//
// When the translation unit is compiled with OpenMP (the CMake option EIGENFORMER_OPENMP, on by
// default, links OpenMP::OpenMP_CXX into eigenformer::eigenformer), ops split independent rows,
// heads or tiles across threads, and Eigen's own products use the same thread count. Without
// OpenMP everything runs on the calling thread.
//
// The thread count is, in order of precedence:
//   1. eigenformer::set_num_threads(n), n >= 1 (also calls Eigen::setNbThreads(n));
//   2. the OMP_NUM_THREADS environment variable (read by the OpenMP runtime);
//   3. the number of hardware threads.
// Work is always split so that each output element is computed by exactly one thread with the
// same operation order, so results do not depend on the thread count (tests/test_threading.cpp).
// Exception: with EIGENFORMER_USE_BLAS, Linear hands whole products to the BLAS, which threads them
// itself (set_num_threads also sets OpenBLAS's thread count) and may sum in a thread-dependent order.
// Exceptions never cross a parallel region: every check happens before the loop starts.

#include <atomic>

#include <Eigen/Core>

#include "error.hpp"
#include "tensor.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(EIGENFORMER_OPENBLAS)
extern "C" void openblas_set_num_threads(int);
#endif

namespace eigenformer {

namespace detail {
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> n{0};  // 0: not set, use the OpenMP default
  return n;
}
}  // namespace detail

/// True when this translation unit was compiled with OpenMP.
constexpr bool has_openmp() noexcept {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

/// Set the number of threads the library (and Eigen's products) use. n must be >= 1.
inline void set_num_threads(int n) {
  check(n >= 1, ErrorKind::invalid_argument, "set_num_threads", "thread count must be >= 1, got ", n);
  detail::thread_setting().store(n);
  Eigen::setNbThreads(n);
#if defined(EIGENFORMER_OPENBLAS)
  openblas_set_num_threads(n);
#endif
}

/// The number of threads the library uses (1 without OpenMP).
inline int num_threads() noexcept {
#if defined(_OPENMP)
  const int n = detail::thread_setting().load();
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

/// Run f(i) for i in [begin, end), split into contiguous ranges across threads when the range
/// holds at least `min_per_thread` items per thread. f must not throw.
template <class F>
void parallel_for(Index begin, Index end, Index min_per_thread, F&& f) {
  const Index n = end - begin;
  if (n <= 0) return;
#if defined(_OPENMP)
  Index threads = num_threads();
  if (min_per_thread > 0 && n / min_per_thread < threads) threads = n / min_per_thread;
  if (threads > 1 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(static)
    for (Index i = begin; i < end; ++i) f(i);
    return;
  }
#else
  (void)min_per_thread;
#endif
  for (Index i = begin; i < end; ++i) f(i);
}

/// Run f(i, thread) for i in [0, n) with dynamic scheduling (for uneven items such as causal
/// attention tiles); `thread` in [0, threads) indexes per-thread scratch. `threads` is the number
/// the caller sized its scratch for (at most num_threads()). f must not throw. Which thread runs
/// an item never changes what the item computes.
template <class F>
void parallel_for_dynamic(Index n, int threads, F&& f) {
  if (n <= 0) return;
#if defined(_OPENMP)
  if (threads > 1 && n > 1 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (Index i = 0; i < n; ++i) f(i, omp_get_thread_num());
    return;
  }
#else
  (void)threads;
#endif
  for (Index i = 0; i < n; ++i) f(i, 0);
}

}  // namespace eigenformer
