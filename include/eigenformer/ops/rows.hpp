#pragma once
// Shared plumbing of the row-wise ops: shape checks and a parallel loop over the rows of
// [tokens, features] views, calling a raw-pointer kernel once per row.

#include <cstddef>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace ops {
namespace detail {

/// Rows per thread so that each thread gets at least ~16K elements of work.
inline Index min_rows_per_thread(Index cols) {
  constexpr Index kMinElements = 16384;
  return cols >= kMinElements ? 1 : kMinElements / (cols > 0 ? cols : 1);
}

/// f(i) for every row i of a [rows, cols] problem, in parallel when it is large enough.
/// Nothing runs for empty rows (cols == 0): callers handle what an empty row means.
template <class F>
void for_each_row(Index rows, Index cols, F&& f) {
  if (cols == 0) return;
  parallel_for(0, rows, min_rows_per_thread(cols), f);
}

/// f(begin, end) over contiguous blocks of rows, one block per thread (for kernels that stream
/// several rows in one call).
template <class F>
void for_each_row_block(Index rows, Index cols, F&& f) {
  if (cols == 0 || rows == 0) return;
  const Index min_rows = min_rows_per_thread(cols);
  Index blocks = num_threads();
  if (rows / min_rows < blocks) blocks = rows / min_rows;
  if (blocks < 1) blocks = 1;
  const Index per = (rows + blocks - 1) / blocks;
  parallel_for(0, blocks, 1, [&](Index b) {
    const Index begin = b * per, end = begin + per < rows ? begin + per : rows;
    if (begin < end) f(begin, end);
  });
}

/// Pointer to row i of a row-major view (contiguous row, any row stride).
template <class V>
auto row(V& v, Index i) -> decltype(v.data()) {
  return v.data() + i * v.outerStride();
}

/// b must have a's shape.
template <class A, class B>
void check_same_shape(const char* op, const char* pb, const A& a, const B& b) {
  check_shape(op, pb, b.rows(), b.cols(), a.rows(), a.cols());
}

/// A per-feature weight: empty (no weight) or exactly `n` entries.
template <class V>
const typename V::Scalar* optional_weight(const char* op, const char* param, const V& w, Index n) {
  if (w.size() == 0) return nullptr;
  check(w.size() == n, ErrorKind::shape_mismatch, op, param, " has ", w.size(), " entries, expected ", n,
        " (or 0 for none)");
  return w.data();
}

}  // namespace detail
}  // namespace ops
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
