#pragma once
// ALiBi, attention with linear biases (Press, Smith, Lewis 2022, "Train Short, Test Long",
// arXiv:2108.12409): head h adds slope_h * (relative position) to its attention logits, no position
// embedding at all.
//
// Slopes follow the reference `get_slopes` (github.com/ofirpress/attention_with_linear_biases,
// fairseq/models/transformer.py): for n a power of two, slope_h = 2^(-8 (h + 1) / n), h < n; otherwise
// the slopes of the closest power of two c < n, followed by the odd-numbered slopes
// 2^(-4 (2j + 1) / c), j < n - c, of the 2c sequence. Identical to Hugging Face Bloom's
// `build_alibi_tensor` (transformers models/bloom/modeling_bloom.py), which computes them in float32.
// Here they are exact powers of two rounded once to double (std::exp2), so float(slope) is the
// correctly rounded float32 value.
//
// Note: MPT (`gen_slopes`, alibi_bias_max = 8) rounds n *up* to a power of two and reorders; that
// is a different head-to-slope assignment and is not what alibi_slopes returns.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace eigenformer {

/// The ALiBi slope of each of n_heads heads (n_heads >= 1), head 0 first (largest slope).
inline std::vector<double> alibi_slopes(Index n_heads) {
  check(n_heads >= 1, ErrorKind::config, "ALiBi", "n_heads = ", n_heads, " must be >= 1");
  Index c = 1;  // closest power of two <= n_heads
  while (c * 2 <= n_heads) c *= 2;
  std::vector<double> s;
  s.reserve(static_cast<std::size_t>(n_heads));
  for (Index h = 0; h < c; ++h)
    s.push_back(std::exp2(-8.0 * static_cast<double>(h + 1) / static_cast<double>(c)));
  for (Index j = 0; j < n_heads - c; ++j)
    s.push_back(std::exp2(-4.0 * static_cast<double>(2 * j + 1) / static_cast<double>(c)));
  return s;
}

/// Which relative-position form the bias takes.
enum class AlibiForm {
  /// slope * (k_pos - q_pos) (<= 0 for the keys a causal query sees). Bloom adds slope * k_pos
  /// instead; the two differ by slope * q_pos, a constant along each query's row of logits, which
  /// softmax cancels, so attention outputs are the same. Keeping the bias <= 0 keeps the logits
  /// small at long positions.
  causal,
  /// -slope * |q_pos - k_pos|: the symmetric form for bidirectional (encoder) attention.
  symmetric,
};

/// The bias added to the (already 1/sqrt(d)-scaled) logit of query position q_pos and key
/// position k_pos for a head with this slope (Bloom: `baddbmm(alibi, q, k^T, beta=1, alpha=1/sqrt(d))`).
inline double alibi_bias(double slope, std::int64_t q_pos, std::int64_t k_pos, AlibiForm form) noexcept {
  const double rel = static_cast<double>(k_pos - q_pos);
  return form == AlibiForm::causal ? slope * rel : -slope * std::fabs(rel);
}

}  // namespace eigenformer
