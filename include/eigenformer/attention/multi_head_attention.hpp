#pragma once
// MultiHeadAttention: MHA, MQA and GQA (n_kv_heads = n_heads, 1, or a divisor), with the projections
// and checkpoint names of Hugging Face Llama (`q_proj`, `k_proj`, `v_proj`, `o_proj`, optional
// biases) and gpt-oss (`sinks`), and positions by RoPE (all HF scalings), ALiBi or xPos.
//
// Forms (all run the one flash kernel of ops/attention.hpp):
//   forward(x, y, ws)                  prefill / parallel over one sequence, causal or bidirectional,
//                                      optional key padding mask and position ids
//   forward(x, y, cache, ws)           incremental decoding: the new tokens attend to the cache and to
//                                      each other (bottom-right aligned causal mask), then are
//                                      appended; equal to running the whole sequence at once
//   forward_packed(x, offsets, y, ws)  several sequences of different lengths packed row-wise
//                                      (cu_seqlens offsets), no padding
//   forward_cross(x, memory, y, ws)    cross-attention: queries from x, keys/values from memory
//
// Query head h uses kv head h / (n_heads / n_kv_heads) (HF repeat_kv). Scale head_dim^-0.5 unless
// configured (Gemma 2: query_pre_attn_scalar^-0.5). Positions: the mask uses cache positions (token
// index in the key sequence, as HF's masks do); RoPE uses the position ids (0, 1, ... by default).

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../cache/kv_cache.hpp"
#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"
#include "../norm/rms_norm.hpp"
#include "../ops/attention.hpp"
#include "../ops/dilated_attention.hpp"
#include "../position/alibi.hpp"
#include "../position/rope.hpp"
#include "../position/xpos.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

enum class PositionEncoding { none, rope, alibi, xpos };

struct AttentionConfig {
  Index hidden_size = 0;          ///< HF `hidden_size`
  Index num_attention_heads = 0;  ///< HF `num_attention_heads`
  Index num_key_value_heads = 0;  ///< HF `num_key_value_heads`; 0 = num_attention_heads (MHA)
  Index head_dim = 0;             ///< HF `head_dim`; 0 = hidden_size / num_attention_heads
  bool qkv_bias = false;          ///< biases on q/k/v_proj (HF `attention_bias`; Qwen2: true)
  bool o_bias = false;            ///< bias on o_proj (HF Llama: `attention_bias`; Qwen2: false)
  double scale = 0.0;             ///< logit scale; 0 = head_dim^-0.5
  bool causal = true;             ///< false: bidirectional (encoders, cross-attention)
  Index sliding_window = 0;       ///< HF `sliding_window` (each query sees itself and window-1 before)
  double softcap = 0.0;           ///< HF `attn_logit_softcapping` (Gemma 2); 0 = none
  bool sinks = false;             ///< learned per-head sink logits (gpt-oss `sinks` [n_heads])
  PositionEncoding position = PositionEncoding::rope;
  RopeConfig rope;                ///< used with position = rope (head_dim 0 = the attention head_dim)
  AlibiForm alibi_form = AlibiForm::causal;
  double xpos_scale_base = 512;   ///< torchscale `xpos_scale_base`
  /// LongNet dilated attention (ops/dilated_attention.hpp): (segment_length, dilated_ratio) branches
  /// merged by their softmax denominators, instead of dense attention; empty = dense. Self-attention
  /// only (cross-attention stays dense); not with sliding_window, softcap, sinks, ALiBi or a key mask;
  /// a KV cache must not evict (segments are aligned to position 0).
  std::vector<DilatedBranch> dilated;
};

/// How the attention layer drives its projections. The default suits Linear<float>; a projection
/// type may specialize it (BitLinear quantizes the shared input of q/k/v once: ffn/bitnet_block.hpp).
template <class Proj>
struct ProjectionOps {
  static void forward(const Proj& p, ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>&) {
    p.forward(x, y);
  }
  /// out[i] = projs[i](x) for projections sharing one input.
  template <std::size_t N>
  static void forward_shared(const std::array<const Proj*, N>& projs, ConstMatrixRef<float> x,
                             const std::array<MatrixMap<float>*, N>& out, Workspace<float>& ws) {
    for (std::size_t i = 0; i < N; ++i) forward(*projs[i], x, *out[i], ws);
  }
};

/// The attention layer over any projection type (Linear<float> for MultiHeadAttention, BitLinear for
/// BitNet); an optional RMSNorm on the attention output before o_proj (BitNet's attn_sub_norm).
template <class Proj>
class BasicMultiHeadAttention {
 public:
  BasicMultiHeadAttention() = default;

  /// From projections q [H*d, hidden], k/v [Hkv*d, hidden], o [hidden, H*d], and an optional norm of
  /// the attention output ([H*d]; pass a default-constructed RMSNorm for none).
  BasicMultiHeadAttention(const AttentionConfig& cfg, Proj q, Proj k, Proj v, Proj o,
                          RMSNorm<float> out_norm = {}, std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)),
        o_(std::move(o)), out_norm_(std::move(out_norm)) {
    const Index H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads, d = cfg_.head_dim, D = cfg_.hidden_size;
    check_shape(where(), "q_proj", q_.out_features(), q_.in_features(), H * d, D);
    check_shape(where(), "k_proj", k_.out_features(), k_.in_features(), Hkv * d, D);
    check_shape(where(), "v_proj", v_.out_features(), v_.in_features(), Hkv * d, D);
    check_shape(where(), "o_proj", o_.out_features(), o_.in_features(), D, H * d);
    check(!has_out_norm() || out_norm_.config().hidden_size == H * d, ErrorKind::shape_mismatch, where(),
          "attention output norm has ", out_norm_.config().hidden_size, " weights, expected ", H * d);
    if (cfg_.sinks) sinks_.setZero(H);
    init_positions();
  }

  /// Zero Linear projections of the configured shapes (fill them through q_proj() ...).
  explicit BasicMultiHeadAttention(const AttentionConfig& cfg, std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)) {
    const Index H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads, d = cfg_.head_dim;
    q_ = Linear<float>({cfg_.hidden_size, H * d, cfg_.qkv_bias}, join_name(name_, "q_proj"));
    k_ = Linear<float>({cfg_.hidden_size, Hkv * d, cfg_.qkv_bias}, join_name(name_, "k_proj"));
    v_ = Linear<float>({cfg_.hidden_size, Hkv * d, cfg_.qkv_bias}, join_name(name_, "v_proj"));
    o_ = Linear<float>({H * d, cfg_.hidden_size, cfg_.o_bias}, join_name(name_, "o_proj"));
    if (cfg_.sinks) sinks_.setZero(H);
    init_positions();
  }

  /// Load `<prefix>.{q,k,v,o}_proj.weight` (+ `.bias`) and `<prefix>.sinks` from a checkpoint
  /// (Linear projections).
  static BasicMultiHeadAttention load(const SafeTensors& st, const std::string& prefix, const AttentionConfig& cfg) {
    BasicMultiHeadAttention a(cfg, prefix);
    const auto& c = a.cfg_;
    const Index H = c.num_attention_heads, Hkv = c.num_key_value_heads, d = c.head_dim;
    a.q_ = Linear<float>::load(st, join_name(prefix, "q_proj"), {c.hidden_size, H * d, c.qkv_bias});
    a.k_ = Linear<float>::load(st, join_name(prefix, "k_proj"), {c.hidden_size, Hkv * d, c.qkv_bias});
    a.v_ = Linear<float>::load(st, join_name(prefix, "v_proj"), {c.hidden_size, Hkv * d, c.qkv_bias});
    a.o_ = Linear<float>::load(st, join_name(prefix, "o_proj"), {H * d, c.hidden_size, c.o_bias});
    if (c.sinks) a.sinks_ = st.vector<float>(join_name(prefix, "sinks"), H, a.where());
    return a;
  }

  const AttentionConfig& config() const noexcept { return cfg_; }
  Proj& q_proj() noexcept { return q_; }
  Proj& k_proj() noexcept { return k_; }
  Proj& v_proj() noexcept { return v_; }
  Proj& o_proj() noexcept { return o_; }
  const Proj& q_proj() const noexcept { return q_; }
  const Proj& k_proj() const noexcept { return k_; }
  const Proj& v_proj() const noexcept { return v_; }
  const Proj& o_proj() const noexcept { return o_; }
  Vector<float>& sinks() noexcept { return sinks_; }  // [n_heads] or empty
  bool has_out_norm() const noexcept { return out_norm_.config().hidden_size > 0; }
  const RMSNorm<float>& out_norm() const noexcept { return out_norm_; }

  /// Self-attention over one sequence. x, y: [T, hidden] (y must not overlap x).
  /// position_ids: [T] RoPE/xPos positions (null: 0..T-1). key_mask: [T] 1 = attend, 0 = padding
  /// (null: all attended). Queries whose keys are all masked give 0.
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws,
               const std::int64_t* position_ids = nullptr, const std::uint8_t* key_mask = nullptr) const {
    check_io(x, y);
    const Index T = x.rows();
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto q = ws.matrix(T, q_.out_features()), k = ws.matrix(T, k_.out_features()), v = ws.matrix(T, v_.out_features());
    project(x, q, k, v, position_ids, 0, ws);
    const KVSpan<float> span = projection_span(k, v, 0);
    AttentionMask mask = make_mask();
    if (key_mask) {
      check(cfg_.dilated.empty(), ErrorKind::invalid_argument, where(), "a key mask is not supported with dilated attention");
      mask.key_valid = key_mask;
      mask.key_valid_len = T;
    }
    attend_and_project(q, 0, &span, 1, mask, y, ws);
  }

  /// Incremental decoding with a cache (one or more new tokens; the first call with the prompt is
  /// the prefill). Positions continue from cache.next_position(). Throws, changing nothing, if the
  /// cache cannot take the tokens or does not match this layer's heads.
  template <class E>
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, KVCache<E>& cache, Workspace<float>& ws) const {
    check_io(x, y);
    const auto& cc = cache.config();
    check(cc.n_kv_heads == cfg_.num_key_value_heads && cc.head_dim == cfg_.head_dim && cc.v_head_dim == cfg_.head_dim,
          ErrorKind::config, where(), "cache has ", cc.n_kv_heads, " kv heads of dim ", cc.head_dim, "/", cc.v_head_dim,
          ", the layer ", cfg_.num_key_value_heads, " of dim ", cfg_.head_dim);
    check(cfg_.position != PositionEncoding::xpos, ErrorKind::config, where(),
          "xPos re-scales cached keys relative to the newest position; decoding with a KV cache is not supported");
    const Index T = x.rows();
    check(cache.can_append(T), ErrorKind::capacity, where(), "the KV cache holds ", cache.size(), " of ",
          cache.capacity(), " tokens and cannot take ", T, " more (eviction = none)");
    check(cfg_.dilated.empty() || cc.eviction == CacheEviction::none, ErrorKind::config, where(),
          "dilated (LongNet) attention needs a KV cache without eviction");
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto q = ws.matrix(T, q_.out_features()), k = ws.matrix(T, k_.out_features()), v = ws.matrix(T, v_.out_features());
    const std::int64_t pos0 = cache.next_position();
    project(x, q, k, v, nullptr, pos0, ws);
    if (!cfg_.dilated.empty()) {
      // LongNet's segments start at position 0: attend over the whole cache as one span, so the new
      // tokens are appended first (no eviction: nothing they need can be lost).
      cache.append(k, v);
      std::array<KVSpan<E>, 3> all;
      const std::size_t n = cache.spans(all);
      attend_and_project(q, pos0, all.data(), n, make_mask(), y, ws);
      return;
    }
    // The new tokens' K/V in the cache's storage type, so they are used exactly as they will be read
    // back from the cache in later steps.
    std::array<KVSpan<E>, 4> spans;
    std::array<KVSpan<E>, 3> cached;
    std::size_t n = cache.spans(cached);
    for (std::size_t i = 0; i < n; ++i) spans[i] = cached[i];
    if constexpr (std::is_same_v<E, float>) {
      spans[n++] = projection_span(k, v, pos0);
    } else {
      E* conv = ws.template raw<E>(static_cast<std::size_t>(k.size() + v.size()));
      for (Index i = 0; i < k.size(); ++i) conv[i] = from_float<E>(k.data()[i]);
      for (Index i = 0; i < v.size(); ++i) conv[k.size() + i] = from_float<E>(v.data()[i]);
      KVSpan<E> s;
      s.k = conv;
      s.v = conv + k.size();
      s.k_ld = k.cols();
      s.v_ld = v.cols();
      s.k_head_stride = s.v_head_stride = cfg_.head_dim;
      s.tokens = T;
      s.pos0 = pos0;
      spans[n++] = s;
    }
    attend_and_project(q, pos0, spans.data(), n, make_mask(), y, ws);
    cache.append(k, v);
  }

  /// Several sequences packed row-wise: sequence s is rows [offsets[s], offsets[s + 1]) of x and y
  /// (offsets: n_seqs + 1 increasing values, offsets[0] = 0, offsets[n_seqs] = x.rows()). Each
  /// sequence attends only to itself, positions restarting at 0.
  void forward_packed(ConstMatrixRef<float> x, const Index* offsets, Index n_seqs, MatrixRef<float> y,
                      Workspace<float>& ws) const {
    check_io(x, y);
    check(n_seqs >= 0 && (n_seqs == 0 || offsets != nullptr), ErrorKind::invalid_argument, where(),
          "null offsets for ", n_seqs, " sequences");
    check(n_seqs == 0 ? x.rows() == 0 : (offsets[0] == 0 && offsets[n_seqs] == x.rows()), ErrorKind::invalid_argument,
          where(), "offsets must start at 0 and end at the row count ", x.rows());
    for (Index s = 0; s < n_seqs; ++s)
      check(offsets[s + 1] >= offsets[s], ErrorKind::invalid_argument, where(), "offsets decrease at sequence ", s,
            ": ", offsets[s], " > ", offsets[s + 1]);
    for (Index s = 0; s < n_seqs; ++s) {
      const Index a = offsets[s], len = offsets[s + 1] - a;
      forward(x.middleRows(a, len), y.middleRows(a, len), ws);
    }
  }

  /// Cross-attention: queries from x [Tq, hidden], keys and values from memory [Tk, hidden] (an
  /// encoder's output), every key visible to every query (positions are not applied).
  void forward_cross(ConstMatrixRef<float> x, ConstMatrixRef<float> memory, MatrixRef<float> y,
                     Workspace<float>& ws) const {
    check_io(x, y);
    check_shape(where(), "memory", memory.rows(), memory.cols(), -1, cfg_.hidden_size);
    if (x.rows() == 0) return;
    typename Workspace<float>::Frame frame(ws);
    auto q = ws.matrix(x.rows(), q_.out_features());
    auto k = ws.matrix(memory.rows(), k_.out_features()), v = ws.matrix(memory.rows(), v_.out_features());
    Ops::forward(q_, x, q, ws);
    Ops::template forward_shared<2>({&k_, &v_}, memory, {&k, &v}, ws);
    const KVSpan<float> span = projection_span(k, v, 0);
    AttentionMask mask = make_mask();
    mask.causal = false;
    mask.sliding_window = 0;
    mask.alibi_slopes = nullptr;
    attend_and_project(q, 0, &span, 1, mask, y, ws, /*dense=*/true);
  }

  Index parameters() const noexcept {
    return q_.parameters() + k_.parameters() + v_.parameters() + o_.parameters() + sinks_.size() +
           (has_out_norm() ? out_norm_.config().hidden_size : 0);
  }

 private:
  using Ops = ProjectionOps<Proj>;

  std::string where() const { return layer_where("MultiHeadAttention", name_); }

  static AttentionConfig resolve(AttentionConfig c, const std::string& name) {
    const std::string w = layer_where("MultiHeadAttention", name);
    check(c.hidden_size > 0 && c.num_attention_heads > 0, ErrorKind::config, w, "hidden_size = ", c.hidden_size,
          " and num_attention_heads = ", c.num_attention_heads, " must be >= 1");
    if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
    check(c.num_key_value_heads > 0 && c.num_attention_heads % c.num_key_value_heads == 0, ErrorKind::config, w,
          "num_attention_heads = ", c.num_attention_heads, " must be a multiple of num_key_value_heads = ",
          c.num_key_value_heads);
    if (c.head_dim == 0) {
      check(c.hidden_size % c.num_attention_heads == 0, ErrorKind::config, w, "hidden_size = ", c.hidden_size,
            " is not divisible by num_attention_heads = ", c.num_attention_heads, "; set head_dim");
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    check(c.head_dim > 0, ErrorKind::config, w, "head_dim = ", c.head_dim, " must be >= 1");
    if (c.scale == 0.0) c.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    check(c.scale > 0 && std::isfinite(c.scale), ErrorKind::config, w, "scale = ", c.scale, " must be > 0");
    check(c.sliding_window >= 0 && c.softcap >= 0, ErrorKind::config, w, "sliding_window = ", c.sliding_window,
          " and softcap = ", c.softcap, " must be >= 0");
    if (!c.dilated.empty()) {
      check_dilated_branches(c.dilated, w.c_str());
      check(c.sliding_window == 0 && c.softcap == 0 && !c.sinks && c.position != PositionEncoding::alibi,
            ErrorKind::config, w, "dilated (LongNet) attention does not combine with sliding_window, softcap, sinks or ALiBi");
    }
    if (c.position == PositionEncoding::rope && c.rope.head_dim == 0) c.rope.head_dim = c.head_dim;
    if (c.position == PositionEncoding::rope)
      check(c.rope.head_dim == c.head_dim, ErrorKind::config, w, "rope.head_dim = ", c.rope.head_dim,
            " differs from head_dim = ", c.head_dim);
    return c;
  }

  void init_positions() {
    if (cfg_.position == PositionEncoding::rope) rope_ = std::make_shared<const RotaryEmbedding>(cfg_.rope);
    if (cfg_.position == PositionEncoding::xpos) xpos_ = std::make_shared<const XPos>(cfg_.head_dim, cfg_.xpos_scale_base);
    if (cfg_.position == PositionEncoding::alibi) {
      const auto s = alibi_slopes(cfg_.num_attention_heads);
      slopes_.assign(s.begin(), s.end());
    }
  }

  void check_io(const ConstMatrixRef<float>& x, const MatrixRef<float>& y) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.hidden_size);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.hidden_size);
  }

  // q/k/v projections and positions. Positions are position_ids, or pos0 + row.
  void project(const ConstMatrixRef<float>& x, MatrixMap<float>& q, MatrixMap<float>& k, MatrixMap<float>& v,
               const std::int64_t* position_ids, std::int64_t pos0, Workspace<float>& ws) const {
    Ops::template forward_shared<3>({&q_, &k_, &v_}, x, {&q, &k, &v}, ws);
    if (cfg_.position != PositionEncoding::rope && cfg_.position != PositionEncoding::xpos) return;
    const std::int64_t* pos = position_ids;
    if (!pos) {
      std::int64_t* own = ws.template raw<std::int64_t>(static_cast<std::size_t>(x.rows()));
      for (Index i = 0; i < x.rows(); ++i) own[i] = pos0 + i;
      pos = own;
    }
    if (rope_) {  // one cos/sin table for q and k
      const Index half = rope_->rotary_dim() / 2;
      auto cos = ws.matrix(x.rows(), half), sin = ws.matrix(x.rows(), half);
      rope_->cos_sin_table<float>(pos, x.rows(), cos, sin);
      apply_rotary<float>(q, cfg_.num_attention_heads, cfg_.head_dim, rope_->layout(), cos, sin);
      apply_rotary<float>(k, cfg_.num_key_value_heads, cfg_.head_dim, rope_->layout(), cos, sin);
    } else if (xpos_) {  // torchscale centres on the middle of the sequence; q up-, k down-scaled
      const std::int64_t centre = XPos::torchscale_centre(x.rows());
      xpos_->apply_at<float>(q, cfg_.num_attention_heads, pos, centre, false);
      xpos_->apply_at<float>(k, cfg_.num_key_value_heads, pos, centre, true);
    }
  }

  KVSpan<float> projection_span(const MatrixMap<float>& k, const MatrixMap<float>& v, std::int64_t pos0) const {
    KVSpan<float> s;
    s.k = k.data();
    s.v = v.data();
    s.k_ld = k.outerStride();
    s.v_ld = v.outerStride();
    s.k_head_stride = s.v_head_stride = cfg_.head_dim;
    s.tokens = k.rows();
    s.pos0 = pos0;
    return s;
  }

  AttentionMask make_mask() const {
    AttentionMask m;
    m.causal = cfg_.causal;
    m.sliding_window = cfg_.sliding_window;
    m.softcap = static_cast<float>(cfg_.softcap);
    if (!slopes_.empty()) m.alibi_slopes = slopes_.data();
    m.alibi_symmetric = cfg_.alibi_form == AlibiForm::symmetric;
    if (cfg_.sinks) m.sinks = sinks_.data();
    return m;
  }

  template <class E, class Policy>
  void attend_and_project(const MatrixMap<float>& q, std::int64_t q_pos0, const KVSpan<E>* spans, std::size_t n,
                          const Policy& mask, MatrixRef<float> y, Workspace<float>& ws, bool dense = false) const {
    const AttentionDims dims{cfg_.num_attention_heads, cfg_.num_key_value_heads, cfg_.head_dim, cfg_.head_dim,
                             static_cast<float>(cfg_.scale)};
    auto attn = ws.matrix(q.rows(), q.cols());  // [T, n_heads * head_dim]
    const AttentionIO io{q.data(), q.outerStride(), q.rows(), q_pos0, attn.data(), attn.outerStride(), nullptr, 0};
    if (!cfg_.dilated.empty() && !dense) {
      check(n == 1 && spans[0].pos0 == 0, ErrorKind::invalid_argument, where(),
            "dilated attention needs the keys as one span from position 0");
      dilated_attention(dims, io, spans[0], cfg_.dilated, cfg_.causal, ws, "MultiHeadAttention (dilated)");
    } else {
      flash_attention(dims, io, spans, n, mask, ws, "MultiHeadAttention");
    }
    if (has_out_norm()) out_norm_.forward(attn, attn);
    Ops::forward(o_, attn, y, ws);
  }

  AttentionConfig cfg_;
  std::string name_;
  Proj q_, k_, v_, o_;
  RMSNorm<float> out_norm_;                       // [n_heads * head_dim], or none (hidden_size 0)
  Vector<float> sinks_;                           // [n_heads] or empty
  std::shared_ptr<const RotaryEmbedding> rope_;   // immutable: shared by copies
  std::shared_ptr<const XPos> xpos_;
  std::vector<float> slopes_;                     // ALiBi [n_heads] or empty
};

/// MHA / GQA / MQA with Linear projections (Hugging Face Llama names).
using MultiHeadAttention = BasicMultiHeadAttention<Linear<float>>;

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
