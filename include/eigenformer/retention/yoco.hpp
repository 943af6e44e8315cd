#pragma once
// YOCO: the decoder-decoder of Sun et al. 2024, "You Only Cache Once: Decoder-Decoder Architectures
// for Language Models" (arXiv:2405.05254), with the semantics and checkpoint names of unilm
// YOCO/yoco/models/decoder/yoco.py (YOCO, SelfDecoder, CrossDecoder, DecoderLayer), cross_attention.py,
// gate_retention.py and feedforward_network.py. Docs: docs/retention.md.
//
// Input: the embedded tokens x [T, dim] (the caller applies embed_tokens and embed_scale = sqrt(dim));
// output: the final layer_norm of the last hidden states (before output_projection).
//   self-decoder (n_self_layers, the reference's n_layers / 2), each DecoderLayer:
//     h = h + mixer(mixer_layer_norm(h))            mixer = GatedRetention (gated_retention.hpp), or with
//                                                   sliding_window > 0 SlidingWindowAttention
//                                                   (sliding_window_attention.py): MHA with n_self_heads
//                                                   heads, q/k/v/out_proj [dim, dim], the same RoPE,
//                                                   causal, each query sees itself and window - 1 keys
//                                                   before it (flash_attn window_size = (window - 1, 0));
//                                                   its cache is a ring of the newest `window` K/V rows
//     h = h + ffn(final_layer_norm(h))              ffn(z) = fc2( silu(fc1 z) * gate z )  (swiglu)
//   global KV, computed ONCE from the self-decoder output h:
//     z = kv_layer_norm(h),  K = rope(k_proj z),  V = v_proj z     [T, n_attn_kv_heads * head_dim]
//   cross-decoder (n_cross_layers), each DecoderLayer with its own q_proj / out_proj / norms / ffn:
//     h = h + out_proj( attention(rope(q_proj(mixer_layer_norm(h))), K, V) )    causal, GQA,
//                                                                scale head_dim^-0.5 (flash_attn_func)
//     h = h + ffn(final_layer_norm(h))
//   y = layer_norm(h)
// head_dim = dim / n_attn_heads; every cross layer reads the same K/V: the cache holds the
// self-decoder's O(1) retention states plus ONE K/V pair per token, however many cross layers.
// RoPE (both decoders): interleaved pairs, theta_j = 1 / rope_theta^linspace(0, 1, head_dim/2)[j]
// (the reference's build_rel_pos; not the usual arange(0, d, 2) / d schedule: RopeFrequencies::linspace).
// RMSNorms: x / sqrt(mean(x^2) + norm_eps) * weight. Not covered: embed_tokens / output_projection
// (embedding/embedding.hpp, Linear). The reference pads a gated-retention prefill to a multiple of 256
// with zero rows; causality makes the kept rows independent of that padding.
//
// Checkpoint names (YOCO module tree, no prefix):
//   self_decoder.layers.{i}.mixer.{q,k,v,g,gt,out}_proj.weight (sliding window: {q,k,v,out}_proj),
//   self_decoder.layers.{i}.mixer_layer_norm.weight,
//   self_decoder.layers.{i}.ffn.{fc1,gate,fc2}.weight, self_decoder.layers.{i}.final_layer_norm.weight,
//   cross_decoder.kv_layer_norm.weight, cross_decoder.{k,v}_proj.weight,
//   cross_decoder.layers.{i}.mixer.{q,out}_proj.weight,
//   cross_decoder.layers.{i}.{mixer_layer_norm,final_layer_norm}.weight,
//   cross_decoder.layers.{i}.ffn.{fc1,gate,fc2}.weight, layer_norm.weight.

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../ffn/mlp.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"
#include "../norm/rms_norm.hpp"
#include "../attention/multi_head_attention.hpp"
#include "../cache/kv_cache.hpp"
#include "../ops/activation.hpp"
#include "../ops/attention.hpp"
#include "../ops/rows.hpp"
#include "gated_retention.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

struct YOCOConfig {
  Index dim = 0;              ///< YOCOArgs `dim`
  Index hidden_dim = 0;       ///< YOCOArgs `hidden_dim` (FFN width)
  Index n_self_layers = 0;    ///< the reference builds n_layers / 2
  Index n_cross_layers = 0;   ///< the reference builds n_layers / 2
  Index n_self_heads = 0;     ///< YOCOArgs `n_self_heads` (gated retention heads)
  Index n_attn_heads = 0;     ///< YOCOArgs `n_attn_heads` (cross-attention query heads)
  Index n_attn_kv_heads = 0;  ///< YOCOArgs `n_attn_kv_heads` (heads of the global K/V)
  double rope_theta = 10000.0;  ///< YOCOArgs `rope_theta`
  double norm_eps = 1e-5;       ///< YOCOArgs `norm_eps` (every RMSNorm and the subln)
  Index chunk_size = 256;       ///< self-decoder prefill chunk (SelfDecoder.block_size)
  Index sliding_window = 0;     ///< YOCOArgs `sliding_window`: 0 (None) = gated-retention self-decoder,
                                ///< > 0 = sliding-window attention of this window

  /// The reference's layout: n_layers / 2 self-decoder layers, then n_layers / 2 cross-decoder layers.
  static YOCOConfig from_args(Index dim, Index n_layers, Index hidden_dim, Index n_self_heads, Index n_attn_heads,
                              Index n_attn_kv_heads) {
    YOCOConfig c;
    c.dim = dim;
    c.hidden_dim = hidden_dim;
    c.n_self_layers = n_layers / 2;
    c.n_cross_layers = n_layers / 2;
    c.n_self_heads = n_self_heads;
    c.n_attn_heads = n_attn_heads;
    c.n_attn_kv_heads = n_attn_kv_heads;
    return c;
  }
  bool sliding() const noexcept { return sliding_window > 0; }
  Index head_dim() const noexcept { return n_attn_heads > 0 ? dim / n_attn_heads : 0; }
  Index self_head_dim() const noexcept { return n_self_heads > 0 ? dim / n_self_heads : 0; }
  Index kv_width() const noexcept { return n_attn_kv_heads * head_dim(); }
};

/// Cache / state bytes of a decoder at a context length.
struct DecoderMemory {
  std::size_t state_bytes = 0;         ///< O(1) recurrent states (YOCO's gated-retention self-decoder)
  std::size_t window_cache_bytes = 0;  ///< bounded sliding-window K/V caches (YOCO's SWA self-decoder)
  std::size_t kv_cache_bytes = 0;      ///< per-token keys and values (grows with the context)
  std::size_t total() const noexcept { return state_bytes + window_cache_bytes + kv_cache_bytes; }
};

/// YOCO at `context` tokens: the self-decoder's retention states (n_self_layers x n_self_heads x
/// d x d, d = dim / n_self_heads), or with a sliding window its K/V rings (n_self_layers x window x
/// 2 dim, allocated in full as the reference's prev_key / prev_value), plus ONE global K/V of
/// n_attn_kv_heads x head_dim per token, whatever n_cross_layers is. Element sizes: kv_bytes for K/V
/// caches, state_bytes for the states.
inline DecoderMemory yoco_memory(const YOCOConfig& c, std::int64_t context, std::size_t kv_bytes = sizeof(float),
                                 std::size_t state_bytes = sizeof(float)) {
  DecoderMemory m;
  const auto d = static_cast<std::size_t>(c.self_head_dim());
  const auto layers = static_cast<std::size_t>(c.n_self_layers);
  if (c.sliding())
    m.window_cache_bytes = layers * static_cast<std::size_t>(c.sliding_window) * 2 * static_cast<std::size_t>(c.dim) *
                           kv_bytes;
  else
    m.state_bytes = layers * static_cast<std::size_t>(c.n_self_heads) * d * d * state_bytes;
  m.kv_cache_bytes = 2 * static_cast<std::size_t>(context) * static_cast<std::size_t>(c.kv_width()) * kv_bytes;
  return m;
}

/// A standard decoder of the same size: n_self_layers + n_cross_layers attention layers with the
/// cross-attention's heads (n_attn_kv_heads x head_dim keys and values per token), each its own cache.
inline DecoderMemory standard_decoder_memory(const YOCOConfig& c, std::int64_t context,
                                             std::size_t kv_bytes = sizeof(float)) {
  DecoderMemory m;
  m.kv_cache_bytes = static_cast<std::size_t>(c.n_self_layers + c.n_cross_layers) * 2 *
                     static_cast<std::size_t>(context) * static_cast<std::size_t>(c.kv_width()) * kv_bytes;
  return m;
}

/// YOCO's inference cache: one gated-retention state (or, with a sliding window, one K/V ring of
/// `window` tokens) per self-decoder layer, and the global K/V (float, [capacity, kv_width] each; the
/// reference's prev_key / prev_value of max_seq_len rows).
struct YOCOCache {
  std::vector<GatedRetentionState<float>> self_states;  ///< gated-retention self-decoder
  std::vector<KVCache<float>> self_kv;                  ///< sliding-window self-decoder
  Matrix<float> key, value;   ///< rows [0, position) hold the rotated keys and the values
  std::int64_t position = 0;  ///< tokens consumed so far

  std::int64_t capacity() const noexcept { return key.rows(); }
  void reset() {
    position = 0;
    for (auto& s : self_states) s.reset();
    for (auto& c : self_kv) c.clear();
  }
  /// Bytes held: the states plus the K/V at full capacity (= yoco_memory(config, capacity()).total()).
  std::size_t bytes() const noexcept {
    std::size_t b = static_cast<std::size_t>(key.size() + value.size()) * sizeof(float);
    for (const auto& s : self_states) b += s.bytes();
    for (const auto& c : self_kv) b += c.bytes();
    return b;
  }
};

/// One self-decoder DecoderLayer: the gated-retention mixer, or with a sliding window the attention
/// (the other member stays default-constructed).
struct YOCOSelfLayer {
  GatedRetention<float> mixer;
  RMSNorm<float> mixer_layer_norm;
  MLP<float> ffn;  ///< names fc1 (activated), gate, fc2
  RMSNorm<float> final_layer_norm;
  MultiHeadAttention attention;  ///< sliding window only: mixer.{q,k,v,out}_proj
};

/// One cross-decoder DecoderLayer: its own query and output projections; K/V come from the cache.
struct YOCOCrossLayer {
  Linear<float> q_proj;    ///< [dim, dim]
  Linear<float> out_proj;  ///< [dim, dim]
  RMSNorm<float> mixer_layer_norm;
  MLP<float> ffn;
  RMSNorm<float> final_layer_norm;
};

class YOCO {
 public:
  YOCO() = default;

  /// Zero projections and unit norms of the configured shapes (fill them through the accessors).
  explicit YOCO(const YOCOConfig& cfg, std::string name = {}) : cfg_(resolve(cfg, name)), name_(std::move(name)) {
    const Index E = cfg_.dim, W = cfg_.kv_width();
    for (Index i = 0; i < cfg_.n_self_layers; ++i) {
      const std::string p = layer_name("self_decoder", i);
      YOCOSelfLayer l;
      if (cfg_.sliding())
        l.attention = MultiHeadAttention(
            window_attention_config(cfg_), Linear<float>({E, E, false}, join_name(p, "mixer.q_proj")),
            Linear<float>({E, E, false}, join_name(p, "mixer.k_proj")),
            Linear<float>({E, E, false}, join_name(p, "mixer.v_proj")),
            Linear<float>({E, E, false}, join_name(p, "mixer.out_proj")), {}, join_name(p, "mixer"));
      else
        l.mixer = GatedRetention<float>(retention_config(cfg_), join_name(p, "mixer"));
      l.mixer_layer_norm = RMSNorm<float>(norm_config(cfg_), join_name(p, "mixer_layer_norm"));
      l.ffn = MLP<float>(ffn_config(cfg_), join_name(p, "ffn"));
      l.final_layer_norm = RMSNorm<float>(norm_config(cfg_), join_name(p, "final_layer_norm"));
      self_.push_back(std::move(l));
    }
    for (Index i = 0; i < cfg_.n_cross_layers; ++i) {
      const std::string p = layer_name("cross_decoder", i);
      cross_.push_back({Linear<float>({E, E, false}, join_name(p, "mixer.q_proj")),
                        Linear<float>({E, E, false}, join_name(p, "mixer.out_proj")),
                        RMSNorm<float>(norm_config(cfg_), join_name(p, "mixer_layer_norm")),
                        MLP<float>(ffn_config(cfg_), join_name(p, "ffn")),
                        RMSNorm<float>(norm_config(cfg_), join_name(p, "final_layer_norm"))});
    }
    kv_norm_ = RMSNorm<float>(norm_config(cfg_), sub("cross_decoder.kv_layer_norm"));
    k_proj_ = Linear<float>({E, W, false}, sub("cross_decoder.k_proj"));
    v_proj_ = Linear<float>({E, W, false}, sub("cross_decoder.v_proj"));
    final_norm_ = RMSNorm<float>(norm_config(cfg_), sub("layer_norm"));
    init_tables();
  }

  /// From parts (shapes checked).
  YOCO(const YOCOConfig& cfg, std::vector<YOCOSelfLayer> self_layers, RMSNorm<float> kv_layer_norm,
       Linear<float> k_proj, Linear<float> v_proj, std::vector<YOCOCrossLayer> cross_layers, RMSNorm<float> layer_norm,
       std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)), self_(std::move(self_layers)),
        cross_(std::move(cross_layers)), kv_norm_(std::move(kv_layer_norm)), k_proj_(std::move(k_proj)),
        v_proj_(std::move(v_proj)), final_norm_(std::move(layer_norm)) {
    const Index E = cfg_.dim, W = cfg_.kv_width();
    check(static_cast<Index>(self_.size()) == cfg_.n_self_layers &&
              static_cast<Index>(cross_.size()) == cfg_.n_cross_layers,
          ErrorKind::config, where(), "got ", self_.size(), " self-decoder and ", cross_.size(),
          " cross-decoder layers, expected n_self_layers = ", cfg_.n_self_layers, " and n_cross_layers = ",
          cfg_.n_cross_layers);
    for (std::size_t i = 0; i < self_.size(); ++i) {
      const std::string p = layer_name("self_decoder", static_cast<Index>(i));
      if (cfg_.sliding()) {
        const auto& ac = self_[i].attention.config();
        check(ac.hidden_size == E && ac.num_attention_heads == cfg_.n_self_heads &&
                  ac.num_key_value_heads == cfg_.n_self_heads && ac.head_dim == cfg_.self_head_dim() &&
                  ac.sliding_window == cfg_.sliding_window,
              ErrorKind::shape_mismatch, where(), p, ".mixer (sliding-window attention) has hidden_size ",
              ac.hidden_size, ", ", ac.num_attention_heads, " heads and window ", ac.sliding_window, ", expected ",
              E, ", ", cfg_.n_self_heads, " and ", cfg_.sliding_window, " (use window_attention_config())");
      } else {
        const auto& rc = self_[i].mixer.config();
        check(rc.embed_dim == E && rc.num_heads == cfg_.n_self_heads, ErrorKind::shape_mismatch, where(), p,
              ".mixer has embed_dim ", rc.embed_dim, " and ", rc.num_heads, " heads, expected ", E, " and ",
              cfg_.n_self_heads);
      }
      check_norm(self_[i].mixer_layer_norm, p + ".mixer_layer_norm");
      check_ffn(self_[i].ffn, p + ".ffn");
      check_norm(self_[i].final_layer_norm, p + ".final_layer_norm");
    }
    for (std::size_t i = 0; i < cross_.size(); ++i) {
      const std::string p = layer_name("cross_decoder", static_cast<Index>(i));
      check_shape(where(), p + ".mixer.q_proj", cross_[i].q_proj.out_features(), cross_[i].q_proj.in_features(), E,
                  E);
      check_shape(where(), p + ".mixer.out_proj", cross_[i].out_proj.out_features(),
                  cross_[i].out_proj.in_features(), E, E);
      check_norm(cross_[i].mixer_layer_norm, p + ".mixer_layer_norm");
      check_ffn(cross_[i].ffn, p + ".ffn");
      check_norm(cross_[i].final_layer_norm, p + ".final_layer_norm");
    }
    check_norm(kv_norm_, "cross_decoder.kv_layer_norm");
    check_shape(where(), "cross_decoder.k_proj", k_proj_.out_features(), k_proj_.in_features(), W, E);
    check_shape(where(), "cross_decoder.v_proj", v_proj_.out_features(), v_proj_.in_features(), W, E);
    check_norm(final_norm_, "layer_norm");
    init_tables();
  }

  /// Load from YOCO's module names under `prefix` (empty for a bare YOCO state dict).
  static YOCO load(const SafeTensors& st, const YOCOConfig& cfg, const std::string& prefix = {}) {
    const YOCOConfig c = resolve(cfg, prefix);
    const Index E = c.dim, W = c.kv_width();
    auto name = [&](const std::string& n) { return join_name(prefix, n); };
    auto norm = [&](const std::string& n) { return RMSNorm<float>::load(st, name(n), norm_config(c)); };
    std::vector<YOCOSelfLayer> self;
    for (Index i = 0; i < c.n_self_layers; ++i) {
      const std::string p = layer_name("self_decoder", i);
      YOCOSelfLayer l;
      if (c.sliding()) {
        auto lin = [&](const char* n) { return Linear<float>::load(st, name(p + ".mixer." + n), {E, E, false}); };
        l.attention = MultiHeadAttention(window_attention_config(c), lin("q_proj"), lin("k_proj"), lin("v_proj"),
                                         lin("out_proj"), {}, name(p + ".mixer"));
      } else {
        l.mixer = GatedRetention<float>::load(st, name(p + ".mixer"), retention_config(c));
      }
      l.mixer_layer_norm = norm(p + ".mixer_layer_norm");
      l.ffn = MLP<float>::load(st, name(p + ".ffn"), ffn_config(c));
      l.final_layer_norm = norm(p + ".final_layer_norm");
      self.push_back(std::move(l));
    }
    auto kvn = norm("cross_decoder.kv_layer_norm");
    auto kp = Linear<float>::load(st, name("cross_decoder.k_proj"), {E, W, false});
    auto vp = Linear<float>::load(st, name("cross_decoder.v_proj"), {E, W, false});
    std::vector<YOCOCrossLayer> cross;
    for (Index i = 0; i < c.n_cross_layers; ++i) {
      const std::string p = layer_name("cross_decoder", i);
      auto q = Linear<float>::load(st, name(p + ".mixer.q_proj"), {E, E, false});
      auto o = Linear<float>::load(st, name(p + ".mixer.out_proj"), {E, E, false});
      auto n1 = norm(p + ".mixer_layer_norm");
      auto ffn = MLP<float>::load(st, name(p + ".ffn"), ffn_config(c));
      auto n2 = norm(p + ".final_layer_norm");
      cross.push_back({std::move(q), std::move(o), std::move(n1), std::move(ffn), std::move(n2)});
    }
    auto ln = norm("layer_norm");
    return YOCO(c, std::move(self), std::move(kvn), std::move(kp), std::move(vp), std::move(cross), std::move(ln),
                prefix);
  }

  static GatedRetentionConfig retention_config(const YOCOConfig& c) {
    GatedRetentionConfig r;
    r.embed_dim = c.dim;
    r.num_heads = c.n_self_heads;
    r.norm_eps = c.norm_eps;
    r.rope_theta = c.rope_theta;
    r.chunk_size = c.chunk_size;
    return r;
  }
  /// SlidingWindowAttention as a MultiHeadAttention: n_self_heads heads of dim / n_self_heads (no
  /// GQA), causal, the window, YOCO's RoPE; its o_proj is the reference's out_proj.
  static AttentionConfig window_attention_config(const YOCOConfig& c) {
    AttentionConfig a;
    a.hidden_size = c.dim;
    a.num_attention_heads = c.n_self_heads;
    a.num_key_value_heads = c.n_self_heads;
    a.head_dim = c.self_head_dim();
    a.causal = true;
    a.sliding_window = c.sliding_window;
    a.position = PositionEncoding::rope;
    a.rope = RopeConfig::linspace_interleaved(c.self_head_dim(), c.rope_theta);
    return a;
  }
  static RMSNorm<float>::Config norm_config(const YOCOConfig& c) { return {c.dim, c.norm_eps, false}; }
  /// FeedForwardNetwork: fc2(swiglu(fc1 x, gate x)), swiglu(a, b) = silu(a) * b: fc1 is the activated one.
  static MLP<float>::Config ffn_config(const YOCOConfig& c) {
    MLP<float>::Config f;
    f.hidden_size = c.dim;
    f.intermediate_size = c.hidden_dim;
    f.act = Activation::silu;
    f.gated = true;
    f.bias = false;
    f.names = MLP<float>::Names{"fc1", "gate", "fc2"};
    return f;
  }

  const YOCOConfig& config() const noexcept { return cfg_; }
  YOCOSelfLayer& self_layer(Index i) { return self_.at(static_cast<std::size_t>(i)); }
  YOCOCrossLayer& cross_layer(Index i) { return cross_.at(static_cast<std::size_t>(i)); }
  const YOCOSelfLayer& self_layer(Index i) const { return self_.at(static_cast<std::size_t>(i)); }
  const YOCOCrossLayer& cross_layer(Index i) const { return cross_.at(static_cast<std::size_t>(i)); }
  const RMSNorm<float>& kv_layer_norm() const noexcept { return kv_norm_; }
  Linear<float>& k_proj() noexcept { return k_proj_; }
  Linear<float>& v_proj() noexcept { return v_proj_; }
  const Linear<float>& k_proj() const noexcept { return k_proj_; }
  const Linear<float>& v_proj() const noexcept { return v_proj_; }
  const RMSNorm<float>& layer_norm() const noexcept { return final_norm_; }

  /// An empty cache for up to `capacity` tokens (the reference's max_seq_len).
  YOCOCache make_cache(std::int64_t capacity) const {
    check(capacity >= 0, ErrorKind::invalid_argument, where(), "cache capacity = ", capacity, " must be >= 0");
    YOCOCache c;
    for (const auto& l : self_) {
      if (cfg_.sliding())
        c.self_kv.emplace_back(typename KVCache<float>::Config{cfg_.n_self_heads, cfg_.self_head_dim(), 0,
                                                                cfg_.sliding_window, CacheEviction::sliding_window});
      else
        c.self_states.push_back(l.mixer.make_state());
    }
    c.key.setZero(static_cast<Index>(capacity), cfg_.kv_width());
    c.value.setZero(static_cast<Index>(capacity), cfg_.kv_width());
    return c;
  }

  /// Prefill (several rows) or decode (one row): x [T, dim] are the next tokens' embeddings,
  /// continuing `cache` (positions cache.position, ...). The self-decoder runs chunkwise for T > 1 and
  /// recurrently for T = 1, then the global K/V of the T tokens is computed once and appended. y is
  /// [T, dim] (every token's output) or [1, dim]: only the last token's, so the cross-decoder runs on
  /// one query row (YOCO's cheap prefill). y must not overlap x.
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, YOCOCache& cache, Workspace<float>& ws) const {
    const Index T = x.rows(), E = cfg_.dim;
    check_shape(where(), "input x", x.rows(), x.cols(), -1, E);
    check(y.cols() == E && (y.rows() == T || (y.rows() == 1 && T >= 1)), ErrorKind::shape_mismatch, where(),
          "output y has shape [", y.rows(), ", ", y.cols(), "], expected [", T, ", ", E, "] or [1, ", E, "]");
    check_cache(cache);
    check(cache.position + T <= cache.capacity(), ErrorKind::capacity, where(), "cache holds ", cache.capacity(),
          " tokens; ", cache.position, " used, ", T, " more do not fit");
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    const std::int64_t pos0 = cache.position;
    auto h = ws.matrix(T, E), n = ws.matrix(T, E), f = ws.matrix(T, E);
    h = x;
    for (std::size_t i = 0; i < self_.size(); ++i) {
      const YOCOSelfLayer& l = self_[i];
      l.mixer_layer_norm.forward(h, n);
      if (cfg_.sliding())
        l.attention.forward(n, f, cache.self_kv[i], ws);
      else
        l.mixer.forward(n, f, cache.self_states[i], ws);
      ops::add<float>(h, f, h);
      l.final_layer_norm.forward(h, n);
      l.ffn.forward(n, f, ws);
      ops::add<float>(h, f, h);
    }
    // The global K/V: once, from the self-decoder output.
    kv_norm_.forward(h, n);
    auto K = cache.key.middleRows(static_cast<Index>(pos0), T);
    auto V = cache.value.middleRows(static_cast<Index>(pos0), T);
    k_proj_.forward(n, K);
    v_proj_.forward(n, V);
    rope_->apply_from<float>(K, cfg_.n_attn_kv_heads, pos0);
    // Cross-decoder on every row, or only the last.
    const Index R = y.rows(), r0 = T - R;
    auto hc = h.bottomRows(R);
    auto nc = n.topRows(R), fc = f.topRows(R);
    auto q = ws.matrix(R, E), att = ws.matrix(R, E);
    const Index hd = cfg_.head_dim(), W = cfg_.kv_width();
    const AttentionDims dims{cfg_.n_attn_heads, cfg_.n_attn_kv_heads, hd, hd,
                             static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
    const AttentionIO io{q.data(), E, R, pos0 + r0, att.data(), E, nullptr, 0};
    const KVSpan<float> span{cache.key.data(), cache.value.data(), W, W, hd, hd, static_cast<Index>(pos0) + T, 0};
    const AttentionMask mask;  // causal
    for (const YOCOCrossLayer& l : cross_) {
      l.mixer_layer_norm.forward(hc, nc);
      l.q_proj.forward(nc, q);
      rope_->apply_from<float>(q, cfg_.n_attn_heads, pos0 + r0);
      flash_attention(dims, io, &span, 1, mask, ws, "YOCO cross-attention");
      l.out_proj.forward(att, nc);
      ops::add<float>(hc, nc, hc);
      l.final_layer_norm.forward(hc, nc);
      l.ffn.forward(nc, fc, ws);
      ops::add<float>(hc, fc, hc);
    }
    final_norm_.forward(hc, y);
    cache.position += T;
  }

  Index parameters() const noexcept {
    Index p = 0;
    for (const auto& l : self_)
      p += l.mixer.parameters() + l.attention.parameters() + l.ffn.parameters() + 2 * cfg_.dim;
    for (const auto& l : cross_)
      p += l.q_proj.parameters() + l.out_proj.parameters() + l.ffn.parameters() + 2 * cfg_.dim;
    return p + k_proj_.parameters() + v_proj_.parameters() + 2 * cfg_.dim;
  }

 private:
  std::string where() const { return layer_where("YOCO", name_); }
  std::string sub(const std::string& n) const { return join_name(name_, n); }
  static std::string layer_name(const char* dec, Index i) {
    return std::string(dec) + ".layers." + std::to_string(i);
  }

  static YOCOConfig resolve(YOCOConfig c, const std::string& name) {
    const std::string w = layer_where("YOCO", name);
    check(c.dim > 0 && c.hidden_dim > 0, ErrorKind::config, w, "dim = ", c.dim, " and hidden_dim = ", c.hidden_dim,
          " must be >= 1");
    check(c.n_self_layers >= 0 && c.n_cross_layers >= 0, ErrorKind::config, w, "n_self_layers = ", c.n_self_layers,
          " and n_cross_layers = ", c.n_cross_layers, " must be >= 0");
    check(c.n_self_heads > 0 && c.dim % c.n_self_heads == 0 && (c.dim / c.n_self_heads) % 2 == 0, ErrorKind::config,
          w, "dim = ", c.dim, " must be n_self_heads = ", c.n_self_heads, " times an even head_dim");
    check(c.n_attn_heads > 0 && c.dim % c.n_attn_heads == 0 && (c.dim / c.n_attn_heads) % 2 == 0, ErrorKind::config,
          w, "dim = ", c.dim, " must be n_attn_heads = ", c.n_attn_heads, " times an even head_dim");
    check(c.n_attn_kv_heads > 0 && c.n_attn_heads % c.n_attn_kv_heads == 0, ErrorKind::config, w,
          "n_attn_heads = ", c.n_attn_heads, " must be a multiple of n_attn_kv_heads = ", c.n_attn_kv_heads);
    check(c.norm_eps >= 0 && std::isfinite(c.norm_eps), ErrorKind::config, w, "norm_eps = ", c.norm_eps,
          " must be finite and >= 0");
    check(c.rope_theta > 0 && std::isfinite(c.rope_theta), ErrorKind::config, w, "rope_theta = ", c.rope_theta,
          " must be finite and > 0");
    check(c.chunk_size >= 1, ErrorKind::config, w, "chunk_size = ", c.chunk_size, " must be >= 1");
    check(c.sliding_window >= 0, ErrorKind::config, w, "sliding_window = ", c.sliding_window,
          " must be >= 0 (0: the gated-retention self-decoder)");
    return c;
  }

  void check_norm(const RMSNorm<float>& n, const std::string& what) const {
    check(n.config().hidden_size == cfg_.dim, ErrorKind::shape_mismatch, where(), what, " has ",
          n.config().hidden_size, " weights, expected ", cfg_.dim);
  }
  void check_ffn(const MLP<float>& f, const std::string& what) const {
    check(f.config().hidden_size == cfg_.dim && f.config().intermediate_size == cfg_.hidden_dim && f.config().gated,
          ErrorKind::shape_mismatch, where(), what, " is [", f.config().intermediate_size, ", ",
          f.config().hidden_size, "]", (f.config().gated ? "" : " and not gated"), ", expected a gated [",
          cfg_.hidden_dim, ", ", cfg_.dim, "]");
  }
  void check_cache(const YOCOCache& c) const {
    const auto layers = static_cast<std::size_t>(cfg_.n_self_layers);
    bool ok = c.self_states.size() == (cfg_.sliding() ? 0 : layers) &&
              c.self_kv.size() == (cfg_.sliding() ? layers : 0) && c.key.cols() == cfg_.kv_width() &&
              c.value.cols() == cfg_.kv_width() && c.value.rows() == c.key.rows();
    for (const auto& s : c.self_states)
      ok = ok && s.num_heads == cfg_.n_self_heads && s.head_dim == cfg_.self_head_dim() &&
           s.kv.rows() == cfg_.dim && s.kv.cols() == s.head_dim;
    for (const auto& k : c.self_kv) {
      const auto& kc = k.config();
      ok = ok && kc.n_kv_heads == cfg_.n_self_heads && kc.head_dim == cfg_.self_head_dim() &&
           kc.v_head_dim == cfg_.self_head_dim() && kc.capacity >= cfg_.sliding_window &&
           kc.eviction == CacheEviction::sliding_window && k.next_position() == c.position;
    }
    check(ok, ErrorKind::shape_mismatch, where(), "cache has ", c.self_states.size(), " self-decoder states, ",
          c.self_kv.size(), " window caches and K/V ", shape_str({c.key.rows(), c.key.cols()}), "; expected ",
          cfg_.n_self_layers, cfg_.sliding() ? " window caches" : " states", " of ", cfg_.n_self_heads,
          " heads and K/V [*, ", cfg_.kv_width(), "] (use make_cache())");
    check(c.position >= 0 && c.position <= c.capacity(), ErrorKind::invalid_argument, where(), "cache position = ",
          c.position, " is outside [0, ", c.capacity(), "]");
  }

  // The rotation of both decoders (here for the cross-decoder heads).
  void init_tables() {
    rope_ = std::make_shared<const RotaryEmbedding>(RopeConfig::linspace_interleaved(cfg_.head_dim(), cfg_.rope_theta));
  }

  YOCOConfig cfg_;
  std::string name_;
  std::vector<YOCOSelfLayer> self_;
  std::vector<YOCOCrossLayer> cross_;
  RMSNorm<float> kv_norm_;
  Linear<float> k_proj_, v_proj_;  // [kv_width, dim]
  RMSNorm<float> final_norm_;
  std::shared_ptr<const RotaryEmbedding> rope_;  // cross-decoder rotation; immutable, shared by copies
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
