#pragma once
// MultiHeadLatentAttention: DeepSeek's multi-head latent attention (MLA; DeepSeek-AI 2024,
// "DeepSeek-V2", arXiv:2405.04434, section 2.1; DeepSeek-V3, arXiv:2412.19437), with the semantics and
// checkpoint names of Hugging Face transformers 4.57 `models/deepseek_v3/modeling_deepseek_v3.py`
// (DeepseekV3Attention; DeepSeek-V2 uses the same module).
//
// The math, per token x [hidden] (H heads; r = kv_lora_rank; dn = qk_nope_head_dim; dr =
// qk_rope_head_dim; dv = v_head_dim; dq = dn + dr = qk_head_dim):
//   q       = q_b_proj(q_a_layernorm(q_a_proj(x)))   [H * dq]   (q_lora_rank > 0: DeepSeek-V2/V3)
//           = q_proj(x)                               [H * dq]   (q_lora_rank = 0, HF None: V2-Lite)
//   q_h     = [q_nope_h (dn) | q_rope_h (dr)]                    head h, then RoPE on q_rope_h
//   [c | k_rope] = kv_a_proj_with_mqa(x)              [r + dr]
//   c       = kv_a_layernorm(c)                       [r]        the latent, shared by all heads
//   k_rope  = RoPE(k_rope)                            [dr]       one decoupled RoPE key for all heads
//   [k_nope_h (dn) | v_h (dv)] = rows of kv_b_proj(c) [H * (dn + dv)]
//   k_h     = [k_nope_h | k_rope]
//   o_h     = softmax_j(scale * q_h . k_h,j) v_h,j  (causal)
//   y       = o_proj([o_1 .. o_H])
// Biases: q_a_proj, kv_a_proj_with_mqa and o_proj carry one when `attention_bias`; q_proj, q_b_proj
// and kv_b_proj never do. Both RMSNorms use eps 1e-6: HF constructs them as DeepseekV3RMSNorm(dim)
// with the default eps, whatever config.rms_norm_eps says (so does DeepSeek's inference/model.py).
//
// Scale: qk_head_dim^-0.5, times mscale^2 with mscale = yarn_get_mscale(factor, mscale_all_dim) when
// rope_scaling is set and has a non-zero mscale_all_dim (HF DeepseekV3Attention.__init__). The RoPE
// itself is RotaryEmbedding with rope.head_dim = qk_rope_head_dim (HF sets config.head_dim =
// qk_rope_head_dim for the rotary embedding), so YaRN's attention factor (mscale / mscale_all_dim, 1
// for V3) multiplies cos and sin of the rope part only, as HF's does.
//
// RoPE layout (`rope_interleave`, HF default true):
//   true:  HF's apply_rotary_pos_emb_interleave first permutes the dr rope dims of q and k from
//          (x0, x1, ..., x_{dr-1}) to (x0, x2, ..., x_{dr-2}, x1, x3, ..., x_{dr-1}) and then applies
//          rotate_half, so it returns y_HF[i] = x[2i] cos_i - x[2i+1] sin_i and y_HF[dr/2 + i] =
//          x[2i+1] cos_i + x[2i] sin_i (i < dr/2). eigenformer applies RopeLayout::interleaved in place
//          instead: y[2i] = x[2i] cos_i - x[2i+1] sin_i, y[2i+1] = x[2i+1] cos_i + x[2i] sin_i. The same
//          numbers in another order: y_HF[i] = y[2i], y_HF[dr/2 + i] = y[2i + 1]. Both q and k get the
//          same order, so every logit q . k is the same. The rotated dims stay pair-interleaved
//          (DeepSeek's own inference/model.py order, view_as_complex on consecutive pairs); this is
//          the order of k_rope in the LatentCache and of the rope part of expanded keys. HF's
//          key_states hold them de-interleaved (evens, then odds).
//   false: RopeLayout::half: rotate_half over the dr dims as stored (pairs (i, i + dr/2)); the same
//          order as HF.
//   The pair i rotates by position * inv_freq[i] in both layouts.
//
// Two execution paths, the same outputs up to float rounding (tests/test_mla.cpp):
//   expanded  decompress K and V of every head (kv_b_proj on the latent of every key) and run the
//             standard flash kernel with H kv heads, head_dim dq, v_head_dim dv. The cheaper path for
//             a prefill (fewer flops per query-key pair: dq + dv instead of 2 r + dr).
//   absorbed  fold W_UK (the k_nope rows of kv_b_proj) into the query and W_UV (its v rows) into the
//             output: q_lat_h = q_nope_h W_UK_h [r], so q_h . k_h = [q_lat_h | q_rope_h] . [c | k_rope]
//             exactly; the output o_h = (sum_j p_j c_j) W_UV_h^T. Attention then runs over the cached
//             latent rows alone: flash_attention with n_kv_heads = 1, head_dim = r + dr, v_head_dim =
//             r, and a KVSpan whose v pointer aliases the first r values of each key row (no separate
//             V), reading every cached row once for all heads. The scale is the same (the logits are
//             unchanged by absorption). The decode path.
// MLAPath::automatic picks the path with fewer multiply-adds for the call (choose_path): expanded
// costs N T H (dq + dv) + N H r (dn + dv) (attention + decompressing N keys), absorbed
// N T H (2 r + dr) + T H r (dn + dv) (attention + absorbing T queries), for T queries and N keys:
// expanded for a prefill from an empty cache, absorbed for decoding (T << N).
//
// Forms:
//   forward(x, y, ws, position_ids, path)   prefill over one sequence (causal), positions 0..T-1 or
//                                           position_ids; path expanded / absorbed / automatic
//   forward(x, y, LatentCache<E>&, ws, path) incremental decoding through the latent cache (E = float,
//                                           f16, bf16): the new tokens attend to the cache and to each
//                                           other, then their [c | k_rope] rows are appended;
//                                           positions continue from cache.next_position(); a prompt
//                                           followed by single tokens equals the whole sequence at once
//   forward(x, y, KVCache<E>&, ws)          the same with a standard KV cache holding every head's
//                                           decompressed K (dq) and V (dv): what MLA costs without
//                                           absorption (bench/bench_mla.cpp compares the two)
// In the cached forms the new tokens' latents are rounded to E before they are used, exactly as later
// steps will read them back.
//
// Threading: projections split output features (Linear), attention splits (head, query block, key
// chunk) items, the absorption products split heads; outputs do not depend on the thread count.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../cache/kv_cache.hpp"
#include "../cache/latent_cache.hpp"
#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"
#include "../norm/rms_norm.hpp"
#include "../ops/attention.hpp"
#include "../ops/matmul.hpp"
#include "../position/rope.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// MLA configuration; field names are those of HF's DeepseekV3Config (and DeepseekV2Config).
struct MLAConfig {
  Index hidden_size = 0;          ///< `hidden_size`
  Index num_attention_heads = 0;  ///< `num_attention_heads`
  /// `num_key_value_heads`: 0 or num_attention_heads. MLA has no kv-head grouping (every head has its
  /// own decompressed K/V); HF's eager path repeats K/V by heads / kv_heads and only works when equal.
  Index num_key_value_heads = 0;
  Index q_lora_rank = 0;       ///< `q_lora_rank`; 0 = None: a plain q_proj (DeepSeek-V2-Lite)
  Index kv_lora_rank = 0;      ///< `kv_lora_rank` (512)
  Index qk_nope_head_dim = 0;  ///< `qk_nope_head_dim` (128)
  Index qk_rope_head_dim = 0;  ///< `qk_rope_head_dim` (64); even
  Index v_head_dim = 0;        ///< `v_head_dim` (128)
  bool attention_bias = false; ///< `attention_bias`: biases on q_a_proj, kv_a_proj_with_mqa, o_proj
  bool rope_interleave = true; ///< `rope_interleave` (HF default true); see the file comment
  double norm_eps = 1e-6;      ///< eps of q_a_layernorm / kv_a_layernorm (HF: always the default 1e-6)
  double scale = 0.0;          ///< logit scale; 0 = qk_head_dim^-0.5 x mscale^2 (file comment)
  /// `rope_theta` (theta), `rope_scaling` (scaling), `max_position_embeddings`. head_dim and
  /// rotary_dim are qk_rope_head_dim (0 = that), layout follows rope_interleave.
  RopeConfig rope;

  Index qk_head_dim() const noexcept { return qk_nope_head_dim + qk_rope_head_dim; }

  /// deepseek-ai/DeepSeek-V2-Lite's attention (config.json): 16 heads, hidden 2048, no q_lora.
  static MLAConfig deepseek_v2_lite() {
    MLAConfig c;
    c.hidden_size = 2048;
    c.num_attention_heads = 16;
    c.num_key_value_heads = 16;
    c.q_lora_rank = 0;
    c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 128;
    c.rope.theta = 10000;
    c.rope.max_position_embeddings = 163840;
    c.rope.scaling.type = RopeType::yarn;
    c.rope.scaling.factor = 40;
    c.rope.scaling.original_max_position_embeddings = 4096;
    c.rope.scaling.beta_fast = 32;
    c.rope.scaling.beta_slow = 1;
    c.rope.scaling.mscale = 0.707;
    c.rope.scaling.mscale_all_dim = 0.707;
    return c;
  }
  /// deepseek-ai/DeepSeek-V3's attention (config.json): 128 heads, hidden 7168, q_lora_rank 1536.
  static MLAConfig deepseek_v3() {
    MLAConfig c = deepseek_v2_lite();
    c.hidden_size = 7168;
    c.num_attention_heads = 128;
    c.num_key_value_heads = 128;
    c.q_lora_rank = 1536;
    c.rope.scaling.mscale = 1.0;
    c.rope.scaling.mscale_all_dim = 1.0;
    return c;
  }
};

/// Which attention computation a call uses (see the file comment).
enum class MLAPath { automatic, expanded, absorbed };

inline const char* to_string(MLAPath p) noexcept {
  switch (p) {
    case MLAPath::automatic: return "automatic";
    case MLAPath::expanded: return "expanded";
    case MLAPath::absorbed: return "absorbed";
  }
  return "?";
}

class MultiHeadLatentAttention {
 public:
  MultiHeadLatentAttention() = default;

  /// Zero weights (unit norms) of the configured shapes; fill them through the accessors.
  explicit MultiHeadLatentAttention(const MLAConfig& cfg, std::string name = {})
      : MultiHeadLatentAttention(cfg, std::move(name), NoWeights{}) {
    const MLAConfig& c = cfg_;
    const Index H = c.num_attention_heads;
    if (c.q_lora_rank > 0) {
      q_a_ = Linear<float>({c.hidden_size, c.q_lora_rank, c.attention_bias}, join_name(name_, "q_a_proj"));
      q_a_norm_ = RMSNorm<float>({c.q_lora_rank, c.norm_eps}, join_name(name_, "q_a_layernorm"));
      q_b_ = Linear<float>({c.q_lora_rank, H * c.qk_head_dim(), false}, join_name(name_, "q_b_proj"));
    } else {
      q_ = Linear<float>({c.hidden_size, H * c.qk_head_dim(), false}, join_name(name_, "q_proj"));
    }
    kv_a_ = Linear<float>({c.hidden_size, c.kv_lora_rank + c.qk_rope_head_dim, c.attention_bias},
                          join_name(name_, "kv_a_proj_with_mqa"));
    kv_a_norm_ = RMSNorm<float>({c.kv_lora_rank, c.norm_eps}, join_name(name_, "kv_a_layernorm"));
    kv_b_ = Linear<float>({c.kv_lora_rank, H * (c.qk_nope_head_dim + c.v_head_dim), false},
                          join_name(name_, "kv_b_proj"));
    o_ = Linear<float>({H * c.v_head_dim, c.hidden_size, c.attention_bias}, join_name(name_, "o_proj"));
  }

  /// Load `<prefix>.{q_proj | q_a_proj, q_a_layernorm, q_b_proj}`, `kv_a_proj_with_mqa`,
  /// `kv_a_layernorm`, `kv_b_proj`, `o_proj` (`.weight`, and `.bias` where attention_bias) with HF's
  /// names, e.g. prefix "model.layers.0.self_attn".
  static MultiHeadLatentAttention load(const SafeTensors& st, const std::string& prefix, const MLAConfig& cfg) {
    MultiHeadLatentAttention a(cfg, prefix, NoWeights{});  // weights come from the file only (no zero copy)
    const MLAConfig& c = a.cfg_;
    const Index H = c.num_attention_heads;
    const std::string qw = join_name(prefix, "q_proj.weight"), qaw = join_name(prefix, "q_a_proj.weight");
    if (c.q_lora_rank > 0 && !st.contains(qaw) && st.contains(qw))
      fail(ErrorKind::config, a.where_, "q_lora_rank = ", c.q_lora_rank, " but the checkpoint has '", qw,
           "' and no '", qaw, "' (no query compression, as in DeepSeek-V2-Lite): set q_lora_rank = 0");
    if (c.q_lora_rank == 0 && !st.contains(qw) && st.contains(qaw))
      fail(ErrorKind::config, a.where_, "q_lora_rank = 0 (plain q_proj) but the checkpoint has '", qaw,
           "' and no '", qw, "': set q_lora_rank to the rows of q_a_proj (",
           st.info(qaw).shape.empty() ? std::int64_t(0) : st.info(qaw).shape[0], ")");
    if (c.q_lora_rank > 0) {
      a.q_a_ = Linear<float>::load(st, join_name(prefix, "q_a_proj"), {c.hidden_size, c.q_lora_rank, c.attention_bias});
      a.q_a_norm_ = RMSNorm<float>::load(st, join_name(prefix, "q_a_layernorm"), {c.q_lora_rank, c.norm_eps});
      a.q_b_ = Linear<float>::load(st, join_name(prefix, "q_b_proj"), {c.q_lora_rank, H * c.qk_head_dim(), false});
    } else {
      a.q_ = Linear<float>::load(st, join_name(prefix, "q_proj"), {c.hidden_size, H * c.qk_head_dim(), false});
    }
    a.kv_a_ = Linear<float>::load(st, join_name(prefix, "kv_a_proj_with_mqa"),
                                  {c.hidden_size, c.kv_lora_rank + c.qk_rope_head_dim, c.attention_bias});
    a.kv_a_norm_ = RMSNorm<float>::load(st, join_name(prefix, "kv_a_layernorm"), {c.kv_lora_rank, c.norm_eps});
    a.kv_b_ = Linear<float>::load(st, join_name(prefix, "kv_b_proj"),
                                  {c.kv_lora_rank, H * (c.qk_nope_head_dim + c.v_head_dim), false});
    a.o_ = Linear<float>::load(st, join_name(prefix, "o_proj"), {H * c.v_head_dim, c.hidden_size, c.attention_bias});
    return a;
  }

  /// The resolved configuration (num_key_value_heads, scale, rope.head_dim and layout filled in).
  const MLAConfig& config() const noexcept { return cfg_; }
  /// The logit scale used by both paths.
  double scale() const noexcept { return cfg_.scale; }
  bool has_q_lora() const noexcept { return cfg_.q_lora_rank > 0; }
  const RotaryEmbedding& rotary() const noexcept { return *rope_; }

  // Weights (HF names). q_proj exists when q_lora_rank = 0, q_a_proj / q_a_layernorm / q_b_proj otherwise.
  Linear<float>& q_proj() noexcept { return q_; }                    // [H * dq, hidden]
  Linear<float>& q_a_proj() noexcept { return q_a_; }                // [q_lora_rank, hidden]
  RMSNorm<float>& q_a_layernorm() noexcept { return q_a_norm_; }     // [q_lora_rank]
  Linear<float>& q_b_proj() noexcept { return q_b_; }                // [H * dq, q_lora_rank]
  Linear<float>& kv_a_proj_with_mqa() noexcept { return kv_a_; }     // [r + dr, hidden]
  RMSNorm<float>& kv_a_layernorm() noexcept { return kv_a_norm_; }   // [r]
  Linear<float>& kv_b_proj() noexcept { return kv_b_; }              // [H * (dn + dv), r]
  Linear<float>& o_proj() noexcept { return o_; }                    // [hidden, H * dv]
  const Linear<float>& q_proj() const noexcept { return q_; }
  const Linear<float>& q_a_proj() const noexcept { return q_a_; }
  const RMSNorm<float>& q_a_layernorm() const noexcept { return q_a_norm_; }
  const Linear<float>& q_b_proj() const noexcept { return q_b_; }
  const Linear<float>& kv_a_proj_with_mqa() const noexcept { return kv_a_; }
  const RMSNorm<float>& kv_a_layernorm() const noexcept { return kv_a_norm_; }
  const Linear<float>& kv_b_proj() const noexcept { return kv_b_; }
  const Linear<float>& o_proj() const noexcept { return o_; }

  Index parameters() const noexcept {
    Index n = kv_a_.parameters() + kv_a_norm_.scale().size() + kv_b_.parameters() + o_.parameters();
    if (has_q_lora())
      n += q_a_.parameters() + q_a_norm_.scale().size() + q_b_.parameters();
    else
      n += q_.parameters();
    return n;
  }

  /// The configuration of this layer's LatentCache holding `capacity` tokens.
  template <class E = float>
  typename LatentCache<E>::Config latent_cache_config(Index capacity) const {
    return {cfg_.kv_lora_rank, cfg_.qk_rope_head_dim, capacity};
  }
  /// The configuration of a KVCache holding every head's decompressed K and V (the expanded form).
  template <class E = float>
  typename KVCache<E>::Config expanded_cache_config(Index capacity) const {
    return {cfg_.num_attention_heads, cfg_.qk_head_dim(), cfg_.v_head_dim, capacity, CacheEviction::none, 0};
  }

  /// What this layer caches per token with elements of `element_bytes`: the latent cache ("MLA"), and
  /// the expanded K/V of every head ("MLA expanded").
  std::vector<CacheFootprint> cache_footprints(std::size_t element_bytes) const {
    return {latent_cache_footprint(cfg_.kv_lora_rank, cfg_.qk_rope_head_dim, element_bytes),
            kv_cache_footprint("MLA expanded", cfg_.num_attention_heads, cfg_.qk_head_dim(), cfg_.v_head_dim,
                               element_bytes)};
  }

  /// The path MLAPath::automatic takes for `queries` new tokens attending to `keys` keys in total
  /// (cached + new): the one with fewer multiply-adds (file comment).
  MLAPath choose_path(Index queries, Index keys) const noexcept {
    const double T = double(queries), N = double(keys), H = double(cfg_.num_attention_heads);
    const double r = double(cfg_.kv_lora_rank), dn = double(cfg_.qk_nope_head_dim), dr = double(cfg_.qk_rope_head_dim),
                 dv = double(cfg_.v_head_dim);
    const double expanded = N * T * H * (dn + dr + dv) + N * H * r * (dn + dv);
    const double absorbed = N * T * H * (2 * r + dr) + T * H * r * (dn + dv);
    return absorbed < expanded ? MLAPath::absorbed : MLAPath::expanded;
  }

  /// Causal self-attention over one sequence. x, y: [T, hidden] (y must not overlap x). position_ids:
  /// [T] RoPE positions (null: 0..T-1); the causal mask uses token indices (HF's cache positions).
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws,
               const std::int64_t* position_ids = nullptr, MLAPath path = MLAPath::automatic) const {
    check_io(x, y);
    const Index T = x.rows();
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto q = ws.matrix(T, cfg_.num_attention_heads * cfg_.qk_head_dim());
    auto lat = ws.matrix(T, latent_dim());
    project(x, q, lat, position_ids, 0, ws);
    auto attn = ws.matrix(T, cfg_.num_attention_heads * cfg_.v_head_dim);
    if (path == MLAPath::automatic) path = choose_path(T, T);
    if (path == MLAPath::absorbed) {
      const KVSpan<float> span = latent_span(lat.data(), lat.outerStride(), T, 0);
      attend_absorbed(q, 0, &span, 1, attn, ws);
    } else {
      attend_expanded(q, 0, lat, attn, ws);
    }
    o_.forward(attn, y);
  }

  /// Incremental decoding through the latent cache (one or more new tokens; the first call with the
  /// prompt is the prefill). Positions continue from cache.next_position(). Throws, changing nothing,
  /// if the cache cannot take the tokens or does not match this layer.
  template <class E>
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, LatentCache<E>& cache, Workspace<float>& ws,
               MLAPath path = MLAPath::automatic) const {
    check_io(x, y);
    const auto& cc = cache.config();
    check(cc.kv_lora_rank == cfg_.kv_lora_rank && cc.qk_rope_head_dim == cfg_.qk_rope_head_dim, ErrorKind::config,
          where_, "LatentCache has kv_lora_rank = ", cc.kv_lora_rank, " and qk_rope_head_dim = ", cc.qk_rope_head_dim,
          ", the layer ", cfg_.kv_lora_rank, " and ", cfg_.qk_rope_head_dim);
    const Index T = x.rows();
    check(cache.can_append(T), ErrorKind::capacity, where_, "the LatentCache holds ", cache.size(), " of ",
          cache.capacity(), " tokens and cannot take ", T, " more");
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    const Index W = latent_dim(), past = cache.size(), N = past + T;
    auto q = ws.matrix(T, cfg_.num_attention_heads * cfg_.qk_head_dim());
    auto lat = ws.matrix(T, W);
    const std::int64_t pos0 = cache.next_position();
    project(x, q, lat, nullptr, pos0, ws);
    auto attn = ws.matrix(T, cfg_.num_attention_heads * cfg_.v_head_dim);
    if (path == MLAPath::automatic) path = choose_path(T, N);
    if (path == MLAPath::absorbed) {
      // The new rows in the cache's storage type, used exactly as later steps will read them.
      std::array<KVSpan<E>, 2> spans;
      std::size_t n = 0;
      if (past > 0) spans[n++] = cache.span();
      if constexpr (std::is_same_v<E, float>) {
        spans[n++] = latent_span(lat.data(), lat.outerStride(), T, pos0);
      } else {
        E* conv = ws.template raw<E>(static_cast<std::size_t>(T * W));
        for (Index t = 0; t < T; ++t)
          from_float_n(lat.data() + t * lat.outerStride(), conv + t * W, W);
        spans[n++] = latent_span(conv, W, T, pos0);
      }
      attend_absorbed(q, pos0, spans.data(), n, attn, ws);
    } else {
      // Every key's latent as float (cached rows as stored, new rows rounded to E), then decompressed.
      auto all = ws.matrix(N, W);
      for (Index t = 0; t < past; ++t) {
        const E* src = cache.row(t);
        for (Index i = 0; i < W; ++i) all(t, i) = to_float(src[i]);
      }
      for (Index t = 0; t < T; ++t)
        for (Index i = 0; i < W; ++i) all(past + t, i) = to_float(from_float<E>(lat(t, i)));
      attend_expanded(q, pos0, all, attn, ws);
    }
    o_.forward(attn, y);
    cache.append(lat);
  }

  /// Incremental decoding with a standard KVCache of every head's decompressed keys (qk_head_dim) and
  /// values (v_head_dim): expanded_cache_config(capacity). The baseline MLA form without absorption.
  template <class E>
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, KVCache<E>& cache, Workspace<float>& ws) const {
    check_io(x, y);
    const auto& cc = cache.config();
    const Index H = cfg_.num_attention_heads, dq = cfg_.qk_head_dim(), dv = cfg_.v_head_dim;
    check(cc.n_kv_heads == H && cc.head_dim == dq && cc.v_head_dim == dv && cc.eviction == CacheEviction::none,
          ErrorKind::config, where_, "KVCache has ", cc.n_kv_heads, " kv heads of dim ", cc.head_dim, "/",
          cc.v_head_dim, cc.eviction == CacheEviction::none ? "" : " with eviction", ", the layer needs ", H,
          " heads of dim ", dq, "/", dv, " without eviction (expanded_cache_config)");
    const Index T = x.rows();
    check(cache.can_append(T), ErrorKind::capacity, where_, "the KV cache holds ", cache.size(), " of ",
          cache.capacity(), " tokens and cannot take ", T, " more");
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto q = ws.matrix(T, H * dq);
    auto lat = ws.matrix(T, latent_dim());
    const std::int64_t pos0 = cache.next_position();
    project(x, q, lat, nullptr, pos0, ws);
    auto k = ws.matrix(T, H * dq), v = ws.matrix(T, H * dv);
    decompress(lat, k, &v, nullptr, ws);
    std::array<KVSpan<E>, 4> spans;
    std::array<KVSpan<E>, 3> cached;
    std::size_t n = cache.spans(cached);
    for (std::size_t i = 0; i < n; ++i) spans[i] = cached[i];
    KVSpan<E> s;
    if constexpr (std::is_same_v<E, float>) {
      s.k = k.data();
      s.v = v.data();
    } else {
      E* conv = ws.template raw<E>(static_cast<std::size_t>(k.size() + v.size()));
      from_float_n(k.data(), conv, k.size());  // k, v: contiguous workspace matrices
      from_float_n(v.data(), conv + k.size(), v.size());
      s.k = conv;
      s.v = conv + k.size();
    }
    s.k_ld = H * dq;
    s.v_ld = H * dv;
    s.k_head_stride = dq;
    s.v_head_stride = dv;
    s.tokens = T;
    s.pos0 = pos0;
    spans[n++] = s;
    auto attn = ws.matrix(T, H * dv);
    const AttentionDims dims{H, H, dq, dv, static_cast<float>(cfg_.scale)};
    const AttentionIO io{q.data(), q.outerStride(), T, pos0, attn.data(), attn.outerStride(), nullptr, 0};
    flash_attention(dims, io, spans.data(), n, AttentionMask{}, ws, where_.c_str());
    o_.forward(attn, y);
    cache.append(k, v);
  }

  /// Validates a configuration (throws ErrorKind::config naming the layer `name` and the parameter)
  /// and fills in what it derives: num_key_value_heads, rope.head_dim / layout, and the scale.
  /// config() of a layer is this; usable without allocating a layer's weights.
  static MLAConfig resolve(MLAConfig c, const std::string& name = {}) {
    const std::string w = layer_where("MultiHeadLatentAttention", name);
    check(c.hidden_size > 0 && c.num_attention_heads > 0, ErrorKind::config, w, "hidden_size = ", c.hidden_size,
          " and num_attention_heads = ", c.num_attention_heads, " must be >= 1");
    if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
    check(c.num_key_value_heads == c.num_attention_heads, ErrorKind::config, w, "num_key_value_heads = ",
          c.num_key_value_heads, " must equal num_attention_heads = ", c.num_attention_heads,
          " (MLA decompresses K/V per head; there is no kv-head grouping)");
    check(c.kv_lora_rank >= 1, ErrorKind::config, w, "kv_lora_rank = ", c.kv_lora_rank,
          " must be >= 1 (the width of the cached latent c_kv)");
    check(c.q_lora_rank >= 0, ErrorKind::config, w, "q_lora_rank = ", c.q_lora_rank,
          " must be >= 0 (0 = no query compression: q_proj)");
    check(c.qk_nope_head_dim >= 1 && c.v_head_dim >= 1, ErrorKind::config, w, "qk_nope_head_dim = ",
          c.qk_nope_head_dim, " and v_head_dim = ", c.v_head_dim, " must be >= 1");
    check(c.qk_rope_head_dim >= 2 && c.qk_rope_head_dim % 2 == 0, ErrorKind::config, w, "qk_rope_head_dim = ",
          c.qk_rope_head_dim, " must be even and >= 2 (RoPE rotates pairs of dims)");
    check(c.norm_eps >= 0, ErrorKind::config, w, "norm_eps = ", c.norm_eps, " must be >= 0");
    check(c.rope.head_dim == 0 || c.rope.head_dim == c.qk_rope_head_dim, ErrorKind::config, w, "rope.head_dim = ",
          c.rope.head_dim, " must be 0 or qk_rope_head_dim = ", c.qk_rope_head_dim);
    check(c.rope.rotary_dim == 0 || c.rope.rotary_dim == c.qk_rope_head_dim, ErrorKind::config, w,
          "rope.rotary_dim = ", c.rope.rotary_dim, " must be 0 or qk_rope_head_dim = ", c.qk_rope_head_dim,
          " (MLA rotates the whole rope part)");
    check(c.rope_interleave || c.rope.layout == RopeLayout::half, ErrorKind::config, w,
          "rope.layout = interleaved contradicts rope_interleave = false; set rope_interleave instead");
    c.rope.head_dim = c.qk_rope_head_dim;
    c.rope.rotary_dim = 0;
    c.rope.layout = c.rope_interleave ? RopeLayout::interleaved : RopeLayout::half;
    c.rope.validate(w);
    if (c.scale == 0.0) {
      c.scale = 1.0 / std::sqrt(static_cast<double>(c.qk_head_dim()));
      const RopeScaling& s = c.rope.scaling;
      if (s.type != RopeType::none && s.mscale_all_dim != 0) {
        const double m = yarn_get_mscale(s.factor, s.mscale_all_dim);
        c.scale *= m * m;
      }
    }
    check(c.scale > 0 && std::isfinite(c.scale), ErrorKind::config, w, "scale = ", c.scale, " must be > 0");
    return c;
  }

 private:
  struct NoWeights {};
  // Configuration, name and RoPE only: the weights are set by the caller (the public constructor, load).
  MultiHeadLatentAttention(const MLAConfig& cfg, std::string name, NoWeights)
      : cfg_(resolve(cfg, name)),
        name_(std::move(name)),
        where_(layer_where("MultiHeadLatentAttention", name_)),
        rope_(std::make_shared<const RotaryEmbedding>(cfg_.rope)) {}

  Index latent_dim() const noexcept { return cfg_.kv_lora_rank + cfg_.qk_rope_head_dim; }

  void check_io(const ConstMatrixRef<float>& x, const MatrixRef<float>& y) const {
    check(rope_ != nullptr, ErrorKind::invalid_argument, "MultiHeadLatentAttention",
          "default-constructed layer: construct it from an MLAConfig or load() it");
    check_shape(where_, "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where_, "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
  }

  // q [T, H * dq] (rope part rotated) and lat [T, r + dr] = [kv_a_layernorm(c) | RoPE(k_rope)].
  // Positions: position_ids, or pos0 + row.
  void project(const ConstMatrixRef<float>& x, MatrixMap<float>& q, MatrixMap<float>& lat,
               const std::int64_t* position_ids, std::int64_t pos0, Workspace<float>& ws) const {
    const Index T = x.rows(), H = cfg_.num_attention_heads, r = cfg_.kv_lora_rank, dn = cfg_.qk_nope_head_dim,
                dr = cfg_.qk_rope_head_dim, dq = cfg_.qk_head_dim();
    if (has_q_lora()) {
      auto qa = ws.matrix(T, cfg_.q_lora_rank);
      q_a_.forward(x, qa);
      q_a_norm_.forward(qa, qa);
      q_b_.forward(qa, q);
    } else {
      q_.forward(x, q);
    }
    kv_a_.forward(x, lat);
    kv_a_norm_.forward(lat.leftCols(r), lat.leftCols(r));
    const std::int64_t* pos = position_ids;
    if (!pos) {
      std::int64_t* own = ws.template raw<std::int64_t>(static_cast<std::size_t>(T));
      for (Index i = 0; i < T; ++i) own[i] = pos0 + i;
      pos = own;
    }
    auto cos = ws.matrix(T, dr / 2), sin = ws.matrix(T, dr / 2);
    rope_->cos_sin_table<float>(pos, T, cos, sin);
    const RopeLayout layout = rope_->layout();
    for (Index h = 0; h < H; ++h) apply_rotary<float>(q.middleCols(h * dq + dn, dr), 1, dr, layout, cos, sin);
    apply_rotary<float>(lat.rightCols(dr), 1, dr, layout, cos, sin);
  }

  template <class E>
  KVSpan<E> latent_span(const E* rows, Index ld, Index tokens, std::int64_t pos0) const {
    KVSpan<E> s;
    s.k = rows;
    s.v = rows;  // the value is the first kv_lora_rank values of the key row
    s.k_ld = s.v_ld = ld;
    s.k_head_stride = s.v_head_stride = 0;
    s.tokens = tokens;
    s.pos0 = pos0;
    return s;
  }

  // f(h) for every head: in parallel (one head per item, each product single-threaded inside the
  // region) when each head's product is large enough for Eigen to consider threading it itself, so
  // that the arithmetic never depends on the thread count.
  template <class F>
  void for_each_head(double macs_per_head, F&& f) const {
    const Index H = cfg_.num_attention_heads;
    if (macs_per_head < 50000.0 || num_threads() <= 1)
      for (Index h = 0; h < H; ++h) f(h);
    else
      parallel_for(0, H, 1, f);
  }

  // Decompress latents [N, r + dr] into keys k [N, H * dq] (k_nope from kv_b_proj, k_rope copied
  // from the latent row) and values: into v [N, H * dv] when given, and/or the raw kv_b_proj output
  // [N, H * (dn + dv)] into *kvb_out (whose v columns a KVSpan can read in place).
  void decompress(const MatrixMap<float>& lat, MatrixMap<float>& k, MatrixMap<float>* v, MatrixMap<float>* kvb_out,
                  Workspace<float>& ws) const {
    const Index N = lat.rows(), H = cfg_.num_attention_heads, r = cfg_.kv_lora_rank, dn = cfg_.qk_nope_head_dim,
                dr = cfg_.qk_rope_head_dim, dv = cfg_.v_head_dim, dq = cfg_.qk_head_dim();
    MatrixMap<float> kvb = kvb_out ? *kvb_out : ws.matrix(N, H * (dn + dv));
    kv_b_.forward(lat.leftCols(r), kvb);
    parallel_for(0, N, std::max<Index>(1, 16384 / (H * (dq + dv))), [&](Index t) {
      const float* src = kvb.data() + t * kvb.outerStride();
      const float* kr = lat.data() + t * lat.outerStride() + r;
      float* kd = k.data() + t * k.outerStride();
      for (Index h = 0; h < H; ++h) {
        std::memcpy(kd + h * dq, src + h * (dn + dv), static_cast<std::size_t>(dn) * sizeof(float));
        std::memcpy(kd + h * dq + dn, kr, static_cast<std::size_t>(dr) * sizeof(float));
      }
      if (v) {
        float* vd = v->data() + t * v->outerStride();
        for (Index h = 0; h < H; ++h)
          std::memcpy(vd + h * dv, src + h * (dn + dv) + dn, static_cast<std::size_t>(dv) * sizeof(float));
      }
    });
  }

  // Expanded path: keys and values of every head decompressed from the latents `keys` [N, r + dr]
  // (positions 0..N-1), queries q [T, H * dq] at positions q_pos0.., output attn [T, H * dv].
  void attend_expanded(const MatrixMap<float>& q, std::int64_t q_pos0, const MatrixMap<float>& keys,
                       MatrixMap<float>& attn, Workspace<float>& ws) const {
    const Index N = keys.rows(), H = cfg_.num_attention_heads, dn = cfg_.qk_nope_head_dim, dv = cfg_.v_head_dim,
                dq = cfg_.qk_head_dim();
    auto k = ws.matrix(N, H * dq), kvb = ws.matrix(N, H * (dn + dv));
    decompress(keys, k, nullptr, &kvb, ws);
    KVSpan<float> s;
    s.k = k.data();
    s.v = kvb.data() + dn;  // v_h = columns [h (dn + dv) + dn, (h + 1)(dn + dv)) of kv_b_proj's output
    s.k_ld = k.outerStride();
    s.v_ld = kvb.outerStride();
    s.k_head_stride = dq;
    s.v_head_stride = dn + dv;
    s.tokens = N;
    s.pos0 = 0;
    const AttentionDims dims{H, H, dq, dv, static_cast<float>(cfg_.scale)};
    const AttentionIO io{q.data(), q.outerStride(), q.rows(), q_pos0, attn.data(), attn.outerStride(), nullptr, 0};
    flash_attention(dims, io, &s, 1, AttentionMask{}, ws, where_.c_str());
  }

  // Absorbed path: q_lat_h = q_nope_h W_UK_h (W_UK_h = rows [h (dn + dv), h (dn + dv) + dn) of
  // kv_b_proj.weight, [dn, r]); attention of [q_lat_h | q_rope_h] over the latent rows (one kv head,
  // key dim r + dr, value = the first r values of the row); o_h = o_lat_h W_UV_h^T (W_UV_h = the next
  // dv rows, [dv, r]).
  template <class E>
  void attend_absorbed(const MatrixMap<float>& q, std::int64_t q_pos0, const KVSpan<E>* spans, std::size_t n,
                       MatrixMap<float>& attn, Workspace<float>& ws) const {
    const Index T = q.rows(), H = cfg_.num_attention_heads, r = cfg_.kv_lora_rank, dn = cfg_.qk_nope_head_dim,
                dr = cfg_.qk_rope_head_dim, dv = cfg_.v_head_dim, dq = cfg_.qk_head_dim(), W = r + dr;
    const Matrix<float>& wkv = kv_b_.weight();  // [H * (dn + dv), r]
    auto qa = ws.matrix(T, H * W);              // [T, H * (r + dr)]
    for_each_head(double(T) * double(dn) * double(r), [&](Index h) {
      matmul<float>(q.middleCols(h * dq, dn), wkv.middleRows(h * (dn + dv), dn), qa.middleCols(h * W, r));
      qa.middleCols(h * W + r, dr) = q.middleCols(h * dq + dn, dr);
    });
    auto ol = ws.matrix(T, H * r);  // [T, H * r]: attention-weighted latents per head
    const AttentionDims dims{H, 1, W, r, static_cast<float>(cfg_.scale)};
    const AttentionIO io{qa.data(), qa.outerStride(), T, q_pos0, ol.data(), ol.outerStride(), nullptr, 0};
    flash_attention(dims, io, spans, n, AttentionMask{}, ws, where_.c_str());
    for_each_head(double(T) * double(dv) * double(r), [&](Index h) {
      matmul<float>(ol.middleCols(h * r, r), wkv.middleRows(h * (dn + dv) + dn, dv), attn.middleCols(h * dv, dv),
                MatmulOp::nt);
    });
  }

  MLAConfig cfg_;
  std::string name_;
  std::string where_;  // "MultiHeadLatentAttention '<name>'", built once (no allocation per call)
  Linear<float> q_;                 // [H * dq, hidden]         (q_lora_rank = 0)
  Linear<float> q_a_;               // [q_lora_rank, hidden]    (q_lora_rank > 0)
  RMSNorm<float> q_a_norm_;         // [q_lora_rank]
  Linear<float> q_b_;               // [H * dq, q_lora_rank]
  Linear<float> kv_a_;              // [r + dr, hidden]
  RMSNorm<float> kv_a_norm_;        // [r]
  Linear<float> kv_b_;              // [H * (dn + dv), r]
  Linear<float> o_;                 // [hidden, H * dv]
  std::shared_ptr<const RotaryEmbedding> rope_;  // immutable: shared by copies
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
