#pragma once
// BigBird block-sparse self-attention (Zaheer et al. 2020), as Hugging Face's
// BigBirdBlockSparseAttention (transformers/models/big_bird/modeling_big_bird.py), checkpoint names
// `query`, `key`, `value` (Linear, bias = config.use_bias). One flash-kernel call with the ITC layout
// of bigbird_layout (ops/sparse_patterns.hpp). Output: [T, hidden] (the context before the output
// dense), bidirectional; T must be a multiple of block_size. Short inputs (T <= (5 + 2 r) block)
// get full attention, as BigBirdModel switches to "original_full" there.
//
// Random blocks:
//   seeded:   r distinct random blocks per head and query block from the seeded generator
//             (bigbird_random_blocks), outside the query block's window and the global blocks;
//   hf_eval:  what Hugging Face computes in eval mode (module.eval()): its random-block table is all
//             zeros ("during inference (eval) no randomness"), so the r "random" blocks of query
//             blocks 1..nb-2 are block 0 again, which HF's softmax then counts 1 + r times. Reproduced
//             exactly by adding log(1 + r) to those logits (BigBirdEvalPolicy).

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

/// BigBird's layout with Hugging Face's eval-mode duplicates of block 0: for query blocks
/// 1 .. nb-2, keys of block 0 get + log(1 + r) (counted 1 + r times in HF's softmax).
struct BigBirdEvalPolicy : BlockSparsePolicy<> {
  float dup_bias = 0.0f;  // log(1 + r)
  Index n_blocks = 0;

  BigBirdEvalPolicy(const BlockLayout& l, Index num_random_blocks)
      : BlockSparsePolicy<>(l), dup_bias(std::log(1.0f + static_cast<float>(num_random_blocks))), n_blocks(l.n_q_blocks()) {}

  void row(Index head, std::int64_t q, std::int64_t k0, float* s, Index n, bool partial) const {
    const std::int64_t b = layout->block(), qb = q / b;
    if (qb >= 1 && qb <= n_blocks - 2)
      for (Index j = 0; j < n && k0 + j < b; ++j)
        if (k0 + j >= 0) s[j] += dup_bias;
    BlockSparsePolicy<>::row(head, q, k0, s, n, partial);
  }
};

class BigBirdBlockSparseAttention {
 public:
  enum class Random { seeded, hf_eval };
  struct Config {
    Index hidden = 0;
    Index n_heads = 0;
    Index block_size = 64;
    Index num_random_blocks = 3;
    bool use_bias = true;
    Random random = Random::seeded;
    std::uint64_t seed = 0;
  };

  BigBirdBlockSparseAttention() = default;
  BigBirdBlockSparseAttention(const Config& cfg, Linear<float> q, Linear<float> k, Linear<float> v, std::string name = {})
      : cfg_(cfg), name_(std::move(name)), q_(std::move(q)), k_(std::move(k)), v_(std::move(v)) {
    check_config(cfg_, where());
    for (const Linear<float>* p : {&q_, &k_, &v_})
      check(p->in_features() == cfg.hidden && p->out_features() == cfg.hidden, ErrorKind::shape_mismatch, where(),
            "projection '", p->name(), "' has shape [", p->out_features(), ", ", p->in_features(), "], expected [",
            cfg.hidden, ", ", cfg.hidden, "]");
  }

  static BigBirdBlockSparseAttention load(const SafeTensors& st, const std::string& prefix, const Config& cfg) {
    check_config(cfg, layer_where("BigBirdBlockSparseAttention", prefix));
    const typename Linear<float>::Config lc{cfg.hidden, cfg.hidden, cfg.use_bias};
    return BigBirdBlockSparseAttention(cfg, Linear<float>::load(st, join_name(prefix, "query"), lc),
                                       Linear<float>::load(st, join_name(prefix, "key"), lc),
                                       Linear<float>::load(st, join_name(prefix, "value"), lc), prefix);
  }

  const Config& config() const { return cfg_; }

  /// The layout used for T tokens (per head; the all-full layout for short inputs).
  BlockLayout layout(Index T) const {
    const BigBirdConfig bc{cfg_.block_size, cfg_.num_random_blocks, cfg_.seed};
    if (cfg_.random == Random::hf_eval && !bigbird_full_attention(T, bc)) {
      // HF eval: the random table is all zeros (block 0, already a global block).
      const Index nb = T / cfg_.block_size;
      return bigbird_layout(T, cfg_.n_heads, bc,
                            std::vector<std::int64_t>(static_cast<std::size_t>(cfg_.n_heads * (nb - 2) * cfg_.num_random_blocks), 0));
    }
    return bigbird_layout(T, cfg_.n_heads, bc);
  }

  /// x: [T, hidden] (T a multiple of block_size), y: [T, hidden].
  void forward(ConstMatrixRef<float> x, MatrixRef<float> y, Workspace<float>& ws) const {
    const Index T = x.rows(), D = cfg_.hidden, H = cfg_.n_heads, d = D / H;
    check_shape(where(), "input x", x.rows(), x.cols(), -1, D);
    check_shape(where(), "output y", y.rows(), y.cols(), T, D);
    check(T % cfg_.block_size == 0, ErrorKind::shape_mismatch, where(), "sequence length ", T,
          " must be a multiple of block_size = ", cfg_.block_size);
    if (T == 0) return;
    const BlockLayout l = layout(T);
    typename Workspace<float>::Frame frame(ws);
    MatrixMap<float> q = ws.matrix(T, D), k = ws.matrix(T, D), v = ws.matrix(T, D);
    q_.forward(x, q);
    k_.forward(x, k);
    v_.forward(x, v);
    const AttentionDims dims{H, H, d, d, 1.0f / std::sqrt(static_cast<float>(d))};
    const KVSpan<float> span{k.data(), v.data(), D, D, d, d, T, 0};
    const AttentionIO io{q.data(), D, T, 0, y.data(), y.outerStride(), nullptr, 0};
    const bool dup = cfg_.random == Random::hf_eval && cfg_.num_random_blocks > 0 &&
                     !bigbird_full_attention(T, BigBirdConfig{cfg_.block_size, cfg_.num_random_blocks, cfg_.seed});
    if (dup)
      flash_attention(dims, io, &span, 1, BigBirdEvalPolicy(l, cfg_.num_random_blocks), ws, "BigBirdBlockSparseAttention");
    else
      flash_attention(dims, io, &span, 1, BlockSparsePolicy<>(l), ws, "BigBirdBlockSparseAttention");
  }

 private:
  static void check_config(const Config& c, const std::string& where) {
    check(c.hidden > 0 && c.n_heads > 0 && c.hidden % c.n_heads == 0, ErrorKind::config, where, "hidden = ", c.hidden,
          " must be a positive multiple of n_heads = ", c.n_heads);
    check(c.block_size >= 1 && c.num_random_blocks >= 0, ErrorKind::config, where, "block_size = ", c.block_size,
          " must be >= 1 and num_random_blocks = ", c.num_random_blocks, " >= 0");
  }
  std::string where() const { return layer_where("BigBirdBlockSparseAttention", name_); }

  Config cfg_;
  std::string name_;
  Linear<float> q_, k_, v_;
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
