#pragma once
// Longformer self-attention (Beltagy et al. 2020, arXiv:2004.05150), as Hugging Face's
// LongformerSelfAttention (transformers/models/longformer/modeling_longformer.py), checkpoint names
// `query`, `key`, `value`, `query_global`, `key_global`, `value_global` (Linear with bias).
//
//   every row:    q = query(x) / sqrt(d), k = key(x), v = value(x); a row attends the keys of its
//                 sliding window (attention_window / 2 on each side; optionally dilated, which HF
//                 does not offer) and every global token (LongformerPattern, one flash-kernel call);
//   global rows:  replaced by full attention with the separate projections: q = query_global(x) /
//                 sqrt(d) for the global tokens against k = key_global(x), v = value_global(x) of
//                 every token.
// Output: [T, hidden], the context before the output dense (LongformerSelfOutput). As HF's module,
// the sequence length must be a multiple of attention_window (LongformerModel pads to it). Padding
// masks are not supported here (every token is a real token).

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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

class LongformerSelfAttention {
 public:
  struct Config {
    Index hidden = 0;
    Index n_heads = 0;
    Index attention_window = 512;  ///< even: attention_window / 2 keys on each side
    Index dilation = 1;            ///< 1 in Hugging Face; > 1: dilated sliding window
  };

  LongformerSelfAttention() = default;
  /// projections: query, key, value, query_global, key_global, value_global, each [hidden, hidden].
  LongformerSelfAttention(const Config& cfg, std::vector<Linear<float>> projections, std::string name = {})
      : cfg_(cfg), name_(std::move(name)) {
    check_config(cfg_, where());
    check(projections.size() == 6, ErrorKind::config, where(), "needs 6 projections, got ", projections.size());
    for (auto& p : projections)
      check(p.in_features() == cfg.hidden && p.out_features() == cfg.hidden, ErrorKind::shape_mismatch, where(),
            "projection '", p.name(), "' has shape [", p.out_features(), ", ", p.in_features(), "], expected [",
            cfg.hidden, ", ", cfg.hidden, "]");
    q_ = std::move(projections[0]);
    k_ = std::move(projections[1]);
    v_ = std::move(projections[2]);
    qg_ = std::move(projections[3]);
    kg_ = std::move(projections[4]);
    vg_ = std::move(projections[5]);
  }

  static LongformerSelfAttention load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, layer_where("LongformerSelfAttention", prefix));
    const typename Linear<float>::Config lc{cfg.hidden, cfg.hidden, true};
    std::vector<Linear<float>> p;
    for (const char* n : {"query", "key", "value", "query_global", "key_global", "value_global"})
      p.push_back(Linear<float>::load(st, join_name(prefix, n), lc));
    return LongformerSelfAttention(cfg, std::move(p), prefix);
  }

  const Config& config() const { return cfg_; }

  /// x: [T, hidden]; is_global: [T] flags (empty: no global token); y: [T, hidden].
  void forward(ConstMatrixRef<float> x, const std::vector<std::uint8_t>& is_global, MatrixRef<float> y,
               Workspace<float>& ws) const {
    const Index T = x.rows(), D = cfg_.hidden, H = cfg_.n_heads, d = D / H;
    check_shape(where(), "input x", x.rows(), x.cols(), -1, D);
    check_shape(where(), "output y", y.rows(), y.cols(), T, D);
    check(is_global.empty() || static_cast<Index>(is_global.size()) == T, ErrorKind::shape_mismatch, where(),
          "is_global has ", is_global.size(), " flags for ", T, " tokens");
    check(T % cfg_.attention_window == 0, ErrorKind::shape_mismatch, where(), "sequence length ", T,
          " must be a multiple of attention_window = ", cfg_.attention_window, " (pad the input)");
    if (T == 0) return;
    typename Workspace<float>::Frame frame(ws);
    MatrixMap<float> q = ws.matrix(T, D), k = ws.matrix(T, D), v = ws.matrix(T, D);
    q_.forward(x, q);
    k_.forward(x, k);
    v_.forward(x, v);
    const AttentionDims dims{H, H, d, d, 1.0f / std::sqrt(static_cast<float>(d))};
    const LongformerPattern pattern(cfg_.attention_window, cfg_.dilation, is_global);
    const KVSpan<float> span{k.data(), v.data(), D, D, d, d, T, 0};
    flash_attention(dims, AttentionIO{q.data(), D, T, 0, y.data(), y.outerStride(), nullptr, 0}, &span, 1, pattern,
                    ws, "LongformerSelfAttention");
    const std::vector<std::int64_t>& g = pattern.global_positions();
    if (g.empty()) return;
    // Global rows: full attention with the global projections.
    const Index ng = static_cast<Index>(g.size());
    MatrixMap<float> xg = ws.matrix(ng, D), qg = ws.matrix(ng, D), og = ws.matrix(ng, D);
    for (Index i = 0; i < ng; ++i) xg.row(i) = x.row(static_cast<Index>(g[static_cast<std::size_t>(i)]));
    qg_.forward(xg, qg);
    kg_.forward(x, k);
    vg_.forward(x, v);
    AttentionMask full;
    full.causal = false;
    flash_attention(dims, AttentionIO{qg.data(), D, ng, 0, og.data(), D, nullptr, 0}, &span, 1, full, ws,
                    "LongformerSelfAttention");
    for (Index i = 0; i < ng; ++i) y.row(static_cast<Index>(g[static_cast<std::size_t>(i)])) = og.row(i);
  }

 private:
  static void check_config(const Config& c, const std::string& where) {
    check(c.hidden > 0 && c.n_heads > 0 && c.hidden % c.n_heads == 0, ErrorKind::config, where, "hidden = ", c.hidden,
          " must be a positive multiple of n_heads = ", c.n_heads);
    check(c.attention_window >= 2 && c.attention_window % 2 == 0, ErrorKind::config, where, "attention_window = ",
          c.attention_window, " must be even and positive");
    check(c.dilation >= 1, ErrorKind::config, where, "dilation = ", c.dilation, " must be >= 1");
  }
  std::string where() const { return layer_where("LongformerSelfAttention", name_); }

  Config cfg_;
  std::string name_;
  Linear<float> q_, k_, v_, qg_, kg_, vg_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
