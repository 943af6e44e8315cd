#pragma once
// GatedRetention: the data-dependent-decay retention of YOCO's self-decoder (Sun et al. 2024, "You
// Only Cache Once: Decoder-Decoder Architectures for Language Models", arXiv:2405.05254), with the
// semantics and checkpoint names of unilm YOCO/yoco/models/decoder/gate_retention.py (GateRetention)
// and its kernels (kernel/gate_recurrent.py: chunk_gate_retention, recurrent_gate_retention).
// Docs: docs/retention.md.
//
// Shapes: x, y [T, embed_dim]; H heads of head_dim d = embed_dim / H (keys and values alike).
//   q = x Wq^T, k = x Wk^T, v = x Wv^T, g = x Wg^T                          [T, H*d] each
//   gt = x Wgt^T                                                             [T, H] (gt_proj)
//   q, k rotated per head: interleaved pairs (x[2j], x[2j+1]) by angle t * theta_j,
//     theta_j = 1 / rope_theta^(linspace(0, 1, d/2)[j])         (SelfDecoder.build_rel_pos, float32)
//   k scaled by d^-0.5                                            (inside the reference kernels)
//   log decay a_t,h = logsigmoid(gt_t,h) / gate_logit_normalizer (16)   (<= 0: decay in (0, 1])
//   per head a state S [d, d]:  S_t = exp(a_t) S_{t-1} + k_t^T v_t,   o_t = q_t S_t
//     i.e. o_t = sum_{j<=t} (q_t . k_j) exp(a_{j+1} + ... + a_t) v_j   (no normalisation of any kind)
//   y = out_proj( swish(g) * subln(o) )      subln: RMSNorm over each head's d values, no affine,
//                                            eps = norm_eps (YOCOArgs default 1e-5); swiglu(g, o)
// Two forms, equal up to rounding:
//   recurrent  one token at a time, the SIMD step of kernels/retention.hpp with a = exp(a_t), b = 1
//              (O(d^2) per head and token, whatever the history);
//   chunkwise  chunks of B tokens, G_i = a_{c0} + ... + a_{c0+i} (cumulative log decay in the chunk):
//              o_i = sum_{j<=i in chunk} (q_i . k_j) exp(G_i - G_j) v_j + exp(G_i) q_i U
//              U' = exp(G_{L-1}) U + K^T diag(exp(G_{L-1} - G_j)) V       (U: the carried state)
//              GEMMs per chunk ([B, B] scores, [d, d] state), no T x T matrix.
// The reference pads a prefill to a multiple of 256 tokens and masks the padding out of the state
// (index_mask); the rows kept and the state are those of the unpadded sequence, so the last chunk
// here is just shorter.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/activation.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../kernels/retention.hpp"
#include "../kernels/rope.hpp"
#include "../linear/linear.hpp"
#include "../ops/activation.hpp"
#include "../ops/matmul.hpp"
#include "../ops/norm.hpp"
#include "../ops/rows.hpp"
#include "../position/rope.hpp"
#include "retention_forms.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

struct GatedRetentionConfig {
  Index embed_dim = 0;                 ///< YOCOArgs `dim`
  Index num_heads = 0;                 ///< YOCOArgs `n_self_heads`
  double norm_eps = 1e-5;              ///< YOCOArgs `norm_eps`: the subln eps
  double rope_theta = 10000.0;         ///< YOCOArgs `rope_theta`
  double gate_logit_normalizer = 16.0; ///< GateRetention `gate_logit_normalizer`
  Index chunk_size = 256;              ///< the reference's chunk_gate_retention chunk (SelfDecoder.block_size)
};

/// The recurrent state of one GatedRetention layer: [H * d, d], O(1) in the sequence length.
template <class T>
struct GatedRetentionState {
  Index num_heads = 0, head_dim = 0;
  std::int64_t position = 0;  ///< tokens consumed so far (the next token's rotation position)
  Matrix<T> kv;               ///< head h is rows [h*d, (h+1)*d): the reference's last_hidden_state [d_k, d_v]

  GatedRetentionState() = default;
  GatedRetentionState(Index heads, Index d) : num_heads(heads), head_dim(d) { kv.setZero(heads * d, d); }
  void reset() {
    position = 0;
    kv.setZero();
  }
  /// Bytes held, independent of how many tokens were consumed.
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(kv.size()) * sizeof(T); }
};

template <class T>
class GatedRetention : public RetentionForms<GatedRetention<T>, GatedRetentionState<T>, T> {
  friend class RetentionForms<GatedRetention<T>, GatedRetentionState<T>, T>;

 public:
  GatedRetention() = default;

  /// Zero projections of the configured shapes (fill them through q_proj() ...).
  explicit GatedRetention(const GatedRetentionConfig& cfg, std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)) {
    const Index E = cfg_.embed_dim, H = cfg_.num_heads;
    q_ = Linear<T>({E, E, false}, join_name(name_, "q_proj"));
    k_ = Linear<T>({E, E, false}, join_name(name_, "k_proj"));
    v_ = Linear<T>({E, E, false}, join_name(name_, "v_proj"));
    g_ = Linear<T>({E, E, false}, join_name(name_, "g_proj"));
    gt_ = Linear<T>({E, H, false}, join_name(name_, "gt_proj"));
    out_ = Linear<T>({E, E, false}, join_name(name_, "out_proj"));
    init_tables();
  }

  /// From projections q, k, v, g, out [embed, embed] and gt [num_heads, embed] (no biases).
  GatedRetention(const GatedRetentionConfig& cfg, Linear<T> q, Linear<T> k, Linear<T> v, Linear<T> g, Linear<T> gt,
                 Linear<T> out, std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)),
        g_(std::move(g)), gt_(std::move(gt)), out_(std::move(out)) {
    const Index E = cfg_.embed_dim, H = cfg_.num_heads;
    check_shape(where(), "q_proj", q_.out_features(), q_.in_features(), E, E);
    check_shape(where(), "k_proj", k_.out_features(), k_.in_features(), E, E);
    check_shape(where(), "v_proj", v_.out_features(), v_.in_features(), E, E);
    check_shape(where(), "g_proj", g_.out_features(), g_.in_features(), E, E);
    check_shape(where(), "gt_proj", gt_.out_features(), gt_.in_features(), H, E);
    check_shape(where(), "out_proj", out_.out_features(), out_.in_features(), E, E);
    init_tables();
  }

  /// Load `<prefix>.{q,k,v,g,gt,out}_proj.weight` (YOCO names, e.g. prefix `self_decoder.layers.0.mixer`).
  static GatedRetention load(const SafeTensors& st, const std::string& prefix, const GatedRetentionConfig& cfg) {
    const GatedRetentionConfig c = resolve(cfg, prefix);
    const Index E = c.embed_dim, H = c.num_heads;
    auto lin = [&](const char* n, Index out) { return Linear<T>::load(st, join_name(prefix, n), {E, out, false}); };
    Linear<T> q = lin("q_proj", E), k = lin("k_proj", E), v = lin("v_proj", E), g = lin("g_proj", E);
    Linear<T> gt = lin("gt_proj", H), out = lin("out_proj", E);
    return GatedRetention(c, std::move(q), std::move(k), std::move(v), std::move(g), std::move(gt), std::move(out),
                          prefix);
  }

  const GatedRetentionConfig& config() const noexcept { return cfg_; }
  const std::string& name() const noexcept { return name_; }
  Index head_dim() const noexcept { return cfg_.embed_dim / cfg_.num_heads; }
  Linear<T>& q_proj() noexcept { return q_; }
  Linear<T>& k_proj() noexcept { return k_; }
  Linear<T>& v_proj() noexcept { return v_; }
  Linear<T>& g_proj() noexcept { return g_; }
  Linear<T>& gt_proj() noexcept { return gt_; }
  Linear<T>& out_proj() noexcept { return out_; }
  const Linear<T>& q_proj() const noexcept { return q_; }
  const Linear<T>& k_proj() const noexcept { return k_; }
  const Linear<T>& v_proj() const noexcept { return v_; }
  const Linear<T>& g_proj() const noexcept { return g_; }
  const Linear<T>& gt_proj() const noexcept { return gt_; }
  const Linear<T>& out_proj() const noexcept { return out_; }
  /// The rotation (interleaved pairs, linspace frequencies theta_j: rotary().inv_freq()).
  const RotaryEmbedding& rotary() const noexcept { return *rope_; }

  GatedRetentionState<T> make_state() const { return GatedRetentionState<T>(cfg_.num_heads, head_dim()); }

  Index parameters() const noexcept {
    return q_.parameters() + k_.parameters() + v_.parameters() + g_.parameters() + gt_.parameters() +
           out_.parameters();
  }

 private:
  struct Buffers {
    MatrixMap<T> q, k, v, g, o, a;  // q, k, v, g, o [T, H*d]; a [T, H] log decays
  };

  std::string where() const { return layer_where("GatedRetention", name_); }

  static GatedRetentionConfig resolve(GatedRetentionConfig c, const std::string& name) {
    const std::string w = layer_where("GatedRetention", name);
    check(c.embed_dim > 0 && c.num_heads > 0, ErrorKind::config, w, "embed_dim = ", c.embed_dim,
          " and num_heads = ", c.num_heads, " must be >= 1");
    check(c.embed_dim % c.num_heads == 0 && (c.embed_dim / c.num_heads) % 2 == 0, ErrorKind::config, w,
          "embed_dim = ", c.embed_dim, " must be num_heads = ", c.num_heads, " times an even head_dim");
    check(c.norm_eps >= 0 && std::isfinite(c.norm_eps), ErrorKind::config, w, "norm_eps = ", c.norm_eps,
          " must be finite and >= 0");
    check(c.rope_theta > 0 && std::isfinite(c.rope_theta), ErrorKind::config, w, "rope_theta = ", c.rope_theta,
          " must be finite and > 0");
    check(c.gate_logit_normalizer > 0 && std::isfinite(c.gate_logit_normalizer), ErrorKind::config, w,
          "gate_logit_normalizer = ", c.gate_logit_normalizer, " must be finite and > 0");
    check(c.chunk_size >= 1, ErrorKind::config, w, "chunk_size = ", c.chunk_size, " must be >= 1");
    return c;
  }

  // theta_j = 1 / theta^linspace(0, 1, half)[j] (the reference's build_rel_pos), interleaved pairs.
  void init_tables() { rope_ = std::make_shared<const RotaryEmbedding>(RopeConfig::linspace_interleaved(head_dim(), cfg_.rope_theta)); }

  void check_io(const ConstMatrixRef<T>& x, const MatrixRef<T>& y) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.embed_dim);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.embed_dim);
  }

  void check_state(const GatedRetentionState<T>& s) const {
    const Index H = cfg_.num_heads, d = head_dim();
    check(s.num_heads == H && s.head_dim == d && s.kv.rows() == H * d && s.kv.cols() == d,
          ErrorKind::shape_mismatch, where(), "state has ", s.num_heads, " heads, kv ",
          shape_str({s.kv.rows(), s.kv.cols()}), "; expected ", H, " heads, kv ", shape_str({H * d, d}),
          " (use make_state())");
    check(s.position >= 0, ErrorKind::invalid_argument, where(), "state position = ", s.position, " must be >= 0");
  }

  // Projections, rotation, key scaling, log decays (row i at position pos0 + i).
  Buffers project(const ConstMatrixRef<T>& x, std::int64_t pos0, Workspace<T>& ws) const {
    const Index n = x.rows(), E = cfg_.embed_dim, H = cfg_.num_heads;
    Buffers b{ws.matrix(n, E), ws.matrix(n, E), ws.matrix(n, E), ws.matrix(n, E), ws.matrix(n, E), ws.matrix(n, H)};
    q_.forward(x, b.q);
    k_.forward(x, b.k);
    v_.forward(x, b.v);
    g_.forward(x, b.g);
    gt_.forward(x, b.a);
    const T scaling = static_cast<T>(1.0 / std::sqrt(static_cast<double>(head_dim())));
    const double inv_norm = 1.0 / cfg_.gate_logit_normalizer;
    rope_->apply_from<T>(b.q, H, b.k, H, pos0);  // the reference: index * angle in float32, then cos / sin
    ops::detail::for_each_row(n, E, [&](Index i) {
      T* kr = b.k.data() + i * b.k.outerStride();
      for (Index e = 0; e < E; ++e) kr[e] *= scaling;
      T* ar = b.a.data() + i * b.a.outerStride();
      for (Index h = 0; h < H; ++h) {  // logsigmoid(z) = min(z, 0) - log1p(exp(-|z|))
        const double z = static_cast<double>(ar[h]);
        ar[h] = static_cast<T>((std::min(z, 0.0) - std::log1p(std::exp(-std::abs(z)))) * inv_norm);
      }
    });
    return b;
  }

  // subln (RMS per head, no affine), swish gate (swiglu(g, o) = silu(g) * o), out_proj.
  void finish(Buffers& b, MatrixRef<T> y) const {
    const Vector<T> none;
    ops::group_norm<T>(b.o, cfg_.num_heads, ops::NormKind::rms, none, none, b.o, static_cast<T>(cfg_.norm_eps));
    ops::glu<T>(b.g, b.o, b.o, Activation::silu);
    out_.forward(b.o, y);
  }

  void recurrent_core(Buffers& b, GatedRetentionState<T>& st) const {
    const Index n = b.q.rows(), H = cfg_.num_heads, d = head_dim();
    const Index min_heads = d * d >= 16384 ? 1 : H + 1;  // thread only when a head's state is large
    for (Index t = 0; t < n; ++t) {
      parallel_for(0, H, min_heads, [&](Index h) {
        const T a = static_cast<T>(std::exp(static_cast<double>(b.a(t, h))));  // exp(logsigmoid(gt) / 16)
        kernels::retention_step(b.q.row(t).data() + h * d, b.k.row(t).data() + h * d, b.v.row(t).data() + h * d,
                                st.kv.data() + h * d * d, static_cast<std::size_t>(d), b.o.row(t).data() + h * d,
                                static_cast<std::size_t>(d), static_cast<std::size_t>(d), a, T(1));
      });
    }
  }

  void chunkwise(ConstMatrixRef<T> x, MatrixRef<T> y, GatedRetentionState<T>* state, Workspace<T>& ws,
                 Index chunk_size) const {
    check_io(x, y);
    if (chunk_size == 0) chunk_size = cfg_.chunk_size;
    check(chunk_size >= 1, ErrorKind::invalid_argument, where(), "chunk_size = ", chunk_size, " must be >= 1");
    if (state) check_state(*state);
    const Index n = x.rows();
    if (n == 0) return;
    typename Workspace<T>::Frame frame(ws);
    Buffers b = project(x, state ? state->position : 0, ws);
    chunk_core(b, state, chunk_size, ws);
    if (state) state->position += n;
    finish(b, y);
  }

  void chunk_core(Buffers& b, GatedRetentionState<T>* st, Index B, Workspace<T>& ws) const {
    const Index n = b.q.rows(), H = cfg_.num_heads, d = head_dim();
    const Index Bc = std::min(B, n);
    const int threads = static_cast<int>(std::max<Index>(1, std::min<Index>(num_threads(), H)));
    // Per thread: scores [Bc, Bc], state U [d, d], decayed queries [Bc, d], weighted values [Bc, d],
    // exp(G) and exp(G_last - G) [Bc] each.
    const Index per = Bc * Bc + d * d + 2 * Bc * d + 2 * Bc;
    T* scratch = ws.template raw<T>(static_cast<std::size_t>(threads) * static_cast<std::size_t>(per));
    double* gs = ws.template raw<double>(static_cast<std::size_t>(threads) * static_cast<std::size_t>(Bc));
    parallel_for_dynamic(H, threads, [&](Index h, int thread) {
      T* base = scratch + static_cast<std::size_t>(thread) * static_cast<std::size_t>(per);
      double* G = gs + static_cast<std::size_t>(thread) * static_cast<std::size_t>(Bc);
      MatrixMap<T> U(base + Bc * Bc, d, d, Eigen::OuterStride<>(d));
      if (st)
        U = st->kv.middleRows(h * d, d);
      else
        U.setZero();
      T* eg = base + Bc * Bc + d * d + 2 * Bc * d;  // exp(G_i)
      T* el = eg + Bc;                              // exp(G_{L-1} - G_j)
      for (Index c0 = 0; c0 < n; c0 += B) {
        const Index L = std::min(B, n - c0);
        auto Q = b.q.block(c0, h * d, L, d);
        auto K = b.k.block(c0, h * d, L, d);
        auto Vc = b.v.block(c0, h * d, L, d);
        MatrixMap<T> A(base, L, L, Eigen::OuterStride<>(L));
        MatrixMap<T> Qd(base + Bc * Bc + d * d, L, d, Eigen::OuterStride<>(d));
        MatrixMap<T> Vw(base + Bc * Bc + d * d + Bc * d, L, d, Eigen::OuterStride<>(d));
        auto O = b.o.block(c0, h * d, L, d);
        double acc = 0;
        for (Index i = 0; i < L; ++i) {
          acc += static_cast<double>(b.a(c0 + i, h));
          G[i] = acc;
          eg[i] = static_cast<T>(std::exp(acc));
        }
        for (Index j = 0; j < L; ++j) el[j] = static_cast<T>(std::exp(acc - G[j]));
        // Inner-chunk scores with the decay mask exp(G_i - G_j), j <= i.
        matmul<T>(Q, K, A, MatmulOp::nt);
        for (Index i = 0; i < L; ++i) {
          T* row = A.row(i).data();
          for (Index j = 0; j <= i; ++j) row[j] *= static_cast<T>(std::exp(G[i] - G[j]));
          for (Index j = i + 1; j < L; ++j) row[j] = T(0);
        }
        for (Index i = 0; i < L; ++i) Qd.row(i) = Q.row(i) * eg[i];
        if (Vc.allFinite()) {
          matmul<T>(A, Vc, O);
        } else {  // 0 * NaN = NaN: keep a non-finite future value out of the earlier rows
          for (Index i = 0; i < L; ++i) matmul<T>(A.row(i).head(i + 1), Vc.topRows(i + 1), O.row(i));
        }
        matmul<T>(Qd, U, O, MatmulOp::nn, true);
        // Carry the state past this chunk.
        for (Index j = 0; j < L; ++j) Vw.row(j) = Vc.row(j) * el[j];
        U *= eg[L - 1];
        matmul<T>(K, Vw, U, MatmulOp::tn, true);
      }
      if (st) st->kv.middleRows(h * d, d) = U;
    });
  }

  GatedRetentionConfig cfg_;
  std::string name_;
  Linear<T> q_, k_, v_, g_, gt_, out_;  // q, k, v, g, out [E, E]; gt [H, E]
  std::shared_ptr<const RotaryEmbedding> rope_;  // immutable: shared by copies
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
