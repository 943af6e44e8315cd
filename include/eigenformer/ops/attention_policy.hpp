#pragma once
// Attention mask/bias policies: what the one flash-attention kernel (ops/attention.hpp) asks of a
// variant. The shape follows PyTorch's FlexAttention: a policy says which (query, key) pairs are
// attended (a mask), how a logit is edited (a score modification: soft-capping, ALiBi), and, per
// tile of queries x keys, whether the tile is empty (skipped), full (no per-element mask) or
// partial. Sparse patterns (local, dilated, strided, block-sparse) are further policies with the same
// interface; the loop is not written again.
//
// A policy is any type with these const members (positions are absolute token positions):
//   void init(Index head, float& m, float& l)          initial online-softmax state of a query row
//                                                       (-inf, 0; or a sink logit: sink, 1)
//   TileKind tile(Index head, int64 q0, int64 q1,       the kind of the tile [q0, q1) x [k0, k1)
//                 int64 k0, int64 k1)
//   void row(Index head, int64 q, int64 k0, float* s,  edit the logits s[j] of query position q and
//            Index n, bool partial)                     key positions k0 + j (j < n): score mods
//                                                       first, then (if partial) masked -> -inf
//   bool visible(Index head, int64 q, int64 k)          the mask of one pair (used only on the rare
//                                                       path that must keep a masked NaN/inf value
//                                                       out of the output)
// and optionally (detected at compile time; policies without it behave exactly as before):
//   int64 next_key(Index head, int64 q0, int64 q1,      a key position >= k such that no query of
//                  int64 k)                             [q0, q1) attends any key in [k, result), or
//                                                       kNoKey (INT64_MAX) if none attends a key >= k.
//                                                       The kernel then jumps over whole key tiles
//                                                       without asking tile(): for long sequences
//                                                       the enumeration of (query tile, key tile)
//                                                       pairs costs O(attended tiles), not O(T^2).
//                                                       Returning k itself is always correct.
//   Index query_tile()                                  preferred query tile (e.g. a block layout's
//                                                       block): the kernel then takes the largest
//                                                       divisor of it (>= 8) that fits its tile as
//                                                       the queries per item, so tiles start at block
//                                                       boundaries (when the first query position is
//                                                       a multiple of the block) and are more often
//                                                       full or empty. 0: no preference.
//
// AttentionMask is the standard runtime policy: causal or bidirectional, sliding window, key
// padding, soft-capping, ALiBi, and learned sinks, in any combination.

#include <cmath>
#include <cstdint>
#include <limits>

#include "../config.hpp"
#include "../core/tensor.hpp"
#include "../kernels/loops.hpp"
#include "../kernels/vmath.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

enum class TileKind { empty, partial, full };

/// next_key's answer when no key at or after the asked position is attended.
constexpr std::int64_t kNoKey = std::numeric_limits<std::int64_t>::max();

/// The standard policy. Semantics (positions are absolute; the query at position q sees key k iff):
///   causal:          k <= q  (bottom-right aligned when queries are the last tokens, as in decoding)
///   sliding_window:  q - k < sliding_window, i.e. each query sees itself and the window - 1 keys
///                    before it: transformers' `sliding_window_overlay` (Mistral, Gemma 2, gpt-oss);
///                    the older Mistral code's `q - k <= window` attends window + 1 keys
///   key_valid:       key_valid[k - key_valid_pos0] != 0 (padding mask over absolute key positions)
/// Logit edits, in this order, before the mask (Gemma 2 caps before masking):
///   softcap > 0:     s = softcap * tanh(s / softcap)
///   alibi_slopes:    s += slope[head] * (k - q)   (Bloom adds slope * k: the same up to a per-row
///                    constant, which softmax cancels); with alibi_symmetric, s -= slope * |k - q|
///                    (bidirectional encoders)
/// sinks (gpt-oss): per-head logit that joins every row's softmax denominator and whose value column
/// is dropped; a row with every key masked then gives 0 output and lse = sink.
struct AttentionMask {
  bool causal = true;
  Index sliding_window = 0;                 ///< 0: no window
  float softcap = 0.0f;                     ///< 0: no soft-capping
  const float* alibi_slopes = nullptr;      ///< [n_heads] or null
  bool alibi_symmetric = false;             ///< -slope * |k - q| instead of slope * (k - q)
  const float* sinks = nullptr;             ///< [n_heads] or null
  const std::uint8_t* key_valid = nullptr;  ///< [key_valid_len] or null
  std::int64_t key_valid_pos0 = 0;          ///< absolute position of key_valid[0]
  Index key_valid_len = 0;

  void init(Index head, float& m, float& l) const {
    if (sinks) {
      m = sinks[head];
      l = 1.0f;
    } else {
      m = -std::numeric_limits<float>::infinity();
      l = 0.0f;
    }
  }

  TileKind tile(Index /*head*/, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (causal && k0 > q1 - 1) return TileKind::empty;                 // every key after every query
    if (sliding_window > 0 && q0 - (k1 - 1) >= sliding_window) return TileKind::empty;  // all too old
    if (key_valid) return TileKind::partial;
    const bool causal_full = !causal || k1 - 1 <= q0;
    const bool window_full = sliding_window <= 0 || (q1 - 1) - k0 < sliding_window;
    return causal_full && window_full ? TileKind::full : TileKind::partial;
  }

  bool visible(Index /*head*/, std::int64_t q, std::int64_t k) const {
    if (causal && k > q) return false;
    if (sliding_window > 0 && q - k >= sliding_window) return false;
    if (key_valid) {
      const std::int64_t idx = k - key_valid_pos0;
      if (idx < 0 || idx >= key_valid_len || !key_valid[idx]) return false;
    }
    return true;
  }

  void row(Index head, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    const auto un = static_cast<std::size_t>(n);
    if (softcap > 0.0f) {
      const float c = softcap, inv = 1.0f / softcap;
      kernels::loops::map(s, s, un, [c, inv](auto v) {
        using P = decltype(v);
        return simd::mul(simd::set1<P>(c), simd::tanh(simd::mul(v, simd::set1<P>(inv))));
      });
    }
    if (alibi_slopes) {
      const float slope = alibi_slopes[head];
      if (alibi_symmetric)
        for (Index j = 0; j < n; ++j) s[j] -= slope * std::fabs(static_cast<float>(k0 + j - q));
      else
        for (Index j = 0; j < n; ++j) s[j] += slope * static_cast<float>(k0 + j - q);
    }
    if (!partial) return;
    const float ninf = -std::numeric_limits<float>::infinity();
    // Visible keys form one contiguous range [lo, hi) of j for causal + window.
    Index lo = 0, hi = n;
    if (causal) hi = clamp_index(q - k0 + 1, n);
    if (sliding_window > 0) lo = clamp_index(q - sliding_window + 1 - k0, n);
    for (Index j = 0; j < lo && j < n; ++j) s[j] = ninf;
    for (Index j = hi > lo ? hi : lo; j < n; ++j) s[j] = ninf;
    if (key_valid) {
      for (Index j = 0; j < n; ++j) {
        const std::int64_t idx = k0 + j - key_valid_pos0;
        if (idx < 0 || idx >= key_valid_len || !key_valid[idx]) s[j] = ninf;
      }
    }
  }

 private:
  static Index clamp_index(std::int64_t v, Index n) {
    return v < 0 ? 0 : (v > n ? n : static_cast<Index>(v));
  }
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// An arbitrary block-sparse mask on top of another policy (FlexAttention's BlockMask): the position
/// grid is cut into blocks of q_block x k_block positions, each marked empty (never attended), full
/// (attended wherever the inner policy attends) or partial (attended where `element(head, q, k)` also
/// says so). Tiles that only overlap empty blocks are skipped entirely, so the cost of a sparse
/// pattern follows the number of attended blocks. Positions outside the grid are empty.
///
///   kinds: [n_q_blocks * n_k_blocks], row-major by query block, values of TileKind
///   element: any callable bool(Index head, int64 q, int64 k), consulted in partial blocks only
template <class Inner, class Element>
struct BlockMaskPolicy {
  Inner inner;
  Index q_block = 64, k_block = 64;
  Index n_q_blocks = 0, n_k_blocks = 0;
  const TileKind* kinds = nullptr;
  Element element;

  TileKind block(std::int64_t qb, std::int64_t kb) const {
    if (qb < 0 || kb < 0 || qb >= n_q_blocks || kb >= n_k_blocks) return TileKind::empty;
    return kinds[qb * n_k_blocks + kb];
  }

  void init(Index head, float& m, float& l) const { inner.init(head, m, l); }

  TileKind tile(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    const TileKind base = inner.tile(head, q0, q1, k0, k1);
    if (base == TileKind::empty) return base;
    bool any = false, all_full = true;
    for (std::int64_t qb = floor_div(q0, q_block); qb <= floor_div(q1 - 1, q_block); ++qb)
      for (std::int64_t kb = floor_div(k0, k_block); kb <= floor_div(k1 - 1, k_block); ++kb) {
        const TileKind b = block(qb, kb);
        any |= b != TileKind::empty;
        all_full &= b == TileKind::full;
      }
    if (!any) return TileKind::empty;
    return all_full && base == TileKind::full ? TileKind::full : TileKind::partial;
  }

  bool visible(Index head, std::int64_t q, std::int64_t k) const {
    if (!inner.visible(head, q, k)) return false;
    const TileKind b = block(floor_div(q, q_block), floor_div(k, k_block));
    return b == TileKind::full || (b == TileKind::partial && element(head, q, k));
  }

  void row(Index head, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    inner.row(head, q, k0, s, n, partial);
    if (!partial) return;
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::int64_t qb = floor_div(q, q_block);
    for (Index j = 0; j < n; ++j) {
      const std::int64_t k = k0 + j;
      const TileKind b = block(qb, floor_div(k, k_block));
      if (b == TileKind::empty || (b == TileKind::partial && !element(head, q, k))) s[j] = ninf;
    }
  }

 private:
  static std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
};

/// Element mask that attends everything (for block masks made only of empty and full blocks).
struct AllowAll {
  bool operator()(Index, std::int64_t, std::int64_t) const { return true; }
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
