#pragma once
// The flash-attention op: one tiled, online-softmax kernel for prefill and decode, for every mask
// and bias policy (ops/attention_policy.hpp), MHA/MQA/GQA without copying K/V, float/f16/bf16
// keys and values, optional log-sum-exp output. Never materializes the Tq x Tk score matrix.
//
// Dao et al. 2022, "FlashAttention" (arXiv:2205.14135); Milakov & Gimelshein 2018 (online softmax).
//
// Work is split into items (kv head, query block, key chunk). An item's rows are the G = n_heads /
// n_kv_heads query heads that share the kv head times the queries of the block, so K and V are read
// once per group. For each key tile the item computes S = (scale Q) K^T with the gemm kernels, lets
// the policy edit and mask it, updates the running max/denominator per row, rescales its output
// accumulator and adds P V. Empty tiles (per the policy) are skipped, full tiles skip the mask; a
// policy with the optional next_key / query_tile members (sparse patterns, ops/sparse_patterns.hpp)
// lets the loop jump over the key tiles it leaves empty and align query tiles to its blocks.
//   - prefill (>= kPackMinQueries queries): K is packed transposed per kv head once (float, whatever
//     its storage type), and S comes from gemm_nn (broadcast-FMA micro-kernel);
//   - decode (fewer queries): S comes from gemm_nt (dot products against the K rows in place), and
//     long key ranges are split into chunks of kDecodeChunk keys processed in parallel and merged by
//     log-sum-exp. The split depends only on the key count, never on the thread count, so results are
//     bit-identical for any number of threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/tensor.hpp"
#include "../core/threading.hpp"
#include "../core/workspace.hpp"
#include "../kernels/convert.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/gemm.hpp"
#include "../kernels/loops.hpp"
#include "../kernels/softmax.hpp"
#include "attention_policy.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// Keys and values of one run of consecutive positions. Element (token t, kv head h, dim i) of K is
/// k[t * k_ld + h * k_head_stride + i]; likewise V. A contiguous cache or the K/V projections of a
/// prompt are one span; a ring-buffer cache is up to three; a paged cache is one span per block.
template <class E>
struct KVSpan {
  const E* k = nullptr;
  const E* v = nullptr;
  Index k_ld = 0, v_ld = 0;                    // elements between consecutive tokens
  Index k_head_stride = 0, v_head_stride = 0;  // elements between consecutive kv heads
  Index tokens = 0;
  std::int64_t pos0 = 0;  // absolute position of token 0
};

/// Head layout and softmax scale.
struct AttentionDims {
  Index n_heads = 0;
  Index n_kv_heads = 0;
  Index head_dim = 0;    // of queries and keys
  Index v_head_dim = 0;  // of values and outputs
  float scale = 0.0f;    // multiplies q . k (usually head_dim^-0.5)
};

/// Queries: element (token t, head h, dim i) at q[t * q_ld + h * head_dim + i]; token t has
/// absolute position q_pos0 + t. Output: (t, h, i) at out[t * out_ld + h * v_head_dim + i].
/// Optional lse: [tokens, n_heads] at lse[t * lse_ld + h] (natural log of the softmax denominator,
/// -inf for fully masked rows).
struct AttentionIO {
  const float* q = nullptr;
  Index q_ld = 0;
  Index tokens = 0;
  std::int64_t q_pos0 = 0;
  float* out = nullptr;
  Index out_ld = 0;
  float* lse = nullptr;
  Index lse_ld = 0;
};

namespace attention_detail {

// Tile sizes, tuned on AVX2 (T = 2048, head_dim 64 and 128): 72 rows keep the 6-row micro-kernel
// full and the working set (scaled Q, S, accumulator: ~100 KiB at d = 128) in L2.
constexpr Index kTargetRows = 72;      // rows (query heads x queries) per item
constexpr Index kKeyTile = 64;         // keys per tile
constexpr Index kPackMinQueries = 16;  // pack K^T when at least this many queries
constexpr Index kDecodeChunk = 1024;   // keys per chunk when decode splits long key ranges
constexpr std::size_t kDecodeKeyStep = 2;  // keys per P V step when V is read in place
constexpr Index kDecodeSubTile = 8;        // keys per S step in decode; also the prefetch distance
// Decode items with at least this many rows (query heads x queries of one kv head: MLA's absorbed
// path, wide GQA groups) are compute-bound and run transposed, so that the 6-row micro-kernel
// always has full blocks (the row count, e.g. 16 heads, is no multiple of 6): S^T = K (scale Q)^T
// with the keys as the micro-kernel's rows (the transposed queries stay in cache), and the output
// accumulates transposed, acc^T += V^T P^T, with the value dims as the rows.
constexpr Index kDecodeWideRows = 16;
constexpr std::size_t kDecodeWideDepth = 128;  // wide S^T: key dims per pass (a [128, rows] slice of Q^T)
constexpr Index kDecodeWideDims = 24;          // wide P V: value dims per call (4 micro-kernel blocks)
constexpr double kMinParallelFlops = 2e6;  // smaller calls run on the calling thread

// Per-item scratch: scaled queries, scores, output accumulator, running max/denominator, and the
// tile kind of each query head of the group.
struct Scratch {
  float* qs;    // [rows, d]
  float* s;     // [rows, kKeyTile]
  float* acc;   // [rows, dv]
  float* m;     // [rows]
  float* l;     // [rows]
  float* kind;  // [G]: TileKind of the current tile per query head
};

inline std::size_t scratch_floats(Index rows, Index G, Index d, Index dv) {
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(d + kKeyTile + dv + 2) + static_cast<std::size_t>(G);
}

// Software prefetch of rows [r0, r1) (stride ld, `len` elements each) of a cache being streamed:
// the hardware prefetcher alone leaves the decode loops waiting on DRAM (measured +20% bandwidth).
template <class E>
EIGENFORMER_ALWAYS_INLINE void prefetch_rows(const E* base, Index ld, Index len, Index r0, Index r1) {
  const Index bytes = len * static_cast<Index>(sizeof(E));
  for (Index r = r0; r < r1; ++r) {
    const char* p = reinterpret_cast<const char*>(base + r * ld);
    for (Index b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 3);
  }
}

// dst[c * ld_dst + r] = src[r * ld_src + c] for a [rows x cols] block (the wide decode route moves
// its small tiles between row and column layouts).
inline void transpose(const float* src, Index ld_src, float* dst, Index ld_dst, Index rows, Index cols) {
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
}

// Are all n rows (stride ld) of dv values finite? (x * 0 is NaN exactly for inf and NaN x.)
template <class E>
bool all_finite(const E* v, Index n, Index ld, Index dv) {
  float acc = 0.0f;
  for (Index j = 0; j < n; ++j) {
    if constexpr (std::is_same_v<E, float>) {
      acc += kernels::loops::sum(v + j * ld, static_cast<std::size_t>(dv),
                                 [](auto x) { return simd::mul(x, simd::set1<decltype(x)>(0.0f)); });
    } else {
      for (Index i = 0; i < dv; ++i) acc += to_float(v[j * ld + i]) * 0.0f;
    }
  }
  return acc == 0.0f;
}

// Does the policy have the optional next_key member (ops/attention_policy.hpp)?
template <class P, class = void>
struct has_next_key : std::false_type {};
template <class P>
struct has_next_key<P, std::void_t<decltype(std::declval<const P&>().next_key(
                           Index{}, std::int64_t{}, std::int64_t{}, std::int64_t{}))>> : std::true_type {};

// Does the policy have the optional query_tile member (ops/attention_policy.hpp)?
template <class P, class = void>
struct has_query_tile : std::false_type {};
template <class P>
struct has_query_tile<P, std::void_t<decltype(std::declval<const P&>().query_tile())>> : std::true_type {};

// Queries per item: kTargetRows / G, or, when the policy prefers tiles aligned to its blocks, the
// largest divisor of its block (>= kMinAlignedRows) that fits, so that no item straddles a block.
constexpr Index kMinAlignedRows = 8;
template <class Policy>
Index query_rows(const Policy& policy, Index G, Index T) {
  Index rows = std::max<Index>(1, kTargetRows / G);
  if constexpr (has_query_tile<Policy>::value) {
    const Index pref = policy.query_tile();
    if (pref > 0) {
      Index b = std::min(pref, rows);
      while (pref % b != 0) --b;
      if (b >= kMinAlignedRows) rows = b;
    }
  }
  return std::max<Index>(1, std::min<Index>(T, rows));
}

inline Scratch carve(float* base, Index rows, Index d, Index dv) {
  Scratch s;
  s.qs = base;
  s.s = s.qs + rows * d;
  s.acc = s.s + rows * kKeyTile;
  s.m = s.acc + rows * dv;
  s.l = s.m + rows;
  s.kind = s.l + rows;
  return s;
}

}  // namespace attention_detail

/// Run attention. Checks the arguments (sizes, null pointers, head divisibility) and throws
/// eigenformer::Error naming `where`; `ws` provides all scratch (nothing else is allocated).
template <class E, class Policy>
void flash_attention(const AttentionDims& dims, const AttentionIO& io, const KVSpan<E>* spans, std::size_t n_spans,
                     const Policy& policy, Workspace<float>& ws, const char* where = "flash_attention") {
  using namespace attention_detail;
  check(dims.n_heads > 0 && dims.n_kv_heads > 0 && dims.n_heads % dims.n_kv_heads == 0, ErrorKind::config, where,
        "n_heads = ", dims.n_heads, " must be a positive multiple of n_kv_heads = ", dims.n_kv_heads);
  check(dims.head_dim > 0 && dims.v_head_dim > 0, ErrorKind::config, where, "head_dim = ", dims.head_dim,
        " and v_head_dim = ", dims.v_head_dim, " must be >= 1");
  check(io.tokens >= 0, ErrorKind::invalid_argument, where, "negative query count ", io.tokens);
  if (io.tokens == 0) return;
  check(io.q && io.out, ErrorKind::invalid_argument, where, "null query or output pointer");
  check(io.q_ld >= dims.n_heads * dims.head_dim && io.out_ld >= dims.n_heads * dims.v_head_dim,
        ErrorKind::shape_mismatch, where, "query row stride ", io.q_ld, " or output row stride ", io.out_ld,
        " is smaller than n_heads x head_dim");
  check(!io.lse || io.lse_ld >= dims.n_heads, ErrorKind::shape_mismatch, where, "lse row stride ", io.lse_ld,
        " < n_heads = ", dims.n_heads);
  Index total_keys = 0;
  for (std::size_t s = 0; s < n_spans; ++s) {
    const KVSpan<E>& sp = spans[s];
    check(sp.tokens >= 0 && (sp.tokens == 0 || (sp.k && sp.v)), ErrorKind::invalid_argument, where, "key span ", s,
          " has ", sp.tokens, " tokens and a null pointer");
    total_keys += sp.tokens;
  }

  const Index H = dims.n_heads, Hkv = dims.n_kv_heads, G = H / Hkv, d = dims.head_dim, dv = dims.v_head_dim;
  const Index T = io.tokens;
  const Index bq = query_rows(policy, G, T);  // queries per item
  const Index n_qblocks = (T + bq - 1) / bq;
  const Index rows_max = G * bq;
  const bool packed = T >= kPackMinQueries && total_keys > 0;
  const Index n_chunks =
      (!packed && total_keys >= 2 * kDecodeChunk) ? (total_keys + kDecodeChunk - 1) / kDecodeChunk : 1;
  const Index n_items = Hkv * n_qblocks * n_chunks;
  // Below ~2 MFLOP a parallel region costs more than it saves (one decode step of a small layer).
  const double flops = 4.0 * double(T) * double(H) * double(total_keys) * double(std::max(d, dv));
  const int threads =
      flops < kMinParallelFlops ? 1 : static_cast<int>(std::max<Index>(1, std::min<Index>(num_threads(), n_items)));

  typename Workspace<float>::Frame frame(ws);
  // Prefill packs K^T and V once per call, tile by tile, so that every tile's operands are
  // contiguous (unit-stride panels: no cache-set conflicts from large row strides) and float:
  //   kt [Hkv][tiles][d][kKeyTile], vp [Hkv][tiles][kKeyTile][dv]; tiles enumerated span by span.
  Index n_tiles = 0;
  for (std::size_t s = 0; s < n_spans; ++s) n_tiles += (spans[s].tokens + kKeyTile - 1) / kKeyTile;
  const Index kt_tile = d * kKeyTile, vp_tile = kKeyTile * dv;
  float *kt = nullptr, *vp = nullptr;
  if (packed) {
    kt = ws.matrix(Hkv * n_tiles, kt_tile).data();
    vp = ws.matrix(Hkv * n_tiles, vp_tile).data();
    auto pack_head = [&](Index g) {
      Index tile = g * n_tiles;
      for (std::size_t s = 0; s < n_spans; ++s) {
        const KVSpan<E>& sp = spans[s];
        for (Index j0 = 0; j0 < sp.tokens; j0 += kKeyTile, ++tile) {
          const Index n = std::min(kKeyTile, sp.tokens - j0);
          float* kd = kt + tile * kt_tile;
          float* vd = vp + tile * vp_tile;
          for (Index j = 0; j < n; ++j) {
            const E* kr = sp.k + (j0 + j) * sp.k_ld + g * sp.k_head_stride;
            const E* vr = sp.v + (j0 + j) * sp.v_ld + g * sp.v_head_stride;
            for (Index i = 0; i < d; ++i) kd[i * kKeyTile + j] = to_float(kr[i]);
            for (Index i = 0; i < dv; ++i) vd[j * dv + i] = to_float(vr[i]);
          }
        }
      }
    };
    if (threads > 1) {
      parallel_for(0, Hkv, 1, pack_head);
    } else {
      for (Index g = 0; g < Hkv; ++g) pack_head(g);
    }
  }
  // Scratch: per thread when items are finished in place; per item when chunks must be merged.
  const Index scratch_slots = n_chunks > 1 ? n_items : threads;
  const std::size_t per = scratch_floats(rows_max, G, d, dv);
  float* scratch_base = ws.matrix(scratch_slots, static_cast<Index>(per)).data();
  const float ninf = -std::numeric_limits<float>::infinity();
  // Wide decode items: per thread, the transposed scaled queries [d, rows], S^T and then P^T
  // [kKeyTile, rows], the transposed accumulator [dv, rows] and the rows' rescale factors [rows].
  const bool wide_ok = !packed && rows_max >= kDecodeWideRows;
  // For 16-bit storage also the tile's keys and values widened to float [kKeyTile, d + dv].
  const Index wide_per =
      wide_ok ? rows_max * (d + kKeyTile + dv + 1) + (std::is_same_v<E, float> ? 0 : kKeyTile * (d + dv)) : 0;
  float* wide_base = wide_ok ? ws.matrix(threads, wide_per).data() : nullptr;

  auto run_item = [&](Index item, int thread) {
    const Index chunk = item % n_chunks;
    const Index qb = (item / n_chunks) % n_qblocks;
    const Index g = item / (n_chunks * n_qblocks);
    const Index t0 = qb * bq, nq = std::min(bq, T - t0), rows = G * nq;
    const Scratch sc = carve(scratch_base + static_cast<std::size_t>(n_chunks > 1 ? item : thread) * per, rows_max, d, dv);
    // Row r = gi * nq + ti: query head g * G + gi, query token t0 + ti.
    for (Index r = 0; r < rows; ++r) {
      const Index h = g * G + r / nq, t = t0 + r % nq;
      kernels::scale(io.q + t * io.q_ld + h * d, dims.scale, sc.qs + r * d, static_cast<std::size_t>(d));
      if (n_chunks > 1) {  // sinks join once, at the merge
        sc.m[r] = ninf;
        sc.l[r] = 0.0f;
      } else {
        policy.init(h, sc.m[r], sc.l[r]);
      }
      std::fill(sc.acc + r * dv, sc.acc + (r + 1) * dv, 0.0f);
    }
    const bool wide = wide_ok && rows >= kDecodeWideRows;
    float* const qt = wide ? wide_base + thread * wide_per : nullptr;  // [d, rows]
    float* const st = wide ? qt + d * rows : nullptr;                   // [kKeyTile, rows]
    float* const acct = wide ? st + kKeyTile * rows : nullptr;          // [dv, rows]
    float* const alphas = wide ? acct + dv * rows : nullptr;            // [rows]
    float* const kf = wide && !std::is_same_v<E, float> ? alphas + rows : nullptr;  // [kKeyTile, d + dv]
    if (wide) {
      transpose(sc.qs, d, qt, rows, rows, d);
      std::fill(acct, acct + dv * rows, 0.0f);
    }
    const auto ud = static_cast<std::size_t>(d), udv = static_cast<std::size_t>(dv), urows = static_cast<std::size_t>(rows);
    const auto ldS = static_cast<std::size_t>(kKeyTile);
    const std::int64_t q0 = io.q_pos0 + t0, q1 = q0 + nq;
    const Index key_begin = chunk * kDecodeChunk;
    const Index key_end = n_chunks > 1 ? std::min(total_keys, key_begin + kDecodeChunk) : total_keys;
    Index span_first = 0;  // index of the span's first key in the concatenation of spans
    Index tile_first = 0;  // index of the span's first packed tile
    for (std::size_t s = 0; s < n_spans; ++s) {
      const KVSpan<E>& sp = spans[s];
      const Index lo = std::max<Index>(0, key_begin - span_first), hi = std::min(sp.tokens, key_end - span_first);
      for (Index j0 = lo; j0 < hi; j0 += kKeyTile) {
        if constexpr (has_next_key<Policy>::value) {
          // Jump over whole key tiles no query row of the item attends (tiles stay aligned to lo).
          std::int64_t next = kNoKey;
          for (Index gi = 0; gi < G; ++gi)
            next = std::min(next, policy.next_key(g * G + gi, q0, q1, sp.pos0 + j0));
          if (next >= sp.pos0 + hi) break;
          const std::int64_t skip = next - (sp.pos0 + j0);
          if (skip >= kKeyTile) j0 += static_cast<Index>(skip / kKeyTile) * kKeyTile;
        }
        const Index n = std::min(kKeyTile, hi - j0);
        const auto un = static_cast<std::size_t>(n);
        const std::int64_t k0 = sp.pos0 + j0;
        bool any = false, all_full = true;
        for (Index gi = 0; gi < G; ++gi) {
          const TileKind kind = policy.tile(g * G + gi, q0, q1, k0, k0 + n);
          sc.kind[gi] = static_cast<float>(static_cast<int>(kind));
          any |= kind != TileKind::empty;
          all_full &= kind == TileKind::full;
        }
        if (!any) continue;
        const E* kbase = sp.k + j0 * sp.k_ld + g * sp.k_head_stride;  // decode: K and V in place
        const E* vbase = sp.v + j0 * sp.v_ld + g * sp.v_head_stride;
        // Wide: the tile's keys and values as float, with their row strides; 16-bit storage is widened
        // once per tile (the kernels' broadcasts would convert each element at every use).
        const float* kw = nullptr;
        const float* vw = nullptr;
        std::size_t kw_ld = 0, vw_ld = 0;
        if constexpr (std::is_same_v<E, float>) {
          kw = kbase;
          vw = vbase;
          kw_ld = static_cast<std::size_t>(sp.k_ld);
          vw_ld = static_cast<std::size_t>(sp.v_ld);
        } else if (wide) {
          kw = kf;
          kw_ld = static_cast<std::size_t>(d);
          for (Index j = 0; j < n; ++j) kernels::widen(kbase + j * sp.k_ld, kf + j * d, kw_ld);
          if (vbase == kbase && sp.v_ld == sp.k_ld && dv <= d) {  // V is a prefix of K's rows (MLA's latent)
            vw = kf;
            vw_ld = kw_ld;
          } else {
            vw = kf + kKeyTile * d;
            vw_ld = static_cast<std::size_t>(dv);
            for (Index j = 0; j < n; ++j) kernels::widen(vbase + j * sp.v_ld, kf + kKeyTile * d + j * dv, vw_ld);
          }
        }
        // Wide: the next tile's key rows are prefetched in step with this tile's work, d + dv units
        // (S^T depth slices, then P V value-dim blocks), so that they never come in one burst (a burst
        // of prefetches for a whole tile stalls the core on its miss buffers).
        const Index next_rows = wide ? std::min(2 * n, hi - j0) - n : 0;
        Index fetched = 0;
        auto prefetch_next = [&](Index work_done) {
          const Index target = next_rows * work_done / (d + dv);
          prefetch_rows(kbase, sp.k_ld, d, n + fetched, n + target);
          fetched = std::max(fetched, target);
        };
        // Packed tiles start at multiples of kKeyTile within a span; decode chunks never pack.
        const Index tile = g * n_tiles + tile_first + j0 / kKeyTile;
        // S = (scale Q) K^T for all rows of the group at once (K read once for all its heads).
        if (packed) {
          kernels::gemm_nn(urows, un, ud, sc.qs, ud, kt + tile * kt_tile, ldS, sc.s, ldS, false);
        } else if (wide) {  // S^T = K (scale Q)^T in depth slices that keep the slice of Q^T in L1, then S
          for (std::size_t p0 = 0; p0 < ud; p0 += kDecodeWideDepth) {
            const std::size_t depth = std::min(kDecodeWideDepth, ud - p0);
            kernels::gemm_nn(un, urows, depth, kw + p0, kw_ld, qt + p0 * urows, urows, st, urows, p0 > 0);
            prefetch_next(static_cast<Index>(p0 + depth));
          }
          transpose(st, rows, sc.s, kKeyTile, n, rows);
        } else {  // decode: 8 keys at a time, prefetching the K rows 8 keys ahead
          for (Index j = 0; j < n; j += kDecodeSubTile) {
            prefetch_rows(kbase, sp.k_ld, d, j + kDecodeSubTile, std::min(j + 2 * kDecodeSubTile, sp.tokens - j0));
            kernels::gemm_nt(urows, static_cast<std::size_t>(std::min(kDecodeSubTile, n - j)), ud, sc.qs, ud,
                             kbase + j * sp.k_ld, static_cast<std::size_t>(sp.k_ld), sc.s + j, ldS);
          }
        }
        for (Index r = 0; r < rows; ++r) {
          const Index gi = r / nq, ti = r % nq;
          float* srow = sc.s + r * kKeyTile;
          const auto kind = static_cast<TileKind>(static_cast<int>(sc.kind[gi]));
          if (kind == TileKind::empty) {  // this head sees none of the tile: contributes nothing
            std::fill(srow, srow + n, 0.0f);
            if (wide) alphas[r] = 1.0f;
            continue;
          }
          policy.row(g * G + gi, q0 + ti, k0, srow, n, kind == TileKind::partial);
          const float alpha = kernels::softmax_online_block(srow, un, sc.m[r], sc.l[r]);
          if (wide)
            alphas[r] = alpha;
          else if (alpha != 1.0f)
            kernels::scale(sc.acc + r * dv, alpha, sc.acc + r * dv, udv);
        }
        if (wide) {  // P^T, and acc^T rescaled column by column
          transpose(sc.s, kKeyTile, st, rows, rows, n);
          const bool rescale = std::any_of(alphas, alphas + rows, [](float a) { return a != 1.0f; });
          if (rescale)
            for (Index i = 0; i < dv; ++i)
              kernels::loops::map2(acct + i * rows, alphas, acct + i * rows, urows,
                                   [](auto a, auto f) { return simd::mul(a, f); });
        }
        // acc += P V, all rows at once (V read once for all heads of the group). A masked key has
        // p = 0, but 0 * NaN = NaN: when a tile with masked pairs holds a non-finite value, the rows
        // add only their visible keys instead, so a NaN/inf value never reaches a query that
        // cannot see it.
        const float* vtile = packed ? vp + tile * vp_tile : nullptr;
        const bool clean = all_full || (packed ? all_finite(vtile, n, dv, dv) : all_finite(vbase, n, sp.v_ld, dv));
        if (clean && packed) {
          kernels::gemm_nn(urows, udv, un, sc.s, ldS, vtile, udv, sc.acc, udv, true);
        } else if (clean && wide) {
          // acc^T += V^T P^T in blocks of kDecodeWideDims value dims.
          for (Index i0 = 0; i0 < dv; i0 += kDecodeWideDims) {
            const Index dims = std::min(kDecodeWideDims, dv - i0);
            kernels::gemm_tn(static_cast<std::size_t>(dims), urows, un, vw + i0, vw_ld, st, urows, acct + i0 * rows,
                             urows, true);
            prefetch_next(d + i0 + dims);
          }
        } else if (clean) {
          // V in place (decode, straight from the cache): a few keys at a time, so that the micro-
          // kernel's column strips walk a few consecutive rows instead of striding down the whole
          // tile, which defeats the hardware prefetcher (measured 2.6x faster from DRAM).
          for (std::size_t p0 = 0; p0 < un; p0 += kDecodeKeyStep) {
            const auto ip0 = static_cast<Index>(p0);
            prefetch_rows(vbase, sp.v_ld, dv, ip0 + kDecodeSubTile,
                          std::min<Index>(ip0 + kDecodeSubTile + static_cast<Index>(kDecodeKeyStep), sp.tokens - j0));
            kernels::gemm_nn(urows, udv, std::min(kDecodeKeyStep, un - p0), sc.s + p0, ldS,
                             vbase + p0 * static_cast<std::size_t>(sp.v_ld), static_cast<std::size_t>(sp.v_ld), sc.acc,
                             udv, true);
          }
        } else {
          for (Index r = 0; r < rows; ++r) {
            const Index gi = r / nq, ti = r % nq;
            if (static_cast<TileKind>(static_cast<int>(sc.kind[gi])) == TileKind::empty) continue;
            for (Index j = 0; j < n; ++j) {
              if (!policy.visible(g * G + gi, q0 + ti, k0 + j)) continue;
              if (wide)  // column r of acc^T += p V[j]^T
                kernels::gemm_tn(udv, 1, 1, vw + j * vw_ld, vw_ld, st + j * rows + r, 1, acct + r, urows, true);
              else if (packed)
                kernels::gemm_nn(1, udv, 1, sc.s + r * kKeyTile + j, 1, vtile + j * dv, udv, sc.acc + r * dv, udv, true);
              else
                kernels::gemm_nn(1, udv, 1, sc.s + r * kKeyTile + j, 1, vbase + j * sp.v_ld, udv, sc.acc + r * dv, udv,
                                 true);
            }
          }
        }
      }
      span_first += sp.tokens;
      tile_first += (sp.tokens + kKeyTile - 1) / kKeyTile;
    }
    if (wide) transpose(acct, rows, sc.acc, dv, dv, rows);
    if (n_chunks > 1) return;  // merged below
    for (Index r = 0; r < rows; ++r) {
      const Index h = g * G + r / nq, t = t0 + r % nq;
      const float l = sc.l[r];
      // l == 0: fully masked (0, lse -inf); l NaN (a visible NaN logit): NaN output and lse.
      kernels::scale(sc.acc + r * dv, l == 0.0f ? 0.0f : 1.0f / l, io.out + t * io.out_ld + h * dv, udv);
      if (io.lse) io.lse[t * io.lse_ld + h] = l == 0.0f ? ninf : sc.m[r] + std::log(l);
    }
  };
  parallel_for_dynamic(n_items, threads, run_item);

  if (n_chunks > 1) {
    // Merge the chunks of each (kv head, query block) by log-sum-exp, in chunk order, starting from
    // the policy's initial state (where a sink logit joins, once).
    parallel_for(0, Hkv * n_qblocks, 1, [&](Index gq) {
      const Index qb = gq % n_qblocks, g = gq / n_qblocks;
      const Index t0 = qb * bq, nq = std::min(bq, T - t0), rows = G * nq;
      for (Index r = 0; r < rows; ++r) {
        const Index h = g * G + r / nq, t = t0 + r % nq;
        float m0, l0;
        policy.init(h, m0, l0);
        float m = m0;
        for (Index c = 0; c < n_chunks; ++c)
          m = std::max(m, carve(scratch_base + static_cast<std::size_t>(gq * n_chunks + c) * per, rows_max, d, dv).m[r]);
        float* o = io.out + t * io.out_ld + h * dv;
        std::fill(o, o + dv, 0.0f);
        float l = 0.0f;
        if (m != ninf) {
          l = l0 > 0.0f ? l0 * std::exp(m0 - m) : 0.0f;
          for (Index c = 0; c < n_chunks; ++c) {
            const Scratch sc = carve(scratch_base + static_cast<std::size_t>(gq * n_chunks + c) * per, rows_max, d, dv);
            if (sc.l[r] == 0.0f) continue;
            const float w = std::exp(sc.m[r] - m);
            l += sc.l[r] * w;
            for (Index i = 0; i < dv; ++i) o[i] += sc.acc[r * dv + i] * w;
          }
        }
        kernels::scale(o, l == 0.0f ? 0.0f : 1.0f / l, o, static_cast<std::size_t>(dv));
        if (io.lse) io.lse[t * io.lse_ld + h] = l == 0.0f ? ninf : m + std::log(l);
      }
    });
  }
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer
