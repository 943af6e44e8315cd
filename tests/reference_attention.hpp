#pragma once
// Reference attention for the tests: plain loops in double, the full score matrix materialized.
// Obviously correct rather than fast; the flash kernels and MultiHeadAttention are tested against it,
// and it is itself tested against hand-computed cases and against Hugging Face's own attention
// modules (tests/test_reference_attention.cpp, fixtures in tests/data/golden/attention/).
//
// Shapes (row-major, one row per token, head-major columns as everywhere in eigenformer):
//   q   [Tq, n_heads    * d ]     query head h   = q.middleCols(h * d,  d)
//   k   [Tk, n_kv_heads * d ]     kv head g      = k.middleCols(g * d,  d)
//   v   [Tk, n_kv_heads * dv]                      v.middleCols(g * dv, dv)
//   out [Tq, n_heads    * dv]
//   lse [Tq, n_heads]             natural log of the softmax denominator
//   q_pos [Tq], k_pos [Tk]        absolute positions used by the causal/window masks and ALiBi
// d = q.cols() / n_heads, dv = v.cols() / n_kv_heads (dv may differ from d, as in MLA).
// Query head h reads kv head g = h / (n_heads / n_kv_heads) (HF repeat_kv: each kv head serves
// n_heads / n_kv_heads consecutive query heads; MHA when equal, MQA when n_kv_heads == 1).
//
// The math, for query head h, query row i, key row j:
//   s_ij = scale * <q_i, k_j>                              scale: usually d^-0.5; Gemma 2 uses
//                                                          query_pre_attn_scalar^-0.5, Bloom/BERT d^-0.5
//   s_ij = softcap * tanh(s_ij / softcap)      if softcap > 0 (Gemma 2 attn_logit_softcapping; applied
//                                              to the scaled logit, before any bias and before the mask,
//                                              so a masked key stays masked: it is excluded, not capped)
//   s_ij += slope_h * (k_pos[j] - q_pos[i])    if alibi_slopes given (Press et al. 2022). Bloom adds
//                                              slope_h * k_pos[j] only; softmax is invariant to the
//                                              per-row constant slope_h * q_pos[i], so both are equal.
//   s_ij = score_mod(s_ij, h, i, j)            if score_mod given (FlexAttention-style score_mod)
//   visible(h, i, j) =   (!causal || k_pos[j] <= q_pos[i])
//                     && (sliding_window == 0 || in_sliding_window(q_pos[i], k_pos[j], W, causal))
//                     && (key_valid.empty() || key_valid[j])
//                     && (!allow || allow(h, i, j))
//   Z_i   = sum_{visible j} exp(s_ij) + (sinks given ? exp(sink_h) : 0)
//   p_ij  = exp(s_ij) / Z_i for visible j, 0 otherwise     (the sink's own column is dropped)
//   out_i = sum_j p_ij v_j,   lse_i = log Z_i
// A row with no visible key (and no sink) gives out = 0, lse = -inf, p = 0 -- eigenformer's convention
// for fully masked rows. With a sink it gives out = 0, lse = sink_h (all mass on the sink; gpt-oss's
// eager code gives exactly 0 there too). A visible logit of -inf (e.g. from score_mod) has weight 0;
// a row whose visible logits are all -inf counts as fully masked. NaN in q, k or v propagates to the
// affected rows; a +inf logit gives NaN (as torch's softmax does).
//
// Sliding window (HF transformers 4.57, masking_utils.sliding_window_overlay +
// causal_mask_function, used by Mistral, Gemma 2, gpt-oss, Qwen2, ...):
//   causal:  key visible iff  k_pos <= q_pos  and  q_pos - k_pos < W      (W keys, the query included)
//   !causal: key visible iff  |q_pos - k_pos| < W  (Gemma 3's _bidirectional_window_overlay;
//            2W - 1 keys). ModernBERT uses |q - k| <= local_attention / 2 instead.
// Off-by-one to know about: the older convention keeps q_pos - k_pos <= W, i.e. W + 1 keys. It is that
// of mistral-src one_file_ref.py (torch.triu(mask, diagonal=-W)), of the legacy
// AttentionMaskConverter._make_causal_mask still shipped in 4.57 (modeling_attn_mask_utils.py,
// tril(diagonal = past - W - 1) masked), and of HF's flash-attention path while it passed
// window_size = (W, W) (huggingface/transformers#29623, #39408). An older window W equals this
// reference with sliding_window = W + 1. HF 4.57 now passes flash-attn window_size = (W - 1, W - 1),
// which with causal=True is this reference's W. openai/gpt-oss's own gpt_oss/torch/model.py (sdpa:
// tril(-inf, diagonal=-W) added to the causal mask) keeps W keys too.
//
// Positions: HF's masks compare cache positions (the index of a token in the key/value sequence,
// 0..T-1 for a prefill without cache), not position_ids: with left padding, position_ids shift but the
// mask does not. Pass cache positions as q_pos / k_pos when reproducing HF masks; RoPE positions do not
// matter here because q and k come in already rotated.

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace eftest {

/// Row-major double matrix (the reference's own type).
using RefMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct RefAttentionOptions {
  /// Logit scale; unset (NaN) means d^-0.5.
  double scale = std::numeric_limits<double>::quiet_NaN();
  /// Key j visible to query i only if k_pos[j] <= q_pos[i].
  bool causal = true;
  /// > 0: sliding window of W keys (see the header comment for the exact convention); 0: none.
  long sliding_window = 0;
  /// > 0: s = softcap * tanh(s / softcap) on the scaled logit, before biases and the mask (Gemma 2).
  double softcap = 0;
  /// Empty, or one slope per query head: s += slope * (k_pos - q_pos), after the soft-cap.
  std::vector<double> alibi_slopes;
  /// Empty, or one learned sink logit per query head (gpt-oss): exp(sink) joins the denominator.
  std::vector<double> sinks;
  /// Empty, or one flag per key row: false = padding, never attended.
  std::vector<bool> key_valid;
  /// Optional extra mask over (query head, query row i, key row j) -- row indices, not positions.
  std::function<bool(long head, long i, long j)> allow;
  /// Optional logit edit after soft-cap and ALiBi (query head, query row, key row); may return -inf.
  std::function<double(double score, long head, long i, long j)> score_mod;
};

/// 0, 1, ..., n-1 shifted by `first` (cache positions of a prefill starting at `first`).
inline std::vector<long> iota_positions(long n, long first = 0) {
  std::vector<long> p(static_cast<std::size_t>(n < 0 ? 0 : n));
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = first + static_cast<long>(i);
  return p;
}

/// ALiBi slopes of Press et al. as Bloom's build_alibi_tensor computes them: for n a power of two,
/// slope_h = 2^(-8 (h + 1) / n); otherwise the n' = 2^floor(log2 n) slopes of n', then the odd-indexed
/// slopes 2^(-4 (2m + 1) / n') (m = 0, 1, ...) of 2n' for the remaining n - n' heads.
inline std::vector<double> alibi_slopes(long n_heads) {
  if (n_heads <= 0) throw std::invalid_argument("alibi_slopes: n_heads must be positive");
  long p2 = 1;
  while (p2 * 2 <= n_heads) p2 *= 2;
  std::vector<double> s;
  for (long h = 1; h <= p2; ++h) s.push_back(std::exp2(-8.0 * static_cast<double>(h) / static_cast<double>(p2)));
  for (long m = 0; static_cast<long>(s.size()) < n_heads; ++m)
    s.push_back(std::exp2(-4.0 * static_cast<double>(2 * m + 1) / static_cast<double>(p2)));
  return s;
}

/// The sliding-window test of the header comment (W > 0).
inline bool in_sliding_window(long q_pos, long k_pos, long window, bool causal) {
  const long dist = q_pos - k_pos;
  return causal ? dist < window : (dist < 0 ? -dist : dist) < window;
}

/// The reference attention (see the header comment). Returns out [Tq, n_heads * dv]; optional outputs:
/// lse [Tq, n_heads] and probs (n_heads matrices [Tq, Tk], the softmax weights with 0 where masked).
/// Throws std::invalid_argument on inconsistent shapes or options.
inline RefMatrix reference_attention(const Eigen::Ref<const RefMatrix>& q, const Eigen::Ref<const RefMatrix>& k,
                                     const Eigen::Ref<const RefMatrix>& v, const std::vector<long>& q_pos,
                                     const std::vector<long>& k_pos, long n_heads, long n_kv_heads,
                                     const RefAttentionOptions& opts, RefMatrix* lse = nullptr,
                                     std::vector<RefMatrix>* probs = nullptr) {
  const auto bad = [](const std::string& what) { throw std::invalid_argument("reference_attention: " + what); };
  const long tq = static_cast<long>(q.rows()), tk = static_cast<long>(k.rows());
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
    bad("n_heads must be a positive multiple of n_kv_heads");
  if (q.cols() % n_heads != 0 || k.cols() % n_kv_heads != 0 || v.cols() % n_kv_heads != 0)
    bad("q/k/v columns must be multiples of the head counts");
  const long d = static_cast<long>(q.cols()) / n_heads;
  const long dv = static_cast<long>(v.cols()) / n_kv_heads;
  if (static_cast<long>(k.cols()) / n_kv_heads != d) bad("q and k head dims differ");
  if (v.rows() != k.rows()) bad("k and v row counts differ");
  if (static_cast<long>(q_pos.size()) != tq || static_cast<long>(k_pos.size()) != tk)
    bad("q_pos/k_pos sizes must equal the q/k row counts");
  if (!opts.alibi_slopes.empty() && static_cast<long>(opts.alibi_slopes.size()) != n_heads)
    bad("alibi_slopes needs one slope per query head");
  if (!opts.sinks.empty() && static_cast<long>(opts.sinks.size()) != n_heads)
    bad("sinks needs one logit per query head");
  if (!opts.key_valid.empty() && static_cast<long>(opts.key_valid.size()) != tk)
    bad("key_valid needs one flag per key row");
  if (opts.sliding_window < 0 || opts.softcap < 0) bad("sliding_window and softcap must be >= 0");
  const double scale = std::isnan(opts.scale) ? 1.0 / std::sqrt(static_cast<double>(d)) : opts.scale;
  const long group = n_heads / n_kv_heads;
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();

  RefMatrix out = RefMatrix::Zero(tq, n_heads * dv);
  if (lse) *lse = RefMatrix::Constant(tq, n_heads, kNegInf);
  if (probs) probs->assign(static_cast<std::size_t>(n_heads), RefMatrix::Zero(tq, tk));

  std::vector<double> s(static_cast<std::size_t>(tk));
  std::vector<char> visible(static_cast<std::size_t>(tk));
  // Rows through plain pointers (q, k, v are row-major with unit inner stride): the same loops, but
  // not thousands of times slower in the unoptimized sanitizer build than coefficient access.
  const auto row = [](const Eigen::Ref<const RefMatrix>& m, long r, long c0) { return m.data() + r * m.outerStride() + c0; };
  for (long h = 0; h < n_heads; ++h) {
    const long g = h / group;
    for (long i = 0; i < tq; ++i) {
      const double* qi = row(q, i, h * d);
      double* oi = out.data() + i * out.outerStride() + h * dv;
      // Logits and visibility of every key.
      double m = kNegInf;  // running max over visible logits (and the sink)
      bool nan_seen = false;
      for (long j = 0; j < tk; ++j) {
        const auto ju = static_cast<std::size_t>(j);
        bool vis = !opts.causal || k_pos[ju] <= q_pos[static_cast<std::size_t>(i)];
        if (vis && opts.sliding_window > 0)
          vis = in_sliding_window(q_pos[static_cast<std::size_t>(i)], k_pos[ju], opts.sliding_window, opts.causal);
        if (vis && !opts.key_valid.empty()) vis = opts.key_valid[ju];
        if (vis && opts.allow) vis = opts.allow(h, i, j);
        visible[ju] = vis;
        if (!vis) continue;
        double x = 0;
        const double* kj = row(k, j, g * d);
        for (long c = 0; c < d; ++c) x += qi[c] * kj[c];
        x *= scale;
        if (opts.softcap > 0) x = opts.softcap * std::tanh(x / opts.softcap);
        if (!opts.alibi_slopes.empty())
          x += opts.alibi_slopes[static_cast<std::size_t>(h)] *
               static_cast<double>(k_pos[ju] - q_pos[static_cast<std::size_t>(i)]);
        if (opts.score_mod) x = opts.score_mod(x, h, i, j);
        s[ju] = x;
        if (std::isnan(x)) nan_seen = true;
        else if (x > m) m = x;
      }
      const bool has_sink = !opts.sinks.empty();
      const double sink = has_sink ? opts.sinks[static_cast<std::size_t>(h)] : kNegInf;
      if (has_sink && sink > m) m = sink;
      if (std::isnan(sink)) nan_seen = true;
      if (nan_seen) {
        for (long c = 0; c < dv; ++c) oi[c] = std::numeric_limits<double>::quiet_NaN();
        if (lse) (*lse)(i, h) = std::numeric_limits<double>::quiet_NaN();
        if (probs)
          for (long j = 0; j < tk; ++j)
            if (visible[static_cast<std::size_t>(j)]) (*probs)[static_cast<std::size_t>(h)](i, j) = std::nan("");
        continue;
      }
      if (m == kNegInf) continue;  // fully masked: out 0, lse -inf, p 0

      // Softmax with the sink in the denominator, then the weighted sum of values.
      double z = has_sink ? std::exp(sink - m) : 0.0;
      for (long j = 0; j < tk; ++j)
        if (visible[static_cast<std::size_t>(j)]) z += std::exp(s[static_cast<std::size_t>(j)] - m);
      if (lse) (*lse)(i, h) = m + std::log(z);
      for (long j = 0; j < tk; ++j) {
        if (!visible[static_cast<std::size_t>(j)]) continue;
        const double p = std::exp(s[static_cast<std::size_t>(j)] - m) / z;
        if (probs) (*probs)[static_cast<std::size_t>(h)](i, j) = p;
        const double* vj = row(v, j, g * dv);
        for (long c = 0; c < dv; ++c) oi[c] += p * vj[c];
      }
    }
  }
  return out;
}

}  // namespace eftest
