#pragma once
// Sparse and long-context attention patterns as mask policies for the one flash-attention kernel
// (ops/attention.hpp; policy interface in ops/attention_policy.hpp). Every pattern here is a policy
// with exact per-pair semantics (`visible`), a conservative per-tile classification (`tile`: empty
// tiles are never computed, full tiles skip the per-element mask) and `next_key`, which lets the
// kernel jump over the key tiles a query tile cannot attend, so the cost follows the number of
// attended pairs (tiles), not T^2. Positions are absolute token positions. docs/sparse_attention.md
// has the catalogue with the references and the measured cost.
//
//   LocalPattern             local self-attention: keys in [q - before, q + after]
//   AtrousPattern            atrous / dilated local attention: keys at distance 0, r, 2r, ...
//   SparseTransformerPattern Sparse Transformer "local" / "strided" (openai/sparse_attention
//                            attention.py get_attn_mask) and their union / per-head alternation
//   FixedPattern             Sparse Transformer "fixed" (attention.py get_blocksparse_obj): own chunk
//                            of local_ctx positions + per-head summary block columns, causal
//   LongformerPattern        sliding window w/2 each side (optionally dilated) + global tokens
//   BlockLayout +            any block-sparse layout (per head or shared), e.g. BigBird
//   BlockSparsePolicy        (bigbird_layout) or supplied by the user
//   SegmentPattern           block-diagonal (segmented) attention, optionally causal: LongNet's
//                            sparsified segments (ops/dilated_attention.hpp)
//   LocalBlockPattern        tensor2tensor masked local block attention: own block + previous block
//   CompressedMemoryPattern  tensor2tensor memory-compressed attention's causal mask over the
//                            compressed memory (attention/memory_compressed.hpp)
//
// Fully masked rows give output 0 and lse -inf (the kernel's convention).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "attention_policy.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

namespace sparse_detail {

inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
inline std::int64_t floor_mod(std::int64_t a, std::int64_t b) { return a - floor_div(a, b) * b; }
inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return -floor_div(-a, b); }

/// Default pieces of a pattern policy: softmax state starts empty (no sink); a partial tile masks
/// every key the pattern's `visible` rejects.
template <class Derived>
struct PatternBase {
  void init(Index, float& m, float& l) const {
    m = -std::numeric_limits<float>::infinity();
    l = 0.0f;
  }
  void row(Index head, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    if (!partial) return;
    const auto& self = static_cast<const Derived&>(*this);
    const float ninf = -std::numeric_limits<float>::infinity();
    for (Index j = 0; j < n; ++j)
      if (!self.visible(head, q, k0 + j)) s[j] = ninf;
  }
};

}  // namespace sparse_detail

// ---------------------------------------------------------------------------------------------
/// Local self-attention: query q sees the keys k with q - before <= k <= q + after.
///   LocalPattern::causal(W):     the W keys q - W + 1 .. q (as AttentionMask::sliding_window and
///                                Sparse Transformer's "local" mode with local_attn_ctx = W)
///   LocalPattern::symmetric(w):  w keys on each side, 2w + 1 in all (bidirectional local attention)
struct LocalPattern : sparse_detail::PatternBase<LocalPattern> {
  std::int64_t before = 0;  ///< keys before the query (>= 0)
  std::int64_t after = 0;   ///< keys after the query (>= 0; 0 = causal)

  static LocalPattern causal(Index window) {
    check(window >= 1, ErrorKind::config, "LocalPattern", "causal window = ", window, " must be >= 1");
    LocalPattern p;
    p.before = window - 1;
    p.after = 0;
    return p;
  }
  static LocalPattern symmetric(Index each_side) {
    check(each_side >= 0, ErrorKind::config, "LocalPattern", "window each side = ", each_side, " must be >= 0");
    LocalPattern p;
    p.before = p.after = each_side;
    return p;
  }

  bool visible(Index, std::int64_t q, std::int64_t k) const { return k >= q - before && k <= q + after; }

  TileKind tile(Index, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k0 > q1 - 1 + after || k1 - 1 < q0 - before) return TileKind::empty;
    return (k0 >= q1 - 1 - before && k1 - 1 <= q0 + after) ? TileKind::full : TileKind::partial;
  }

  std::int64_t next_key(Index, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    if (k > q1 - 1 + after) return kNoKey;
    return std::max(k, q0 - before);
  }

  void row(Index, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    if (!partial) return;
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::int64_t lo = std::clamp<std::int64_t>(q - before - k0, 0, n);
    const std::int64_t hi = std::clamp<std::int64_t>(q + after + 1 - k0, lo, n);
    for (std::int64_t j = 0; j < lo; ++j) s[j] = ninf;
    for (std::int64_t j = hi; j < n; ++j) s[j] = ninf;
  }
};

// ---------------------------------------------------------------------------------------------
/// Atrous (dilated) local attention: query q sees the keys at distance d = q - k that are multiples
/// of `dilation`, with -after * dilation <= d <= before * dilation (`before` < 0: unbounded, i.e.
/// every earlier key at a multiple of the dilation). dilation = 1 is local attention; before < 0,
/// after = 0 is Sparse Transformer's "strided" head.
struct AtrousPattern : sparse_detail::PatternBase<AtrousPattern> {
  std::int64_t dilation = 1;
  std::int64_t before = -1;  ///< dilated steps back (< 0: unbounded)
  std::int64_t after = 0;    ///< dilated steps forward (0: causal)

  AtrousPattern() = default;
  AtrousPattern(Index dilation_, Index before_, Index after_) : dilation(dilation_), before(before_), after(after_) {
    check(dilation >= 1 && after >= 0, ErrorKind::config, "AtrousPattern", "dilation = ", dilation,
          " must be >= 1 and after = ", after, " >= 0");
  }

  bool visible(Index, std::int64_t q, std::int64_t k) const {
    const std::int64_t d = q - k;
    if (d < -after * dilation || (before >= 0 && d > before * dilation)) return false;
    return sparse_detail::floor_mod(d, dilation) == 0;
  }

  TileKind tile(Index, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k0 > q1 - 1 + after * dilation) return TileKind::empty;
    if (before >= 0 && k1 - 1 < q0 - before * dilation) return TileKind::empty;
    if (dilation == 1 && k0 >= q1 - 1 - (before >= 0 ? before : q1) && k1 - 1 <= q0 + after) return TileKind::full;
    return TileKind::partial;
  }

  std::int64_t next_key(Index, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    if (k > q1 - 1 + after * dilation) return kNoKey;
    return before >= 0 ? std::max(k, q0 - before * dilation) : k;
  }
};

// ---------------------------------------------------------------------------------------------
/// The Sparse Transformer's factorized patterns (Child et al. 2019, arXiv:1904.10509), with the dense
/// masks of openai/sparse_attention attention.py get_attn_mask (stride l = local_attn_ctx), causal:
///   local:      0 <= q - k < l                         (A(1): the previous l positions)
///   strided:    q - k >= 0 and (q - k) mod l == 0      (A(2))
///   both:       local or strided (one head attending to the union of A(1) and A(2))
///   alternate:  even heads local, odd heads strided (the two factorized heads side by side)
struct SparseTransformerPattern : sparse_detail::PatternBase<SparseTransformerPattern> {
  enum class Mode { local, strided, both, alternate };
  Mode mode = Mode::both;
  std::int64_t stride = 128;

  SparseTransformerPattern() = default;
  SparseTransformerPattern(Mode m, Index stride_) : mode(m), stride(stride_) {
    check(stride >= 1, ErrorKind::config, "SparseTransformerPattern", "stride (local_attn_ctx) = ", stride,
          " must be >= 1");
  }

  bool local_head(Index head) const { return mode == Mode::local || (mode == Mode::alternate && head % 2 == 0); }
  bool strided_head(Index head) const {
    return mode == Mode::strided || mode == Mode::both || (mode == Mode::alternate && head % 2 == 1);
  }

  bool visible(Index head, std::int64_t q, std::int64_t k) const {
    const std::int64_t d = q - k;
    if (d < 0) return false;
    if ((local_head(head) || mode == Mode::both) && d < stride) return true;
    return strided_head(head) && d % stride == 0;
  }

  TileKind tile(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k0 > q1 - 1) return TileKind::empty;
    const bool local_part = local_head(head) || mode == Mode::both;
    if (!strided_head(head) && k1 - 1 < q0 - (stride - 1)) return TileKind::empty;
    if (local_part && k1 - 1 <= q0 && k0 >= q1 - stride) return TileKind::full;
    if (!local_part && stride == 1 && k1 - 1 <= q0) return TileKind::full;
    return TileKind::partial;
  }

  std::int64_t next_key(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    if (k > q1 - 1) return kNoKey;
    return strided_head(head) ? k : std::max(k, q0 - (stride - 1));
  }
};

// ---------------------------------------------------------------------------------------------
/// The Sparse Transformer's "fixed" pattern, as openai/sparse_attention attention.py
/// get_blocksparse_obj(attn_mode='fixed', blocksize, local_attn_ctx, num_verts, vertsize) builds it:
/// blocks of `block` positions; stride = local_attn_ctx / block blocks form a chunk. Query block qb
/// of head h sees key block kb <= qb if kb is in qb's own chunk (kb / stride == qb / stride) or kb is
/// one of head h's summary columns: kb mod stride in {stride-1 - (v*vertsize + t) : t < vertsize},
/// v = h mod num_verts (the last vertsize blocks of each chunk for v = 0, the vertsize before them
/// for v = 1, ...). Inside a visible block, key k is seen iff k <= q (causal diagonal blocks).
struct FixedPattern : sparse_detail::PatternBase<FixedPattern> {
  std::int64_t block = 32;
  std::int64_t local_ctx = 128;  ///< l: chunk length in positions (a multiple of block)
  std::int64_t num_verts = 1;    ///< distinct summary-column sets, cycled over heads
  std::int64_t vertsize = 1;     ///< summary blocks per set

  FixedPattern() = default;
  FixedPattern(Index block_, Index local_ctx_, Index num_verts_, Index vertsize_)
      : block(block_), local_ctx(local_ctx_), num_verts(num_verts_), vertsize(vertsize_) {
    const char* w = "FixedPattern";
    check(block >= 1 && local_ctx >= block && local_ctx % block == 0, ErrorKind::config, w, "local_attn_ctx = ",
          local_ctx, " must be a positive multiple of blocksize = ", block);
    const std::int64_t s = local_ctx / block;
    check(vertsize >= 1 && vertsize <= s && s % vertsize == 0, ErrorKind::config, w, "vertsize = ", vertsize,
          " must divide local_attn_ctx / blocksize = ", s);
    check(num_verts >= 1 && num_verts <= s / vertsize, ErrorKind::config, w, "num_verts = ", num_verts,
          " must be in [1, ", s / vertsize, "] (local_attn_ctx / blocksize / vertsize)");
  }

  /// attention.py asserts n_heads % num_verts == 0.
  void check_heads(Index n_heads, const char* where = "FixedPattern") const {
    check(n_heads % num_verts == 0, ErrorKind::config, where, "n_heads = ", n_heads,
          " must be a multiple of num_verts = ", num_verts);
  }

  std::int64_t chunk_blocks() const { return local_ctx / block; }
  bool summary(Index head, std::int64_t kb) const {
    const std::int64_t s = chunk_blocks();
    const std::int64_t idx = s - 1 - sparse_detail::floor_mod(kb, s);
    return idx / vertsize == static_cast<std::int64_t>(head) % num_verts;
  }
  bool block_on(Index head, std::int64_t qb, std::int64_t kb) const {
    if (kb < 0 || kb > qb) return false;
    return kb / chunk_blocks() == qb / chunk_blocks() || summary(head, kb);
  }

  bool visible(Index head, std::int64_t q, std::int64_t k) const {
    return k >= 0 && k <= q && block_on(head, q / block, k / block);
  }

  TileKind tile(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k0 > q1 - 1 || k1 <= 0) return TileKind::empty;
    bool any = false, all = true;
    for (std::int64_t qb = q0 / block; qb <= (q1 - 1) / block; ++qb)
      for (std::int64_t kb = std::max<std::int64_t>(0, k0) / block; kb <= (k1 - 1) / block; ++kb) {
        const bool on = block_on(head, qb, kb);
        any |= on;
        all &= on;
      }
    if (!any) return TileKind::empty;
    return all && k1 - 1 <= q0 && k0 >= 0 ? TileKind::full : TileKind::partial;
  }

  std::int64_t next_key(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    k = std::max<std::int64_t>(k, 0);
    if (k > q1 - 1) return kNoKey;
    const std::int64_t s = chunk_blocks(), kb = k / block;
    std::int64_t best = (q0 / block / s) * s;  // first block of the first query's own chunk
    if (best <= kb) return k;
    const std::int64_t v = static_cast<std::int64_t>(head) % num_verts;
    for (std::int64_t t = 0; t < vertsize; ++t) {
      const std::int64_t c = s - 1 - (v * vertsize + t);  // summary residue
      const std::int64_t cand = kb + sparse_detail::floor_mod(c - kb, s);
      best = std::min(best, cand);
    }
    return best <= kb ? k : best * block;
  }
};

// ---------------------------------------------------------------------------------------------
/// Longformer (Beltagy et al. 2020, arXiv:2004.05150; Hugging Face modeling_longformer.py): a
/// bidirectional sliding window of attention_window / 2 keys on each side (the window must be even),
/// optionally dilated (keys at distance multiple of `dilation`, up to window/2 * dilation), plus
/// global tokens, which attend to every key and are attended by every query. In Hugging Face's
/// LongformerSelfAttention the rows of global tokens use separate projections (query_global,
/// key_global, value_global: attention/longformer.hpp); this policy is the mask of the local rows and,
/// with the same projections, the mask of the whole pattern.
class LongformerPattern : public sparse_detail::PatternBase<LongformerPattern> {
 public:
  LongformerPattern() = default;
  /// attention_window: even, >= 2 (HF: one_sided = attention_window / 2). global: [n] flags (may be
  /// empty: no global token); positions >= n are not global.
  LongformerPattern(Index attention_window, Index dilation, const std::vector<std::uint8_t>& global)
      : one_sided_(attention_window / 2), dilation_(dilation) {
    check(attention_window >= 2 && attention_window % 2 == 0, ErrorKind::config, "LongformerPattern",
          "attention_window = ", attention_window, " must be even and positive");
    check(dilation >= 1, ErrorKind::config, "LongformerPattern", "dilation = ", dilation, " must be >= 1");
    for (std::size_t i = 0; i < global.size(); ++i)
      if (global[i]) global_.push_back(static_cast<std::int64_t>(i));
  }

  std::int64_t one_sided() const { return one_sided_; }
  std::int64_t dilation() const { return dilation_; }
  const std::vector<std::int64_t>& global_positions() const { return global_; }
  bool is_global(std::int64_t p) const { return std::binary_search(global_.begin(), global_.end(), p); }

  bool in_window(std::int64_t q, std::int64_t k) const {
    const std::int64_t d = q - k, reach = one_sided_ * dilation_;
    return d >= -reach && d <= reach && sparse_detail::floor_mod(d, dilation_) == 0;
  }
  bool visible(Index, std::int64_t q, std::int64_t k) const { return in_window(q, k) || is_global(q) || is_global(k); }

  TileKind tile(Index, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    const std::int64_t gq = count(q0, q1), gk = count(k0, k1), reach = one_sided_ * dilation_;
    if (gq == q1 - q0) return TileKind::full;
    const bool window_empty = k0 > q1 - 1 + reach || k1 - 1 < q0 - reach;
    if (window_empty && gq == 0 && gk == 0) return TileKind::empty;
    if (gk == k1 - k0) return TileKind::full;
    if (dilation_ == 1 && k0 >= q1 - 1 - reach && k1 - 1 <= q0 + reach) return TileKind::full;
    return TileKind::partial;
  }

  std::int64_t next_key(Index, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    if (count(q0, q1) > 0) return k;
    const std::int64_t reach = one_sided_ * dilation_;
    std::int64_t best = k > q1 - 1 + reach ? kNoKey : std::max(k, q0 - reach);
    const auto it = std::lower_bound(global_.begin(), global_.end(), k);
    if (it != global_.end()) best = std::min(best, *it);
    return best;
  }

 private:
  std::int64_t count(std::int64_t a, std::int64_t b) const {
    return std::lower_bound(global_.begin(), global_.end(), b) - std::lower_bound(global_.begin(), global_.end(), a);
  }
  std::int64_t one_sided_ = 1, dilation_ = 1;
  std::vector<std::int64_t> global_;  // sorted positions of global tokens
};

// ---------------------------------------------------------------------------------------------
/// Block-diagonal (segmented) attention: query q sees key k iff both lie in the same segment of
/// `segment` positions (floor(q / segment) == floor(k / segment)) and, if causal, k <= q.
/// LongNet's dense attention inside each sparsified segment (ops/dilated_attention.hpp).
struct SegmentPattern : sparse_detail::PatternBase<SegmentPattern> {
  std::int64_t segment = 2048;
  bool causal = true;

  Index query_tile() const { return static_cast<Index>(segment); }

  bool visible(Index, std::int64_t q, std::int64_t k) const {
    return sparse_detail::floor_div(q, segment) == sparse_detail::floor_div(k, segment) && (!causal || k <= q);
  }
  TileKind tile(Index, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    using sparse_detail::floor_div;
    const std::int64_t s_lo = floor_div(q0, segment), s_hi = floor_div(q1 - 1, segment);
    if (floor_div(k1 - 1, segment) < s_lo || floor_div(k0, segment) > s_hi) return TileKind::empty;
    if (causal && k0 > q1 - 1) return TileKind::empty;
    const bool one = s_lo == s_hi && floor_div(k0, segment) == s_lo && floor_div(k1 - 1, segment) == s_lo;
    return one && (!causal || k1 - 1 <= q0) ? TileKind::full : TileKind::partial;
  }
  std::int64_t next_key(Index, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    const std::int64_t last = causal ? q1 - 1 : (sparse_detail::floor_div(q1 - 1, segment) + 1) * segment - 1;
    if (k > last) return kNoKey;
    return std::max(k, sparse_detail::floor_div(q0, segment) * segment);
  }
  void row(Index, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    if (!partial) return;
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::int64_t seg0 = sparse_detail::floor_div(q, segment) * segment;
    const std::int64_t lo = std::clamp<std::int64_t>(seg0 - k0, 0, n);
    const std::int64_t hi = std::clamp<std::int64_t>((causal ? q + 1 : seg0 + segment) - k0, lo, n);
    for (std::int64_t j = 0; j < lo; ++j) s[j] = ninf;
    for (std::int64_t j = hi; j < n; ++j) s[j] = ninf;
  }
};

// ---------------------------------------------------------------------------------------------
/// tensor2tensor's masked local block attention (masked_local_attention_1d, "Generating Wikipedia by
/// Summarizing Long Sequences", Liu et al. 2018): positions cut into blocks of `block` (256 in the
/// paper); a query sees the keys of its own block up to itself and every key of the previous block.
struct LocalBlockPattern : sparse_detail::PatternBase<LocalBlockPattern> {
  std::int64_t block = 256;

  LocalBlockPattern() = default;
  explicit LocalBlockPattern(Index block_) : block(block_) {
    check(block >= 1, ErrorKind::config, "LocalBlockPattern", "block_length = ", block, " must be >= 1");
  }
  Index query_tile() const { return static_cast<Index>(block); }
  std::int64_t first_key(std::int64_t q) const { return (sparse_detail::floor_div(q, block) - 1) * block; }
  bool visible(Index, std::int64_t q, std::int64_t k) const { return k <= q && k >= first_key(q); }
  TileKind tile(Index, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k0 > q1 - 1 || k1 - 1 < first_key(q0)) return TileKind::empty;
    return k1 - 1 <= q0 && k0 >= first_key(q1 - 1) ? TileKind::full : TileKind::partial;
  }
  std::int64_t next_key(Index, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    return k > q1 - 1 ? kNoKey : std::max(k, first_key(q0));
  }
  void row(Index, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    if (!partial) return;
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::int64_t lo = std::clamp<std::int64_t>(first_key(q) - k0, 0, n);
    const std::int64_t hi = std::clamp<std::int64_t>(q + 1 - k0, lo, n);
    for (std::int64_t j = 0; j < lo; ++j) s[j] = ninf;
    for (std::int64_t j = hi; j < n; ++j) s[j] = ninf;
  }
};

/// The mask of tensor2tensor's memory-compressed attention (multihead_self_attention_reduced with
/// add_mask): key m of the memory [x_0; conv(x)] (m = 0: the first token; m >= 1: the compressed
/// block of positions (m-1) f .. m f - 1) is visible to query q iff m * f <= q, i.e. only blocks that
/// end before the query (and x_0, visible to all). Keys are memory indices, queries positions.
struct CompressedMemoryPattern : sparse_detail::PatternBase<CompressedMemoryPattern> {
  std::int64_t factor = 3;

  bool visible(Index, std::int64_t q, std::int64_t k) const { return k >= 0 && k * factor <= q; }
  TileKind tile(Index, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (k0 * factor > q1 - 1) return TileKind::empty;
    return (k1 - 1) * factor <= q0 && k0 >= 0 ? TileKind::full : TileKind::partial;
  }
  std::int64_t next_key(Index, std::int64_t, std::int64_t q1, std::int64_t k) const {
    return k * factor > q1 - 1 ? kNoKey : k;
  }
};

// ---------------------------------------------------------------------------------------------
/// A block-sparse layout: the position grid cut into square blocks of `block` positions, and for each
/// head (or one layout shared by all heads) and each query block the sorted list of key blocks it
/// attends, each full (every pair, subject to the policy's causal flag) or partial (pairs the
/// policy's element mask allows). Stored compressed (CSR), so memory and lookups follow the number of
/// attended blocks. Build with add() then finalize(), or with from_dense(); bigbird_layout() builds
/// BigBird's.
class BlockLayout {
 public:
  BlockLayout() = default;
  /// heads: 1 for a layout shared by every head, else the number of query heads.
  BlockLayout(Index block, Index n_q_blocks, Index n_k_blocks, Index heads = 1)
      : block_(block), nq_(n_q_blocks), nk_(n_k_blocks), heads_(heads) {
    check(block >= 1 && n_q_blocks >= 0 && n_k_blocks >= 0 && heads >= 1, ErrorKind::config, "BlockLayout",
          "block = ", block, ", blocks = [", n_q_blocks, ", ", n_k_blocks, "], heads = ", heads,
          ": block and heads must be >= 1");
    pending_.resize(static_cast<std::size_t>(heads_ * nq_));
  }

  /// A dense [heads][n_q_blocks][n_k_blocks] array of TileKind (row-major).
  static BlockLayout from_dense(Index block, Index n_q_blocks, Index n_k_blocks, Index heads, const TileKind* kinds) {
    BlockLayout l(block, n_q_blocks, n_k_blocks, heads);
    for (Index h = 0; h < heads; ++h)
      for (Index qb = 0; qb < n_q_blocks; ++qb)
        for (Index kb = 0; kb < n_k_blocks; ++kb) {
          const TileKind t = kinds[(h * n_q_blocks + qb) * n_k_blocks + kb];
          if (t != TileKind::empty) l.add(h, qb, kb, t);
        }
    l.finalize();
    return l;
  }

  /// Mark block (qb, kb) of head h (0 for a shared layout) as full or partial. A block added twice
  /// keeps the wider kind (full over partial).
  void add(Index head, Index qb, Index kb, TileKind kind = TileKind::full) {
    check(!finalized_, ErrorKind::invalid_argument, "BlockLayout", "add() after finalize()");
    check(head >= 0 && head < heads_ && qb >= 0 && qb < nq_ && kb >= 0 && kb < nk_, ErrorKind::invalid_argument,
          "BlockLayout", "block (head ", head, ", ", qb, ", ", kb, ") outside the layout [", heads_, ", ", nq_, ", ",
          nk_, "]");
    if (kind == TileKind::empty) return;
    pending_[static_cast<std::size_t>(head * nq_ + qb)].push_back(
        static_cast<std::int64_t>(kb) * 2 + (kind == TileKind::full ? 1 : 0));
  }

  void finalize() {
    if (finalized_) return;
    row_ptr_.assign(pending_.size() + 1, 0);
    for (std::size_t r = 0; r < pending_.size(); ++r) {
      auto& v = pending_[r];
      std::sort(v.begin(), v.end());
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::int64_t kb = v[i] / 2;
        const bool full = v[i] % 2 == 1;
        if (!cols_.empty() && row_ptr_[r] < static_cast<std::int64_t>(cols_.size()) && cols_.back() == kb) {
          if (full) full_.back() = 1;
          continue;
        }
        cols_.push_back(kb);
        full_.push_back(full ? 1 : 0);
      }
      row_ptr_[r + 1] = static_cast<std::int64_t>(cols_.size());
      std::vector<std::int64_t>().swap(v);
    }
    pending_.clear();
    finalized_ = true;
  }

  Index block() const { return block_; }
  Index n_q_blocks() const { return nq_; }
  Index n_k_blocks() const { return nk_; }
  Index heads() const { return heads_; }
  bool finalized() const { return finalized_; }
  /// Number of attended (head, query block, key block) blocks.
  std::size_t nnz() const { return cols_.size(); }

  /// The attended key blocks of query block qb of head h: [begin, end) into cols()/is_full().
  std::pair<std::int64_t, std::int64_t> row_range(Index head, std::int64_t qb) const {
    if (qb < 0 || qb >= nq_) return {0, 0};
    const std::size_t r = static_cast<std::size_t>((heads_ == 1 ? 0 : head) * nq_ + qb);
    return {row_ptr_[r], row_ptr_[r + 1]};
  }
  const std::vector<std::int64_t>& cols() const { return cols_; }
  const std::vector<std::uint8_t>& is_full() const { return full_; }

  TileKind kind(Index head, std::int64_t qb, std::int64_t kb) const {
    const auto [b, e] = row_range(head, qb);
    const auto it = std::lower_bound(cols_.begin() + b, cols_.begin() + e, kb);
    if (it == cols_.begin() + e || *it != kb) return TileKind::empty;
    return full_[static_cast<std::size_t>(it - cols_.begin())] ? TileKind::full : TileKind::partial;
  }

 private:
  Index block_ = 64, nq_ = 0, nk_ = 0, heads_ = 1;
  bool finalized_ = false;
  std::vector<std::vector<std::int64_t>> pending_;  // per (head, qb): kb * 2 + full
  std::vector<std::int64_t> row_ptr_, cols_;
  std::vector<std::uint8_t> full_;
};

/// The policy of a BlockLayout (not owned: it must outlive the policy). Pair (q, k) is attended iff
/// its block is full, or partial and element(head, q, k); and, if causal, k <= q. Positions outside
/// the layout's grid are never attended.
template <class Element = AllowAll>
struct BlockSparsePolicy : sparse_detail::PatternBase<BlockSparsePolicy<Element>> {
  const BlockLayout* layout = nullptr;
  bool causal = false;
  Element element{};

  BlockSparsePolicy() = default;
  explicit BlockSparsePolicy(const BlockLayout& l, bool causal_ = false, Element e = Element{})
      : layout(&l), causal(causal_), element(e) {
    check(l.finalized(), ErrorKind::invalid_argument, "BlockSparsePolicy", "the layout must be finalized");
  }

  Index query_tile() const { return layout->block(); }

  bool visible(Index head, std::int64_t q, std::int64_t k) const {
    if ((causal && k > q) || q < 0 || k < 0) return false;
    const TileKind t = layout->kind(head, q / layout->block(), k / layout->block());
    return t == TileKind::full || (t == TileKind::partial && element(head, q, k));
  }

  TileKind tile(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k0, std::int64_t k1) const {
    if (causal && k0 > q1 - 1) return TileKind::empty;
    const std::int64_t b = layout->block();
    const std::int64_t kb0 = std::max<std::int64_t>(k0, 0) / b, kb1 = (k1 - 1) / b;  // inclusive
    if (k1 <= 0 || q1 <= 0) return TileKind::empty;
    bool any = false, all = k0 >= 0 && q0 >= 0;
    for (std::int64_t qb = std::max<std::int64_t>(q0, 0) / b; qb <= (q1 - 1) / b; ++qb) {
      const auto [rb, re] = layout->row_range(head, qb);
      const auto first = layout->cols().begin();
      const auto it = std::lower_bound(first + rb, first + re, kb0);
      std::int64_t seen = 0;
      for (auto p = it; p != first + re && *p <= kb1; ++p) {
        any = true;
        ++seen;
        all &= layout->is_full()[static_cast<std::size_t>(p - first)] != 0;
      }
      all &= seen == kb1 - kb0 + 1;
    }
    if (!any) return TileKind::empty;
    return all && (!causal || k1 - 1 <= q0) ? TileKind::full : TileKind::partial;
  }

  std::int64_t next_key(Index head, std::int64_t q0, std::int64_t q1, std::int64_t k) const {
    if (causal && k > q1 - 1) return kNoKey;
    const std::int64_t b = layout->block();
    const std::int64_t kq = std::max<std::int64_t>(k, 0);
    std::int64_t best = kNoKey;
    for (std::int64_t qb = std::max<std::int64_t>(q0, 0) / b; qb <= (q1 - 1) / b; ++qb) {
      const auto [rb, re] = layout->row_range(head, qb);
      const auto first = layout->cols().begin();
      const auto it = std::lower_bound(first + rb, first + re, kq / b);
      if (it != first + re) best = std::min(best, std::max(kq, *it * b));
    }
    return best;
  }

  void row(Index head, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    if (!partial) return;
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::int64_t b = layout->block();
    const std::int64_t qb = q / b;
    const auto [rb, re] = layout->row_range(head, q < 0 ? -1 : qb);
    const auto first = layout->cols().begin();
    auto it = std::lower_bound(first + rb, first + re, std::max<std::int64_t>(k0, 0) / b);
    for (Index j = 0; j < n; ++j) {
      const std::int64_t k = k0 + j;
      if (k < 0 || (causal && k > q)) {
        s[j] = ninf;
        continue;
      }
      const std::int64_t kb = k / b;
      while (it != first + re && *it < kb) ++it;
      if (it == first + re || *it != kb) {
        s[j] = ninf;
      } else if (!layout->is_full()[static_cast<std::size_t>(it - first)] && !element(head, q, k)) {
        s[j] = ninf;
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
/// BigBird block-sparse attention (Zaheer et al. 2020, arXiv:2007.14062), the ITC layout of Hugging
/// Face modeling_big_bird.py (bigbird_block_sparse_attention), bidirectional, nb = T / block blocks:
///   query blocks 0 and nb-1 (global) attend every key block;
///   every query block attends key blocks 0 and nb-1 (global keys);
///   query block i in 1..nb-2 attends key blocks i-1, i, i+1 (sliding) and num_random_blocks random
///   blocks drawn, per head and per query block, without replacement from the middle blocks 1..nb-2
///   outside i's window (HF's _bigbird_block_rand_mask; HF's last two rows may repeat a window block,
///   counted twice in its softmax: here a block is attended at most once).
/// The random blocks come from a seeded splitmix64 generator (reproducible across platforms and
/// compilers); they are not numpy's draws. When T <= (5 + 2 r) * block, Hugging Face's BigBirdModel
/// falls back to full attention ("original_full"): bigbird_layout() then returns the all-full layout.
struct BigBirdConfig {
  Index block_size = 64;
  Index num_random_blocks = 3;
  std::uint64_t seed = 0;
};

/// Does BigBird fall back to full attention at this length (HF's max_tokens_to_attend rule)?
inline bool bigbird_full_attention(Index T, const BigBirdConfig& c) {
  return T <= (5 + 2 * c.num_random_blocks) * c.block_size;
}

namespace sparse_detail {
inline std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace sparse_detail

/// The random key blocks of BigBird: [heads][nb - 2][r], row i - 1 for query block i in 1..nb-2.
inline std::vector<std::int64_t> bigbird_random_blocks(Index T, Index heads, const BigBirdConfig& c) {
  const Index b = c.block_size, r = c.num_random_blocks;
  check(b >= 1 && r >= 0, ErrorKind::config, "BigBird", "block_size = ", b, " and num_random_blocks = ", r,
        " must be >= 1 and >= 0");
  check(T % b == 0, ErrorKind::config, "BigBird", "sequence length ", T, " must be a multiple of block_size = ", b);
  const Index nb = T / b;
  if (nb < 3 || r == 0) return {};
  std::vector<std::int64_t> out(static_cast<std::size_t>(heads * (nb - 2) * r));
  std::vector<std::int64_t> cand;
  for (Index h = 0; h < heads; ++h) {
    std::uint64_t state = c.seed * 0x100000001B3ull + static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull + 1;
    for (Index i = 1; i <= nb - 2; ++i) {
      cand.clear();
      for (std::int64_t kb = 1; kb <= nb - 2; ++kb)
        if (kb < i - 1 || kb > i + 1) cand.push_back(kb);
      check(static_cast<Index>(cand.size()) >= r, ErrorKind::config, "BigBird", "sequence length ", T, " has only ",
            cand.size(), " candidate random blocks for query block ", i, ", fewer than num_random_blocks = ", r);
      for (Index t = 0; t < r; ++t) {  // partial Fisher-Yates
        const std::uint64_t span = static_cast<std::uint64_t>(cand.size()) - static_cast<std::uint64_t>(t);
        const std::size_t pick = static_cast<std::size_t>(t) + static_cast<std::size_t>(sparse_detail::splitmix64(state) % span);
        std::swap(cand[static_cast<std::size_t>(t)], cand[pick]);
        out[static_cast<std::size_t>((h * (nb - 2) + (i - 1)) * r + t)] = cand[static_cast<std::size_t>(t)];
      }
    }
  }
  return out;
}

/// BigBird's layout for a sequence of T tokens (T a multiple of block_size), one per head (the
/// random blocks differ by head). Use with BlockSparsePolicy<>(layout) (bidirectional).
/// rand: optional [heads][nb - 2][r] table of random blocks (e.g. exported from a reference run);
/// empty: drawn by bigbird_random_blocks.
inline BlockLayout bigbird_layout(Index T, Index heads, const BigBirdConfig& c,
                                  const std::vector<std::int64_t>& rand = {}) {
  const Index b = c.block_size, r = c.num_random_blocks;
  check(b >= 1 && heads >= 1, ErrorKind::config, "BigBird", "block_size = ", b, " and heads = ", heads, " must be >= 1");
  check(T % b == 0, ErrorKind::config, "BigBird", "sequence length ", T, " must be a multiple of block_size = ", b);
  const Index nb = T / b;
  if (bigbird_full_attention(T, c)) {
    BlockLayout l(b, nb, nb, 1);
    for (Index qb = 0; qb < nb; ++qb)
      for (Index kb = 0; kb < nb; ++kb) l.add(0, qb, kb);
    l.finalize();
    return l;
  }
  const std::vector<std::int64_t> drawn = rand.empty() ? bigbird_random_blocks(T, heads, c) : rand;
  check(static_cast<Index>(drawn.size()) == heads * (nb - 2) * r, ErrorKind::shape_mismatch, "BigBird",
        "random block table has ", drawn.size(), " entries, expected [", heads, ", ", nb - 2, ", ", r, "]");
  BlockLayout l(b, nb, nb, heads);
  for (Index h = 0; h < heads; ++h) {
    for (Index kb = 0; kb < nb; ++kb) {
      l.add(h, 0, kb);
      l.add(h, nb - 1, kb);
    }
    for (Index i = 1; i <= nb - 2; ++i) {
      for (Index kb : {Index(0), i - 1, i, i + 1, nb - 1}) l.add(h, i, kb);
      for (Index t = 0; t < r; ++t) {
        const std::int64_t kb = drawn[static_cast<std::size_t>((h * (nb - 2) + (i - 1)) * r + t)];
        check(kb >= 0 && kb < nb, ErrorKind::invalid_argument, "BigBird", "random block ", kb, " outside [0, ", nb, ")");
        l.add(h, i, static_cast<Index>(kb));
      }
    }
  }
  l.finalize();
  return l;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
