#pragma once
// The two attention layers of T-DMCA ("Generating Wikipedia by Summarizing Long Sequences", Liu et
// al. 2018, arXiv:1801.10198), as tensor2tensor's common_attention.py implements them, decoder-only
// (causal):
//   compressed:   multihead_self_attention_reduced(reduction_type="conv", add_mask=True): the memory
//                 is [x_0; conv(x)], conv a strided convolution over the layer input with kernel =
//                 stride = factor (3; valid padding: a trailing partial block is dropped); keys and
//                 values are projected from the memory, queries from x; query q sees memory entry m
//                 iff m * factor <= q (CompressedMemoryPattern).
//   local_block:  masked_local_attention_1d(block_length = 256): own block up to the query plus the
//                 whole previous block (LocalBlockPattern).
// Both through the one flash kernel. Projections q, k, v, output_transform: no bias in t2t versions
// whose multihead_attention projects with compute_attention_component (dense, use_bias=False); the
// paper-era t2t (late 2017) used biased conv1d projections with fused kv_transform [D, 2D] (k first)
// and qkv_transform [D, 3D] (q | k | v): pass Linears with biases, split in that order. The
// convolution `compress` is torch Conv1d-shaped: weight [hidden, hidden, factor], bias [hidden]
// (from a TF conv2d kernel [1, f, in, out]: weight(o, i * f + t) = kernel[0, t, i, o]). Queries are
// scaled by (hidden / n_heads)^-0.5. Prefill only (no cache). Not supported: t2t's
// nonlinearity = "silu" on the memory, add_mask = False, key/value depths other than hidden.
// Checked point by point against tensor2tensor common_attention.py (2021 revision):
// conv_elems_1d, multihead_self_attention_reduced, masked_local_attention_1d.

#include <cmath>
#include <string>
#include <utility>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/naming.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../linear/linear.hpp"
#include "../ops/attention.hpp"
#include "../ops/sparse_patterns.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

class MemoryCompressedAttention {
 public:
  enum class Mode { compressed, local_block };
  struct Config {
    Index hidden = 0;
    Index n_heads = 0;
    Mode mode = Mode::compressed;
    Index factor = 3;          ///< compressed: kernel = stride of the convolution
    Index block_length = 256;  ///< local_block: block size
  };

  MemoryCompressedAttention() = default;
  /// conv_weight: [hidden, hidden * factor] viewed as [out][in][tap] (torch Conv1d weight flattened);
  /// conv_bias: [hidden]. Both ignored (may be empty) in local_block mode.
  MemoryCompressedAttention(const Config& cfg, Linear<float> q, Linear<float> k, Linear<float> v, Linear<float> o,
                            Matrix<float> conv_weight, Vector<float> conv_bias, std::string name = {})
      : cfg_(cfg), name_(std::move(name)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)), o_(std::move(o)),
        conv_w_(std::move(conv_weight)), conv_b_(std::move(conv_bias)) {
    check_config(cfg_, where());
    for (const Linear<float>* p : {&q_, &k_, &v_, &o_})
      check(p->in_features() == cfg.hidden && p->out_features() == cfg.hidden, ErrorKind::shape_mismatch, where(),
            "projection '", p->name(), "' has shape [", p->out_features(), ", ", p->in_features(), "], expected [",
            cfg.hidden, ", ", cfg.hidden, "]");
    if (cfg.mode == Mode::compressed) {
      check_shape(where(), "compress.weight", conv_w_.rows(), conv_w_.cols(), cfg.hidden, cfg.hidden * cfg.factor);
      check(conv_b_.size() == cfg.hidden, ErrorKind::shape_mismatch, where(), "compress.bias has ", conv_b_.size(),
            " entries, expected ", cfg.hidden);
    }
  }

  const Config& config() const { return cfg_; }

  /// x: [T, hidden] -> y: [T, hidden] (after output_transform).
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws) const {
    const Index T = x.rows(), D = cfg_.hidden, H = cfg_.n_heads, d = D / H;
    check_shape(where(), "input x", x.rows(), x.cols(), -1, D);
    check_shape(where(), "output y", y.rows(), y.cols(), T, D);
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    const bool comp = cfg_.mode == Mode::compressed;
    const Index M = comp ? 1 + T / cfg_.factor : T;  // memory rows
    MatrixMap<float> q = ws.matrix(T, D), k = ws.matrix(M, D), v = ws.matrix(M, D), ctx = ws.matrix(T, D);
    q_.forward(x, q);
    if (comp) {
      // memory = [x_0; conv(x)]: row m >= 1 = b + sum_t W[:, :, t] x[(m - 1) f + t].
      MatrixMap<float> mem = ws.matrix(M, D);
      mem.row(0) = x.row(0);
      const Index f = cfg_.factor;
      for (Index m = 1; m < M; ++m) {
        mem.row(m) = conv_b_.transpose();
        for (Index t = 0; t < f; ++t) {
          const auto xr = x.row((m - 1) * f + t);
          for (Index o = 0; o < D; ++o) {
            float acc = 0.0f;
            for (Index i = 0; i < D; ++i) acc += conv_w_(o, i * f + t) * xr(i);
            mem(m, o) += acc;
          }
        }
      }
      k_.forward(mem, k);
      v_.forward(mem, v);
    } else {
      k_.forward(x, k);
      v_.forward(x, v);
    }
    const AttentionDims dims{H, H, d, d, 1.0f / std::sqrt(static_cast<float>(d))};
    const KVSpan<float> span{k.data(), v.data(), D, D, d, d, M, 0};
    const AttentionIO io{q.data(), D, T, 0, ctx.data(), D, nullptr, 0};
    if (comp) {
      CompressedMemoryPattern p;
      p.factor = cfg_.factor;
      flash_attention(dims, io, &span, 1, p, ws, "MemoryCompressedAttention");
    } else {
      flash_attention(dims, io, &span, 1, LocalBlockPattern(cfg_.block_length), ws, "MemoryCompressedAttention");
    }
    o_.forward(ctx, y);
  }

 private:
  static void check_config(const Config& c, const std::string& where) {
    check(c.hidden > 0 && c.n_heads > 0 && c.hidden % c.n_heads == 0, ErrorKind::config, where, "hidden = ", c.hidden,
          " must be a positive multiple of n_heads = ", c.n_heads);
    check(c.factor >= 1 && c.block_length >= 1, ErrorKind::config, where, "factor = ", c.factor,
          " and block_length = ", c.block_length, " must be >= 1");
  }
  std::string where() const { return layer_where("MemoryCompressedAttention", name_); }

  Config cfg_;
  std::string name_;
  Linear<float> q_, k_, v_, o_;
  Matrix<float> conv_w_;  // [hidden, hidden * factor]: (out, in * factor + tap)
  Vector<float> conv_b_;  // [hidden]
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
