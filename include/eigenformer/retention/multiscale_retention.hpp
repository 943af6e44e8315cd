#pragma once
// MultiScaleRetention: RetNet's retention layer (Sun et al. 2023, "Retentive Network: A Successor to
// Transformer for Large Language Models", arXiv:2307.08621) with the semantics and checkpoint names of
// torchscale 0.3.0 (torchscale/component/multiscale_retention.py, and RetNetRelPos in
// torchscale/architecture/retnet.py). Docs: docs/retention.md.
//
// Shapes: x, y [T, embed_dim]; H heads, key_dim dk = embed_dim / H, head value dim dv = value_dim / H.
//   q = x Wq^T, k = (x Wk^T) * dk^-0.5, v = x Wv^T, g = x Wg^T           (q/k [T, H*dk], v/g [T, H*dv])
//   q, k rotated per head: interleaved pairs (x[2j], x[2j+1]) by angle t * theta_j,
//     theta_j = 1 / 10000^(linspace(0, 1, dk/2)[j])            (RetNetRelPos.angle, duplicated per pair)
//   per-head decay gamma_h = 1 - 2^(-5 - h)                      (RetNetRelPos.decay = log gamma_h)
//   o_t = retention of head h (one of the three forms below), [T, H*dv]
//   y = out_proj( gate_fn(g) * group_norm(o) )                   group_norm: RMS over each head's dv
//                                                                values, no affine, eps = layernorm_eps
// The three forms agree exactly before the group norm up to a positive factor per (token, head), which
// the group norm removes when eps = 0; with eps > 0 they differ slightly (torchscale issue #40):
//   parallel   o_t = sum_{j<=t} s_tj v_j / max(1, |sum_{j<=t} s_tj|),
//              s_tj = (q_t . k_j) gamma^(t-j) / sqrt(S_t),  S_t = sum_{m=0..t} gamma^m
//              (decay-matrix row normalisation, then the abs-sum normalisation of qk)
//   recurrent  per head a state kv [dk, dv] and a running scale s:
//              s' = s gamma + 1,  kv' = kv sqrt(s) gamma / sqrt(s') + k_t^T v_t / sqrt(s'),  o_t = q_t kv'
//              (s = 0 for an empty state, so the first token gives s = 1, kv = k^T v as in torchscale)
//   chunkwise  chunks of B tokens (i = position in the chunk); U = sum of gamma^(end - j) k_j^T v_j over
//              the tokens before the chunk (the carried state):
//              inner_t = sum_{j in chunk, j<=t} (q_t . k_j) gamma^(i-j) / sqrt(S_i)
//              cross_t = (q_t gamma^(i+1) / sqrt(S_i)) U
//              o_t = (inner_t v + cross_t) / max(inner_scale_t, cross_scale)
//              inner_scale_t = max(1, sum_j |inner_tj|), cross_scale = max(1, max_col sum_row |U| / S_{B-1})
//              (torchscale's inner/cross decays and scales; torchscale pads T to a multiple of B with
//              zero rows, which does not change the rows kept: here the last chunk is just shorter)
// Kernels: the parallel form works in blocks of 64 queries (a [64, t] score block, never [T, T] at
// once); the chunkwise form is GEMMs per chunk ([B, B] scores, [dk, dv] state, no T x T matrix); the
// recurrent form is the SIMD step of kernels/retention.hpp (O(dk * dv) per head and token, whatever
// the history).

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

struct RetentionConfig {
  Index embed_dim = 0;            ///< torchscale `decoder_embed_dim` (q/k width)
  Index value_dim = 0;            ///< torchscale `decoder_value_embed_dim`; 0 = embed_dim
  Index num_heads = 0;            ///< torchscale `decoder_retention_heads`
  double layernorm_eps = 1e-6;    ///< torchscale `layernorm_eps` (RetNetConfig default), the group-norm eps
  Activation gate_fn = Activation::silu;  ///< torchscale `gate_fn` ("swish"; "gelu" also allowed)
  Index chunk_size = 512;         ///< torchscale `recurrent_chunk_size`: the default of forward_chunkwise
};

/// The recurrent state of one MultiScaleRetention layer: O(1) in the sequence length.
template <class T>
struct RetentionState {
  Index num_heads = 0, key_dim = 0, head_dim = 0;
  std::int64_t position = 0;  ///< tokens consumed so far (the next token's rotation position)
  Matrix<T> kv;               ///< [num_heads * key_dim, head_dim]: head h is rows [h*dk, (h+1)*dk);
                              ///< torchscale's prev_key_value (transposed), already divided by sqrt(scale)
  Vector<T> scale;            ///< [num_heads] torchscale's running scale; 0 = empty

  RetentionState() = default;
  RetentionState(Index heads, Index dk, Index dv) : num_heads(heads), key_dim(dk), head_dim(dv) {
    kv.setZero(heads * dk, dv);
    scale.setZero(heads);
  }
  /// Back to the empty state (no allocation).
  void reset() {
    position = 0;
    kv.setZero();
    scale.setZero();
  }
  /// Bytes held, independent of how many tokens were consumed.
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(kv.size() + scale.size()) * sizeof(T); }
};

template <class T>
class MultiScaleRetention : public RetentionForms<MultiScaleRetention<T>, RetentionState<T>, T> {
  friend class RetentionForms<MultiScaleRetention<T>, RetentionState<T>, T>;

 public:
  MultiScaleRetention() = default;

  /// Zero projections of the configured shapes (fill them through q_proj() ...).
  explicit MultiScaleRetention(const RetentionConfig& cfg, std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)) {
    const Index E = cfg_.embed_dim, V = cfg_.value_dim;
    q_ = Linear<T>({E, E, false}, join_name(name_, "q_proj"));
    k_ = Linear<T>({E, E, false}, join_name(name_, "k_proj"));
    v_ = Linear<T>({E, V, false}, join_name(name_, "v_proj"));
    g_ = Linear<T>({E, V, false}, join_name(name_, "g_proj"));
    out_ = Linear<T>({V, E, false}, join_name(name_, "out_proj"));
    init_tables();
  }

  /// From projections q, k [embed, embed], v, g [value, embed], out [embed, value] (no biases).
  MultiScaleRetention(const RetentionConfig& cfg, Linear<T> q, Linear<T> k, Linear<T> v, Linear<T> g, Linear<T> out,
                      std::string name = {})
      : cfg_(resolve(cfg, name)), name_(std::move(name)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)),
        g_(std::move(g)), out_(std::move(out)) {
    const Index E = cfg_.embed_dim, V = cfg_.value_dim;
    check_shape(where(), "q_proj", q_.out_features(), q_.in_features(), E, E);
    check_shape(where(), "k_proj", k_.out_features(), k_.in_features(), E, E);
    check_shape(where(), "v_proj", v_.out_features(), v_.in_features(), V, E);
    check_shape(where(), "g_proj", g_.out_features(), g_.in_features(), V, E);
    check_shape(where(), "out_proj", out_.out_features(), out_.in_features(), E, V);
    init_tables();
  }

  /// Load `<prefix>.{q,k,v,g,out}_proj.weight` (torchscale names, e.g. prefix `layers.0.retention`).
  static MultiScaleRetention load(const SafeTensors& st, const std::string& prefix, const RetentionConfig& cfg) {
    const RetentionConfig c = resolve(cfg, prefix);
    const Index E = c.embed_dim, V = c.value_dim;
    auto lin = [&](const char* n, Index in, Index out) {
      return Linear<T>::load(st, join_name(prefix, n), {in, out, false});
    };
    // One at a time, so a missing or misshaped tensor is reported in checkpoint order.
    Linear<T> q = lin("q_proj", E, E), k = lin("k_proj", E, E), v = lin("v_proj", E, V), g = lin("g_proj", E, V);
    Linear<T> out = lin("out_proj", V, E);
    return MultiScaleRetention(c, std::move(q), std::move(k), std::move(v), std::move(g), std::move(out), prefix);
  }

  const RetentionConfig& config() const noexcept { return cfg_; }
  Index key_dim() const noexcept { return cfg_.embed_dim / cfg_.num_heads; }
  Index head_dim() const noexcept { return cfg_.value_dim / cfg_.num_heads; }
  Linear<T>& q_proj() noexcept { return q_; }
  Linear<T>& k_proj() noexcept { return k_; }
  Linear<T>& v_proj() noexcept { return v_; }
  Linear<T>& g_proj() noexcept { return g_; }
  Linear<T>& out_proj() noexcept { return out_; }
  const Linear<T>& q_proj() const noexcept { return q_; }
  const Linear<T>& k_proj() const noexcept { return k_; }
  const Linear<T>& v_proj() const noexcept { return v_; }
  const Linear<T>& g_proj() const noexcept { return g_; }
  const Linear<T>& out_proj() const noexcept { return out_; }
  /// log gamma_h per head as the layer uses it (float: torchscale's float32 buffer). [num_heads]
  const std::vector<double>& log_decays() const noexcept { return log_decay_; }
  /// The rotation (interleaved pairs, linspace frequencies theta_j = rotary().inv_freq(): torchscale's
  /// float32 `angle` buffer).
  const RotaryEmbedding& rotary() const noexcept { return *rope_; }

  /// An empty recurrent state for this layer.
  RetentionState<T> make_state() const { return RetentionState<T>(cfg_.num_heads, key_dim(), head_dim()); }

  /// Parallel form over one sequence starting at position 0. x, y: [T, embed_dim] (y may be x).
  void forward_parallel(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws) const {
    check_io(x, y);
    const Index n = x.rows();
    if (n == 0) return;
    typename Workspace<T>::Frame frame(ws);
    Buffers b = project(x, 0, ws);
    parallel_core(b, ws);
    finish(b, y);
  }

  Index parameters() const noexcept {
    return q_.parameters() + k_.parameters() + v_.parameters() + g_.parameters() + out_.parameters();
  }

 private:
  static constexpr Index kQueryBlock = 64;  // parallel form: queries per score block
  static constexpr Index kRowBlock = 1024;  // chunkwise form: rows per block (rounded up to whole chunks)

  struct Buffers {
    MatrixMap<T> q, k, v, g, o;  // q, k [T, H*dk]; v, g, o [T, H*dv]
  };

  std::string where() const { return layer_where("MultiScaleRetention", name_); }

  static RetentionConfig resolve(RetentionConfig c, const std::string& name) {
    const std::string w = layer_where("MultiScaleRetention", name);
    if (c.value_dim == 0) c.value_dim = c.embed_dim;
    check(c.embed_dim > 0 && c.value_dim > 0 && c.num_heads > 0, ErrorKind::config, w, "embed_dim = ", c.embed_dim,
          ", value_dim = ", c.value_dim, " and num_heads = ", c.num_heads, " must be >= 1");
    check(c.embed_dim % c.num_heads == 0 && (c.embed_dim / c.num_heads) % 2 == 0, ErrorKind::config, w,
          "embed_dim = ", c.embed_dim, " must be num_heads = ", c.num_heads, " times an even key_dim");
    check(c.value_dim % c.num_heads == 0, ErrorKind::config, w, "value_dim = ", c.value_dim,
          " is not divisible by num_heads = ", c.num_heads);
    check(c.layernorm_eps >= 0 && std::isfinite(c.layernorm_eps), ErrorKind::config, w,
          "layernorm_eps = ", c.layernorm_eps, " must be finite and >= 0");
    check(c.chunk_size >= 1, ErrorKind::config, w, "chunk_size = ", c.chunk_size, " must be >= 1");
    return c;
  }

  // RetNetRelPos buffers, rounded as torchscale's float32 ones for T = float.
  void init_tables() {
    rope_ = std::make_shared<const RotaryEmbedding>(RopeConfig::linspace_interleaved(key_dim(), 10000.0));
    log_decay_.resize(static_cast<std::size_t>(cfg_.num_heads));
    gamma_.resize(log_decay_.size());
    for (Index h = 0; h < cfg_.num_heads; ++h) {
      const T one_minus = T(1) - static_cast<T>(std::ldexp(1.0, -5 - static_cast<int>(h)));
      const T ld = static_cast<T>(std::log(static_cast<double>(one_minus)));
      log_decay_[static_cast<std::size_t>(h)] = static_cast<double>(ld);
      gamma_[static_cast<std::size_t>(h)] = static_cast<T>(std::exp(static_cast<double>(ld)));
    }
  }

  void check_io(const ConstMatrixRef<T>& x, const MatrixRef<T>& y) const {
    check_shape(where(), "input x", x.rows(), x.cols(), -1, cfg_.embed_dim);
    check_shape(where(), "output y", y.rows(), y.cols(), x.rows(), cfg_.embed_dim);
  }

  void check_state(const RetentionState<T>& s) const {
    check(s.num_heads == cfg_.num_heads && s.key_dim == key_dim() && s.head_dim == head_dim() &&
              s.kv.rows() == cfg_.num_heads * key_dim() && s.kv.cols() == head_dim() && s.scale.size() == cfg_.num_heads,
          ErrorKind::shape_mismatch, where(), "state has ", s.num_heads, " heads, kv ",
          shape_str({s.kv.rows(), s.kv.cols()}), ", scale [", s.scale.size(), "]; expected ", cfg_.num_heads,
          " heads, kv ", shape_str({cfg_.num_heads * key_dim(), head_dim()}), " (use make_state())");
    check(s.position >= 0, ErrorKind::invalid_argument, where(), "state position = ", s.position, " must be >= 0");
  }

  // Projections, key scaling and rotation (row i at position pos0 + i).
  Buffers project(const ConstMatrixRef<T>& x, std::int64_t pos0, Workspace<T>& ws) const {
    const Index n = x.rows(), E = cfg_.embed_dim, V = cfg_.value_dim;
    Buffers b{ws.matrix(n, E), ws.matrix(n, E), ws.matrix(n, V), ws.matrix(n, V), ws.matrix(n, V)};
    q_.forward(x, b.q);
    k_.forward(x, b.k);
    v_.forward(x, b.v);
    g_.forward(x, b.g);
    const T scaling = static_cast<T>(1.0 / std::sqrt(static_cast<double>(key_dim())));
    b.k *= scaling;
    rope_->apply_from<T>(b.q, cfg_.num_heads, b.k, cfg_.num_heads, pos0);  // torchscale: index * angle
    return b;
  }

  // Group norm, gate, out_proj: y = out_proj(gate_fn(g) * rms_per_head(o)).
  void finish(Buffers& b, MatrixRef<T> y) const {
    const Vector<T> none;
    ops::group_norm<T>(b.o, cfg_.num_heads, ops::NormKind::rms, none, none, b.o, static_cast<T>(cfg_.layernorm_eps));
    ops::glu<T>(b.g, b.o, b.o, cfg_.gate_fn);
    out_.forward(b.o, y);
  }

  // gamma_h^m for m in [0, len) in double, then rounded to T.
  void powers(Index h, Index len, T* out) const {
    const double ld = log_decay_[static_cast<std::size_t>(h)];
    for (Index m = 0; m < len; ++m) out[m] = static_cast<T>(std::exp(ld * static_cast<double>(m)));
  }

  void parallel_core(Buffers& b, Workspace<T>& ws) const {
    const Index n = b.q.rows(), H = cfg_.num_heads, dk = key_dim(), dv = head_dim();
    // Per head: pw[m] = gamma^m and rs[t] = 1 / sqrt(S_t) (decay-matrix row normalisation).
    auto pw = ws.matrix(H, n), rs = ws.matrix(H, n);
    for (Index h = 0; h < H; ++h) {
      powers(h, n, pw.row(h).data());
      double sum = 0;
      for (Index t = 0; t < n; ++t) {
        sum += static_cast<double>(pw(h, t));
        rs(h, t) = static_cast<T>(1.0 / std::sqrt(sum));
      }
    }
    const Index blocks = (n + kQueryBlock - 1) / kQueryBlock;
    const Index items = H * blocks;
    const int threads = static_cast<int>(std::max<Index>(1, std::min<Index>(num_threads(), items)));
    T* scratch = ws.template raw<T>(static_cast<std::size_t>(threads) * static_cast<std::size_t>(kQueryBlock * n));
    parallel_for_dynamic(items, threads, [&](Index item, int thread) {
      const Index h = item % H, blk = item / H;
      const Index i0 = blk * kQueryBlock, nb = std::min(kQueryBlock, n - i0), i1 = i0 + nb;
      MatrixMap<T> s(scratch + static_cast<std::size_t>(thread) * static_cast<std::size_t>(kQueryBlock * n), nb, i1,
                     Eigen::OuterStride<>(i1));
      matmul<T>(b.q.block(i0, h * dk, nb, dk), b.k.block(0, h * dk, i1, dk), s, MatmulOp::nt);
      const T* p = pw.row(h).data();
      Eigen::Matrix<T, Eigen::Dynamic, 1> denom(nb);
      for (Index r = 0; r < nb; ++r) {
        const Index t = i0 + r;
        T* row = s.row(r).data();
        const T rt = rs(h, t);
        T sum = T(0);
        for (Index j = 0; j <= t; ++j) {
          row[j] *= p[t - j] * rt;
          sum += row[j];
        }
        for (Index j = t + 1; j < i1; ++j) row[j] = T(0);
        denom(r) = T(1) / std::max(T(1), std::abs(sum));
      }
      auto out = b.o.block(i0, h * dv, nb, dv);
      const auto vb = b.v.block(0, h * dv, i1, dv);
      if (vb.bottomRows(nb).allFinite()) {
        matmul<T>(s, vb, out);
      } else {  // 0 * NaN = NaN: keep a non-finite future value out of the earlier rows
        for (Index r = 0; r < nb; ++r) matmul<T>(s.row(r).head(i0 + r + 1), vb.topRows(i0 + r + 1), out.row(r));
      }
      out = denom.asDiagonal() * out;
    });
  }

  void recurrent_core(Buffers& b, RetentionState<T>& st) const {
    const Index n = b.q.rows(), H = cfg_.num_heads, dk = key_dim(), dv = head_dim();
    const Index min_heads = dk * dv >= 16384 ? 1 : H + 1;  // thread only when a head's state is large
    for (Index t = 0; t < n; ++t) {
      parallel_for(0, H, min_heads, [&](Index h) {
        const T gamma = gamma_[static_cast<std::size_t>(h)];
        const T prev = st.scale(h), next = prev * gamma + T(1);
        const T a = std::sqrt(prev) * gamma / std::sqrt(next), bb = T(1) / std::sqrt(next);
        st.scale(h) = next;
        kernels::retention_step(b.q.row(t).data() + h * dk, b.k.row(t).data() + h * dk, b.v.row(t).data() + h * dv,
                                st.kv.data() + h * dk * dv, static_cast<std::size_t>(dv), b.o.row(t).data() + h * dv,
                                static_cast<std::size_t>(dk), static_cast<std::size_t>(dv), a, bb);
      });
    }
  }

  void chunkwise(ConstMatrixRef<T> x, MatrixRef<T> y, RetentionState<T>* state, Workspace<T>& ws,
                 Index chunk_size) const {
    check_io(x, y);
    if (chunk_size == 0) chunk_size = cfg_.chunk_size;
    check(chunk_size >= 1, ErrorKind::invalid_argument, where(), "chunk_size = ", chunk_size, " must be >= 1");
    if (state) check_state(*state);
    const Index n = x.rows();
    if (n == 0) return;
    typename Workspace<T>::Frame frame(ws);
    const Index H = cfg_.num_heads, dk = key_dim(), dv = head_dim();
    // The carried state of every head, unnormalised (U = kv sqrt(scale)), across row blocks.
    MatrixMap<T> carry = ws.matrix(H * dk, dv);
    for (Index h = 0; h < H; ++h) {
      if (state)
        carry.middleRows(h * dk, dk) = state->kv.middleRows(h * dk, dk) * std::sqrt(state->scale(h));
      else
        carry.middleRows(h * dk, dk).setZero();
    }
    // Rows in blocks of whole chunks (>= kRowBlock rows): the projections, the chunks and the output
    // of one block stay in cache, and the workspace does not grow with the sequence. The chunks are
    // the same as in one pass, so the result does not depend on the block size.
    const Index rows = std::max<Index>(1, (kRowBlock + chunk_size - 1) / chunk_size) * chunk_size;
    const std::int64_t pos0 = state ? state->position : 0;
    for (Index r0 = 0; r0 < n; r0 += rows) {
      typename Workspace<T>::Frame block(ws);
      const Index L = std::min(rows, n - r0);
      Buffers b = project(x.middleRows(r0, L), pos0 + r0, ws);
      chunk_core(b, carry, chunk_size, ws);
      finish(b, y.middleRows(r0, L));
    }
    if (state) {  // back to the recurrent form's normalisation: scale = S after all tokens
      for (Index h = 0; h < H; ++h) {
        const double ld = log_decay_[static_cast<std::size_t>(h)], g = std::exp(ld);
        // s_{t+1} = s_t gamma + 1, n times: closed form s gamma^n + (1 - gamma^n) / (1 - gamma).
        const double gn = std::exp(ld * static_cast<double>(n));
        const double sc = static_cast<double>(state->scale(h)) * gn + (1.0 - gn) / (1.0 - g);
        state->scale(h) = static_cast<T>(sc);
        state->kv.middleRows(h * dk, dk) = carry.middleRows(h * dk, dk) / static_cast<T>(std::sqrt(sc));
      }
      state->position += n;
    }
  }

  // The chunks of one row block; carry [H * dk, dv] holds each head's unnormalised state U before the
  // block and is left holding it after.
  void chunk_core(Buffers& b, MatrixMap<T>& carry, Index B, Workspace<T>& ws) const {
    const Index n = b.q.rows(), H = cfg_.num_heads, dk = key_dim(), dv = head_dim();
    const Index Bc = std::min(B, n);  // scratch rows: no chunk is longer than the sequence
    // Per head: pw[m] = gamma^m for m <= B, rs[i] = 1 / sqrt(S_i) for i < B, S_{B-1}.
    auto pw = ws.matrix(H, B + 1), rs = ws.matrix(H, B);
    std::vector<double> sb(static_cast<std::size_t>(H));
    for (Index h = 0; h < H; ++h) {
      powers(h, B + 1, pw.row(h).data());
      double sum = 0;
      for (Index i = 0; i < B; ++i) {
        sum += static_cast<double>(pw(h, i));
        rs(h, i) = static_cast<T>(1.0 / std::sqrt(sum));
      }
      sb[static_cast<std::size_t>(h)] = sum;
    }
    const int threads = static_cast<int>(std::max<Index>(1, std::min<Index>(num_threads(), H)));
    // Per thread: scores [Bc, Bc], decayed queries [Bc, dk], weighted values [Bc, dv], inner scales [Bc].
    const Index per = Bc * Bc + Bc * dk + Bc * dv + Bc;
    T* scratch = ws.template raw<T>(static_cast<std::size_t>(threads) * static_cast<std::size_t>(per));
    parallel_for_dynamic(H, threads, [&](Index h, int thread) {
      T* base = scratch + static_cast<std::size_t>(thread) * static_cast<std::size_t>(per);
      auto U = carry.middleRows(h * dk, dk);
      const T* p = pw.row(h).data();
      const T* r = rs.row(h).data();
      const T inv_sb = static_cast<T>(1.0 / sb[static_cast<std::size_t>(h)]);
      for (Index c0 = 0; c0 < n; c0 += B) {
        const Index L = std::min(B, n - c0);
        auto Q = b.q.block(c0, h * dk, L, dk);
        auto K = b.k.block(c0, h * dk, L, dk);
        auto Vc = b.v.block(c0, h * dv, L, dv);
        auto O = b.o.block(c0, h * dv, L, dv);
        MatrixMap<T> A(base, L, L, Eigen::OuterStride<>(L));
        MatrixMap<T> Qd(base + Bc * Bc, L, dk, Eigen::OuterStride<>(dk));
        MatrixMap<T> Vw(base + Bc * Bc + Bc * dk, L, dv, Eigen::OuterStride<>(dv));
        T* inner = base + Bc * Bc + Bc * dk + Bc * dv;
        // Inner-chunk scores with the decay mask gamma^(i-j) / sqrt(S_i), and their abs-sum scale.
        matmul<T>(Q, K, A, MatmulOp::nt);
        for (Index i = 0; i < L; ++i) {
          T* row = A.row(i).data();
          T sum = T(0);
          for (Index j = 0; j <= i; ++j) {
            row[j] *= p[i - j] * r[i];
            sum += std::abs(row[j]);
          }
          for (Index j = i + 1; j < L; ++j) row[j] = T(0);
          inner[i] = std::max(T(1), sum);
        }
        // cross_scale from the carried state (torchscale's kv_scale of kv_state = U / S_{B-1}; 1 for an
        // empty state, U = 0).
        const T cross = std::max(T(1), U.cwiseAbs().colwise().sum().maxCoeff() * inv_sb);
        // Queries decayed by gamma^(i+1) / sqrt(S_i).
        for (Index i = 0; i < L; ++i) Qd.row(i) = Q.row(i) * (p[i + 1] * r[i]);
        if (Vc.allFinite()) {
          matmul<T>(A, Vc, O);
        } else {  // 0 * NaN = NaN: keep a non-finite future value out of the earlier rows
          for (Index i = 0; i < L; ++i) matmul<T>(A.row(i).head(i + 1), Vc.topRows(i + 1), O.row(i));
        }
        matmul<T>(Qd, U, O, MatmulOp::nn, true);
        for (Index i = 0; i < L; ++i) O.row(i) /= std::max(inner[i], cross);
        // Carry the state past this chunk: U = gamma^L U + K^T (gamma^(L-1-j) v_j).
        for (Index j = 0; j < L; ++j) Vw.row(j) = Vc.row(j) * p[L - 1 - j];
        U *= p[L];
        matmul<T>(K, Vw, U, MatmulOp::tn, true);
      }
    });
  }

  RetentionConfig cfg_;
  std::string name_;
  Linear<T> q_, k_, v_, g_, out_;  // q, k [E, E]; v, g [V, E]; out [E, V]
  std::shared_ptr<const RotaryEmbedding> rope_;  // immutable: shared by copies
  std::vector<double> log_decay_;  // [num_heads] log gamma_h (rounded to T first)
  std::vector<T> gamma_;           // [num_heads] exp(log gamma_h) in T (torchscale decay.exp())
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
