#pragma once
// LongNet dilated attention (Ding et al. 2023, "LongNet: Scaling Transformers to 1,000,000,000
// Tokens", arXiv:2307.02486), with the semantics of torchscale's DilatedAttention
// (torchscale/component/dilated_attention.py): a list of branches (segment length w_i, dilation r_i).
// In branch i the sequence is cut into segments of w_i positions; inside each segment the heads are
// split into r_i consecutive groups (the head count padded up to a multiple of r_i, as torchscale's
// head_padding) and group j keeps the positions seg + j, seg + j + r_i, ... (dense_to_sparse); each
// sparsified segment gets dense (causal) attention; a query position outside its head group's
// residue gets nothing from that branch (torchscale: output 0, lse -1e8). The branches are merged
// with weights proportional to their softmax denominators: out = sum_i exp(lse_i) out_i / sum_i
// exp(lse_i) (torchscale's scattering).
//
// Every (branch, head group) is ONE call of the flash kernel on a strided view of Q/K/V: the
// positions p = j (mod r_i) form the compressed sequence c = (p - j) / r_i, in which a sparsified
// segment is the block c / (w_i / r_i): SegmentPattern. No data is gathered; K/V rows are read in
// place with a row stride of r_i tokens. Decoding is the same call with one query (a query whose
// residue is not its group's skips that group), so decode == prefill.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../core/workspace.hpp"
#include "attention.hpp"
#include "sparse_patterns.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// One LongNet branch: segment length w and dilation r (w must be a multiple of r).
struct DilatedBranch {
  Index segment = 2048;
  Index dilation = 1;
};

/// Check a branch list; throws Error naming `where`.
inline void check_dilated_branches(const std::vector<DilatedBranch>& branches, const char* where) {
  check(!branches.empty(), ErrorKind::config, where, "at least one (segment_length, dilated_ratio) branch is needed");
  for (std::size_t i = 0; i < branches.size(); ++i) {
    const DilatedBranch& b = branches[i];
    check(b.segment >= 1 && b.dilation >= 1 && b.segment % b.dilation == 0, ErrorKind::config, where, "branch ", i,
          ": segment_length = ", b.segment, " must be a positive multiple of dilated_ratio = ", b.dilation);
  }
}

/// LongNet dilated attention through the flash kernel. Keys/values: one span `kv` holding positions
/// 0 .. kv.tokens - 1 (kv.pos0 must be 0: segments are aligned to position 0). Queries: io (positions
/// io.q_pos0 ..), all within the keys' range when causal. io.lse, if given, receives
/// log(sum_i exp(lse_i)) per (query, head). causal = false gives bidirectional attention inside each
/// sparsified segment (only real positions: torchscale would also attend its zero padding).
template <class E>
void dilated_attention(const AttentionDims& dims, const AttentionIO& io, const KVSpan<E>& kv,
                       const std::vector<DilatedBranch>& branches, bool causal, Workspace<float>& ws,
                       const char* where = "DilatedAttention") {
  check_dilated_branches(branches, where);
  check(kv.pos0 == 0, ErrorKind::invalid_argument, where, "the key span must start at position 0, not ", kv.pos0);
  check(dims.n_heads > 0 && dims.n_kv_heads > 0 && dims.n_heads % dims.n_kv_heads == 0, ErrorKind::config, where,
        "n_heads = ", dims.n_heads, " must be a positive multiple of n_kv_heads = ", dims.n_kv_heads);
  check(io.tokens >= 0 && io.q_pos0 >= 0, ErrorKind::invalid_argument, where, "query count ", io.tokens,
        " and first position ", io.q_pos0, " must be >= 0");
  if (io.tokens == 0) return;
  check(io.q && io.out && (kv.tokens == 0 || (kv.k && kv.v)), ErrorKind::invalid_argument, where, "null pointer");
  const Index H = dims.n_heads, G = H / dims.n_kv_heads, dv = dims.v_head_dim, T = io.tokens;
  const Index nbr = static_cast<Index>(branches.size());
  const float ninf = -std::numeric_limits<float>::infinity();

  typename Workspace<float>::Frame frame(ws);
  // Per branch: out_i [T, H * dv], lse_i [T, H]; rows a branch does not cover stay 0 / -inf.
  MatrixMap<float> outs = ws.matrix(nbr * T, H * dv);
  MatrixMap<float> lses = ws.matrix(nbr * T, H);
  lses.setConstant(ninf);  // out_i is read only where lse_i is finite, i.e. where branch i wrote it

  for (Index bi = 0; bi < nbr; ++bi) {
    const std::int64_t r = branches[static_cast<std::size_t>(bi)].dilation;
    const std::int64_t seg = branches[static_cast<std::size_t>(bi)].segment;
    const Index gs = static_cast<Index>(sparse_detail::ceil_div(H, r));  // heads per group (padded)
    SegmentPattern pattern;
    pattern.segment = seg / r;
    pattern.causal = causal;
    float* out_b = outs.data() + static_cast<std::size_t>(bi * T) * static_cast<std::size_t>(H * dv);
    float* lse_b = lses.data() + static_cast<std::size_t>(bi * T) * static_cast<std::size_t>(H);
    for (std::int64_t j = 0; j < r; ++j) {
      const Index h0 = static_cast<Index>(j) * gs, h1 = std::min(H, h0 + gs);
      if (h0 >= H) break;
      // Queries of residue j: the first at index t_first, then every r-th.
      const Index t_first = static_cast<Index>(sparse_detail::floor_mod(j - io.q_pos0, r));
      if (t_first >= T) continue;
      const Index nq = static_cast<Index>(sparse_detail::ceil_div(T - t_first, r));
      const Index nk = kv.tokens > j ? static_cast<Index>(sparse_detail::ceil_div(kv.tokens - j, r)) : 0;
      // One call for the whole group when its heads cover whole kv heads, else one per query head.
      const bool aligned = h0 % G == 0 && (h1 - h0) % G == 0;
      for (Index ha = h0; ha < h1; ha += aligned ? (h1 - h0) : 1) {
        const Index cnt = aligned ? h1 - h0 : 1;
        AttentionDims sub{cnt, aligned ? cnt / G : 1, dims.head_dim, dv, dims.scale};
        AttentionIO sio;
        sio.q = io.q + t_first * io.q_ld + ha * dims.head_dim;
        sio.q_ld = io.q_ld * static_cast<Index>(r);
        sio.tokens = nq;
        sio.q_pos0 = (io.q_pos0 + t_first - j) / r;
        sio.out = out_b + t_first * H * dv + ha * dv;
        sio.out_ld = H * dv * static_cast<Index>(r);
        sio.lse = lse_b + t_first * H + ha;
        sio.lse_ld = H * static_cast<Index>(r);
        KVSpan<E> skv = kv;
        const Index g0 = ha / G;
        skv.k = kv.k ? kv.k + j * kv.k_ld + g0 * kv.k_head_stride : nullptr;
        skv.v = kv.v ? kv.v + j * kv.v_ld + g0 * kv.v_head_stride : nullptr;
        skv.k_ld = kv.k_ld * static_cast<Index>(r);
        skv.v_ld = kv.v_ld * static_cast<Index>(r);
        skv.tokens = nk;
        skv.pos0 = 0;
        flash_attention(sub, sio, &skv, 1, pattern, ws, where);
      }
    }
  }

  // Merge by softmax denominators: w_i = exp(lse_i - max) / sum.
  const Index grain = std::max<Index>(1, 4096 / std::max<Index>(1, H * dv * nbr));
  parallel_for(0, T, grain, [&](Index t) {
    for (Index h = 0; h < H; ++h) {
      float m = ninf;
      for (Index bi = 0; bi < nbr; ++bi) m = std::max(m, lses(bi * T + t, h));
      float* o = io.out + t * io.out_ld + h * dv;
      std::fill(o, o + dv, 0.0f);
      if (m == ninf) {
        if (io.lse) io.lse[t * io.lse_ld + h] = ninf;
        continue;
      }
      float z = 0.0f;
      for (Index bi = 0; bi < nbr; ++bi) {
        const float l = lses(bi * T + t, h);
        if (l == ninf) continue;
        const float w = std::exp(l - m);
        z += w;
        const float* src = outs.data() + (bi * T + t) * H * dv + h * dv;
        for (Index i = 0; i < dv; ++i) o[i] += w * src[i];
      }
      const float inv = 1.0f / z;
      for (Index i = 0; i < dv; ++i) o[i] *= inv;
      if (io.lse) io.lse[t * io.lse_ld + h] = m + std::log(z);
    }
  });
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
